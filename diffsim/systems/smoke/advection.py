"""Advection (step 1 of `system.py`): semi-Lagrangian (Euler or midpoint back-trace) and MacCormack, for the
velocity on faces and the scalars in cells, and the sources (step 2). `Advection` is a mixin of `SmokeSystem`."""

import taichi as ti


class Advection:
    @ti.func
    def _trace(self, vel: ti.template(), f, b, x, u, sign: ti.template()):
        """Departure point of the point x whose velocity is u, over sign * dt (Euler or midpoint)."""
        c = ti.static(sign * self.dt / self.h)
        xd = x - c * u
        if ti.static(self.rk2):
            xd = x - c * self._velocity_at(vel, f, b, x - 0.5 * c * u)
        return xd

    @ti.func
    def _face_position(self, I, d: ti.template()):
        return I + 0.5 - 0.5 * ti.Vector.unit(self.dim, d, float)

    @ti.func
    def _face_departure(self, vel: ti.template(), f, b, I, d: ti.template(), sign: ti.template()):
        x = self._face_position(I, d)
        return self._trace(vel, f, b, x, self._velocity_at_face(vel, f, b, I, d), sign)

    @ti.func
    def _cell_departure(self, vel: ti.template(), f, b, I, sign: ti.template()):
        return self._trace(vel, f, b, I + 0.5, self._velocity_at_cell(vel, f, b, I), sign)

    @ti.func
    def _sources(self, b, I):
        """dt * (sum over sources of rate * mask): the scalars the sources add in cell I this step."""
        add = ti.Vector.zero(float, self.S)
        if ti.static(self.n_sources > 0):
            for src in ti.static(range(self.n_sources)):
                add = add + self.source_mask[src, I] * ti.Vector(
                    [self.source_rate.field[self.source_rate.bi(b), src, k] for k in ti.static(range(self.S))]
                )
        return add * ti.static(self.dt)

    @ti.func
    def _maccormack_face(self, s: ti.template(), f, b, I, d: ti.template()):
        xd = self._face_departure(s.velocity, f, b, I, d, 1)
        lo, hi = self._face_bounds(s.velocity, f, b, d, xd)
        v = s.velocity_forward[f, b, I][d] + 0.5 * (s.velocity[f, b, I][d] - s.velocity_backward[f, b, I][d])
        return ti.min(ti.max(v, lo), hi)

    @ti.func
    def _advected_faces(self, q: ti.template(), s: ti.template(), f, b, I, Ic, sign: ti.template()):
        """Face slot I advected semi-Lagrangian: q sampled at the departure points of the faces Ic, traced through
        s.velocity over sign * dt (closed faces 0)."""
        return ti.Vector(
            [
                self._sample_face(q, f, b, d, self._face_departure(s.velocity, f, b, Ic, d, sign))
                * self.face_open[I][d]
                for d in ti.static(range(self.dim))
            ]
        )

    @ti.func
    def _advected_cells(self, q: ti.template(), s: ti.template(), f, b, I, sign: ti.template()):
        """The scalars q at cell I advected semi-Lagrangian (traced through s.velocity over sign * dt)."""
        return self._sample_cells(q, f, b, self._cell_departure(s.velocity, f, b, I, sign))

    @ti.func
    def _store_advected(self, s: ti.template(), f, fg, b, I, Ic, adv):
        """Store the advected velocity of face slot I. Without vorticity confinement and viscosity (which read the
        advected field at neighbouring faces) the forces are added here and u* stored directly: one pass over the
        faces fewer, forward and in reverse."""
        if ti.static(self.fuse_forces):
            s.velocity_star[f, b, I] = self._star_faces(s, f, fg, b, I, Ic, adv)
        else:
            s.advected_velocity[f, b, I] = adv

    @ti.func
    def _advect(self, s: ti.template(), f: ti.template(), fg: ti.template()):
        """Stages 1-2: advect the scalars (plus the sources) and the velocity by the velocity of frame f."""
        if ti.static(not self.maccormack):
            self._semi_lagrangian(s, f, fg)
        else:
            self._maccormack(s, f, fg)

    @ti.func
    def _semi_lagrangian(self, s: ti.template(), f: ti.template(), fg: ti.template()):
        """Semi-Lagrangian advection, q'(x) = q(x - dt u(x)): the scalars first (the buoyancy reads them), then the
        velocity."""
        ti.loop_config(serialize=ti.static(self.serial_heavy))
        for b, i0 in ti.ndrange(self.batch, self.cext[0]):
            for i1 in range(self.cext[1]):
                for i2 in range(self.cext[2]):
                    I = self._at(i0, i1, i2)
                    s.scalars[f + 1, b, I] = (
                        self._advected_cells(s.scalars, s, f, b, I, 1) + self._sources(b, I)
                    ) * self.fluid[I]
        ti.loop_config(serialize=ti.static(self.serial_heavy))
        for b, i0 in ti.ndrange(self.batch, self.vext[0]):
            for i1 in range(self.vext[1]):
                for i2 in range(self.vext[2]):
                    I = self._at(i0, i1, i2)
                    Ic = self._canonical(I)
                    self._store_advected(
                        s, f, fg, b, I, Ic, self._advected_faces(s.velocity, s, f, b, I, Ic, 1)
                    )

    @ti.func
    def _maccormack(self, s: ti.template(), f: ti.template(), fg: ti.template()):
        """MacCormack advection: q^ = SL(q, dt), q_ = SL(q^, -dt), q' = q^ + (q - q_) / 2 clamped to the range the
        forward step interpolated from."""
        # MacCormack: the forward semi-Lagrangian step ...
        ti.loop_config(serialize=ti.static(self.serial_heavy))
        for b, i0 in ti.ndrange(self.batch, self.vext[0]):
            for i1 in range(self.vext[1]):
                for i2 in range(self.vext[2]):
                    I = self._at(i0, i1, i2)
                    Ic = self._canonical(I)
                    s.velocity_forward[f, b, I] = self._advected_faces(s.velocity, s, f, b, I, Ic, 1)
        ti.loop_config(serialize=ti.static(self.serial_heavy))
        for b, i0 in ti.ndrange(self.batch, self.cext[0]):
            for i1 in range(self.cext[1]):
                for i2 in range(self.cext[2]):
                    I = self._at(i0, i1, i2)
                    s.scalars_forward[f, b, I] = self._advected_cells(s.scalars, s, f, b, I, 1)
        # ... the backward step of its result with the same velocity ...
        ti.loop_config(serialize=ti.static(self.serial_heavy))
        for b, i0 in ti.ndrange(self.batch, self.vext[0]):
            for i1 in range(self.vext[1]):
                for i2 in range(self.vext[2]):
                    I = self._at(i0, i1, i2)
                    Ic = self._canonical(I)
                    s.velocity_backward[f, b, I] = self._advected_faces(
                        s.velocity_forward, s, f, b, I, Ic, -1
                    )
        ti.loop_config(serialize=ti.static(self.serial_heavy))
        for b, i0 in ti.ndrange(self.batch, self.cext[0]):
            for i1 in range(self.cext[1]):
                for i2 in range(self.cext[2]):
                    I = self._at(i0, i1, i2)
                    s.scalars_backward[f, b, I] = self._advected_cells(s.scalars_forward, s, f, b, I, -1)
        # ... and the corrected value, clamped to the range the forward step interpolated from
        ti.loop_config(serialize=ti.static(self.serial_heavy))
        for b, i0 in ti.ndrange(self.batch, self.cext[0]):
            for i1 in range(self.cext[1]):
                for i2 in range(self.cext[2]):
                    I = self._at(i0, i1, i2)
                    lo, hi = self._cell_bounds(s.scalars, f, b, self._cell_departure(s.velocity, f, b, I, 1))
                    q = s.scalars_forward[f, b, I] + 0.5 * (s.scalars[f, b, I] - s.scalars_backward[f, b, I])
                    s.scalars[f + 1, b, I] = (ti.min(ti.max(q, lo), hi) + self._sources(b, I)) * self.fluid[I]
        ti.loop_config(serialize=ti.static(self.serial_heavy))
        for b, i0 in ti.ndrange(self.batch, self.vext[0]):
            for i1 in range(self.vext[1]):
                for i2 in range(self.vext[2]):
                    I = self._at(i0, i1, i2)
                    Ic = self._canonical(I)
                    adv = ti.Vector(
                        [
                            self._maccormack_face(s, f, b, Ic, d) * self.face_open[I][d]
                            for d in ti.static(range(self.dim))
                        ]
                    )
                    self._store_advected(s, f, fg, b, I, Ic, adv)
