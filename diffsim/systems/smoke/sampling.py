"""Sampling the MAC grid: cell and face indices with walls and periodic wrap, (bi/tri)linear interpolation of face
and cell quantities and the bounds MacCormack clamps to. `GridSampling` is a mixin of `SmokeSystem`."""

import itertools

import taichi as ti

#: the 2^D corners of an interpolation cell
CORNERS = {d: tuple(itertools.product((0, 1), repeat=d)) for d in (2, 3)}


class GridSampling:
    # -- index helpers ------------------------------------------------------------------------------------------
    # Differentiated code below is written without runtime branches and without reassigning variables inside
    # them: Taichi's reverse mode puts a variable that is reassigned under a runtime `if` on its autodiff stack,
    # which made the adjoint kernels ten times slower than the forward ones. Masks (face_open, fluid) multiply
    # instead, and indices are clamped so that every read is in bounds.
    @ti.func
    def _wrap(self, j, k: ti.template(), top: ti.template()):
        """Index j along axis k: wrapped on a periodic axis, else clamped to [0, n_k - 1 + top]."""
        out = j
        if ti.static(self.periodic[k]):
            out = j % self.n[k]
        else:
            out = ti.min(ti.max(j, 0), self.n[k] - 1 + top)
        return out

    @ti.func
    def _cell(self, J):
        """A cell index from any integer index: wrapped on periodic axes, clamped to the box on the others."""
        return ti.Vector([self._wrap(J[k], k, 0) for k in ti.static(range(self.dim))])

    @ti.func
    def _face(self, J, d: ti.template()):
        """A face index of component d from any integer index (faces 0 and n of a periodic axis are one face)."""
        return ti.Vector([self._wrap(J[k], k, 1 if k == d else 0) for k in ti.static(range(self.dim))])

    @ti.func
    def _canonical(self, I):
        """The face index that stores a face: index n of a periodic axis is face 0."""
        return ti.Vector(
            [I[k] % self.n[k] if ti.static(self.periodic[k]) else I[k] for k in ti.static(range(self.dim))]
        )

    @ti.func
    def _at(self, i0, i1, i2):
        """The index (i0, i1) or (i0, i1, i2) of nested loops over `cext` or `vext` (i2 is 0 in 2D). Grid loops are
        written as a top-level loop over (copy, i0) with inner loops over i1 and i2: a grouped loop over the whole
        grid decomposes its linear index every iteration, which cost up to a third of a light loop (measured on the
        divergence loop at 128^2: 0.088 against 0.054 ms)."""
        return ti.Vector([i0, i1] if ti.static(self.dim == 2) else [i0, i1, i2])

    # -- interpolation ------------------------------------------------------------------------------------------
    @ti.func
    def _lerp_corners(self, v: ti.template(), t):
        """Multilinear interpolation of the 2^D corner values v (a list in CORNERS order) at the fraction t: a lerp
        per pair of corners, the last axis first (2^D - 1 lerps: fewer operations than a weighted sum of the
        corners, forward and in reverse)."""
        if ti.static(self.dim == 2):
            a = v[0] + t[1] * (v[1] - v[0])
            c = v[2] + t[1] * (v[3] - v[2])
            return a + t[0] * (c - a)
        else:
            a0 = v[0] + t[2] * (v[1] - v[0])
            a1 = v[2] + t[2] * (v[3] - v[2])
            a2 = v[4] + t[2] * (v[5] - v[4])
            a3 = v[6] + t[2] * (v[7] - v[6])
            c0 = a0 + t[1] * (a1 - a0)
            c1 = a2 + t[1] * (a3 - a2)
            return c0 + t[0] * (c1 - c0)

    @ti.func
    def _face_corners(self, g, d: ti.template()):
        """(lower corner, upper corner, fraction) of the face-d interpolation cell around g (face units)."""
        i0 = ti.cast(ti.floor(g), ti.i32)
        return self._face(i0, d), self._face(i0 + 1, d), g - i0

    @ti.func
    def _cell_corners(self, g):
        i0 = ti.cast(ti.floor(g), ti.i32)
        return self._cell(i0), self._cell(i0 + 1), g - i0

    @ti.func
    def _pick(self, lo, hi, c: ti.template()):
        return ti.Vector([hi[k] if ti.static(c[k]) else lo[k] for k in ti.static(range(self.dim))])

    @ti.func
    def _face_g(self, x, d: ti.template()):
        """Position x (cells; cell I's centre at I + 1/2) in the index space of the component-d faces."""
        return x - 0.5 + 0.5 * ti.Vector.unit(self.dim, d, float)

    @ti.func
    def _sample_face(self, vel: ti.template(), f, b, d: ti.template(), x):
        """Component d at position x, multilinear."""
        lo, hi, t = self._face_corners(self._face_g(x, d), d)
        return self._lerp_corners(
            [vel[f, b, self._pick(lo, hi, c)][d] for c in ti.static(CORNERS[self.dim])], t
        )

    @ti.func
    def _face_bounds(self, vel: ti.template(), f, b, d: ti.template(), x):
        """(min, max) of the values `_sample_face` interpolates from."""
        lo, hi, _t = self._face_corners(self._face_g(x, d), d)
        vals = ti.Vector([vel[f, b, self._pick(lo, hi, c)][d] for c in ti.static(CORNERS[self.dim])])
        return vals.min(), vals.max()

    @ti.func
    def _sample_cells(self, q: ti.template(), f, b, x):
        """All scalars at position x, multilinear."""
        lo, hi, t = self._cell_corners(x - 0.5)
        return self._lerp_corners([q[f, b, self._pick(lo, hi, c)] for c in ti.static(CORNERS[self.dim])], t)

    @ti.func
    def _cell_bounds(self, q: ti.template(), f, b, x):
        lo, hi, _t = self._cell_corners(x - 0.5)
        vmin = q[f, b, lo]
        vmax = vmin
        for m in ti.static(range(1, len(CORNERS[self.dim]))):
            v = q[f, b, self._pick(lo, hi, CORNERS[self.dim][m])]
            vmin = ti.min(vmin, v)
            vmax = ti.max(vmax, v)
        return vmin, vmax

    @ti.func
    def _velocity_at(self, vel: ti.template(), f, b, x):
        return ti.Vector([self._sample_face(vel, f, b, d, x) for d in ti.static(range(self.dim))])

    @ti.func
    def _neighbour_average(self, vel: ti.template(), f, b, I, d: ti.template(), k: ti.template()):
        """Component k averaged from the 4 component-k faces nearest to the component-d face I (k != d)."""
        ek = ti.Vector.unit(self.dim, k, ti.i32)
        ed = ti.Vector.unit(self.dim, d, ti.i32)
        return 0.25 * (
            vel[f, b, self._face(I, k)][k]
            + vel[f, b, self._face(I + ek, k)][k]
            + vel[f, b, self._face(I - ed, k)][k]
            + vel[f, b, self._face(I - ed + ek, k)][k]
        )

    @ti.func
    def _velocity_at_face(self, vel: ti.template(), f, b, I, d: ti.template()):
        """Velocity at the component-d face I: its own component, the others averaged from the nearest faces."""
        return ti.Vector(
            [
                vel[f, b, I][d] if ti.static(k == d) else self._neighbour_average(vel, f, b, I, d, k)
                for k in ti.static(range(self.dim))
            ]
        )

    @ti.func
    def _velocity_at_cell(self, vel: ti.template(), f, b, I):
        return ti.Vector(
            [
                0.5 * (vel[f, b, I][k] + vel[f, b, I + ti.Vector.unit(self.dim, k, ti.i32)][k])
                for k in ti.static(range(self.dim))
            ]
        )
