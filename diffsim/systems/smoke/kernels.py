"""The smoke step: `_advance` runs advection, sources, forces and the projection's right-hand side as the
top-level loops of one kernel, in the order of the equations in `system.py`'s docstring; the pressure solve
(`solver.py`) and `_project` follow (`step_launchers`). The processes live in modules named after them:
`advection.py`, `forces.py`, `projection.py`, with the grid sampling they share in `sampling.py`.

`SmokeKernels` is a mixin of `SmokeSystem`: its stages read the system's parameters and grid masks (`self.*`), set
up by `system.py`."""

import taichi as ti

from ...engine.launch import FastKernel
from .advection import Advection
from .forces import Forces
from .projection import Projection
from .sampling import GridSampling


class SmokeKernels(Advection, Forces, Projection, GridSampling):
    @ti.kernel
    def _initialize(self, s: ti.template()):
        ti.loop_config(serialize=ti.static(self.serial_light))
        for b, i0 in ti.ndrange(self.batch, self.vext[0]):
            for i1 in range(self.vext[1]):
                for i2 in range(self.vext[2]):
                    I = self._at(i0, i1, i2)
                    s.velocity[0, b, I] = self.v0.field[self.v0.bi(b), self._canonical(I)] * self.face_open[I]
        ti.loop_config(serialize=ti.static(self.serial_light))
        for b, i0 in ti.ndrange(self.batch, self.cext[0]):
            for i1 in range(self.cext[1]):
                for i2 in range(self.cext[2]):
                    I = self._at(i0, i1, i2)
                    s.scalars[0, b, I] = self.fluid[I] * ti.Vector(
                        [self.q0[q].field[self.q0[q].bi(b), I] for q in ti.static(range(self.S))]
                    )
                    s.pressure[0, b, I] = 0.0

    def initialize(self, s) -> None:
        self._initialize(s)

    def initialize_grad(self, s) -> None:
        self._initialize.grad(s)

    @ti.kernel
    def _advance(self, s: ti.template(), f: ti.i32, fg: ti.i32):
        """Advection, sources, forces and the projection's right-hand side: frame f -> scratch of f, scalars f+1.
        The scalars go first: the buoyancy in the forces reads the advected ones."""
        self._advect(s, f, fg)
        self._vorticity_confinement(s, f)
        self._add_forces(s, f, fg)
        self._pressure_rhs(s, f)

    # -- the step -----------------------------------------------------------------------------------------------
    def step_launchers(self, s):
        """forward: advance, pressure solve, project; adjoint: their adjoints in reverse, with an adjoint solve."""
        advance, advance_grad = FastKernel(self._advance, s), FastKernel(self._advance, s, grad=True)
        project, project_grad = FastKernel(self._project, s), FastKernel(self._project, s, grad=True)
        atol = self.tolerance * self.h**2
        rtol, adj_rtol, maxit = self.relative_tolerance, self.adjoint_tolerance, self.max_iters
        if self.unrolled is None:
            solve, solve_adjoint = self.solver.launchers(s)

            def pressure(f):
                solve(f, atol, rtol, maxit)

            def pressure_adjoint(f):
                solve_adjoint(f, 0.0, adj_rtol, maxit)
        else:
            unrolled = self.unrolled

            def pressure(f):
                unrolled.forward(s, f)

            def pressure_adjoint(f):
                unrolled.adjoint(s, f)

        def forward(f: int, fg: int) -> None:
            if fg == 0:
                self.check_stability()
            advance(f, fg)
            pressure(f)
            project(f, fg)

        def adjoint(f: int, fg: int) -> None:
            if self._last_adjoint_fg is None or fg >= self._last_adjoint_fg:
                self.solver.reset_adjoint()  # a new backward pass: start the adjoint warm start from zero
            self._last_adjoint_fg = fg
            project_grad(f, fg)
            pressure_adjoint(f)
            advance_grad(f, fg)

        return forward, adjoint

    def step(self, s, f: int, fg: int) -> None:
        if getattr(self, "_launchers", None) is None or self._launchers[0] is not s:
            self._launchers = (s, *self.step_launchers(s))
        self._launchers[1](f, fg)
