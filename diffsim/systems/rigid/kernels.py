"""The rigid-body step as named stages, in the order of the equations in `system.py`'s docstring; `_step_body`
runs them as the top-level loops of one kernel (engine/stepper.py launches it). The stages' helpers (poses,
contact geometry, joint frames, the forces applied at a point) come before it, the per-element forces after.

`RigidKernels` is a mixin of `RigidSystem`: its stages read the system's parameters, the model's constants and the
derived mass properties (`self.*`), set up by `system.py`."""

import taichi as ti

from ...colliders import box_distance
from ...engine import tmath
from ...engine.stages import centre_of_mass
from . import geometry as geo
from .model import (
    GEOM_BOX,
    GEOM_PLANE,
    GEOM_SEGMENTS,
    GEOM_SPHERE,
    JOINT_ID,
    MASS_DENSITY,
    MASS_GIVEN,
    MOTOR_ID,
    ON_BODY,
    ON_GROUND,
    ON_OBSTACLE,
)

#: (m) width below which the step-averaged contact force is not smoothed further (resting contacts)
CONTACT_WIDTH = 1e-5

#: the fraction of a body's tangential slip its friction may remove in one step when sticking (see `_contact`)
STICK_FRACTION = 0.5

REVOLUTE, PRISMATIC, BALL, FIXED = (JOINT_ID[k] for k in ("revolute", "prismatic", "ball", "fixed"))
SPHERE_ID, BOX_ID, CAPSULE_ID = 0, 1, 2


class RigidKernels:
    # -- small helpers (Taichi scope) ---------------------------------------------------------------------------
    @ti.func
    def _rotation_of(self, s: ti.template(), f, b, i):
        """Body i's rotation matrix (body to world) at frame f, from its angle or quaternion."""
        R = ti.Matrix.identity(float, self.dim)
        if ti.static(self.dim == 2):
            R = geo.rotation_2d(s.angle[f, b, i])
        else:
            R = geo.quat_matrix(s.q[f, b, i])
        return R

    @ti.func
    def _rot(self, s: ti.template(), f, b, i):
        """Body i's rotation matrix at frame f, as the step's first loop stored it."""
        return tmath.unflatten(s.rot[f, b, i])

    @ti.func
    def _w_cross(self, w, r):
        """w x r: the velocity of a point at r from the centre of a body turning at w."""
        out = r * 0.0
        if ti.static(self.dim == 2):
            out = w * ti.Vector([-r[1], r[0]])
        else:
            out = w.cross(r)
        return out

    @ti.func
    def _r_cross(self, r, F):
        """r x F: the torque of a force F applied at r (a number in 2D)."""
        if ti.static(self.dim == 2):
            return r[0] * F[1] - r[1] * F[0]
        else:
            return r.cross(F)

    @ti.func
    def _pad3(self, v):
        return ti.Vector([v[k] if ti.static(k < self.dim) else 1.0 for k in ti.static(range(3))])

    @ti.func
    def _frame(self, s: ti.template(), f, b, on: ti.template(), idx):
        """(centre, rotation, size [3], body or -1) of a body's shape or an obstacle (on: ON_BODY, ON_OBSTACLE or
        ON_GROUND)."""
        c = ti.Vector.zero(float, self.dim)
        R = ti.Matrix.identity(float, self.dim)
        size = ti.Vector([1.0, 1.0, 1.0])
        body = -1
        if ti.static(on == ON_BODY):
            body = self.shape_body[idx]
            c = s.shape_centre[f, b, idx]
            R = tmath.unflatten(s.shape_rot[f, b, idx])
            size = self.size.field[self.size.bi(b), idx]
        elif ti.static(on == ON_OBSTACLE):
            c = self.obstacle_position.field[self.obstacle_position.bi(b), idx]
            R = self.obstacle_rot[idx]
            size = self._pad3(self.obstacle_size.field[self.obstacle_size.bi(b), idx])
        return c, R, size, body

    @ti.func
    def _local_point(self, kind: ti.template(), size, sign):
        """A box's corner, a capsule's end or a sphere's centre in the shape's frame, and the radius around it."""
        p = ti.Vector.zero(float, self.dim)
        radius = 0.0
        if ti.static(kind == BOX_ID):
            p = ti.Vector([sign[k] * size[k] for k in ti.static(range(self.dim))])
        elif ti.static(kind == CAPSULE_ID):
            p[self.dim - 1] = sign[self.dim - 1] * size[1]
            radius = size[0]
        else:
            radius = size[0]
        return p, radius

    @ti.func
    def _material(self, b, ground: ti.template()):
        """(stiffness, restitution, friction) of the ground or of every other contact."""
        k, e, mu = 1.0, 1.0, 0.0
        if ti.static(ground):
            k = self.ground_stiffness.field[self.ground_stiffness.bi(b)]
            e = self.ground_restitution.field[self.ground_restitution.bi(b)]
            mu = self.ground_friction.field[self.ground_friction.bi(b)]
        else:
            k = self.contact_stiffness.field[self.contact_stiffness.bi(b)]
            e = self.contact_restitution.field[self.contact_restitution.bi(b)]
            mu = self.contact_friction.field[self.contact_friction.bi(b)]
        return k, e, mu

    @ti.func
    def _contact_geometry(self, s: ti.template(), f, b, key: ti.template(), ia, sign, ib):
        """(depth, normal from B to A, contact point, body A, body B) of a candidate of group `key` = (a_on,
        a_kind, b_on, geometry): point ia (a shape or an obstacle) against geometry ib; depth <= 0: no contact."""
        a_on, a_kind, b_on, geom = ti.static(key)
        ca, Ra, size_a, body_a = self._frame(s, f, b, a_on, ia)
        cb, Rb, size_b, body_b = self._frame(s, f, b, b_on, ib)
        local, radius_a = self._local_point(a_kind, size_a, sign)
        p = ca + geo.mv(Ra, local)
        dist = 0.0
        normal = ti.Vector.unit(self.dim, self.dim - 1, float)
        if ti.static(geom == GEOM_PLANE):
            dist = p[self.dim - 1] - self.ground_height.field[self.ground_height.bi(b)]
        elif ti.static(geom == GEOM_BOX):
            h = ti.Vector([size_b[k] for k in ti.static(range(self.dim))])
            dist, n_local = box_distance(geo.mtv(Rb, p - cb), h)
            normal = geo.mv(Rb, n_local)
        else:
            # sphere: its centre; capsule: the closest point of its axis; two capsules: the closest points
            centre = cb
            if ti.static(geom != GEOM_SPHERE):
                axis_b = ti.Vector([Rb[k, self.dim - 1] for k in ti.static(range(self.dim))])
                if ti.static(geom == GEOM_SEGMENTS):
                    axis_a = ti.Vector([Ra[k, self.dim - 1] for k in ti.static(range(self.dim))])
                    sa, tb = geo.segment_closest(
                        ca - size_a[1] * axis_a,
                        ca + size_a[1] * axis_a,
                        cb - size_b[1] * axis_b,
                        cb + size_b[1] * axis_b,
                    )
                    p = ca + (2.0 * sa - 1.0) * size_a[1] * axis_a
                    centre = cb + (2.0 * tb - 1.0) * size_b[1] * axis_b
                else:
                    t = ti.min(ti.max((p - cb).dot(axis_b), -size_b[1]), size_b[1])
                    centre = cb + t * axis_b
            d = p - centre
            r = ti.sqrt(d.dot(d) + 1e-24)
            dist = r - size_b[0]
            normal = d / r
        depth = radius_a - dist
        point = p - 0.5 * (radius_a + dist) * normal  # the middle of the overlap
        return depth, normal, point, body_a, body_b

    @ti.func
    def _point_velocity(self, s: ti.template(), f, b, body, p):
        vel = ti.Vector.zero(float, self.dim)
        if body >= 0:
            vel = s.v[f, b, body] + self._w_cross(s.w[f, b, body], p - s.x[f, b, body])
        return vel

    @ti.func
    def _inverse_mass_along(self, s: ti.template(), f, b, body, p, n):
        """1 / (effective mass of `body` at the world point p along the unit direction n): 1/m + (r x n) . I^-1 (r x n);
        0 for the world."""
        inv = 0.0
        if body >= 0:
            arm = self._r_cross(p - s.x[f, b, body], n)
            inv = self.body_inv_mass[b, body]
            if ti.static(self.dim == 2):
                inv += arm * arm * self.body_inv_inertia[b, body]
            else:
                R = self._rot(s, f, b, body)
                inv += arm.dot(geo.mv(R, geo.mv(self.body_inv_inertia[b, body], geo.mtv(R, arm))))
        return inv

    @ti.func
    def _inverse_mass_bound(self, s: ti.template(), f, b, body, p):
        """An upper bound of 1 / (effective mass at p) along any direction: 1/m + |r|^2 tr I^-1."""
        inv = 0.0
        if body >= 0:
            r = p - s.x[f, b, body]
            inv = self.body_inv_mass[b, body] + r.dot(r) * self.body_inv_trace[b, body]
        return inv

    @ti.func
    def _apply(self, s: ti.template(), f, b, body, p, F):
        """+= force F at world point p on `body` (nothing for the world)."""
        if body >= 0:
            s.force[f, b, body] += F
            s.torque[f, b, body] += self._r_cross(p - s.x[f, b, body], F)

    @ti.func
    def _apply_torque(self, s: ti.template(), f, b, body, tau):
        if body >= 0:
            s.torque[f, b, body] += tau

    @ti.func
    def _joint_frame(self, s: ti.template(), f, b, j):
        """Store joint j's world anchors, their velocities and its world axis; return a's and b's rotations."""
        a = self.j_a[j]
        bb = self.j_b[j]
        Ra = ti.Matrix.identity(float, self.dim)
        pa = self.j_anchor_a.field[self.j_anchor_a.bi(b), j]
        if a >= 0:
            Ra = self._rot(s, f, b, a)
            pa = s.x[f, b, a] + geo.mv(Ra, pa)
        Rb = self._rot(s, f, b, bb)
        pb = s.x[f, b, bb] + geo.mv(Rb, self.j_anchor_b.field[self.j_anchor_b.bi(b), j])
        s.joint_pa[f, b, j] = pa
        s.joint_pb[f, b, j] = pb
        s.joint_va[f, b, j] = self._point_velocity(s, f, b, a, pa)
        s.joint_vb[f, b, j] = self._point_velocity(s, f, b, bb, pb)
        s.joint_axis[f, b, j] = geo.mv(Ra, self.j_axis_a[j])
        return Ra, Rb

    @ti.func
    def _angular_velocity(self, s: ti.template(), f, b, body):
        w = s.w[f, b, 0] * 0.0
        if body >= 0:
            w = s.w[f, b, body]
        return w

    # -- mass properties ----------------------------------------------------------------------------------------
    @ti.func
    def _mass_loops(self):
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.n):
            self.body_volume[b, i] = 0.0
            self.body_unit_inertia[b, i] = self.body_unit_inertia[b, i] * 0.0
        if ti.static(self.ns > 0):
            ti.loop_config(serialize=ti.static(self.serial))
            for b, k in ti.ndrange(self.batch, self.ns):
                i = self.shape_body[k]
                size = self.size.field[self.size.bi(b), k]
                o = self.shape_offset[k]
                if ti.static(self.dim == 2):
                    vol, inertia = geo.unit_mass_2d(self.shape_kind[k], size)
                    self.body_volume[b, i] += vol
                    self.body_unit_inertia[b, i] += inertia + vol * o.dot(o)  # parallel axes
                else:
                    vol, moments = geo.unit_mass_3d(self.shape_kind[k], size)
                    R = self.shape_rot[k]
                    # R diag(moments) R^T
                    local = ti.Matrix(
                        [
                            [
                                R[r, 0] * moments[0] * R[c, 0]
                                + R[r, 1] * moments[1] * R[c, 1]
                                + R[r, 2] * moments[2] * R[c, 2]
                                for c in ti.static(range(3))
                            ]
                            for r in ti.static(range(3))
                        ]
                    )
                    shift = vol * (o.dot(o) * ti.Matrix.identity(float, 3) - o.outer_product(o))
                    self.body_volume[b, i] += vol
                    self.body_unit_inertia[b, i] += local + shift
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.n):
            mode = self.mass_mode[i]
            slot = self.mass_slot[i]
            m = 1.0
            inertia = self.body_unit_inertia[b, i]
            if mode == MASS_DENSITY:
                if ti.static(self.has_density):
                    rho = self.density.field[self.density.bi(b), slot]
                    m = rho * self.body_volume[b, i]
                    inertia = rho * self.body_unit_inertia[b, i]
            else:
                if ti.static(self.has_mass):
                    m = self.mass.field[self.mass.bi(b), slot]
                if mode == MASS_GIVEN:
                    inertia = m / self.body_volume[b, i] * self.body_unit_inertia[b, i]
                else:
                    if ti.static(self.has_inertia):
                        given = self.inertia.field[self.inertia.bi(b), self.inertia_slot[i]]
                        if ti.static(self.dim == 2):
                            inertia = given
                        else:
                            inertia = ti.Matrix(
                                [[given[0], 0.0, 0.0], [0.0, given[1], 0.0], [0.0, 0.0, given[2]]]
                            )
            self.body_mass[b, i] = m
            self.body_inv_mass[b, i] = 1.0 / m
            self.body_inertia[b, i] = inertia
            if ti.static(self.dim == 2):
                self.body_inv_inertia[b, i] = 1.0 / inertia
                self.body_inv_trace[b, i] = 1.0 / inertia
            else:
                inv = inertia.inverse()
                self.body_inv_inertia[b, i] = inv
                self.body_inv_trace[b, i] = inv.trace()

    @ti.kernel
    def _mass_kernel(self):
        self._mass_loops()

    # -- initial state ------------------------------------------------------------------------------------------
    @ti.kernel
    def _initialize(self, s: ti.template()):
        self._mass_loops()
        for g in ti.static(range(len(self.groups))):
            members = ti.static(self.group_members[g])
            px, pv, pr, pw = ti.static(self._gx[g], self._gv[g], self._gr[g], self._gw[g])
            sx, sv, sr, sw = ti.static(self._gstride[g])
            ti.loop_config(serialize=ti.static(self.serial))
            for b, k in ti.ndrange(self.batch, self._gsize[g]):
                i = members[k]
                s.x[0, b, i] = px[b * sx, k]
                s.v[0, b, i] = pv[b * sv, k]
                s.w[0, b, i] = pw[b * sw, k]
                if ti.static(self.dim == 2):
                    s.angle[0, b, i] = pr[b * sr, k]
                else:
                    q = pr[b * sr, k]
                    s.q[0, b, i] = q / q.norm()

    def initialize(self, s):
        self._initialize(s)
        if not self._checked_start:
            self._checked_start = True
            self._warn_start_penetration(s)

    def initialize_grad(self, s):
        self._initialize.grad(s)
        # the derived mass properties collect gradients from every step; they are consumed now
        for fld in self._derived:
            fld.grad.fill(0)

    @ti.func
    def _pose_body(self, s: ti.template(), f, b, i):
        s.rot[f, b, i] = tmath.flatten(self._rotation_of(s, f, b, i))

    @ti.func
    def _pose_shape(self, s: ti.template(), f, b, k):
        R = self._rot(s, f, b, self.shape_body[k])
        s.shape_centre[f, b, k] = s.x[f, b, self.shape_body[k]] + geo.mv(R, self.shape_offset[k])
        s.shape_rot[f, b, k] = tmath.flatten(geo.mm(R, self.shape_rot[k]))

    @ti.kernel
    def _start_depths(self, s: ti.template()):
        for b, i in ti.ndrange(self.batch, self.n):
            self._pose_body(s, 0, b, i)
        if ti.static(self.ns > 0):
            for b, k in ti.ndrange(self.batch, self.ns):
                self._pose_shape(s, 0, b, k)
        for g in ti.static(range(len(self.contact_keys))):
            for b, c in ti.ndrange(self.batch, self.contact_sizes[g]):
                depth, _n, _p, _a, _b = self._contact_geometry(
                    s, 0, b, self.contact_keys[g], self.cg_a[g][c], self.cg_sign[g][c], self.cg_b[g][c]
                )
                self.start_depth[b, self.cg_global[g][c]] = depth

    # -- the step -----------------------------------------------------------------------------------------------
    def serial_steps(self) -> bool:
        return self.serial

    @ti.func
    def _step_body(self, s: ti.template(), f: ti.template(), fg: ti.template()):
        """One step, frame f -> f + 1 (fg: the global step index); launched by engine/stepper.py."""
        self._kinematics(s, f)
        self._control(s, f, fg)
        self._body_forces(s, f)
        self._contact_forces(s, f)
        self._joint_forces(s, f)
        self._limit_forces(s, f)
        self._motor_forces(s, f)
        self._spring_forces(s, f)
        self._integrate(s, f)

    @ti.func
    def _kinematics(self, s: ti.template(), f: ti.template()):
        """Stage 1: body and shape poses, joint coordinates q_j and their rates."""
        # (kernel arguments may only be used inside loops: every stage is a loop written out here)
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.n):
            self._pose_body(s, f, b, i)
        if ti.static(self.ns > 0):
            ti.loop_config(serialize=ti.static(self.serial))
            for b, k in ti.ndrange(self.batch, self.ns):
                self._pose_shape(s, f, b, k)
        for g in ti.static(range(len(self.joint_kinds))):
            ti.loop_config(serialize=ti.static(self.serial))
            for b, jj in ti.ndrange(self.batch, self.jg_size[g]):
                self._joint_coordinate(s, f, b, self.jg_index[g][jj], self.joint_kinds[g])

    @ti.func
    def _control(self, s: ti.template(), f: ti.template(), fg: ti.template()):
        """Stage 2: the controller's observation (relative to the centre of mass, orientations, joint coordinates), then the controller."""
        if ti.static(self.has_controller):
            if ti.static(self.has_observation):
                centre_of_mass(self, s, f)
                ti.loop_config(serialize=ti.static(self.serial))
                for b, i in ti.ndrange(self.batch, self.n):
                    self._observe_body(s, f, b, i)
                if ti.static(self.nj > 0):
                    ti.loop_config(serialize=ti.static(self.serial))
                    for b, j in ti.ndrange(self.batch, self.nj):
                        base = ti.static(self.obs_per_body * self.n)
                        s.obs[f, b, base + 2 * j] = s.joint_q[f, b, j]
                        s.obs[f, b, base + 2 * j + 1] = s.joint_qd[f, b, j]
            self.controller.run_stages(s, f, fg, self.serial)

    @ti.func
    def _body_forces(self, s: ti.template(), f: ti.template()):
        """Stage 3: per body, the force is stored: F = m g, torque = 0."""
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.n):
            s.force[f, b, i] = self.body_mass[b, i] * self.gravity.field[self.gravity.bi(b)]
            s.torque[f, b, i] = s.w[f, b, i] * 0.0

    @ti.func
    def _contact_forces(self, s: ti.template(), f: ti.template()):
        """Stage 4: penalty contacts with smoothed Coulomb friction, one loop per group of candidates."""
        for g in ti.static(range(len(self.contact_keys))):
            ti.loop_config(serialize=ti.static(self.serial))
            for b, c in ti.ndrange(self.batch, self.contact_sizes[g]):
                self._contact(
                    s, f, b, self.contact_keys[g], self.cg_a[g][c], self.cg_sign[g][c], self.cg_b[g][c]
                )

    @ti.func
    def _joint_forces(self, s: ti.template(), f: ti.template()):
        """Stage 5: the joints' spring-dampers and angular alignment."""
        for g in ti.static(range(len(self.joint_kinds))):
            ti.loop_config(serialize=ti.static(self.serial))
            for b, jj in ti.ndrange(self.batch, self.jg_size[g]):
                self._joint(s, f, b, self.jg_index[g][jj], self.joint_kinds[g])

    @ti.func
    def _limit_forces(self, s: ti.template(), f: ti.template()):
        """Stage 5: joint limits push a limited coordinate back inside [lower, upper]."""
        for g in ti.static(range(len(self.limit_kinds))):
            ti.loop_config(serialize=ti.static(self.serial))
            for b, jj in ti.ndrange(self.batch, self.lg_size[g]):
                self._limit(s, f, b, self.lg_index[g][jj], self.limit_kinds[g])

    @ti.func
    def _motor_forces(self, s: ti.template(), f: ti.template()):
        """Stage 6: motors on joints (torque or PD position)."""
        for g in ti.static(range(len(self.motor_kinds))):
            ti.loop_config(serialize=ti.static(self.serial))
            for b, kk in ti.ndrange(self.batch, self.mg_size[g]):
                self._motor(s, f, b, self.mg_index[g][kk], self.motor_kinds[g])

    @ti.func
    def _spring_forces(self, s: ti.template(), f: ti.template()):
        """Stage 7: actuated springs between bodies."""
        if ti.static(self.nk > 0):
            ti.loop_config(serialize=ti.static(self.serial))
            for b, k in ti.ndrange(self.batch, self.nk):
                self._spring(s, f, b, k)

    @ti.func
    def _integrate(self, s: ti.template(), f: ti.template()):
        """Stage 8: semi-implicit Euler; in 3D the angular momentum and a midpoint rotation (see system.py)."""
        dim = ti.static(self.dim)
        dt = ti.static(self.dt)
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.n):
            v_new = s.v[f, b, i] + dt * self.body_inv_mass[b, i] * s.force[f, b, i]
            if ti.static(self.has_table):
                # friction with the table the 2D scene lies on: the implicit smoothed Coulomb law
                mu_g = self.table_friction.field[self.table_friction.bi(b)] * ti.static(self.table_gravity)
                v_new = v_new / (1.0 + mu_g * dt / ti.sqrt(v_new.dot(v_new) + ti.static(self.eps**2)))
            s.v[f + 1, b, i] = v_new
            s.x[f + 1, b, i] = s.x[f, b, i] + dt * v_new
            if ti.static(dim == 2):
                w_new = s.w[f, b, i] + dt * self.body_inv_inertia[b, i] * s.torque[f, b, i]
                s.w[f + 1, b, i] = w_new
                s.angle[f + 1, b, i] = s.angle[f, b, i] + dt * w_new
            else:
                q = s.q[f, b, i]
                R = self._rot(s, f, b, i)
                inv_body = self.body_inv_inertia[b, i]
                L = (
                    geo.mv(R, geo.mv(self.body_inertia[b, i], geo.mtv(R, s.w[f, b, i])))
                    + dt * s.torque[f, b, i]
                )
                # the orientation moves with the angular velocity of L' at the half step (explicit midpoint on
                # the rotation group: energy error O(dt^2) instead of O(dt))
                w0 = geo.mv(R, geo.mv(inv_body, geo.mtv(R, L)))
                q_half = q + 0.25 * dt * geo.quat_mul(ti.Vector([0.0, w0[0], w0[1], w0[2]]), q)
                q_half = q_half / q_half.norm()
                R_half = geo.quat_matrix(q_half)
                w_half = geo.mv(R_half, geo.mv(inv_body, geo.mtv(R_half, L)))
                q_new = q + 0.5 * dt * geo.quat_mul(ti.Vector([0.0, w_half[0], w_half[1], w_half[2]]), q)
                q_new = q_new / q_new.norm()
                R_new = geo.quat_matrix(q_new)
                s.q[f + 1, b, i] = q_new
                s.w[f + 1, b, i] = geo.mv(R_new, geo.mv(inv_body, geo.mtv(R_new, L)))

    @ti.func
    def _element_mass(self, b, i):
        """Body i's mass (kg) in copy b."""
        return self.body_mass[b, i]

    @ti.func
    def _observe_body(self, s: ti.template(), f, b, i):
        """obs = per body (x - x_com, v - v_com, orientation, w), then per joint (q, dq/dt)."""
        base = ti.static(self.obs_per_body) * i
        rel_x = s.x[f, b, i] - s.com[f, b] / s.mtot[f, b]
        rel_v = s.v[f, b, i] - s.vcom[f, b] / s.mtot[f, b]
        for d in ti.static(range(self.dim)):
            s.obs[f, b, base + d] = rel_x[d]
            s.obs[f, b, base + self.dim + d] = rel_v[d]
        if ti.static(self.dim == 2):
            s.obs[f, b, base + 4] = tmath.cos(s.angle[f, b, i])
            s.obs[f, b, base + 5] = tmath.sin(s.angle[f, b, i])
            s.obs[f, b, base + 6] = s.w[f, b, i]
        else:
            for d in ti.static(range(4)):
                s.obs[f, b, base + 6 + d] = s.q[f, b, i][d]
            for d in ti.static(range(3)):
                s.obs[f, b, base + 10 + d] = s.w[f, b, i][d]

    @ti.func
    def _contact(self, s: ti.template(), f, b, key: ti.template(), ia, sign, ib):
        depth, normal, p, body_a, body_b = self._contact_geometry(s, f, b, key, ia, sign, ib)
        v_rel = self._point_velocity(s, f, b, body_a, p) - self._point_velocity(s, f, b, body_b, p)
        v_n = v_rel.dot(normal)
        # the penalty force averaged over one step along the straight path through this state (see docs)
        width = ti.sqrt((v_n * ti.static(self.dt)) ** 2 + ti.static(CONTACT_WIDTH**2))  # ~ |v_n| dt, smooth
        if depth > -0.5 * width:
            k, e, mu = self._material(b, ti.static(key[2] == ON_GROUND))
            inv_n = self._inverse_mass_along(s, f, b, body_a, p, normal) + self._inverse_mass_along(
                s, f, b, body_b, p, normal
            )
            inv_t = self._inverse_mass_bound(s, f, b, body_a, p) + self._inverse_mass_bound(
                s, f, b, body_b, p
            )
            if ti.static(key[2] == ON_GROUND):  # (body_b is the ground)
                inv_t = self._inverse_mass_bound(s, f, b, body_a, p) * self.body_ground_points[body_a]
            damping = 2.0 * geo.damping_ratio(e) * ti.sqrt(k / inv_n)
            push = -damping * v_n  # the dashpot: pushes while approaching, pulls while separating
            f_n = 0.0
            if push < 0:  # max(0, k d - c v_n) = k max(0, d + push / k)
                f_n = k * geo.ramp_average(depth + push / k, width)
            else:  # k max(0, d) + push [d > 0]
                f_n = k * geo.ramp_average(depth, width) + push * geo.step_average(depth, width)
            v_t = v_rel - v_n * normal
            slip = ti.sqrt(v_t.dot(v_t) + ti.static(self.eps**2))
            f_t = -mu * f_n / (slip + mu * f_n * ti.static(self.dt / STICK_FRACTION) * inv_t) * v_t
            F = f_n * normal + f_t
            self._apply(s, f, b, body_a, p, F)
            self._apply(s, f, b, body_b, p, -F)

    @ti.func
    def _joint_coordinate(self, s: ti.template(), f, b, j, kind: ti.template()):
        """Store the joint's frame and q: hinge angle (rad) or slide (m) relative to the initial pose; qd its
        rate."""
        Ra, Rb = self._joint_frame(s, f, b, j)
        a = self.j_a[j]
        bb = self.j_b[j]
        q = 0.0
        qd = 0.0
        if ti.static(kind == PRISMATIC):
            u = s.joint_axis[f, b, j]
            q = (s.joint_pb[f, b, j] - s.joint_pa[f, b, j]).dot(u)
            qd = (s.joint_vb[f, b, j] - s.joint_va[f, b, j]).dot(u)
        elif ti.static(kind != BALL):
            wa = self._angular_velocity(s, f, b, a)
            wb = self._angular_velocity(s, f, b, bb)
            if ti.static(self.dim == 2):
                q = s.angle[f, b, bb] - self._angle(s, f, b, a) - self.j_angle0[j]
                qd = wb - wa
            else:
                u = s.joint_axis[f, b, j]
                ra = geo.mv(Ra, self.j_ref_a[j])
                rb = geo.mv(Rb, self.j_ref_b[j])
                q = geo.atan2(ra.cross(rb).dot(u), ra.dot(rb))
                qd = (wb - wa).dot(u)
        s.joint_q[f, b, j] = q
        s.joint_qd[f, b, j] = qd

    @ti.func
    def _angle(self, s: ti.template(), f, b, body):
        """2D: the body's angle, 0 for the world."""
        angle = 0.0
        if body >= 0:
            angle = s.angle[f, b, body]
        return angle

    @ti.func
    def _joint(self, s: ti.template(), f, b, j, kind: ti.template()):
        a = self.j_a[j]
        bb = self.j_b[j]
        pa = s.joint_pa[f, b, j]
        pb = s.joint_pb[f, b, j]
        k = self.j_stiffness.field[self.j_stiffness.bi(b), j]
        c = self.j_damping.field[self.j_damping.bi(b), j]
        kr = self.j_ang_stiffness.field[self.j_ang_stiffness.bi(b), j]
        cr = self.j_ang_damping.field[self.j_ang_damping.bi(b), j]
        gap = pb - pa
        gap_rate = s.joint_vb[f, b, j] - s.joint_va[f, b, j]
        if ti.static(kind == PRISMATIC):
            u = s.joint_axis[f, b, j]
            gap -= gap.dot(u) * u
            gap_rate -= gap_rate.dot(u) * u
        F = k * gap + c * gap_rate  # pulls b's anchor towards a's
        self._apply(s, f, b, a, pa, F)
        self._apply(s, f, b, bb, pb, -F)
        if ti.static(kind != BALL and (self.dim == 3 or kind != REVOLUTE)):
            wa = self._angular_velocity(s, f, b, a)
            wb = self._angular_velocity(s, f, b, bb)
            tau = wb * 0.0
            if ti.static(self.dim == 2):  # fixed, prismatic: lock the relative angle
                rel = s.angle[f, b, bb] - self._angle(s, f, b, a) - self.j_angle0[j]
                tau = -(kr * rel + cr * (wb - wa))
            elif ti.static(kind == REVOLUTE):  # align b's hinge axis with a's, damp the other rotations
                u = s.joint_axis[f, b, j]
                ub = geo.mv(self._rot(s, f, b, bb), self.j_axis_b[j])
                w_rel = wb - wa
                tau = kr * ub.cross(u) - cr * (w_rel - w_rel.dot(u) * u)
            else:  # fixed, prismatic: rotate b towards R_a R0
                Ra = ti.Matrix.identity(float, 3)
                if a >= 0:
                    Ra = self._rot(s, f, b, a)
                tau = kr * geo.vee(
                    geo.mm(geo.mm(Ra, self.j_rel0[j]), self._rot(s, f, b, bb).transpose())
                ) - cr * (wb - wa)
            self._apply_torque(s, f, b, a, -tau)
            self._apply_torque(s, f, b, bb, tau)

    @ti.func
    def _limit(self, s: ti.template(), f, b, j, kind: ti.template()):
        """Push the joint coordinate back into [lower, upper]: a one-sided spring-damper."""
        slot = self.j_limit_slot[j]
        q = s.joint_q[f, b, j]
        qd = s.joint_qd[f, b, j]
        lo = self.j_lower.field[self.j_lower.bi(b), slot]
        hi = self.j_upper.field[self.j_upper.bi(b), slot]
        kl = self.j_limit_stiffness.field[self.j_limit_stiffness.bi(b), slot]
        cl = self.j_limit_damping.field[self.j_limit_damping.bi(b), slot]
        push = 0.0  # along +q
        if q < lo:
            push = ti.max(kl * (lo - q) - cl * qd, 0.0)
        elif q > hi:
            push = ti.min(kl * (hi - q) - cl * qd, 0.0)
        self._actuate(s, f, b, j, kind, push)

    @ti.func
    def _actuate(self, s: ti.template(), f, b, j, kind: ti.template(), amount):
        """A generalized force along joint j's coordinate: a torque about the hinge (N m) or a force along the
        slide (N), on b and, opposite, on a."""
        a = self.j_a[j]
        bb = self.j_b[j]
        if ti.static(kind == PRISMATIC):
            F = amount * s.joint_axis[f, b, j]
            pb = s.joint_pb[f, b, j]
            self._apply(s, f, b, bb, pb, F)
            self._apply(s, f, b, a, pb, -F)
        elif ti.static(self.dim == 2):
            self._apply_torque(s, f, b, bb, amount)
            self._apply_torque(s, f, b, a, -amount)
        else:
            tau = amount * s.joint_axis[f, b, j]
            self._apply_torque(s, f, b, bb, tau)
            self._apply_torque(s, f, b, a, -tau)

    @ti.func
    def _motor(self, s: ti.template(), f, b, k, kind: ti.template()):
        j = self.m_joint[k]
        act = s.act[f, b, self.m_actuator[k]]
        scale = self.m_scale.field[self.m_scale.bi(b), k]
        amount = scale * act
        if self.m_mode[k] == ti.static(MOTOR_ID["position"]):
            kp = self.m_kp.field[self.m_kp.bi(b), k]
            kd = self.m_kd.field[self.m_kd.bi(b), k]
            amount = kp * (scale * act - s.joint_q[f, b, j]) - kd * s.joint_qd[f, b, j]
        self._actuate(s, f, b, j, kind, amount)

    @ti.func
    def _spring(self, s: ti.template(), f, b, k):
        a = self.s_a[k]
        bb = self.s_b[k]
        pa = self.s_anchor_a[k]
        if a >= 0:
            pa = s.x[f, b, a] + geo.mv(self._rot(s, f, b, a), pa)
        pb = s.x[f, b, bb] + geo.mv(self._rot(s, f, b, bb), self.s_anchor_b[k])
        d = pb - pa
        length = ti.sqrt(d.dot(d) + 1e-20)
        direction = d / length
        rest = self.s_rest.field[self.s_rest.bi(b), k]
        if ti.static(self.has_controller):
            act_id = self.s_actuator[k]
            if act_id >= 0:
                rest *= 1.0 + self.s_actuation.field[self.s_actuation.bi(b), k] * s.act[f, b, act_id]
        rate = (self._point_velocity(s, f, b, bb, pb) - self._point_velocity(s, f, b, a, pa)).dot(direction)
        magnitude = (
            self.s_stiffness.field[self.s_stiffness.bi(b), k] * (length - rest)
            + self.s_damping.field[self.s_damping.bi(b), k] * rate
        )
        self._apply(s, f, b, a, pa, magnitude * direction)
        self._apply(s, f, b, bb, pb, -magnitude * direction)
