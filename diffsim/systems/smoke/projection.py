"""Projection (step 4 of `system.py`): the pressure equation's right-hand side -h div u* and the velocity update
u' = u* - grad(phi) / h; the solve between them is `solver.py`. `Projection` is a mixin of `SmokeSystem`."""

import taichi as ti


class Projection:
    @ti.func
    def _pressure_rhs(self, s: ti.template(), f: ti.template()):
        """Stage 4, the projection's right-hand side: -h div u* per fluid cell."""
        ti.loop_config(serialize=ti.static(self.serial_light))
        for b, i0 in ti.ndrange(self.batch, self.cext[0]):
            for i1 in range(self.cext[1]):
                for i2 in range(self.cext[2]):
                    I = self._at(i0, i1, i2)
                    vs = ti.static(s.velocity_star)
                    div = vs[f, b, I + ti.Vector.unit(self.dim, 0, ti.i32)][0] - vs[f, b, I][0]
                    for d in ti.static(range(1, self.dim)):
                        div = div + vs[f, b, I + ti.Vector.unit(self.dim, d, ti.i32)][d] - vs[f, b, I][d]
                    s.pressure_rhs[f, b, I] = -ti.static(self.h) * div * self.fluid[I]

    @ti.func
    def _corrected_face(self, s: ti.template(), f, b, I, d: ti.template()):
        """u* - (phi_c - phi_a) / h on the component-d face I, phi = 0 beyond an open boundary."""
        ed = ti.Vector.unit(self.dim, d, ti.i32)
        pa = s.pressure[f + 1, b, self._cell(I - ed)]
        pc = s.pressure[f + 1, b, self._cell(I)]
        if ti.static(not self.periodic[d]):
            pa = pa * ti.cast(I[d] > 0, float)
            pc = pc * ti.cast(I[d] < self.n[d], float)
        return s.velocity_star[f, b, I][d] - (pc - pa) * ti.static(1.0 / self.h)

    @ti.kernel
    def _project(self, s: ti.template(), f: ti.i32, fg: ti.i32):
        """u' = u* - grad(phi) / h on the open faces, 0 on closed ones."""
        ti.loop_config(serialize=ti.static(self.serial_light))
        for b, i0 in ti.ndrange(self.batch, self.vext[0]):
            for i1 in range(self.vext[1]):
                for i2 in range(self.vext[2]):
                    I = self._at(i0, i1, i2)
                    Ic = self._canonical(I)
                    s.velocity[f + 1, b, I] = ti.Vector(
                        [
                            self._corrected_face(s, f, b, Ic, d) * self.face_open[I][d]
                            for d in ti.static(range(self.dim))
                        ]
                    )
