"""The mass-spring step as named stages, in the order of the equations in `system.py`'s docstring; `_step_body`
runs them as the top-level loops of one kernel (engine/stepper.py launches it).

`SpringKernels` is a mixin of `SpringSystem`: its stages read the system's parameters and constants (`self.*`),
set up by `system.py`."""

import taichi as ti

from ...engine.stages import centre_of_mass, initial_state


class SpringKernels:
    @ti.kernel
    def _initialize(self, s: ti.template()):
        initial_state(self, s)

    def initialize(self, s):
        self._initialize(s)

    def initialize_grad(self, s):
        self._initialize.grad(s)

    @ti.func
    def _element_mass(self, b, i):
        """Particle i's mass (kg) in copy b."""
        return self.point_mass.field[self.point_mass.bi(b), i]

    @ti.func
    def _normal_force(self, s: ti.template(), f, b, i):
        """Ground penalty force magnitude on particle i (N), >= 0."""
        fn = 0.0
        if ti.static(self.has_ground):
            pen = self.ground_height.field[self.ground_height.bi(b)] - s.x[f, b, i][self.dim - 1]
            if pen > 0:
                kc = self.contact_stiffness.field[self.contact_stiffness.bi(b)]
                cc = self.contact_damping.field[self.contact_damping.bi(b)]
                fn = ti.max(kc * pen - cc * s.v[f, b, i][self.dim - 1], 0.0)
        return fn

    def serial_steps(self) -> bool:
        return self.serial

    @ti.func
    def _step_body(self, s: ti.template(), f: ti.template(), fg: ti.template()):
        """One step, frame f -> f + 1 (fg: the global step index); launched by engine/stepper.py."""
        if ti.static(self.has_controller):
            if ti.static(self.has_observation):
                self._observe(s, f)
            self.controller.run_stages(s, f, fg, self.serial)
        self._external_forces(s, f)
        if ti.static(self.m > 0):
            self._spring_forces(s, f)
        self._integrate(s, f)

    @ti.func
    def _observe(self, s: ti.template(), f: ti.template()):
        """Stage 1: the controller's observation, positions and velocities relative to the centre of mass."""
        centre_of_mass(self, s, f)
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.n):
            rel_x = s.x[f, b, i] - s.com[f, b] / s.mtot[f, b]
            rel_v = s.v[f, b, i] - s.vcom[f, b] / s.mtot[f, b]
            for d in ti.static(range(self.dim)):
                s.obs[f, b, 2 * self.dim * i + d] = rel_x[d]
                s.obs[f, b, 2 * self.dim * i + self.dim + d] = rel_v[d]

    @ti.func
    def _external_forces(self, s: ti.template(), f: ti.template()):
        """Stage 2: gravity m g plus the ground's normal penalty force on each particle (N)."""
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.n):
            up = ti.Vector.unit(self.dim, self.dim - 1)
            mi = self.point_mass.field[self.point_mass.bi(b), i]
            s.force[f, b, i] = (
                mi * self.gravity.field[self.gravity.bi(b)] + self._normal_force(s, f, b, i) * up
            )

    @ti.func
    def _spring_forces(self, s: ti.template(), f: ti.template()):
        """Stage 3: F = k (L - L0') + c (v_b - v_a) . d along each spring, with the actuated rest length L0'."""
        ti.loop_config(serialize=ti.static(self.serial))
        for b, k in ti.ndrange(self.batch, self.m):
            a = self.springs[k][0]
            c = self.springs[k][1]
            d = s.x[f, b, c] - s.x[f, b, a]
            length = ti.sqrt(d.dot(d) + 1e-20)
            direction = d / length
            rest = self.rest_length.field[self.rest_length.bi(b), k]
            if ti.static(self.has_controller):
                act_id = self.actuator[k]
                if act_id >= 0:
                    rest *= 1.0 + self.actuation.field[self.actuation.bi(b), k] * s.act[f, b, act_id]
            closing = (s.v[f, b, c] - s.v[f, b, a]).dot(direction)
            magnitude = (
                self.stiffness.field[self.stiffness.bi(b), k] * (length - rest)
                + self.damping.field[self.damping.bi(b), k] * closing
            )
            s.force[f, b, a] += magnitude * direction
            s.force[f, b, c] -= magnitude * direction

    @ti.func
    def _integrate(self, s: ti.template(), f: ti.template()):
        """Stage 4: semi-implicit Euler with smooth Coulomb friction on the tangential velocity; pinned particles
        keep their position."""
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.n):
            if self.pinned[i]:
                s.v[f + 1, b, i] = s.v[f, b, i] * 0.0
                s.x[f + 1, b, i] = s.x[f, b, i]
            else:
                mi = self.point_mass.field[self.point_mass.bi(b), i]
                v_star = s.v[f, b, i] + ti.static(self.dt) * s.force[f, b, i] / mi
                v_new = v_star
                if ti.static(self.has_ground):
                    fn = self._normal_force(s, f, b, i)
                    up = ti.Vector.unit(self.dim, self.dim - 1)
                    v_n = v_star.dot(up)
                    v_t = v_star - v_n * up
                    mu = self.friction.field[self.friction.bi(b)]
                    slip = ti.sqrt(v_t.dot(v_t) + ti.static(self.friction_smoothing**2))
                    v_new = v_n * up + v_t / (1.0 + mu * fn * ti.static(self.dt) / (mi * slip))
                s.v[f + 1, b, i] = v_new
                s.x[f + 1, b, i] = s.x[f, b, i] + ti.static(self.dt) * v_new
