"""The pressure Poisson solve of the projection step, and its adjoint.

Discrete problem (MAC grid, cell size h, scaled by h^2 so that the matrix has small integer entries):

    (A phi)_i = sum over the open faces f of cell i of (phi_i - phi_j(f)),   A phi = b,   b_i = -h^2 (div u*)_i

where j(f) is the cell across the face (phi_j = 0 outside an open boundary: Dirichlet), closed walls and obstacle
faces are left out (Neumann), and periodic axes wrap. Then u = u* - grad(phi) / h on the open faces has
div u = -(b - A phi)_i / h^2: the divergence after projection is the solver's residual, so a residual tolerance is
a divergence tolerance (`atol`, 1/s, max norm).

A is symmetric positive semi-definite. A fluid region that touches no open boundary makes it singular (phi is
defined up to a constant there): the right-hand side is projected onto the range (its mean over the region
removed, P b) and so is the solution, so phi = P A^+ P b.

Solver: preconditioned conjugate gradients (Saad, "Iterative Methods for Sparse Linear Systems", alg. 9.1),
warm-started from the previous step's pressure, until max |r| <= max(atol h^2, rtol max |b|) on the recursive
residual, confirmed on the true residual b - A phi (restarting if they disagree). One update after a residual pass
(a warm-started solve usually takes one iteration) the recursive residual differs from the true one by that update's
rounding only: below the tolerance by more than an estimate of it, the solve stops without the confirming pass.
Preconditioners:

- "mg" (default): one multigrid V-cycle. Level l + 1 aggregates 2^D cells of level l; its operator is the Galerkin
  product P^T A P of the piecewise-constant prolongation P, again a face-weighted Laplacian whose face weight is the
  number of open fine faces across the coarse face, so walls, obstacles and open boundaries carry over exactly.
  Red-black Gauss-Seidel, red then black on the way down, black then red on the way up, symmetric sweeps on the
  coarsest level: the V-cycle is a symmetric operator, as CG needs. (Red-black rather than lexicographic: a
  lexicographic sweep waits for each cell's update before the next, and that dependency chain, not the arithmetic,
  set its speed on the CPU.) The coarse correction is scaled by MG_ALPHA
  (piecewise-constant transfers under-correct smooth errors; cf. over-correction in aggregation multigrid, Braess
  1995). Compare McAdams, Sifakis and Teran 2010 ("A parallel multigrid Poisson solver for fluids simulation on
  large grids") for multigrid-preconditioned CG on fluid grids.
- "mic": modified incomplete Cholesky, MIC(0) (Bridson, "Fluid Simulation for Computer Graphics", 2015, ch. 5).
- "jacobi", "none".

Gradient: the solve is a linear map phi = S b with S = P A^+ P symmetric, so dL/db = S dL/dphi: the backward pass
is one more solve of the same kind with the incoming gradient as right-hand side, warm-started from the linear
extrapolation of the previous two adjoint solutions, 2 lam_{t+1} - lam_{t+2} (the right-hand sides of consecutive
steps change smoothly; on smoke_target2d this took the adjoint solves from 2.0 to 1.04 iterations each). Nothing is recorded per iteration; memory does not grow with the iteration count. Its accuracy
is the solver tolerance (relative `adjoint_rtol` of the incoming gradient).

Implementation. Each kernel holds a few top-level loops (Taichi compiles one function per top-level loop; a single
kernel holding a whole solve had ~25 loop nests in one function and took 20 s to compile, growing quadratically).
Python drives the iterations; the bookkeeping (which copies are active, their iteration counts, the statistics)
stays on the device, and Python reads one integer per iteration (how many copies need their residual confirmed,
or whether any still iterates): each readback costs about a kernel launch. On the CPU, small grids (below SERIAL_BELOW cells) run every loop serially on
the calling thread: a parallel loop wakes the CPU backend's worker threads, which on a 2-core machine cost more than
the loop's work (measured at 128^2 under load: parallel loops averaged 0.1-0.2 ms against their 5-10 us minimum). Every per-cell array has a one-cell halo, so the stencils need no
bounds tests: vectors are zero in solid cells and in the halo of non-periodic axes (a closed wall is left out of
the diagonal; an open boundary counts and its outside value is 0), and the halo of a periodic axis holds the
wrapped values. Reductions are per-row partial sums (loops over rows, local accumulators), never atomics.

`UnrolledCG` is the reference that differentiates the iterations instead (Taichi's reverse mode through a fixed
number of unpreconditioned CG iterations, memory O(iterations)); the tests check that both give the same gradient.
"""

import os

import numpy as np
import taichi as ti

from ... import runtime
from ...engine.launch import FastKernel
from ...errors import DiffsimError
from .multigrid import MG_ALPHA, MG_SWEEPS, SERIAL_BELOW, Multigrid

PRECONDITIONERS = ("mg", "mic", "jacobi", "none")

#: MIC(0) parameters (Bridson 2015): tau blends modified (1) and plain (0) incomplete Cholesky; a pivot below
#: sigma times the diagonal falls back to the diagonal (keeps the factor positive on singular Neumann regions).
MIC_TAU = 0.97
MIC_SIGMA = 0.25
#: the stopping test's floor, in units of eps 2 D max|x| (see PressureSolver.__init__)
ROUNDING_FACTOR = 4.0
#: safeguards of the iteration: a copy whose recursive residual grows to DIVERGENCE times its best in this solve, or
#: whose p.Ap is not positive (both happen in f32 once the residual is at the precision floor), is checked on its
#: true residual and restarted, at most MAX_RESTARTS times per solve; then it stops (counted as unconverged)
DIVERGENCE = 10.0
MAX_RESTARTS = 3


@ti.data_oriented
class PressureSolver(Multigrid):
    """Solves A phi = b for every batch copy: `solve(s, f)` reads ``s.pressure_rhs[f]`` and ``s.pressure[f]`` (the
    warm start) and writes ``s.pressure[f + 1]``; `solve_adjoint(s, f)` turns ``s.pressure.grad[f + 1]`` into
    ``s.pressure_rhs.grad[f]``.
    """

    def __init__(
        self,
        resolution,
        batch: int,
        face_open: np.ndarray,
        component: np.ndarray,
        n_components: int,
        periodic: tuple,
        preconditioner: str = "mg",
        max_iters: int | None = None,
        mg_sweeps: int | None = None,
    ):
        if preconditioner not in PRECONDITIONERS:
            raise DiffsimError(
                f"unknown preconditioner {preconditioner!r}; choose {', '.join(PRECONDITIONERS)}",
                where="solver.preconditioner",
            )
        self.n = tuple(int(k) for k in resolution)
        self.dim = D = len(self.n)
        self.batch = B = int(batch)
        self.periodic = tuple(bool(p) for p in periodic)
        self.any_periodic = any(self.periodic)
        self.preconditioner = preconditioner
        self.use_mic = preconditioner == "mic"
        self.use_jacobi = preconditioner == "jacobi"
        self.use_mg = preconditioner == "mg"
        self.mg_sweeps = int(mg_sweeps or MG_SWEEPS)
        self.mg_alpha = float(os.environ.get("DIFFSIM_MG_ALPHA", MG_ALPHA[D]))
        self.n_components = int(n_components)
        self.max_iters = int(max_iters) if max_iters is not None else max(200, 4 * sum(self.n) * D)
        # A relative tolerance below the precision of the residual itself cannot be met: in f32 the true residual
        # b - A x of a warm start x carries a rounding error of about eps |A| |x| = eps 2 D |x| per cell (x, the
        # pressure, is up to n^2 times larger than b for smooth flows), and a solve asked for less iterated to
        # max_iters (measured at 64^2: 12 iterations per solve in f32 against 1.3 in f64). The stopping test is
        # therefore floored at ROUNDING_FACTOR eps 2 D max|x_warm| (negligible in f64: 1e-15 |x|).
        eps = 2.0**-52 if runtime.current()["precision"] == "f64" else 2.0**-23
        self.eps = eps
        self.rounding = ROUNDING_FACTOR * eps * 2 * D
        self.serial = runtime.serial_loops(B * int(np.prod(self.n)), SERIAL_BELOW)
        # loop extents: the third is 1 in 2D
        self.ext = (*self.n, 1) if D == 2 else self.n
        real = runtime.real()
        halo = tuple(k + 2 for k in self.n)
        self.halo = halo
        # loop extents over the lower halo layer of each axis (for the periodic copies)
        self.slabs = [
            tuple(1 if c == a else halo[c] for c in range(D)) + ((1,) if D == 2 else ()) for a in range(D)
        ]
        vec = lambda: ti.field(real, shape=(B, *halo))  # noqa: E731
        self.x, self.lam, self.r, self.z, self.p, self.Ap, self.bvec = (vec() for _ in range(7))
        self.lam_prev = vec()  # the adjoint solution before lam (for the extrapolated warm start)
        self.adjoint_solves = 0  # since the last reset_adjoint
        self.face_open = ti.Vector.field(D, real, shape=tuple(k + 1 for k in self.n))  # for UnrolledCG
        self.face_open.from_numpy(face_open.astype(runtime.np_real()))
        self.diag = ti.field(real, shape=halo)  # open faces of the cell (0: solid)
        self.precon = ti.field(real, shape=halo)  # MIC: 1 / L_ii; Jacobi: 1 / A_ii
        self.lcoef = ti.Vector.field(D, real, shape=halo)  # MIC: coupling to I - e_k times precon(I - e_k)
        self.upper = ti.Vector.field(D, real, shape=halo)  # MIC: coupling to I + e_k (no periodic wrap)
        self.component = ti.field(runtime.index_type(), shape=halo)
        nc = max(self.n_components, 1)
        self.comp_sum = ti.field(real, shape=(B, nc))  # per-region sums of the right-hand side
        self.comp_sum_x = ti.field(real, shape=(B, nc))  # and of x (see `_residual`, `_finish`)
        # serial loops also accumulate the region sums P needs as they pass over the grid (in parallel loops the
        # additions into a few slots would contend: separate passes there)
        self.fuse_sums = self.serial and self.n_components > 0
        self.inv_count = ti.field(real, shape=(nc,))
        counts = np.bincount(component[component >= 0].ravel(), minlength=nc).astype(np.float64)
        self.inv_count.from_numpy((1.0 / np.maximum(counts, 1)).astype(runtime.np_real()))
        self._allocate_iteration_state()
        self._setup(face_open, component)

    def _allocate_iteration_state(self) -> None:
        """Per-copy scalars of the iteration, the flags Python reads, the statistics, and row partial sums for the
        reductions."""
        B, real = self.batch, runtime.real()
        self.rz = ti.field(real, shape=(B,))
        self.pAp = ti.field(real, shape=(B,))
        self.rmax = ti.field(real, shape=(B,))
        self.tol = ti.field(real, shape=(B,))
        self.bnorm = ti.field(real, shape=(B,))  # max |b| of the current solve
        self.xnorm = ti.field(
            real, shape=(B,)
        )  # max |x| at the last residual pass (0 after a dropped warm start)
        self.rbest = ti.field(real, shape=(B,))  # smallest recursive max |r| since the last (re)start
        self.rcheck = ti.field(real, shape=(B,))  # max |r| at the last residual pass
        self.xmax = ti.field(real, shape=(B,))  # max |x| after the last update
        self.since_check = ti.field(ti.i32, shape=(B,))  # iterations since the last residual pass
        self.restarts = ti.field(ti.i32, shape=(B,))
        self.active = ti.field(real, shape=(B,))  # 1 while the copy iterates
        self.restart = ti.field(real, shape=(B,))  # 1: next direction is the preconditioned residual itself
        # 1: the recursive residual reached the tolerance (or the iteration broke down) and the true residual decides
        self.done = ti.field(real, shape=(B,))
        self.drift = ti.field(real, shape=(B,))  # `_drift` at the last update
        self.iters = ti.field(ti.i32, shape=(B,))  # iterations of the current solve
        # what Python reads between iterations: [after an update: the copies whose recursive residual must be
        # confirmed, or (none) 0 if some still iterate and -1 if none does; after a residual pass: the copies still
        # active]
        self.flags = ti.field(ti.i32, shape=(2,))
        # per-copy [iterations, max |r|, tolerance] of the last solve, and the totals of `stats` (kept on the device:
        # each readback costs about a kernel launch)
        self.report = ti.field(real, shape=(B, 3))
        self.counters = ti.field(ti.i64, shape=(6,))
        self.row_sum = ti.field(real, shape=(B, self.n[0]))
        self.row_max = ti.field(real, shape=(B, self.n[0]))
        self.row_b = ti.field(real, shape=(B, self.n[0]))
        self.row_x = ti.field(real, shape=(B, self.n[0]))

    # -- set-up ---------------------------------------------------------------------------------------------------
    def _setup(self, face_open: np.ndarray, component: np.ndarray) -> None:
        n, D = self.n, self.dim
        diag = np.zeros(n)
        lower = np.zeros((*n, D))
        upper = np.zeros((*n, D))
        cells = tuple(slice(0, k) for k in n)
        for k in range(D):
            lo = face_open[(*cells, k)]  # face below cell I along k
            hi_idx = list(cells)
            hi_idx[k] = slice(1, n[k] + 1)
            hi = face_open[(*hi_idx, k)]  # face above
            diag += lo + hi
            # MIC couples only neighbours inside the box (the periodic wrap is left out of the preconditioner)
            lw = lo.copy()
            np.moveaxis(lw, k, 0)[0] = 0.0
            up = hi.copy()
            np.moveaxis(up, k, 0)[-1] = 0.0
            lower[..., k] = lw
            upper[..., k] = up
        npr = runtime.np_real()
        inner = tuple(slice(1, k + 1) for k in n)

        def haloed(a, extra=()):
            out = np.zeros(tuple(k + 2 for k in n) + extra, dtype=a.dtype)
            out[inner] = a
            return out

        self.diag.from_numpy(haloed(diag).astype(npr))
        self.upper.from_numpy(haloed(upper, (D,)).astype(npr))
        comp_h = -np.ones(tuple(k + 2 for k in n), dtype=np.int64)
        comp_h[inner] = component
        self.component.from_numpy(comp_h.astype(runtime.np_index()))
        if self.use_mic:
            precon = self._mic(diag, lower, upper)
        elif self.use_jacobi:
            precon = np.where(diag > 0, 1.0 / np.maximum(diag, 1e-30), 0.0)
        else:
            precon = np.zeros(n)
        precon_h = haloed(precon)
        lcoef = np.zeros((*n, D))
        for k in range(D):
            shifted = np.roll(precon_h, 1, axis=k)[inner]  # precon(I - e_k), 0 from the halo at I_k = 0
            lcoef[..., k] = lower[..., k] * shifted
        self.precon.from_numpy(precon_h.astype(npr))
        self.lcoef.from_numpy(haloed(lcoef, (D,)).astype(npr))
        if self.use_mg:
            self._setup_mg(face_open)

    def _mic(self, diag: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """MIC(0) factor, 1 / L_ii per cell, in lexicographic order (Bridson 2015, fig. 5.7, in D dimensions)."""
        real = runtime.real()
        d_f = ti.field(real, shape=self.n)
        l_f = ti.Vector.field(self.dim, real, shape=self.n)
        u_f = ti.Vector.field(self.dim, real, shape=self.n)
        out = ti.field(real, shape=self.halo)
        npr = runtime.np_real()
        d_f.from_numpy(diag.astype(npr))
        l_f.from_numpy(lower.astype(npr))
        u_f.from_numpy(upper.astype(npr))
        self._build_mic(d_f, l_f, u_f, out, MIC_TAU, MIC_SIGMA)
        return out.to_numpy()[tuple(slice(1, k + 1) for k in self.n)].astype(np.float64)

    @ti.kernel
    def _build_mic(
        self,
        diag: ti.template(),
        lower: ti.template(),
        upper: ti.template(),
        precon: ti.template(),
        tau: float,
        sigma: float,
    ):
        """precon (haloed) = 1 / sqrt(e_i), e_i = A_ii - sum_k (A_i,i-k p_i-k)^2 - tau sum_k A_i,i-k (the other upper
        couplings of i-k) p_i-k^2; a pivot e_i < sigma A_ii is replaced by A_ii."""
        ti.loop_config(serialize=True)
        for _ in range(1):
            for I in ti.grouped(ti.ndrange(*self.n)):
                d = diag[I]
                if d > 0:
                    e = d
                    for k in ti.static(range(self.dim)):
                        if I[k] > 0:
                            J = I - ti.Vector.unit(self.dim, k, ti.i32)
                            pj = precon[J + 1]
                            lw = lower[I][k]
                            other = 0.0
                            for k2 in ti.static(range(self.dim)):
                                if ti.static(k2 != k):
                                    other += upper[J][k2]
                            e -= (lw * pj) ** 2 + tau * lw * other * pj * pj
                    if e < sigma * d:
                        e = d
                    precon[I + 1] = 1.0 / ti.sqrt(e)

    # -- helpers ---------------------------------------------------------------------------------------------------
    @ti.func
    def _at(self, i, j, k):
        """The index vector of loop indices (i, j, k); k is unused in 2D."""
        return ti.Vector([i, j] if ti.static(self.dim == 2) else [i, j, k])

    @ti.func
    def _apply_A(self, v: ti.template(), b, H):
        c = v[b, H]
        nb = v[b, H + ti.Vector.unit(self.dim, 0, ti.i32)] + v[b, H - ti.Vector.unit(self.dim, 0, ti.i32)]
        for a in ti.static(range(1, self.dim)):
            e = ti.Vector.unit(self.dim, a, ti.i32)
            nb += v[b, H + e] + v[b, H - e]
        d = self.diag[H]
        return ti.select(d > 0, d * c - nb, 0.0)

    @ti.func
    def _refresh_halo(self, v: ti.template()):
        """Top-level loops copying the wrapped neighbours into the halo of periodic axes (others stay zero)."""
        for a in ti.static(range(self.dim)):
            if ti.static(self.periodic[a]):
                e = ti.Vector.unit(self.dim, a, ti.i32)
                na = ti.static(self.n[a])
                ext = ti.static(self.slabs[a])
                ti.loop_config(serialize=ti.static(self.serial))
                for b, i, j, k in ti.ndrange(self.batch, ext[0], ext[1], ext[2]):
                    H = self._at(i, j, k)
                    v[b, H] = v[b, H + na * e]
                    v[b, H + (na + 1) * e] = v[b, H + e]

    @ti.func
    def _zero_sums(self, sums: ti.template()):
        ti.loop_config(serialize=True)
        for b, c in ti.ndrange(self.batch, self.n_components):
            sums[b, c] = 0.0

    @ti.func
    def _component_sums(self, v: ti.template(), sums: ti.template()):
        """sums[b, c] = the sum of v over closed fluid region c (nothing when every region touches an open
        boundary). The mean `sums * inv_count` is what the projection P removes. On the CPU one serial pass (the
        additions into a few slots would contend between threads); on a GPU one thread per row, adding atomically."""
        if ti.static(self.n_components > 0):
            self._zero_sums(sums)
            ti.loop_config(serialize=ti.static(runtime.current()["arch"] == "cpu"))
            for b, i in ti.ndrange(self.batch, (1, self.ext[0] + 1)):
                for j in range(1, self.ext[1] + 1):
                    for k in range(1, self.ext[2] + 1):
                        H = self._at(i, j, k)
                        c = self.component[H]
                        if c >= 0:
                            sums[b, c] += v[b, H]

    @ti.func
    def _mean(self, b, H, sums: ti.template()):
        """The mean P removes at cell H of copy b (from the region sums; 0 where none is removed)."""
        out = 0.0
        if ti.static(self.n_components > 0):
            c = self.component[H]
            if c >= 0:
                out = sums[b, c] * self.inv_count[c]
        return out

    @ti.func
    def _reduce_rows(self, rows: ti.template(), out: ti.template(), take_max: ti.template()):
        """out[b] = the max (take_max) or the sum of the per-row partial results rows[b, :] (a serial top-level
        loop: one short pass per copy)."""
        ti.loop_config(serialize=True)
        for b in range(self.batch):
            acc = 0.0
            for i in range(self.ext[0]):
                if ti.static(take_max):
                    acc = ti.max(acc, rows[b, i])
                else:
                    acc += rows[b, i]
            out[b] = acc

    @ti.func
    def _residual(self, x: ti.template(), project_b: ti.template()):
        """r = bvec - A x (x's halo must be current) in one pass, with the per-copy max |r| into rmax and max |x| into
        xnorm, and (`fuse_sums`) the region sums of x into comp_sum_x. project_b: first apply P to bvec (with the
        region sums of bvec in comp_sum) and put max |P bvec| into bnorm."""
        if ti.static(self.fuse_sums):
            self._zero_sums(self.comp_sum_x)
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.ext[0]):
            m = 0.0
            mx = 0.0
            mb = 0.0
            for j in range(1, self.ext[1] + 1):
                for k in range(1, self.ext[2] + 1):
                    H = self._at(i + 1, j, k)
                    bi = self.bvec[b, H]
                    if ti.static(project_b):
                        bi -= self._mean(b, H, self.comp_sum)
                        self.bvec[b, H] = bi
                        mb = ti.max(mb, ti.abs(bi))
                    ri = bi - self._apply_A(x, b, H)
                    self.r[b, H] = ri
                    m = ti.max(m, ti.abs(ri))
                    xi = x[b, H]
                    mx = ti.max(mx, ti.abs(xi))
                    if ti.static(self.fuse_sums):
                        c = self.component[H]
                        if c >= 0:
                            self.comp_sum_x[b, c] += xi
            self.row_max[b, i] = m
            self.row_sum[b, i] = mx
            if ti.static(project_b):
                self.row_b[b, i] = mb
        ti.loop_config(serialize=True)
        for b in range(self.batch):
            m = 0.0
            mx = 0.0
            mb = 0.0
            for i in range(self.ext[0]):
                m = ti.max(m, self.row_max[b, i])
                mx = ti.max(mx, self.row_sum[b, i])
                if ti.static(project_b):
                    mb = ti.max(mb, self.row_b[b, i])
            self.rmax[b] = m
            self.xnorm[b] = mx
            if ti.static(project_b):
                self.bnorm[b] = mb

    # -- kernels: set-up, iteration, check, finish ------------------------------------------------------------------
    # Each pass over the grid costs about as much as the arithmetic in it (a solve from a good warm start takes one
    # iteration), so the set-up, the check and the finish are fused into as few passes as the data flow allows.
    @ti.kernel
    def _start(
        self, s: ti.template(), f: ti.i32, atol: float, rtol: float, adjoint: ti.i32, extrapolate: ti.i32
    ):
        """Load the right-hand side and the warm start, project, residual, tolerance."""
        if ti.static(self.fuse_sums):
            self._zero_sums(self.comp_sum)
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.ext[0]):
            for j in range(self.ext[1]):
                for k in range(self.ext[2]):
                    I = self._at(i, j, k)
                    bi = 0.0
                    if adjoint == 0:
                        self.x[b, I + 1] = s.pressure[f, b, I]
                        bi = s.pressure_rhs[f, b, I]
                    else:
                        # extrapolated from the last two adjoint solutions: the right-hand sides of consecutive
                        # steps change smoothly, and a linear guess halves the adjoint iterations
                        lam = self.lam[b, I + 1]
                        self.x[b, I + 1] = lam + ti.cast(extrapolate, float) * (lam - self.lam_prev[b, I + 1])
                        bi = s.pressure.grad[f + 1, b, I]
                    self.bvec[b, I + 1] = bi
                    if ti.static(self.fuse_sums):
                        c = self.component[I + 1]
                        if c >= 0:
                            self.comp_sum[b, c] += bi
        if ti.static(not self.fuse_sums):
            self._component_sums(self.bvec, self.comp_sum)
        self._refresh_halo(self.x)
        self._residual(self.x, True)
        # A warm start worse than zero (a residual above |b|: the previous step's pressure after a change of the
        # flow, e.g. the first step from a divergent initial velocity) is dropped: x = 0, r = b. Kept, it would
        # leave a reduction below f32's reach (the floor scales with max |x|).
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.ext[0]):
            if self.rmax[b] > self.bnorm[b]:
                for j in range(1, self.ext[1] + 1):
                    for k in range(1, self.ext[2] + 1):
                        H = self._at(i + 1, j, k)
                        self.x[b, H] = 0.0
                        self.r[b, H] = self.bvec[b, H]
        ti.loop_config(serialize=True)
        for _ in range(1):
            n = 0
            for b in range(self.batch):
                mx = self.xnorm[b]
                if self.rmax[b] > self.bnorm[b]:
                    self.rmax[b] = self.bnorm[b]
                    mx = 0.0
                    self.xnorm[b] = 0.0
                    if ti.static(self.fuse_sums):
                        for c in range(self.n_components):
                            self.comp_sum_x[b, c] = 0.0
                # the rounding floor: b - A x cannot be computed more accurately than eps 4 D max|x|
                self.tol[b] = ti.max(ti.max(atol, rtol * self.bnorm[b]), ti.static(self.rounding) * mx)
                self.restart[b] = 1.0
                self.rz[b] = 0.0
                self.iters[b] = 0
                self.done[b] = 0.0
                self.rbest[b] = self.rmax[b]
                self.rcheck[b] = self.rmax[b]
                self.since_check[b] = 0
                self.restarts[b] = 0
                a = self.rmax[b] > self.tol[b]
                self.active[b] = ti.select(a, 1.0, 0.0)
                n += ti.cast(a, ti.i32)
            self.flags[1] = n

    @ti.kernel
    def _precondition_jacobi(self):
        """z = M^-1 r for the diagonal (or identity) preconditioner."""
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.ext[0]):
            for j in range(1, self.ext[1] + 1):
                for k in range(1, self.ext[2] + 1):
                    H = self._at(i + 1, j, k)
                    zi = self.r[b, H]
                    if ti.static(self.use_jacobi):
                        zi *= self.precon[H]
                    self.z[b, H] = zi

    @ti.kernel
    def _precondition_mic(self):
        """z = M^-1 r, M = L L^T: forward substitution (lexicographic; q kept in z), then backward."""
        ti.loop_config(serialize=ti.static(self.serial))
        for b in range(self.batch):
            for i in range(1, self.ext[0] + 1):
                for j in range(1, self.ext[1] + 1):
                    for k in range(1, self.ext[2] + 1):
                        H = self._at(i, j, k)
                        lc = self.lcoef[H]
                        t = self.r[b, H] + lc[0] * self.z[b, H - ti.Vector.unit(self.dim, 0, ti.i32)]
                        for a in ti.static(range(1, self.dim)):
                            t += lc[a] * self.z[b, H - ti.Vector.unit(self.dim, a, ti.i32)]
                        self.z[b, H] = t * self.precon[H]
        ti.loop_config(serialize=ti.static(self.serial))
        for b in range(self.batch):
            for i_ in range(self.ext[0]):
                for j_ in range(self.ext[1]):
                    for k_ in range(self.ext[2]):
                        H = self._at(self.ext[0] - i_, self.ext[1] - j_, self.ext[2] - k_)
                        uc = self.upper[H]
                        pi = self.precon[H]
                        t = uc[0] * self.z[b, H + ti.Vector.unit(self.dim, 0, ti.i32)]
                        for a in ti.static(range(1, self.dim)):
                            t += uc[a] * self.z[b, H + ti.Vector.unit(self.dim, a, ti.i32)]
                        self.z[b, H] = (self.z[b, H] + pi * t) * pi

    @ti.kernel
    def _direction(self):
        """rz_new = r . z, beta = rz_new / rz (0 after a restart), p = z + beta p (inactive copies keep p)."""
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.ext[0]):
            acc = 0.0
            for j in range(1, self.ext[1] + 1):
                for k in range(1, self.ext[2] + 1):
                    H = self._at(i + 1, j, k)
                    acc += self.r[b, H] * self.z[b, H]
            self.row_sum[b, i] = acc
        ti.loop_config(serialize=True)
        for b in range(self.batch):
            acc = 0.0
            for i in range(self.ext[0]):
                acc += self.row_sum[b, i]
            beta = 0.0
            if self.restart[b] == 0.0 and self.rz[b] != 0.0:
                beta = acc / self.rz[b]
            self.row_sum[b, 0] = beta  # reused below as this copy's beta
            if self.active[b] > 0:
                self.rz[b] = acc
                self.restart[b] = 0.0
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.ext[0]):
            beta = self.row_sum[b, 0]
            if self.active[b] > 0:
                for j in range(1, self.ext[1] + 1):
                    for k in range(1, self.ext[2] + 1):
                        H = self._at(i + 1, j, k)
                        self.p[b, H] = self.z[b, H] + beta * self.p[b, H]
        self._refresh_halo(self.p)

    @ti.kernel
    def _update(self, first: ti.template()):
        """Ap, alpha = rz / p.Ap, x += alpha p, r -= alpha Ap, with max |r|, max |x| and (`fuse_sums`) the region
        sums of x (inactive copies: alpha = 0). first: the first iteration of a solve, whose direction is z itself
        (every copy has just started): p = z and rz = r.z are taken here, in place of a `_direction` pass."""
        if ti.static(first):
            self._refresh_halo(self.z)
        d = ti.static(self._search_direction(first))
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.ext[0]):
            acc = 0.0
            rz = 0.0
            for j in range(1, self.ext[1] + 1):
                for k in range(1, self.ext[2] + 1):
                    H = self._at(i + 1, j, k)
                    q = self._apply_A(d, b, H)
                    di = d[b, H]
                    self.Ap[b, H] = q
                    acc += di * q
                    if ti.static(first):
                        rz += self.r[b, H] * di
                        self.p[b, H] = di
            self.row_sum[b, i] = acc
            if ti.static(first):
                self.row_b[b, i] = rz
        self._reduce_rows(self.row_sum, self.pAp, False)
        if ti.static(first):
            self._reduce_rows(self.row_b, self.rz, False)
        if ti.static(self.fuse_sums):
            self._zero_sums(self.comp_sum_x)
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.ext[0]):
            alpha = 0.0
            if self.active[b] > 0 and self.pAp[b] > 0:
                alpha = self.rz[b] / self.pAp[b]
            m = 0.0
            mx = 0.0
            for j in range(1, self.ext[1] + 1):
                for k in range(1, self.ext[2] + 1):
                    H = self._at(i + 1, j, k)
                    xi = self.x[b, H] + alpha * self.p[b, H]
                    self.x[b, H] = xi
                    ri = self.r[b, H] - alpha * self.Ap[b, H]
                    self.r[b, H] = ri
                    m = ti.max(m, ti.abs(ri))
                    mx = ti.max(mx, ti.abs(xi))
                    if ti.static(self.fuse_sums):
                        c = self.component[H]
                        if c >= 0:
                            self.comp_sum_x[b, c] += xi
            self.row_max[b, i] = m
            self.row_x[b, i] = mx
        self._reduce_rows(self.row_max, self.rmax, True)
        self._reduce_rows(self.row_x, self.xmax, True)
        ti.loop_config(serialize=True)
        for _ in range(1):
            confirm = 0
            running = 0
            for b in range(self.batch):
                a = self.active[b] > 0
                self.done[b] = 0.0
                if a:
                    self.iters[b] += 1
                    self.restart[b] = 0.0
                    # broken down (see DIVERGENCE), or converged: the true residual decides, except right after a
                    # residual pass, when the recursive residual's distance from the true one is the rounding of
                    # one update (estimated by `_drift`): below the tolerance by more than that, the copy stops
                    broke = self.pAp[b] <= 0 or self.rmax[b] > ti.static(DIVERGENCE) * self.rbest[b]
                    tol = ti.max(self.tol[b], ti.static(self.rounding) * self.xmax[b])
                    drift = self._drift(b)
                    self.drift[b] = drift
                    if self.since_check[b] == 0 and not broke and self.rmax[b] + drift <= tol:
                        self.tol[b] = tol
                        self.active[b] = 0.0
                        self.counters[5] += 1
                    elif self.rmax[b] <= self.tol[b] or broke:
                        self.done[b] = 1.0
                        confirm += 1
                    self.since_check[b] += 1
                    self.rbest[b] = ti.min(self.rbest[b], self.rmax[b])
                running += ti.cast(self.active[b] > 0, ti.i32)
            self.flags[0] = ti.select(confirm > 0, confirm, ti.select(running > 0, 0, -1))

    def _search_direction(self, first):
        """Not a kernel: the field `_update` steps along."""
        return self.z if first else self.p

    @ti.func
    def _drift(self, b):
        """An estimate of max |true - recursive residual| one update after a residual pass, to first order: the
        rounding of r0 = b - A x0, of alpha A p, of r0 - alpha Ap and of x0 + alpha p, each eps times the magnitudes
        it combines (|A| <= 4 D, |alpha p| <= |x0| + |x1|, |alpha Ap| <= |r0| + |r1|):
        eps (|b| + 8 D (|x0| + |x1|) + 2 |r0|). Not a worst-case bound (a sum of 2 D + 1 terms can round to 2 D
        times eps its magnitude); the differences measured stay far below it: at most 0.26 of it on smoke_target2d
        and in `test_recursive_residual_stays_within_its_rounding_estimate` (f32, warm starts and zero starts)."""
        return ti.static(self.eps) * (
            self.bnorm[b] + ti.static(8.0 * self.dim) * (self.xnorm[b] + self.xmax[b]) + 2.0 * self.rcheck[b]
        )

    @ti.kernel
    def _true_residual(self):
        """r = b - A x from scratch (confirms the recursive residual, which drifts in low precision), and the
        rounding floor of the tolerance raised to the current max|x| (a solve started from zero has no floor yet)."""
        self._refresh_halo(self.x)
        self._residual(self.x, False)
        # the copies whose recursive residual reached the tolerance stop if the true one confirms it, and restart
        # (the next direction is the preconditioned residual) if it does not
        ti.loop_config(serialize=True)
        for _ in range(1):
            n = 0
            for b in range(self.batch):
                self.tol[b] = ti.max(self.tol[b], ti.static(self.rounding) * self.xnorm[b])
                self.rcheck[b] = self.rmax[b]
                self.since_check[b] = 0
                if self.done[b] > 0:
                    if self.rmax[b] <= self.tol[b]:
                        self.active[b] = 0.0
                    elif self.restarts[b] >= ti.static(MAX_RESTARTS):
                        self.active[b] = 0.0  # at the precision floor: stop, counted as unconverged
                    else:
                        self.restart[b] = 1.0
                        self.restarts[b] += 1
                        self.rbest[b] = self.rmax[b]
                    self.done[b] = 0.0
                n += ti.cast(self.active[b] > 0, ti.i32)
            self.flags[1] = n

    @ti.kernel
    def _finish(self, s: ti.template(), f: ti.i32, adjoint: ti.i32):
        """Write P x out: the pressure of frame f + 1, or the adjoint solution (kept for the next warm start). With
        `fuse_sums`, the region sums of x are always current: the residual passes compute them, the update keeps them,
        and a dropped warm start zeroes them with x."""
        if ti.static(not self.fuse_sums):
            self._component_sums(self.x, self.comp_sum_x)
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, self.ext[0]):
            for j in range(self.ext[1]):
                for k in range(self.ext[2]):
                    I = self._at(i, j, k)
                    xi = self.x[b, I + 1] - self._mean(b, I + 1, self.comp_sum_x)
                    if adjoint == 0:
                        s.pressure[f + 1, b, I] = xi
                    else:
                        self.lam_prev[b, I + 1] = self.lam[b, I + 1]
                        self.lam[b, I + 1] = xi
                        s.pressure_rhs.grad[f, b, I] += xi
        ti.loop_config(serialize=True)
        for b in range(self.batch):
            self.report[b, 0] = ti.cast(self.iters[b], float)
            self.report[b, 1] = self.rmax[b]
            self.report[b, 2] = self.tol[b]
            k = 2 * adjoint
            self.counters[k] += 1
            self.counters[k + 1] += ti.cast(self.iters[b], ti.i64)
            self.counters[4] += ti.cast(self.rmax[b] > self.tol[b], ti.i64)

    # -- driving a solve ---------------------------------------------------------------------------------------------
    def launchers(self, s):
        """(solve(f, atol, rtol, maxit), solve_adjoint(f, atol, rtol, maxit)) for the step loop."""
        start = FastKernel(self._start, s, types="iffii")
        finish = FastKernel(self._finish, s, types="ii")
        if self.use_mg:
            precondition = FastKernel(self._precondition_mg, types="")
        elif self.use_mic:
            precondition = FastKernel(self._precondition_mic, types="")
        else:
            precondition = FastKernel(self._precondition_jacobi, types="")
        direction = FastKernel(self._direction, types="")
        update_first = FastKernel(self._update, True, types="")
        update = FastKernel(self._update, False, types="")
        true_residual = FastKernel(self._true_residual, types="")
        flags = self.flags

        def run(f, atol, rtol, maxit, adjoint):
            # The iteration's bookkeeping (which copies are active, iteration counts, statistics) stays on the
            # device; Python reads one integer per iteration (see `flags`).
            extrapolate = 0
            if adjoint:
                extrapolate = int(self.adjoint_solves >= 2)
                self.adjoint_solves += 1
            start(f, atol, rtol, adjoint, extrapolate)
            active = flags[1]
            it = 0
            while active > 0 and it < maxit:
                precondition()
                if it == 0:
                    update_first()
                else:
                    direction()
                    update()
                it += 1
                status = flags[0]
                if status > 0:
                    true_residual()  # confirm; a copy whose true residual disagrees restarts
                    active = flags[1]
                elif status < 0:
                    active = 0
            finish(f, adjoint)

        return (
            lambda f, atol, rtol, maxit: run(f, atol, rtol, maxit, 0),
            lambda f, atol, rtol, maxit: run(f, atol, rtol, maxit, 1),
        )

    def reset_adjoint(self) -> None:
        self.lam.fill(0)
        self.lam_prev.fill(0)
        self.adjoint_solves = 0

    def stats(self) -> dict:
        """Solve counts (a solve per copy) and iterations since the last `reset_stats`, solves that ended above
        their tolerance, solves that stopped without the confirming true-residual pass (`early_stops`, see
        `_drift`), and the last solve's iterations and max residual per copy."""
        t = self.counters.to_numpy()
        rep = self.report.to_numpy()
        return {
            "solves": int(t[0]),
            "iterations": int(t[1]),
            "adjoint_solves": int(t[2]),
            "adjoint_iterations": int(t[3]),
            "unconverged": int(t[4]),
            "early_stops": int(t[5]),
            "last_iterations": rep[:, 0].astype(int).tolist(),
            "last_residual": rep[:, 1].astype(float).tolist(),
        }

    def reset_stats(self) -> None:
        self.counters.fill(0)
