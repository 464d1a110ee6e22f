"""The cloth step as named stages, in the order of the equations in `system.py`'s docstring; `_step_body` runs
them as the top-level loops of one kernel (engine/stepper.py launches it).

`ClothKernels` is a mixin of `ClothSystem`: its stages read the system's parameters and constants (`self.*`), set
up by `system.py`."""

import math

import taichi as ti

from ...colliders import KIND_ID, local_distance, rotation_from_vector
from ...engine.stages import initial_state

#: speed (m/s) below which the aerodynamic force's |.| and 1/|v| are smoothed
AIR_SMOOTHING = 1e-4


@ti.func
def _atan2(y, x):
    """atan2(y, x) from a polynomial: atan(z) = z P(z^2) on [-1, 1] (degree 19, max error 9e-10 rad), then the
    octant. Cheaper than the library call, available in f64 on every backend (Vulkan has no f64 atan2), and
    reproduced exactly by `model.atan2`, so rest angles and energies computed in numpy match the kernels. Smooth
    at y = 0 (no |y| in the quotient, whose derivative would vanish there). Written as one expression: Taichi's
    reverse mode would turn a re-assigned local (a Horner loop) into an autodiff stack."""
    swap = ti.abs(y) > ti.abs(x)  # then atan2 = sign(y) pi / 2 - atan(x / y)
    den = ti.select(swap, y, x)
    z = ti.select(swap, x, y) / ti.select(den >= 0, den + 1e-30, den - 1e-30)  # in [-1, 1], smooth (no |.|)
    t = z * z
    r = z * (
        0.99999998056148331
        + t
        * (
            -0.33333180381041494
            + t
            * (
                0.19996436860733022
                + t
                * (
                    -0.14247222936456866
                    + t
                    * (
                        0.10878010681386194
                        + t
                        * (
                            -0.082137629233744278
                            + t
                            * (
                                0.05502811168452313
                                + t
                                * (
                                    -0.028490779799398437
                                    + t * (0.0095673396522177705 - t * 0.0015093026077765174)
                                )
                            )
                        )
                    )
                )
            )
        )
    )
    half = ti.select(y >= 0, 0.5 * math.pi, -0.5 * math.pi)
    return ti.select(swap, half - r, ti.select(x >= 0, r, r + 2.0 * half))


@ti.func
def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


class ClothKernels:
    @ti.kernel
    def _initialize(self, s: ti.template()):
        initial_state(self, s)

    def initialize(self, s):
        self._state = s
        self._initialize(s)

    def initialize_grad(self, s):
        self._initialize.grad(s)

    @ti.func
    def _mass(self, b, i):
        return self.density.field[self.density.bi(b)] * self.vertex_area[i]

    @ti.func
    def _distance(self, s: ti.template(), f, b, i, c: ti.template()):
        """(signed distance, outward unit normal) of vertex i to collider c, in world axes."""
        size = self.col_size.field[self.col_size.bi(b), c]
        rel = s.x[f, b, i] - s.col_center[f, b, c]
        if ti.static(self.col_kinds[c] == KIND_ID["sphere"]):  # no rotation to apply
            return local_distance(ti.static(self.col_kinds[c]), rel, size)
        else:
            ax, ay, az = s.col_axes[f, b, c, 0], s.col_axes[f, b, c, 1], s.col_axes[f, b, c, 2]
            q = ti.Vector([_dot(ax, rel), _dot(ay, rel), _dot(az, rel)])  # R^T (x - c)
            dist, n_local = local_distance(ti.static(self.col_kinds[c]), q, size)
            return dist, ax * n_local[0] + ay * n_local[1] + az * n_local[2]

    @ti.func
    def _contact(self, s: ti.template(), f, b, i, c: ti.template()):
        """(normal force magnitude f_n >= 0 in N, unit normal, collider velocity) of vertex i against collider c."""
        vcol = self.col_velocity.field[self.col_velocity.bi(b), c]
        dist, n = self._distance(s, f, b, i, c)
        fn = 0.0
        pen = ti.static(self.contact_margin) - dist
        if pen > 0:
            a = self.vertex_area[i]
            kc = self.contact_stiffness.field[self.contact_stiffness.bi(b)]
            cc = self.contact_damping.field[self.contact_damping.bi(b)]
            fn = ti.max(a * (kc * pen - cc * (s.v[f, b, i] - vcol).dot(n)), 0.0)
        return fn, n, vcol

    @ti.func
    def _membrane(self, b, t, e1, e2, w1, w2):
        """Elastic + viscous forces on the triangle's vertices 1 and 2 (vertex 0 gets minus their sum), from its
        edge vectors e1 = x1 - x0, e2 = x2 - x0 and their rates w1, w2."""
        d = self.dm_inv[t]
        # deformation gradient F = [e1 e2] Dm^-1 by columns, and its rate
        fa = e1 * d[0, 0] + e2 * d[1, 0]
        fb = e1 * d[0, 1] + e2 * d[1, 1]
        ra = w1 * d[0, 0] + w2 * d[1, 0]
        rb = w1 * d[0, 1] + w2 * d[1, 1]
        y = self.stretch_modulus.field[self.stretch_modulus.bi(b)]
        nu = self.poisson_ratio.field[self.poisson_ratio.bi(b)]
        mu = y / (2.0 * (1.0 + nu))
        lam = y * nu / (1.0 - nu * nu)
        c00, c01, c11 = _dot(fa, fa), _dot(fa, fb), _dot(fb, fb)  # C = F^T F
        pa, pb = self._stress(mu, lam, fa, fb, c00, c01, c11)
        # viscous stress P_d = c_s F (F^T dF + dF^T F)
        cs = self.stretch_damping.field[self.stretch_damping.bi(b)]
        q00 = 2.0 * _dot(fa, ra)
        q01 = _dot(fa, rb) + _dot(fb, ra)
        q11 = 2.0 * _dot(fb, rb)
        pa2 = pa + cs * (fa * q00 + fb * q01)
        pb2 = pb + cs * (fa * q01 + fb * q11)
        # forces -A0 P Dm^-T, by columns
        area = self.rest_area[t]
        return -area * (pa2 * d[0, 0] + pb2 * d[0, 1]), -area * (pa2 * d[1, 0] + pb2 * d[1, 1])

    @ti.func
    def _stress(self, mu, lam, fa, fb, c00, c01, c11):
        """First Piola-Kirchhoff stress P (3x2, by columns) of F = [fa fb] with C = F^T F."""
        if ti.static(self.stvk):
            # P = F (2 mu E + lambda tr(E) I), E = (C - I) / 2
            e00, e01, e11 = 0.5 * (c00 - 1.0), 0.5 * c01, 0.5 * (c11 - 1.0)
            tr = lam * (e00 + e11)
            return fa * (2.0 * mu * e00 + tr) + fb * (2.0 * mu * e01), fa * (2.0 * mu * e01) + fb * (
                2.0 * mu * e11 + tr
            )
        else:
            # F = R S: S = sqrt(C) = (C + sqrt(det C) I) / sqrt(tr C + 2 sqrt(det C)) (Cayley-Hamilton),
            # R = F S^-1 = F adj(S) / det S with det S = sqrt(det C); P = 2 mu (F - R) + lambda tr(S - I) R
            # det S is floored at 1 % of tr C: a triangle crushed to a sliver keeps finite (if unphysical) forces
            # instead of dividing by ~0; no triangle of a working simulation gets near it
            tr_c = c00 + c11
            sd = ti.sqrt(ti.max(c00 * c11 - c01 * c01, 1e-4 * tr_c * tr_c))
            k = 1.0 / ti.sqrt(tr_c + 2.0 * sd)
            s00, s01, s11 = k * (c00 + sd), k * c01, k * (c11 + sd)
            r_a = (fa * s11 - fb * s01) / sd
            r_b = (fb * s00 - fa * s01) / sd
            g = lam * (s00 + s11 - 2.0)
            return 2.0 * mu * (fa - r_a) + g * r_a, 2.0 * mu * (fb - r_b) + g * r_b

    @ti.func
    def _aerodynamic(self, b, e1, e2, vel):
        """Drag and lift on one triangle (edges e1, e2, mean velocity vel), a third of it per vertex. Written with
        the unnormalised normal c = e1 x e2 = 2 A n, so that only 1 / |c| and 1 / speed are divisions."""
        cr = e1.cross(e2)
        cn = ti.sqrt(_dot(cr, cr) + 1e-30)
        vr = vel - self.wind.field[self.wind.bi(b)]
        vn = _dot(vr, cr) * (1.0 / cn)  # v_r . n
        speed = ti.sqrt(_dot(vr, vr) + ti.static(AIR_SMOOTHING**2))
        kd = self.drag.field[self.drag.bi(b)]
        kl = self.lift.field[self.lift.bi(b)]
        # (A / 3) (-k_D |v_n| v_r + k_L v_n (v_r v_n / speed - n speed)), with A n = c / 2
        return (1.0 / 6.0) * (
            (kl * vn * vn * cn / speed - kd * cn * ti.sqrt(vn * vn + ti.static(AIR_SMOOTHING**2))) * vr
            - (kl * vn * speed) * cr
        )

    def serial_steps(self) -> bool:
        return self.serial_v and self.serial_t and self.serial_h

    @ti.func
    def _step_body(self, s: ti.template(), f: ti.template(), fg: ti.template()):
        """One step, frame f -> f + 1 (fg: the global step index); launched by engine/stepper.py."""
        self._control(s, f, fg)
        self._collider_poses(s, f, fg)
        self._vertex_forces(s, f)
        self._membrane_forces(s, f)
        self._bending_forces(s, f)
        self._integrate(s, f)

    @ti.func
    def _control(self, s: ti.template(), f: ti.template(), fg: ti.template()):
        """Stage 1: the controller writes the handle actions ``act[f, b, 3 h + k]``."""
        if ti.static(self.has_controller):
            for k in ti.static(range(len(self._ctrl_sizes))):
                ti.loop_config(serialize=True)
                for b, j in ti.ndrange(self.batch, self._ctrl_sizes[k]):
                    self.controller.run_stage(k, s, f, fg, b, j)

    @ti.func
    def _collider_poses(self, s: ti.template(), f: ti.template(), fg: ti.template()):
        """Stage 2: the colliders' poses at this step, centre c + v t and the axes of R."""
        if ti.static(self.n_col > 0):
            ti.loop_config(serialize=True)
            for b, c in ti.ndrange(self.batch, self.n_col):
                t = fg * ti.static(self.dt)
                s.col_center[f, b, c] = (
                    self.col_position.field[self.col_position.bi(b), c]
                    + t * self.col_velocity.field[self.col_velocity.bi(b), c]
                )
                rot = rotation_from_vector(self.col_rotation.field[self.col_rotation.bi(b), c])
                for k in ti.static(range(3)):
                    s.col_axes[f, b, c, k] = ti.Vector([rot[0, k], rot[1, k], rot[2, k]])

    @ti.func
    def _vertex_forces(self, s: ti.template(), f: ti.template()):
        """Stage 3: per vertex, m g + load - c_m m v + the colliders' penalty forces (N)."""
        # 3. per-vertex forces: stored (the only store), everything after adds
        ti.loop_config(serialize=ti.static(self.serial_v))
        for b, i in ti.ndrange(self.batch, self.n):
            m = self._mass(b, i)
            fi = m * (
                self.gravity.field[self.gravity.bi(b)]
                - self.mass_damping.field[self.mass_damping.bi(b)] * s.v[f, b, i]
            )
            if ti.static(self.has_loads):
                fi += self.loads.field[self.loads.bi(b), i]
            for c in ti.static(range(self.n_col)):
                fn, n, _vcol = self._contact(s, f, b, i, c)
                fi += fn * n
            s.force[f, b, i] = fi

    @ti.func
    def _membrane_forces(self, s: ti.template(), f: ti.template()):
        """Stage 4: per triangle, += the membrane (FEM) and aerodynamic forces."""
        # 4. membrane (FEM) and aerodynamic forces, per triangle. Written out in scalars and vectors, each local
        # assigned once: Taichi's reverse mode turns a local that is re-assigned after being read (as in a matrix
        # product's accumulation) into an autodiff stack, which made this loop's adjoint ten times slower.
        ti.loop_config(serialize=ti.static(self.serial_t))
        for b, t in ti.ndrange(self.batch, self.n_tri):
            tri = self.tri[t]
            x0, x1, x2 = s.x[f, b, tri[0]], s.x[f, b, tri[1]], s.x[f, b, tri[2]]
            u0, u1, u2 = s.v[f, b, tri[0]], s.v[f, b, tri[1]], s.v[f, b, tri[2]]
            f1, f2 = self._membrane(b, t, x1 - x0, x2 - x0, u1 - u0, u2 - u0)
            if ti.static(self.has_air):
                fa = self._aerodynamic(b, x1 - x0, x2 - x0, (u0 + u1 + u2) / 3.0)
                s.force[f, b, tri[0]] += fa - f1 - f2
                s.force[f, b, tri[1]] += fa + f1
                s.force[f, b, tri[2]] += fa + f2
            else:
                s.force[f, b, tri[0]] += -f1 - f2
                s.force[f, b, tri[1]] += f1
                s.force[f, b, tri[2]] += f2

    @ti.func
    def _bending_forces(self, s: ti.template(), f: ti.template()):
        """Stage 5: per hinge, += the bending forces (dihedral or quadratic model)."""
        # 5. bending, per hinge (edge p-q, opposite vertices a and b)
        if ti.static(self.n_hinge > 0 and self.quadratic):
            # quadratic model (Bergou et al. 2006): E = k_b |s|^2 / 2, s = sum_i k_i x_i with the constant weights
            # k_i = sqrt(3 / (A1 + A2)) K_i; forces -k_i (k_b s + c_b sum_j k_j v_j), linear in x and v
            ti.loop_config(serialize=ti.static(self.serial_h))
            for b, h in ti.ndrange(self.batch, self.n_hinge):
                hv = self.hinge[h]
                kw = self.hinge_k[h]
                sx = (
                    kw[0] * s.x[f, b, hv[0]]
                    + kw[1] * s.x[f, b, hv[1]]
                    + kw[2] * s.x[f, b, hv[2]]
                    + kw[3] * s.x[f, b, hv[3]]
                )
                sv = (
                    kw[0] * s.v[f, b, hv[0]]
                    + kw[1] * s.v[f, b, hv[1]]
                    + kw[2] * s.v[f, b, hv[2]]
                    + kw[3] * s.v[f, b, hv[3]]
                )
                g = -(
                    self.bending_stiffness.field[self.bending_stiffness.bi(b)] * sx
                    + self.bending_damping.field[self.bending_damping.bi(b)] * sv
                )
                s.force[f, b, hv[0]] += kw[0] * g
                s.force[f, b, hv[1]] += kw[1] * g
                s.force[f, b, hv[2]] += kw[2] * g
                s.force[f, b, hv[3]] += kw[3] * g
        if ti.static(self.n_hinge > 0 and not self.quadratic):
            ti.loop_config(serialize=ti.static(self.serial_h))
            for b, h in ti.ndrange(self.batch, self.n_hinge):
                hv = self.hinge[h]
                xp, xq, xa, xb = s.x[f, b, hv[0]], s.x[f, b, hv[1]], s.x[f, b, hv[2]], s.x[f, b, hv[3]]
                e = xq - xp
                el = ti.sqrt(_dot(e, e))
                inv_el = 1.0 / el
                n1 = (xa - xp).cross(xa - xq)
                n2 = (xb - xq).cross(xb - xp)
                theta = _atan2(_dot(n1.cross(n2), e) * inv_el, _dot(n1, n2))
                # |d theta / dx| grows like 1 / (triangle height): |n|^2 is floored at 1e-2 |e|^4 (a triangle
                # squashed to ~1/10 of a healthy one's height) so that a sliver does not make the bending stiffness,
                # and the stable time step, unbounded; it is exact for every triangle above that
                floor = 1e-2 * el * el * el * el
                m1 = n1 * (1.0 / ti.max(_dot(n1, n1), floor))
                m2 = n2 * (1.0 / ti.max(_dot(n2, n2), floor))
                # u_k = -d theta / d x_k (Bridson et al. 2003)
                ua = el * m1
                ub = el * m2
                up = (_dot(xa - xq, e) * inv_el) * m1 + (_dot(xb - xq, e) * inv_el) * m2
                uq = -(ua + ub + up)
                theta_dot = -(
                    _dot(ua, s.v[f, b, hv[2]])
                    + _dot(ub, s.v[f, b, hv[3]])
                    + _dot(up, s.v[f, b, hv[0]])
                    + _dot(uq, s.v[f, b, hv[1]])
                )
                mag = self.hinge_weight[h] * (
                    self.bending_stiffness.field[self.bending_stiffness.bi(b)] * (theta - self.rest_angle[h])
                    + self.bending_damping.field[self.bending_damping.bi(b)] * theta_dot
                )
                s.force[f, b, hv[2]] += mag * ua
                s.force[f, b, hv[3]] += mag * ub
                s.force[f, b, hv[0]] += mag * up
                s.force[f, b, hv[1]] += mag * uq

    @ti.func
    def _integrate(self, s: ti.template(), f: ti.template()):
        """Stage 6: semi-implicit Euler, friction against the colliders, pins and handles."""
        # 6. integrate; friction; pins and handles
        ti.loop_config(serialize=ti.static(self.serial_v))
        for b, i in ti.ndrange(self.batch, self.n):
            kind = self.vertex_kind[i]
            x, v = s.x[f, b, i], s.v[f, b, i]
            x_new = x
            v_new = v * 0.0
            if kind == 0:
                m = self._mass(b, i)
                v_new = v + ti.static(self.dt) * s.force[f, b, i] / m
                for c in ti.static(range(self.n_col)):
                    fn, n, vcol = self._contact(s, f, b, i, c)
                    if fn > 0:
                        rel = v_new - vcol
                        rn = rel.dot(n)
                        rt = rel - rn * n
                        mu_c = self.col_friction.field[self.col_friction.bi(b), c]
                        slip = ti.sqrt(rt.dot(rt) + ti.static(self.friction_smoothing**2))
                        v_new = vcol + rn * n + rt / (1.0 + mu_c * fn * ti.static(self.dt) / (m * slip))
                x_new = x + ti.static(self.dt) * v_new
            if ti.static(self.n_handles > 0):
                if kind == 2:
                    h = self.handle_index[i]
                    a = ti.Vector([s.act[f, b, 3 * h], s.act[f, b, 3 * h + 1], s.act[f, b, 3 * h + 2]])
                    if ti.static(self.velocity_handles):
                        v_new = ti.static(self.handle_scale) * a
                        x_new = x + ti.static(self.dt) * v_new
                    else:
                        x_new = self.x0.field[self.x0.bi(b), i] + ti.static(self.handle_scale) * a
                        v_new = (x_new - x) / ti.static(self.dt)
            s.v[f + 1, b, i] = v_new
            s.x[f + 1, b, i] = x_new
