"""The MPM step as named stages, in the order of the equations in `system.py`'s docstring: control, P2G, grid
update, G2P. `_clear` finds the step's active box of grid nodes and clears it; `_advance` runs the stages as the
top-level loops of one kernel; `_regrid` recomputes a step's grid for its adjoint (see `step_launchers`).

`MPMKernels` is a mixin of `MPMSystem`: its stages read the system's parameters, the packed material constants
and the grid fields (`self.*`), set up by `system.py`."""

import math

import taichi as ti

from ...colliders import box_distance, sphere_distance
from ...engine import tmath
from ...engine.launch import FastKernel
from .model import ELASTIC, FLUID, SAND

STICKY, SLIP, FRICTION, OPEN = range(4)

PLANE, SPHERE, BOX = range(3)

#: per-material constants packed for the kernels (`MPMSystem.mat_const[b, material, constant]`)
RHO, BULK, ETA, MU, LAM, ALPHA, COHESION = range(7)
N_CONSTANTS = 7

#: what `MPMSystem._box_row` does to the active box's nodes
CLEAR, CLEAR_GRAD, UPDATE = range(3)


class MPMKernels:
    @ti.func
    def _const(self, name: ti.template(), k: ti.template(), b):
        """Material k's constant `name` for batch copy b."""
        fld = ti.static(self._mf[name][k])
        return fld[b * ti.static(self._ms[name][k])]

    @ti.func
    def _stencil(self, xp):
        """(base node, fractional position in cells, B-spline weights as a 3 x dim matrix)."""
        X = xp * ti.static(self.inv_dx)
        base = ti.cast(ti.floor(X - 0.5), ti.i32)
        base = ti.max(
            ti.min(base, ti.Vector(self.res, ti.i32) - 3), 0
        )  # a stray particle clamps, never crashes
        fx = X - ti.cast(base, float)
        w0 = 0.5 * (1.5 - fx) ** 2
        w1 = 0.75 - (fx - 1.0) ** 2
        w2 = 0.5 * (fx - 0.5) ** 2
        return base, fx, ti.Matrix.rows([w0, w1, w2])

    @ti.kernel
    def _pack(self):
        for b in range(self.batch):
            for k in ti.static(range(self.n_mat)):
                kind = ti.static(self.mat_kinds[k])
                self.mat_const[b, k, RHO] = self._const("density", k, b)
                if ti.static(kind == FLUID):
                    self.mat_const[b, k, BULK] = self._const("bulk_modulus", k, b)
                    self.mat_const[b, k, ETA] = self._const("viscosity", k, b)
                else:
                    E = self._const("youngs_modulus", k, b)
                    nu = self._const("poisson_ratio", k, b)
                    self.mat_const[b, k, MU] = E / (2.0 * (1.0 + nu))
                    self.mat_const[b, k, LAM] = E * nu / ((1.0 + nu) * (1.0 - 2.0 * nu))
                    if ti.static(kind == ELASTIC):
                        self.mat_const[b, k, ETA] = self._const("viscosity", k, b)
                    else:
                        # Drucker-Prager cone of friction angle phi (Klar et al. 2016, eq. 27)
                        sphi = tmath.sin(self._const("friction_angle", k, b) * (math.pi / 180.0))
                        self.mat_const[b, k, ALPHA] = (
                            ti.static(math.sqrt(2.0 / 3.0)) * 2.0 * sphi / (3.0 - sphi)
                        )
                        # cohesion as the volumetric Hencky strain where the mean stress
                        # tr(tau) / d = (lambda + 2 mu / d) tr(eps) reaches it: the apex of the cone
                        self.mat_const[b, k, COHESION] = self._const("cohesion", k, b) / (
                            E * nu / ((1.0 + nu) * (1.0 - 2.0 * nu)) + E / ((1.0 + nu) * ti.static(self.dim))
                        )

    @ti.kernel
    def _initialize(self, s: ti.template()):
        for b, p in ti.ndrange(self.batch, self.n):
            s.x[0, b, p] = self.x0.field[self.x0.bi(b), p]
            s.v[0, b, p] = (
                self.v0.field[self.v0.bi(b), p] + self.body_v0.field[self.body_v0.bi(b), self.p_body[p]]
            )
            s.C[0, b, p] = tmath.flatten(ti.Matrix.zero(float, self.dim, self.dim))
            s.F[0, b, p] = tmath.flatten(ti.Matrix.identity(float, self.dim))
            if ti.static(self.has_sand):
                s.strain[0, b, p] = tmath.flatten(ti.Matrix.zero(float, self.dim, self.dim))

    def initialize(self, s):
        self._pack()
        self._initialize(s)

    def initialize_grad(self, s):
        self._initialize.grad(s)
        self._pack.grad()
        self.mat_const.grad.fill(
            0
        )  # accumulated by the step adjoints, handed on; clean for the next backward

    @ti.func
    def _clear_node(self, J, with_grad: ti.template()):
        self.grid_m[J] = 0.0
        self.grid_mv[J] = ti.Vector.zero(float, self.dim)
        if ti.static(with_grad):
            self.grid_m.grad[J] = 0.0
            self.grid_mv.grad[J] = ti.Vector.zero(float, self.dim)
            self.grid_v.grad[J] = ti.Vector.zero(float, self.dim)

    @ti.func
    def _drucker_prager(self, eps, mu, lam, alpha, tr_c):
        """Klar et al. (2016), Algorithm 2, on the Hencky strain eps, with the cone's apex moved to the volumetric
        strain tr_c >= 0 by cohesion: beyond the apex (tr eps > tr_c) the strain returns to the apex (tr_c / d) I;
        outside the cone, dgamma = ||dev eps|| + (d lam + 2 mu) / (2 mu) (tr eps - tr_c) alpha > 0, eps is
        projected back onto it along dev eps. With tr_c = 0 (no cohesion) the stress-free state is the apex, where
        the map is not differentiable."""
        d = ti.static(self.dim)
        ident = ti.Matrix.identity(float, d)
        tr = eps.trace()
        dev = eps - (tr / d) * ident
        dev_norm = ti.sqrt((dev * dev).sum() + 1e-30)
        # 1e-30 keeps the ratio finite for a non-sand particle (mu = 0), whose result is discarded
        dgamma = dev_norm + (d * lam + 2.0 * mu) / (2.0 * mu + 1e-30) * (tr - tr_c) * alpha
        projected = eps - (ti.max(dgamma, 0.0) / dev_norm) * dev
        return ti.select(tr > tr_c, (tr_c / d) * ident, projected)

    @ti.func
    def _only(self, kind, k: ti.template(), m):
        """m for particles of material kind k, zero for the others (no select when k is the only kind)."""
        if ti.static(len(self.kinds_present) == 1):
            return m
        else:
            return ti.select(kind == k, m, ti.Matrix.zero(float, self.dim, self.dim))

    @ti.func
    def _fluid_F(self, J):
        """A fluid keeps only its volume change: F = J^(1/d) I."""
        if ti.static(self.dim == 2):
            return ti.sqrt(J) * ti.Matrix.identity(float, 2)
        else:
            return tmath.exp(tmath.log(J) / 3.0) * ti.Matrix.identity(float, 3)

    @ti.func
    def _new_F(self, kind, Fn, J):
        if ti.static(FLUID not in self.kinds_present):
            return Fn
        elif ti.static(len(self.kinds_present) == 1):
            return self._fluid_F(J)
        else:
            return ti.select(kind == FLUID, self._fluid_F(J), Fn)

    @ti.func
    def _fluid_stress(self, kind, b, mid, J):
        """Tait equation of state: p = K (J^-gamma - 1) / gamma; Kirchhoff stress -J p I."""
        if ti.static(FLUID in self.kinds_present):
            gamma = self.mat_gamma[mid]
            pressure = self.mat_const[b, mid, BULK] / gamma * (tmath.exp(-gamma * tmath.log(J)) - 1.0)
            return self._only(kind, FLUID, -J * pressure * ti.Matrix.identity(float, self.dim))
        else:
            return ti.Matrix.zero(float, self.dim, self.dim)

    @ti.func
    def _elastic_stress(self, kind, b, mid, Fn, J):
        """Compressible neo-Hookean: tau = mu (F F^T - I) + lambda log(J) I."""
        if ti.static(ELASTIC in self.kinds_present):
            ident = ti.Matrix.identity(float, self.dim)
            mu = self.mat_const[b, mid, MU]
            lam = self.mat_const[b, mid, LAM]
            return self._only(kind, ELASTIC, mu * (Fn @ Fn.transpose() - ident) + lam * tmath.log(J) * ident)
        else:
            return ti.Matrix.zero(float, self.dim, self.dim)

    @ti.func
    def _sand_strain(self, s: ti.template(), f, b, p, kind, mid, Cp):
        """Sand's elastic Hencky strain at f + 1: objective (Jaumann) rate update with the velocity gradient C,
        then the Drucker-Prager return mapping. Zero for other particles."""
        if ti.static(SAND in self.kinds_present):
            eps = tmath.unflatten(s.strain[f, b, p])
            rate = 0.5 * (Cp + Cp.transpose())
            spin = 0.5 * (Cp - Cp.transpose())
            trial = eps + ti.static(self.dt) * (rate + spin @ eps - eps @ spin)
            out = self._drucker_prager(
                trial,
                self.mat_const[b, mid, MU],
                self.mat_const[b, mid, LAM],
                self.mat_const[b, mid, ALPHA],
                self.mat_const[b, mid, COHESION],
            )
            return self._only(kind, SAND, out)
        else:
            return ti.Matrix.zero(float, self.dim, self.dim)

    @ti.func
    def _sand_stress(self, b, mid, eps):
        """Hencky elasticity (Klar et al. 2016): tau = 2 mu eps + lambda tr(eps) I (eps = 0 off sand)."""
        if ti.static(SAND in self.kinds_present):
            return 2.0 * self.mat_const[b, mid, MU] * eps + self.mat_const[
                b, mid, LAM
            ] * eps.trace() * ti.Matrix.identity(float, self.dim)
        else:
            return ti.Matrix.zero(float, self.dim, self.dim)

    @ti.func
    def _active_stress(self, s: ti.template(), f, b, p, F_new):
        """DiffTaichi's muscle: strength_k act_k (F d_k)(F d_k)^T for a particle of actuator k."""
        if ti.static(self.has_actuators):
            a = self.p_act[p]
            ai = ti.max(a, 0)
            Fd = F_new @ self.act_dir[ai]
            gain = self.act_strength.field[self.act_strength.bi(b), ai] * s.act[f, b, ai]
            return ti.select(a >= 0, gain, 0.0) * Fd.outer_product(Fd)
        else:
            return ti.Matrix.zero(float, self.dim, self.dim)

    @ti.func
    def _p2g_particle(self, s: ti.template(), f, b, p, store: ti.template()):
        """Particle to grid: stress, F' (written to frame f + 1 when `store`), mass and momentum scatter."""
        d = ti.static(self.dim)
        dt = ti.static(self.dt)
        xp = s.x[f, b, p]
        Cp = tmath.unflatten(s.C[f, b, p])
        vol = self.p_vol[p]
        mid = self.p_mat[p]
        kind = self.p_kind[p]
        mass = self.mat_const[b, mid, RHO] * vol
        Fn = (ti.Matrix.identity(float, d) + dt * Cp) @ tmath.unflatten(s.F[f, b, p])
        J = Fn.determinant()
        F_new = self._new_F(kind, Fn, J)
        strain_new = self._sand_strain(s, f, b, p, kind, mid, Cp)
        # Kirchhoff stress J sigma: Newtonian viscosity 2 eta J D (APIC's C approximates grad v) + the material's
        tau = (
            self.mat_const[b, mid, ETA] * J * (Cp + Cp.transpose())
            + self._fluid_stress(kind, b, mid, J)
            + self._elastic_stress(kind, b, mid, Fn, J)
            + self._sand_stress(b, mid, strain_new)
            + self._active_stress(s, f, b, p, F_new)
        )
        if ti.static(store):
            s.F[f + 1, b, p] = tmath.flatten(F_new)
            if ti.static(self.has_sand):
                s.strain[f + 1, b, p] = tmath.flatten(strain_new)
        affine = (-dt * 4.0 * ti.static(self.inv_dx**2)) * vol * tau + mass * Cp
        mv = mass * s.v[f, b, p]
        if ti.static(store or not self.unroll):
            # kept for the adjoint's `_regrid`, and handed to `_scatter_particle` (a later top-level loop)
            s.p_affine[f, b, p] = tmath.flatten(affine)
        if ti.static(not self.unroll):
            s.p_momentum[f, b, p] = mv
            s.p_mass[f, b, p] = mass
        if ti.static(self.unroll):
            base, fx, W = self._stencil(xp)
            for offset in ti.static(ti.grouped(ti.ndrange(*([3] * d)))):
                self._scatter(b, base, fx, W, offset, mv, affine, mass)

    @ti.func
    def _scatter_particle(self, s: ti.template(), f, b, p):
        """P2G's scatter as a runtime loop over the 3^dim nodes (3D: an unrolled adjoint took many minutes to
        compile). Taichi differentiates a loop nested in the particle loop correctly only when its body reads
        nothing but global fields and indices (no local computed outside it), so the body re-derives the stencil
        from x and reads the particle's momentum, affine matrix and mass from the scratch fields."""
        for o in range(ti.static(3**self.dim)):
            base, fx, W = self._stencil(s.x[f, b, p])
            self._scatter(
                b,
                base,
                fx,
                W,
                self._offset(o),
                s.p_momentum[f, b, p],
                tmath.unflatten(s.p_affine[f, b, p]),
                s.p_mass[f, b, p],
            )

    @ti.func
    def _scatter_stored(self, s: ti.template(), f, b, p):
        """P2G's scatter with the affine matrix stored by the forward step f (unrolled stencil); mass and momentum
        are recomputed as in `_p2g_particle` (two products)."""
        base, fx, W = self._stencil(s.x[f, b, p])
        mass = self.mat_const[b, self.p_mat[p], RHO] * self.p_vol[p]
        mv = mass * s.v[f, b, p]
        affine = tmath.unflatten(s.p_affine[f, b, p])
        for offset in ti.static(ti.grouped(ti.ndrange(*([3] * self.dim)))):
            self._scatter(b, base, fx, W, offset, mv, affine, mass)

    @ti.func
    def _offset(self, o):
        """Stencil node o in [0, 3^dim) as an offset vector (row-major)."""
        if ti.static(self.dim == 2):
            return ti.Vector([o // 3, o % 3])
        else:
            return ti.Vector([o // 9, (o // 3) % 3, o % 3])

    @ti.func
    def _weight(self, W, offset):
        """B-spline weight of stencil node `offset`: the product over axes q of W[offset[q], q] (selects, so the
        offset may be a runtime value)."""
        w = 1.0
        for q in ti.static(range(self.dim)):
            w *= ti.select(offset[q] == 0, W[0, q], ti.select(offset[q] == 1, W[1, q], W[2, q]))
        return w

    @ti.func
    def _scatter(self, b, base, fx, W, offset, mv, affine, mass):
        dpos = (ti.cast(offset, float) - fx) * ti.static(self.dx)
        weight = self._weight(W, offset)
        self.grid_mv[b, base + offset] += weight * (mv + affine @ dpos)
        self.grid_m[b, base + offset] += weight * mass

    @ti.func
    def _gather(self, s: ti.template(), f, b, p, base, fx, W, offset):
        """G2P of one stencil node, added straight into frame f + 1 (zeroed by an earlier top-level loop)."""
        dpos = ti.cast(offset, float) - fx
        weight = self._weight(W, offset)
        gv = self.grid_v[b, base + offset]
        s.v[f + 1, b, p] += weight * gv
        s.C[f + 1, b, p] += tmath.flatten((4.0 * ti.static(self.inv_dx) * weight) * gv.outer_product(dpos))

    @ti.func
    def _contact(self, v, n, vc, mu, mode: ti.template()):
        """Velocity of a grid node after contact with a surface of outward normal n moving at vc: when it moves
        into the surface (vn < 0), sticky stops it (v = vc), slip removes vn, friction also scales the tangential
        velocity by max(0, 1 + mu vn / |vt|) (Coulomb; |vt| smoothed by eps)."""
        vr = v - vc
        vn = vr.dot(n)
        out = v
        if ti.static(mode == STICKY):
            out = ti.select(vn < 0, vc, v)
        elif ti.static(mode == SLIP):
            out = v - ti.min(vn, 0.0) * n
        elif ti.static(mode == FRICTION):
            vt = vr - vn * n
            slip = ti.sqrt(vt.dot(vt) + ti.static(self.eps_slip**2))
            out = vc + ti.max(vn, 0.0) * n + ti.max(0.0, 1.0 + mu * ti.min(vn, 0.0) / slip) * vt
        return out

    @ti.func
    def _collider_distance(self, c: ti.template(), xg, b, t):
        """(signed distance, outward unit normal) of node position xg to collider c at time t."""
        kind = ti.static(self.col_kinds[c])
        centre = (
            self.col_position.field[self.col_position.bi(b), c]
            + t * self.col_velocity.field[self.col_velocity.bi(b), c]
        )
        q = xg - centre
        size = self.col_size.field[self.col_size.bi(b), c]
        dist = 0.0
        n = self.col_normal[c]
        if ti.static(kind == PLANE):
            dist = q.dot(n)
        elif ti.static(kind == SPHERE):
            dist, n = sphere_distance(q, size[0])
        else:
            dist, n = box_distance(q, size)
        return dist, n

    @ti.func
    def _grid_node(self, J, fg):
        """Grid update of node J = (b, i, j[, k]): momentum to velocity, gravity, walls, colliders. Nodes without
        mass (most of the grid) are skipped; their velocity is 0 and no particle reads them with a nonzero weight.
        So are nodes with a vanishing mass (below `mass_eps`: a particle almost exactly half a cell off a node gives
        it a weight near 0), whose v = (m v) / m has an adjoint ~ 1 / m^2 that overflowed in f32."""
        d = ti.static(self.dim)
        m = self.grid_m[J]
        if m > ti.static(self.mass_eps):
            b = J[0]
            node = ti.Vector([J[k + 1] for k in ti.static(range(d))])
            v = self.grid_mv[J] / m + ti.static(self.dt) * self.gravity.field[self.gravity.bi(b)]
            for w in ti.static(range(2 * d)):
                if ti.static(self.wall_modes[w] != OPEN):
                    axis = ti.static(w // 2)
                    inside = False
                    if ti.static(w % 2 == 0):
                        inside = node[axis] < ti.static(self.bound)
                    else:
                        inside = node[axis] >= ti.static(self.res[axis] - self.bound)
                    normal = ti.Vector.unit(d, axis) * ti.static(1.0 if w % 2 == 0 else -1.0)
                    mu = self.wall_friction.field[self.wall_friction.bi(b), w]
                    v = ti.select(
                        inside, self._contact(v, normal, ti.Vector.zero(float, d), mu, self.wall_modes[w]), v
                    )
            if ti.static(self.n_col > 0):
                t = fg * ti.static(self.dt)
                xg = ti.cast(node, float) * ti.static(self.dx)
                for c in ti.static(range(self.n_col)):
                    dist, normal = self._collider_distance(c, xg, b, t)
                    vc = self.col_velocity.field[self.col_velocity.bi(b), c]
                    mu = self.col_friction.field[self.col_friction.bi(b), c]
                    # contact blends in over a layer one cell thick centred on the surface (smoothstep: C1), so
                    # the collider's position and size get gradients (a hard inside test would be a step in them)
                    depth = ti.min(1.0, ti.max(0.0, 0.5 - dist * ti.static(self.inv_dx)))
                    blend = depth * depth * (3.0 - 2.0 * depth)
                    v = v + blend * (self._contact(v, normal, vc, mu, FRICTION) - v)
            self.grid_v[J] = v
        else:
            self.grid_v[J] = ti.Vector.zero(float, d)

    @ti.func
    def _g2p_zero(self, s: ti.template(), f, b, p):
        s.v[f + 1, b, p] = ti.Vector.zero(float, self.dim)
        s.C[f + 1, b, p] = ti.Vector.zero(float, self.dim * self.dim)

    @ti.func
    def _g2p_particle(self, s: ti.template(), f, b, p):
        """v' = sum w v_i, C' = (4 / dx^2) sum w v_i (x_i - x_p)^T, accumulated in the state fields."""
        d = ti.static(self.dim)
        if ti.static(self.unroll):
            base, fx, W = self._stencil(s.x[f, b, p])
            for offset in ti.static(ti.grouped(ti.ndrange(*([3] * d)))):
                self._gather(s, f, b, p, base, fx, W, offset)
        else:
            for o in range(ti.static(3**d)):  # globals only in the body, see `_scatter_particle`
                base, fx, W = self._stencil(s.x[f, b, p])
                self._gather(s, f, b, p, base, fx, W, self._offset(o))

    @ti.func
    def _move(self, s: ti.template(), f, b, p):
        s.x[f + 1, b, p] = s.x[f, b, p] + ti.static(self.dt) * s.v[f + 1, b, p]

    @ti.func
    def _group_sums(self, s: ti.template(), f, b, p):
        a = self.p_act[p]
        s.group_x[f, b, self.n_act] += self.inv_count[self.n_act] * s.x[f, b, p]
        s.group_v[f, b, self.n_act] += self.inv_count[self.n_act] * s.v[f, b, p]
        if a >= 0:
            s.group_x[f, b, a] += self.inv_count[a] * s.x[f, b, p]
            s.group_v[f, b, a] += self.inv_count[a] * s.v[f, b, p]

    @ti.func
    def _observation(self, s: ti.template(), f, b, k):
        rel = s.group_x[f, b, k] - s.group_x[f, b, self.n_act]
        for q in ti.static(range(self.dim)):
            s.obs[f, b, 2 * self.dim * k + q] = rel[q]
            s.obs[f, b, 2 * self.dim * k + self.dim + q] = s.group_v[f, b, k][q]

    @ti.func
    def _box_row(self, b, i, what: ti.template(), fg):
        """Clear (`CLEAR`, `CLEAR_GRAD`: values and gradients) or update (`UPDATE`) the active box's nodes
        (b, i, ...). Inner loops with bounds read from `_box`: a grouped ndrange over the box decoded each node's
        index with runtime divisions, which cost as much as visiting the whole grid."""
        if ti.static(self.dim == 2):
            for j in range(self._box[0, 1], self._box[1, 1]):
                self._box_node(ti.Vector([b, i, j]), what, fg)
        else:
            for j in range(self._box[0, 1], self._box[1, 1]):
                for k in range(self._box[0, 2], self._box[1, 2]):
                    self._box_node(ti.Vector([b, i, j, k]), what, fg)

    @ti.func
    def _box_node(self, J, what: ti.template(), fg):
        if ti.static(what == UPDATE):
            self._grid_node(J, fg)
        else:
            self._clear_node(J, what == CLEAR_GRAD)

    @ti.func
    def _box_reset(self):
        for q in ti.static(range(self.dim)):
            self._box[0, q] = self.res[q]
            self._box[1, q] = 0

    @ti.func
    def _box_particle(self, s: ti.template(), f, b, p):
        base, _fx, _W = self._stencil(s.x[f, b, p])
        for q in ti.static(range(self.dim)):
            ti.atomic_min(self._box[0, q], base[q])
            ti.atomic_max(self._box[1, q], base[q] + 3)

    @ti.func
    def _find_box(self, s: ti.template(), f: ti.template()):
        """Step f's active box: the bounding box of its particles' stencils."""
        ti.loop_config(serialize=True)
        for _ in range(1):
            self._box_reset()
        ti.loop_config(serialize=ti.static(self.serial_p))
        for b, p in ti.ndrange(self.batch, self.n):
            self._box_particle(s, f, b, p)

    @ti.func
    def _on_box(self, what: ti.template(), fg: ti.template()):
        """`_box_node(what)` on every node of the active box."""
        if ti.static(self.serial_g):
            ti.loop_config(serialize=True)
            for b, i in ti.ndrange(self.batch, (self._box[0, 0], self._box[1, 0])):
                self._box_row(b, i, what, fg)
        else:  # parallel (GPU, huge grids): a box row per thread would starve it; all nodes
            for J in ti.grouped(ti.ndrange(self.batch, *self.res)):
                self._box_node(J, what, fg)

    @ti.func
    def _observe(self, s: ti.template(), f: ti.template()):
        """The MLP's observation of frame f: per-actuator and whole-body centroids and mean velocities."""
        ti.loop_config(serialize=True)
        for b, k in ti.ndrange(self.batch, self.n_act + 1):
            s.group_x[f, b, k] = ti.Vector.zero(float, self.dim)
            s.group_v[f, b, k] = ti.Vector.zero(float, self.dim)
        ti.loop_config(serialize=ti.static(self.serial_p))
        for b, p in ti.ndrange(self.batch, self.n):
            self._group_sums(s, f, b, p)
        ti.loop_config(serialize=True)
        for b, k in ti.ndrange(self.batch, self.n_act):
            self._observation(s, f, b, k)

    @ti.func
    def _scatter_loop(self, s: ti.template(), f: ti.template()):
        """P2G's scatter as its own top-level loop (runtime stencil loop only, see `_scatter_particle`)."""
        if ti.static(not self.unroll):
            ti.loop_config(serialize=ti.static(self.serial_p))
            for b, p in ti.ndrange(self.batch, self.n):
                self._scatter_particle(s, f, b, p)

    @ti.kernel
    def _clear(self, s: ti.template(), f: ti.i32):
        """Find step f's active box and clear its nodes."""
        self._find_box(s, f)
        self._on_box(CLEAR, 0)

    @ti.kernel
    def _clear_all(self):
        ti.loop_config(serialize=ti.static(self.serial_g))
        for J in ti.grouped(ti.ndrange(self.batch, *self.res)):
            self._clear_node(J, False)

    @ti.kernel
    def _advance(self, s: ti.template(), f: ti.i32, fg: ti.i32):
        """One step after `_clear`; every stage a top-level loop: (observe,) control, P2G, grid update, G2P."""
        if ti.static(self.has_observation):
            self._observe(s, f)
        if ti.static(self.has_controller):
            self.controller.run_stages(s, f, fg, True)
        self._p2g(s, f, True)
        self._grid_update(fg)
        self._g2p(s, f)

    @ti.func
    def _p2g(self, s: ti.template(), f: ti.template(), store: ti.template()):
        """Stage 2, particle to grid: each particle's new F and stress (kept in the state when `store`), then the
        scatter of mass and momentum (fused into the same loop when the stencil is unrolled)."""
        ti.loop_config(serialize=ti.static(self.serial_p))
        for b, p in ti.ndrange(self.batch, self.n):
            self._p2g_particle(s, f, b, p, store)
        self._scatter_loop(s, f)

    @ti.func
    def _grid_update(self, fg: ti.template()):
        """Stage 3: v_i = (m v)_i / m_i + dt g on the active box, then the walls and colliders."""
        self._on_box(UPDATE, fg)

    @ti.func
    def _g2p(self, s: ti.template(), f: ti.template()):
        """Stage 4, grid to particle: v_p', C_p' gathered from the grid, then x_p' = x_p + dt v_p'."""
        ti.loop_config(serialize=ti.static(self.serial_p))
        for b, p in ti.ndrange(self.batch, self.n):
            self._g2p_zero(s, f, b, p)
        ti.loop_config(serialize=ti.static(self.serial_p))
        for b, p in ti.ndrange(self.batch, self.n):
            self._g2p_particle(s, f, b, p)
        ti.loop_config(serialize=ti.static(self.serial_p))
        for b, p in ti.ndrange(self.batch, self.n):
            self._move(s, f, b, p)

    @ti.kernel
    def _regrid(self, s: ti.template(), stored: ti.template(), f: ti.i32, fg: ti.i32):
        """The grid of step f again, for its adjoint: clear (values and gradients), control, P2G, grid update.
        `stored`: the forward step f ran in this window, so its actions and P2G's scatter inputs (the stress, the
        expensive part) are still in the state; P2G only scatters them. Otherwise (`grid_totals`) all is recomputed."""
        self._find_box(s, f)
        self._on_box(CLEAR_GRAD, 0)
        if ti.static(not stored):
            if ti.static(self.has_observation):
                self._observe(s, f)
            if ti.static(self.has_controller):
                self.controller.run_stages(s, f, fg, True)
            self._p2g(s, f, False)
        else:
            if ti.static(self.unroll):
                ti.loop_config(serialize=ti.static(self.serial_p))
                for b, p in ti.ndrange(self.batch, self.n):
                    self._scatter_stored(s, f, b, p)
            self._scatter_loop(s, f)
        self._grid_update(fg)

    def step(self, s, f, fg):
        self._clear(s, f)
        self._advance(s, f, fg)

    def step_launchers(self, s):
        """Forward: the fused step. Adjoint: recompute step f's grid (its gradients zeroed), then the step's adjoint
        (G2P.grad, grid_update.grad, P2G.grad, control.grad)."""
        clear = FastKernel(self._clear, s, types="i")
        advance = FastKernel(self._advance, s)
        regrid = FastKernel(self._regrid, s, True)
        reverse = FastKernel(self._advance, s, grad=True)

        def forward(f, fg):
            clear(f)
            advance(f, fg)

        def adjoint(f, fg):
            regrid(f, fg)
            reverse(f, fg)

        return forward, adjoint

    # -- diagnostics ----------------------------------------------------------------------------------------------
    @ti.kernel
    def _grid_sums(self):
        for b, k in ti.ndrange(self.batch, self.dim + 1):
            self._sums[b, k] = 0.0
        for J in ti.grouped(self.grid_m):
            self._sums[J[0], 0] += self.grid_m[J]
            for k in ti.static(range(self.dim)):
                self._sums[J[0], k + 1] += self.grid_mv[J][k]
