"""`UnrolledCG`: the reference pressure solve that differentiates the iterations (Taichi's reverse mode through a
fixed number of unpreconditioned CG iterations, memory O(iterations)); the tests check that it gives the same
gradient as `PressureSolver`'s adjoint solve."""

import taichi as ti

from ... import runtime
from ...errors import DiffsimError
from .solver import PressureSolver


@ti.data_oriented
class UnrolledCG:
    """Reference solver for tests: `iters` plain CG iterations from zero, differentiated by Taichi's reverse mode
    through every iteration (memory O(iters), each iterate kept). Open or periodic domains without closed regions
    (the projection P is not implemented here)."""

    def __init__(self, solver: PressureSolver, iters: int):
        if solver.n_components:
            raise DiffsimError(
                "the unrolled reference solver needs a domain whose fluid touches an open boundary"
            )
        self.s = solver
        self.iters = int(iters)
        n, B, D = solver.n, solver.batch, solver.dim
        real = runtime.real()
        K = self.iters + 1
        self.x = ti.field(real, shape=(K, B, *n), needs_grad=True)
        self.r = ti.field(real, shape=(K, B, *n), needs_grad=True)
        self.p = ti.field(real, shape=(K, B, *n), needs_grad=True)
        self.Ap = ti.field(real, shape=(K, B, *n), needs_grad=True)
        self.rr = ti.field(real, shape=(K, B), needs_grad=True)
        self.pAp = ti.field(real, shape=(K, B), needs_grad=True)
        self.dim = D

    @ti.func
    def _neighbour(self, v: ti.template(), k, b, I, e, sign: ti.template()):
        """v at the cell across a face (0 outside a non-periodic boundary)."""
        J = I + sign * e
        out = 0.0
        inside = True
        for a in ti.static(range(self.dim)):
            if ti.static(self.s.periodic[a]):
                J[a] = (J[a] + self.s.n[a]) % self.s.n[a]
            elif J[a] < 0 or J[a] >= self.s.n[a]:
                inside = False
        if inside:
            out = v[k, b, J]
        return out

    @ti.kernel
    def start(self, s: ti.template(), f: ti.i32):
        for J in ti.grouped(ti.ndrange(self.s.batch, *self.s.n)):
            b, I = J[0], ti.Vector([J[a + 1] for a in ti.static(range(self.dim))])
            rhs = s.pressure_rhs[f, b, I]
            self.x[0, b, I] = 0.0
            self.r[0, b, I] = rhs
            self.p[0, b, I] = rhs
        for J in ti.grouped(ti.ndrange(self.s.batch, *self.s.n)):
            b, I = J[0], ti.Vector([J[a + 1] for a in ti.static(range(self.dim))])
            self.rr[0, b] += self.r[0, b, I] ** 2

    @ti.kernel
    def iterate(self, k: ti.i32):
        for J in ti.grouped(ti.ndrange(self.s.batch, *self.s.n)):
            b, I = J[0], ti.Vector([J[a + 1] for a in ti.static(range(self.dim))])
            c = self.p[k, b, I]
            acc = 0.0
            for a in ti.static(range(self.dim)):
                e = ti.Vector.unit(self.dim, a, ti.i32)
                acc += self.s.face_open[I][a] * (c - self._neighbour(self.p, k, b, I, e, -1))
                acc += self.s.face_open[I + e][a] * (c - self._neighbour(self.p, k, b, I, e, 1))
            self.Ap[k, b, I] = acc
        for J in ti.grouped(ti.ndrange(self.s.batch, *self.s.n)):
            b, I = J[0], ti.Vector([J[a + 1] for a in ti.static(range(self.dim))])
            self.pAp[k, b] += self.p[k, b, I] * self.Ap[k, b, I]
        for J in ti.grouped(ti.ndrange(self.s.batch, *self.s.n)):
            b, I = J[0], ti.Vector([J[a + 1] for a in ti.static(range(self.dim))])
            alpha = self.rr[k, b] / self.pAp[k, b]
            self.x[k + 1, b, I] = self.x[k, b, I] + alpha * self.p[k, b, I]
            self.r[k + 1, b, I] = self.r[k, b, I] - alpha * self.Ap[k, b, I]
        for J in ti.grouped(ti.ndrange(self.s.batch, *self.s.n)):
            b, I = J[0], ti.Vector([J[a + 1] for a in ti.static(range(self.dim))])
            self.rr[k + 1, b] += self.r[k + 1, b, I] ** 2
        for J in ti.grouped(ti.ndrange(self.s.batch, *self.s.n)):
            b, I = J[0], ti.Vector([J[a + 1] for a in ti.static(range(self.dim))])
            beta = self.rr[k + 1, b] / self.rr[k, b]
            self.p[k + 1, b, I] = self.r[k + 1, b, I] + beta * self.p[k, b, I]

    @ti.kernel
    def finish(self, s: ti.template(), f: ti.i32):
        for J in ti.grouped(ti.ndrange(self.s.batch, *self.s.n)):
            b, I = J[0], ti.Vector([J[a + 1] for a in ti.static(range(self.dim))])
            s.pressure[f + 1, b, I] = self.x[self.iters, b, I]

    def forward(self, s, f: int) -> None:
        self.rr.fill(0)
        self.pAp.fill(0)
        self.start(s, f)
        for k in range(self.iters):
            self.iterate(k)
        self.finish(s, f)

    def adjoint(self, s, f: int) -> None:
        self.forward(s, f)  # recompute this step's iterates (only the last step's are kept)
        for fld in (self.x, self.r, self.p, self.Ap, self.rr, self.pAp):
            fld.grad.fill(0)
        self.finish.grad(s, f)
        for k in reversed(range(self.iters)):
            self.iterate.grad(k)
        self.start.grad(s, f)
