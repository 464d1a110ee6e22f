"""The multigrid V-cycle preconditioner of the pressure solve (see `solver.py`'s docstring): the hierarchy of
aggregated levels and their Galerkin operators, red-black Gauss-Seidel sweeps, restriction and prolongation.
`Multigrid` is a mixin of `PressureSolver`."""

import itertools

import numpy as np
import taichi as ti

from ... import runtime

#: multigrid: Gauss-Seidel sweeps per level on the way down and up, the scaling of the coarse-grid correction, and
#: the symmetric sweep pairs on the coarsest level (at most 4^D cells there)
MG_SWEEPS = 1
#: the coarse correction's scaling per dimension, chosen by the condition number of the preconditioned operator
#: (the V-cycle assembled column by column in f64, closed box; measured with the red-black smoother):
#: 2D 64^2: 3.30 at 1.5, 1.64 at 2.0; 32^2: 2.49 / 1.83 / 1.59 / 1.97 at 1.5 / 1.75 / 2.0 / 2.25;
#: 3D 16^3: 2.82 / 2.34 / 2.28 / 2.49 at 1.25 / 1.5 / 1.75 / 2.0
MG_ALPHA = {2: 2.0, 3: 1.75}
MG_COARSE_SWEEPS = 8
#: child offsets of a coarse cell
_CHILDREN = {d: tuple(itertools.product((0, 1), repeat=d)) for d in (2, 3)}

#: on the CPU, below this many cells (times copies) the row loops run serially (`runtime.serial_loops`)
SERIAL_BELOW = 262144
#: on the CPU the multigrid sweeps run per copy at every size: as parallel loops over rows (what GPUs run) they
#: were no faster at 512^2 (smoke_target2d on 2 cores: 14.9 s per iteration, against 14.9-15.8 s)
SERIAL_SWEEPS_BELOW = 1 << 62


class Multigrid:
    def _setup_mg(self, face_open: np.ndarray) -> None:
        """The multigrid hierarchy (see the module docstring); coarsening stops below 8 cells on an axis or at an
        odd periodic axis."""
        D, B = self.dim, self.batch
        real, npr = runtime.real(), runtime.np_real()
        weights = [
            [
                face_open[(*[slice(0, m + (1 if a == k else 0)) for a, m in enumerate(self.n)], k)]
                for k in range(D)
            ]
        ]
        sizes = [self.n]
        while True:
            n = sizes[-1]
            if min(n) < 8 or any(p and m % 2 for p, m in zip(self.periodic, n, strict=False)):
                break
            nc = tuple(-(-m // 2) for m in n)
            coarse = []
            for k in range(D):
                w = weights[-1][k]  # shape: n_k + 1 along k, n_a along a != k
                w = np.take(w, np.minimum(2 * np.arange(nc[k] + 1), n[k]), axis=k)
                for a in range(D):
                    if a != k:
                        pad = [(0, 0)] * D
                        pad[a] = (0, 2 * nc[a] - n[a])
                        w = np.pad(w, pad)
                        shape = list(w.shape)
                        w = w.reshape(shape[:a] + [nc[a], 2] + shape[a + 1 :]).sum(axis=a + 1)
                coarse.append(w)
            weights.append(coarse)
            sizes.append(nc)
        self.levels = sizes
        # Each level has its own (haloed) arrays, all in one SNode tree. Level 0 is the fine grid itself: its
        # right-hand side is the CG residual r and its solution is written straight into z, so the V-cycle needs no
        # copies in and out of the hierarchy.
        self.mg_w, self.mg_invd, self.mg_xs, self.mg_bs = [], [], [self.z], [self.r]
        builder = ti.FieldsBuilder()
        host = []
        for lvl, (m, ws) in enumerate(zip(sizes, weights, strict=False)):
            hl = tuple(k + 2 for k in m)
            w_h = np.zeros((*hl, D))
            diag = np.zeros(m)
            for k in range(D):
                region = tuple(slice(1, 1 + ws[k].shape[a]) for a in range(D))
                w_h[(*region, k)] = ws[k]
                lo = ws[k][tuple(slice(0, mm) for mm in m)]
                hi_idx = [slice(0, mm) for mm in m]
                hi_idx[k] = slice(1, m[k] + 1)
                diag += lo + ws[k][tuple(hi_idx)]
            invd = np.zeros(hl)
            invd[tuple(slice(1, k + 1) for k in m)] = np.where(diag > 0, 1.0 / np.maximum(diag, 1e-30), 0.0)
            w_f, invd_f = ti.Vector.field(D, real), ti.field(real)
            builder.dense(ti.axes(*range(D)), hl).place(w_f, invd_f)
            self.mg_w.append(w_f)
            self.mg_invd.append(invd_f)
            host.append((w_f, w_h, invd_f, invd))
            if lvl > 0:
                x_f, b_f = ti.field(real), ti.field(real)
                builder.dense(ti.axes(*range(D + 1)), (B, *hl)).place(x_f, b_f)
                self.mg_xs.append(x_f)
                self.mg_bs.append(b_f)
        self._mg_tree = builder.finalize()
        for w_f, w_h, invd_f, invd in host:
            w_f.from_numpy(w_h.astype(npr))
            invd_f.from_numpy(invd.astype(npr))
        self.mg_ext = [(*m, 1) if D == 2 else tuple(m) for m in sizes]
        # per level: sweep each copy in one loop (on the CPU; on GPUs the coarsest level), or each half-sweep as a
        # parallel loop over (copy, row) (`_mg_sweep`)
        self.mg_serial = [runtime.serial_loops(B * int(np.prod(m)), SERIAL_SWEEPS_BELOW) for m in sizes[:-1]]
        self.mg_serial.append(True)
        self.serial_copies = runtime.serial_loops(B, SERIAL_BELOW)  # a loop over the copies alone
        self.mg_slabs = [
            [tuple(1 if c == a else m[c] + 2 for c in range(D)) + ((1,) if D == 2 else ()) for a in range(D)]
            for m in sizes
        ]

    # -- multigrid V-cycle (static over levels: each level's loops are their own top-level loops) -----------------
    @ti.func
    def _mg_halo_copy(self, b, lvl: ti.template()):
        """Copy the wrapped neighbours of copy b into the halo of each periodic axis of a level (not a top-level
        loop: callable inside a sweep)."""
        x = ti.static(self.mg_xs[lvl])
        for a in ti.static(range(self.dim)):
            if ti.static(self.periodic[a]):
                e = ti.Vector.unit(self.dim, a, ti.i32)
                na = ti.static(self.levels[lvl][a])
                ext = ti.static(self.mg_slabs[lvl][a])
                for i in range(ext[0]):
                    for j in range(ext[1]):
                        for k in range(ext[2]):
                            H = self._at(i, j, k)
                            x[b, H] = x[b, H + na * e]
                            x[b, H + (na + 1) * e] = x[b, H + e]

    @ti.func
    def _mg_halo(self, lvl: ti.template()):
        if ti.static(self.any_periodic):
            ti.loop_config(serialize=True)
            for b in range(self.batch):
                self._mg_halo_copy(b, lvl)

    @ti.func
    def _mg_relax(self, b, lvl: ti.template(), H, mode: ti.template()):
        """One Gauss-Seidel update of cell H: x = (b + sum w x_neighbour) / d. mode 0: every neighbour counts;
        1: x is zero everywhere (the first half-sweep from zero: no neighbour counts); 2: the half-sweep after that
        (the halo of a periodic axis is stale then, so the couplings across the wrap count as zero, as the
        not-yet-swept values they stand for)."""
        x, rhs = ti.static(self.mg_xs[lvl], self.mg_bs[lvl])
        w, invd = ti.static(self.mg_w[lvl], self.mg_invd[lvl])
        acc = rhs[b, H]
        if ti.static(mode != 1):
            for a in ti.static(range(self.dim)):
                e = ti.Vector.unit(self.dim, a, ti.i32)
                lo = w[H][a] * x[b, H - e]
                hi = w[H + e][a] * x[b, H + e]
                if ti.static(mode == 2 and self.periodic[a]):
                    lo = lo * ti.cast(H[a] > 1, float)
                    hi = hi * ti.cast(H[a] < ti.static(self.levels[lvl][a]), float)
                acc += lo + hi
        x[b, H] = acc * invd[H]

    @ti.func
    def _mg_half_sweep(self, b, lvl: ti.template(), color, mode: ti.template()):
        """Relax the cells of one colour (the parity of the sum of the haloed index): they couple only to cells of
        the other colour, so the updates of a half-sweep are independent of each other (no dependency chain from
        one cell to the next, which made a lexicographic sweep latency-bound)."""
        for i in range(1, ti.static(self.mg_ext[lvl][0]) + 1):
            self._mg_half_row(b, lvl, color, mode, i)

    @ti.func
    def _mg_half_row(self, b, lvl: ti.template(), color, mode: ti.template(), i):
        """The cells of one colour in row i (2D) or slab i (3D) of a level."""
        ext = ti.static(self.mg_ext[lvl])
        if ti.static(self.dim == 2):
            j0 = 1 + (color + i + 1) % 2
            for jj in range((ext[1] - j0 + 2) // 2):
                self._mg_relax(b, lvl, ti.Vector([i, j0 + 2 * jj]), mode)
        else:
            for j in range(1, ext[1] + 1):
                k0 = 1 + (color + i + j + 1) % 2
                for kk in range((ext[2] - k0 + 2) // 2):
                    self._mg_relax(b, lvl, ti.Vector([i, j, k0 + 2 * kk]), mode)

    @ti.func
    def _mg_sweep(
        self, lvl: ti.template(), forward: ti.template(), first: ti.template(), repeat: ti.template()
    ):
        """`repeat` red-black Gauss-Seidel sweeps over a level: red then black when `forward`, black then red
        otherwise (the transpose), alternating after the first. `first`: x is zero before the first sweep."""
        if ti.static(not first):
            self._mg_halo(lvl)
        if ti.static(self.mg_serial[lvl]):
            # the CPU, and the coarsest level: each copy's sweeps in one iteration of one loop (parallel over copies
            # off the CPU)
            ti.loop_config(serialize=ti.static(self.serial_copies))
            for b in range(self.batch):  # sequential within a copy
                for s_ in range(repeat):
                    # the halo of a periodic axis holds the values from before each sweep: the couplings across the
                    # wrap use them in both half-sweeps, so a sweep and its reverse are transposes of each other
                    if ti.static(self.any_periodic):
                        if s_ > 0:
                            self._mg_halo_copy(b, lvl)
                    for half in ti.static(range(2)):
                        color = (half + s_ + ti.static(0 if forward else 1)) % 2
                        if ti.static(first):
                            if s_ == 0:
                                self._mg_half_sweep(b, lvl, color, half + 1)
                            else:
                                self._mg_half_sweep(b, lvl, color, 0)
                        else:
                            self._mg_half_sweep(b, lvl, color, 0)
        else:
            # GPUs: every half-sweep is a parallel loop over (copy, row), since the cells of one colour are
            # independent; the same updates as above, in another order
            for s_ in ti.static(range(repeat)):
                if ti.static(self.any_periodic and s_ > 0):
                    for b in range(self.batch):
                        self._mg_halo_copy(b, lvl)
                for half in ti.static(range(2)):
                    for b, i in ti.ndrange(self.batch, (1, ti.static(self.mg_ext[lvl][0]) + 1)):
                        self._mg_half_row(
                            b,
                            lvl,
                            ti.static((half + s_ + (0 if forward else 1)) % 2),
                            ti.static(half + 1 if first and s_ == 0 else 0),
                            i,
                        )

    def _restricted_children(self):
        """The children whose residual the restriction sums (not a kernel). After one red-black sweep from zero
        without periodic axes, the cells of the second colour satisfy their equations exactly (their residual is
        zero up to rounding), so only the first colour's children count: half the residuals to compute. A child
        c's colour, the parity of its haloed index 2 I_c + c + 1, is that of sum(c) + D."""
        if self.mg_sweeps == 1 and not self.any_periodic:
            return tuple(c for c in _CHILDREN[self.dim] if (sum(c) + self.dim) % 2 == 0)
        return _CHILDREN[self.dim]

    @ti.func
    def _mg_restrict(self, lvl: ti.template()):
        """b[lvl + 1] = sum over the children of the residual b - A x of level lvl."""
        self._mg_halo(lvl)
        x, rhs, w = ti.static(self.mg_xs[lvl], self.mg_bs[lvl], self.mg_w[lvl])
        coarse = ti.static(self.mg_bs[lvl + 1])
        nf = ti.static(self.levels[lvl])
        ext_c = ti.static(self.mg_ext[lvl + 1])
        ti.loop_config(serialize=ti.static(self.serial))
        for b, i in ti.ndrange(self.batch, ext_c[0]):
            for j in range(ext_c[1]):
                for k in range(ext_c[2]):
                    Ic = self._at(i, j, k)
                    total = 0.0
                    for c in ti.static(self._restricted_children()):
                        C = Ic * 2 + ti.Vector(c)
                        if all(C < ti.Vector(nf)):
                            H = C + 1
                            xc = x[b, H]
                            res = rhs[b, H]
                            for a in ti.static(range(self.dim)):
                                e = ti.Vector.unit(self.dim, a, ti.i32)
                                res -= w[H][a] * (xc - x[b, H - e]) + w[H + e][a] * (xc - x[b, H + e])
                            total += res
                    coarse[b, Ic + 1] = total

    @ti.func
    def _mg_prolong(self, lvl: ti.template()):
        """x[lvl] += alpha x[lvl + 1] of the parent (fluid cells only). Without periodic axes only the cells of colour
        0 are corrected: the up-sweep's first half-sweep (colour 1) overwrites the others without reading them."""
        x, x_c, invd = ti.static(self.mg_xs[lvl], self.mg_xs[lvl + 1], self.mg_invd[lvl])
        ext = ti.static(self.mg_ext[lvl])
        if ti.static(self.any_periodic):
            ti.loop_config(serialize=ti.static(self.serial))
            for b, i in ti.ndrange(self.batch, ext[0]):
                for j in range(ext[1]):
                    for k in range(ext[2]):
                        self._mg_correct(x, x_c, invd, b, self._at(i, j, k))
        else:
            # colour 0: the haloed index I + 1 has an even sum, so sum(I) has the parity of D
            ti.loop_config(serialize=ti.static(self.serial))
            for b, i in ti.ndrange(self.batch, ext[0]):
                if ti.static(self.dim == 2):
                    j0 = (i + 2) % 2
                    for jj in range((ext[1] - j0 + 1) // 2):
                        self._mg_correct(x, x_c, invd, b, ti.Vector([i, j0 + 2 * jj]))
                else:
                    for j in range(ext[1]):
                        k0 = (i + j + 3) % 2
                        for kk in range((ext[2] - k0 + 1) // 2):
                            self._mg_correct(x, x_c, invd, b, ti.Vector([i, j, k0 + 2 * kk]))

    @ti.func
    def _mg_correct(self, x: ti.template(), x_c: ti.template(), invd: ti.template(), b, I):
        H = I + 1
        fluid = ti.cast(invd[H] > 0, float)
        x[b, H] += ti.static(self.mg_alpha) * fluid * x_c[b, I // 2 + 1]

    @ti.kernel
    def _precondition_mg(self):
        """z = V(r): one V-cycle from zero (level 0 reads r and writes z in place)."""
        L = ti.static(len(self.levels))
        for lvl in ti.static(range(L - 1)):
            self._mg_sweep(lvl, True, True, self.mg_sweeps)
            self._mg_restrict(lvl)
        self._mg_sweep(L - 1, True, True, 2 * MG_COARSE_SWEEPS)
        for lvl_ in ti.static(range(L - 1)):
            lvl = ti.static(L - 2 - lvl_)
            self._mg_prolong(lvl)
            self._mg_sweep(lvl, False, False, self.mg_sweeps)
