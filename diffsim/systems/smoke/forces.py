"""Forces (step 3 of `system.py`): gravity, buoyancy, the per-step force control, vorticity confinement and
viscosity, as accelerations on the faces. `Forces` is a mixin of `SmokeSystem`."""

import taichi as ti

#: smoothing of |omega| and |grad |omega|| in vorticity confinement, in units of 1/s (keeps N differentiable)
VORTICITY_EPS = 1e-6


class Forces:
    @ti.func
    def _star_faces(self, s: ti.template(), f, fg, b, I, Ic, adv):
        """u* of face slot I: the advected velocity adv plus dt times the forces (closed faces 0)."""
        return ti.Vector(
            [
                (adv[d] + ti.static(self.dt) * self._acceleration(s, f, fg, b, Ic, d)) * self.face_open[I][d]
                for d in ti.static(range(self.dim))
            ]
        )

    @ti.func
    def _vorticity_confinement(self, s: ti.template(), f: ti.template()):
        """Stage 3, vorticity confinement: the cell-centred advected velocity, its curl and the confinement acceleration eps h (N x omega)."""
        if ti.static(self.has_vorticity):
            ti.loop_config(serialize=ti.static(self.serial_light))
            for b, i0 in ti.ndrange(self.batch, self.cext[0]):
                for i1 in range(self.cext[1]):
                    for i2 in range(self.cext[2]):
                        I = self._at(i0, i1, i2)
                        s.center_velocity[f, b, I] = self._velocity_at_cell(s.advected_velocity, f, b, I)
            ti.loop_config(serialize=ti.static(self.serial_heavy))
            for b, i0 in ti.ndrange(self.batch, self.cext[0]):
                for i1 in range(self.cext[1]):
                    for i2 in range(self.cext[2]):
                        I = self._at(i0, i1, i2)
                        s.vorticity_field[f, b, I] = self._curl(s, f, b, I)
            ti.loop_config(serialize=ti.static(self.serial_heavy))
            for b, i0 in ti.ndrange(self.batch, self.cext[0]):
                for i1 in range(self.cext[1]):
                    for i2 in range(self.cext[2]):
                        I = self._at(i0, i1, i2)
                        s.confinement[f, b, I] = self._confinement(s, f, b, I)

    @ti.func
    def _add_forces(self, s: ti.template(), f: ti.template(), fg: ti.template()):
        """Stage 3: u* = u~ + dt a on the open faces (when not fused into the advection of the velocity)."""
        if ti.static(not self.fuse_forces):
            ti.loop_config(serialize=ti.static(self.serial_heavy))
            for b, i0 in ti.ndrange(self.batch, self.vext[0]):
                for i1 in range(self.vext[1]):
                    for i2 in range(self.vext[2]):
                        I = self._at(i0, i1, i2)
                        Ic = self._canonical(I)
                        adv = s.advected_velocity[f, b, Ic]
                        s.velocity_star[f, b, I] = self._star_faces(s, f, fg, b, I, Ic, adv)

    @ti.func
    def _curl(self, s: ti.template(), f, b, I):
        """Vorticity at a cell centre by central differences of the cell-centred velocity (1/s)."""
        # g[k] = d u / d x_k (a vector over components)
        g = [
            (
                s.center_velocity[f, b, self._cell(I + ti.Vector.unit(self.dim, k, ti.i32))]
                - s.center_velocity[f, b, self._cell(I - ti.Vector.unit(self.dim, k, ti.i32))]
            )
            * ti.static(0.5 / self.h)
            for k in ti.static(range(self.dim))
        ]
        if ti.static(self.dim == 2):
            return ti.Vector([g[0][1] - g[1][0]])
        else:
            return ti.Vector([g[1][2] - g[2][1], g[2][0] - g[0][2], g[0][1] - g[1][0]])

    @ti.func
    def _omega_norm(self, s: ti.template(), f, b, J):
        w = s.vorticity_field[f, b, self._cell(J)]
        return ti.sqrt(w.dot(w) + ti.static(VORTICITY_EPS**2))

    @ti.func
    def _confinement(self, s: ti.template(), f, b, I):
        """eps h (N x omega), N = grad|omega| / |grad|omega||: the vorticity-confinement acceleration at a cell."""
        eta = ti.Vector(
            [
                self._omega_norm(s, f, b, I + ti.Vector.unit(self.dim, k, ti.i32))
                - self._omega_norm(s, f, b, I - ti.Vector.unit(self.dim, k, ti.i32))
                for k in ti.static(range(self.dim))
            ]
        )  # grad |omega| times 2h (1/s)
        N = eta / ti.sqrt(eta.dot(eta) + ti.static(VORTICITY_EPS**2))
        w = s.vorticity_field[f, b, I]
        scale = self.vorticity.field[self.vorticity.bi(b)] * ti.static(self.h) * self.fluid[I]
        if ti.static(self.dim == 2):
            return scale * ti.Vector([N[1] * w[0], -N[0] * w[0]])
        else:
            return scale * N.cross(w)

    @ti.func
    def _acceleration(self, s: ti.template(), f, fg, b, I, d: ti.template()):
        """Acceleration of the component-d face I (m/s^2): gravity, buoyancy, control, confinement, viscosity."""
        a = self.gravity.field[self.gravity.bi(b)][d]
        ed = ti.Vector.unit(self.dim, d, ti.i32)
        ca = self._cell(I - ed)
        cc = self._cell(I)
        if ti.static(d == self.dim - 1):
            qbar = 0.5 * (s.scalars[f + 1, b, ca] + s.scalars[f + 1, b, cc])
            for k in ti.static(range(self.S)):
                a = a + self.buoyancy[k].field[self.buoyancy[k].bi(b)] * qbar[k]
        if ti.static(self.has_control):
            row = ti.min(fg // ti.static(self.control_hold), ti.static(self.control_steps - 1))
            C = ti.Vector(
                [
                    ti.min(I[k], self.n[k] - 1) // ti.static(self.control_block[k])
                    for k in ti.static(range(self.dim))
                ]
            )
            a = a + self.control.field[self.control.bi(b), row, C][d]
        if ti.static(self.has_vorticity):
            a = a + 0.5 * (s.confinement[f, b, ca][d] + s.confinement[f, b, cc][d])
        if ti.static(self.has_viscosity):
            u = s.advected_velocity[f, b, I][d]
            lap = -2.0 * ti.static(self.dim) * u
            for k in ti.static(range(self.dim)):
                ek = ti.Vector.unit(self.dim, k, ti.i32)
                lap = (
                    lap
                    + s.advected_velocity[f, b, self._face(I + ek, d)][d]
                    + s.advected_velocity[f, b, self._face(I - ek, d)][d]
                )
            a = a + self.viscosity.field[self.viscosity.bi(b)] * lap * ti.static(1.0 / self.h**2)
        return a
