"""Eulerian smoke: incompressible flow on a MAC grid in 2D or 3D, with advected scalars (density, temperature).

One step (Stam 1999, "Stable fluids", with the MAC grid of Harlow and Welch 1965), frame f -> f + 1:

1. advection of the velocity and the scalars by the velocity of frame f:
   semi-Lagrangian  q'(x) = q(x - dt u(x))  (Euler or midpoint back-trace, (bi/tri)linear interpolation), or
   MacCormack (Selle, Fedkiw, Kim, Liu and Rossignac 2008): q^ = SL(q, dt), q_ = SL(q^, -dt),
   q' = q^ + (q - q_) / 2 clamped to the min and max of the values the forward step interpolated from;
2. sources: q' += dt * rate * mask; scalars are zero in obstacles;
3. forces on the advected velocity u~ (accelerations, m/s^2), u* = u~ + dt a on the open faces:
   gravity g; buoyancy (sum over scalars k of beta_k q_k) along the up axis (the last); the per-step force
   control; vorticity confinement a = eps h (N x omega), N = grad|omega| / |grad|omega|| (Fedkiw, Stam and Jensen
   2001); explicit viscosity nu lap(u~) (stable for nu dt / h^2 <= 1 / (2 D), checked before each rollout);
4. projection: A phi = -h^2 div u* solved by preconditioned CG (`solver.py`), u' = u* - grad(phi) / h on the
   open faces, 0 on closed ones. The divergence after projection is the solver's residual: below its tolerance.

Kernels: step 1-3 and the right-hand side of 4 are one kernel (`_advance`: top-level loops over the grid; the
forces are added in the velocity advection loop when nothing else reads the advected velocity; Taichi
differentiates it), the solve is the solver's kernel (its adjoint is an adjoint solve, not the differentiated
iterations), the velocity update is `_project`. The engine's `step_launchers` gets forward = advance, solve,
project and adjoint = project^T, adjoint solve, advance^T.

Why MAC (staggered) and not collocated: on the staggered grid the discrete divergence, gradient and Laplacian are
compatible (D G = L), so the projection leaves a velocity whose discrete divergence is the solver residual, and
there is no checkerboard null space (collocated grids need an approximate projection or a wide stencil that lets
odd-even pressure modes through). Walls and obstacles are no-through conditions on individual faces. The cost is
interpolation of face-centred components, which advection needs anyway.
"""

import itertools
import math

import numpy as np
import taichi as ti

from ... import runtime
from ...engine.launch import FastKernel
from ...engine.memory import check_memory
from ...engine.state import FieldSpec
from ...engine.system import System
from ...errors import DiffsimError
from .model import SmokeModel, estimate_bytes
from .solver import PressureSolver, UnrolledCG

ADVECTION = ("semi_lagrangian", "maccormack")
BACKTRACE = ("euler", "rk2")

#: on the CPU, below this many (batch x cells), loops doing little work per cell run serially (dispatch costs more;
#: `runtime.serial_loops`)
SERIAL_BELOW_LIGHT = 262144
#: on the CPU, below this many, also the heavy loops (interpolation) run serially
SERIAL_BELOW_HEAVY = 100000

#: smoothing of |omega| and |grad |omega|| in vorticity confinement, in units of 1/s (keeps N differentiable)
VORTICITY_EPS = 1e-6

#: the 2^D corners of an interpolation cell
CORNERS = {d: tuple(itertools.product((0, 1), repeat=d)) for d in (2, 3)}


@ti.data_oriented
class SmokeSystem(System):
    """A smoke flow (`SmokeModel`) stepped with time step `dt` (s).

    advection: "maccormack" (default) or "semi_lagrangian". backtrace: "euler" (default) or "rk2" (midpoint).
    buoyancy: {scalar name: beta (m/s^2 per unit of the scalar)} along the up axis (parameters
        ``buoyancy.<name>``, default 0). gravity: (D,) m/s^2, default zero (in a closed box uniform gravity is
        balanced by pressure; buoyancy carries the physics).
    viscosity: kinematic viscosity nu (m^2/s), explicit; None compiles it out. vorticity: confinement strength eps
        (1/s); None compiles it out.
    control: {"steps": T, "hold": H, "block": k}: a per-step force field (parameter ``control.force``, m/s^2, shape
        (T, n / k ..., D)); row min(step // H, T - 1) acts at a step, each value on a block of k^D cells.
    tolerance: divergence tolerance after projection (1/s, max norm); relative_tolerance: relative to the largest
        divergence before projection; the solve stops at the larger of the two. adjoint_tolerance: relative
        tolerance of the adjoint solve. preconditioner: "mic" (default), "jacobi" or "none". max_iters: per solve.
    solver: "adjoint" (default: CG forward, adjoint CG backward) or "unrolled" (reference for tests: `unrolled_iters`
        plain CG iterations differentiated through).
    per_batch: names of the parameters that get one value per batch copy.
    requires_grad: names of the parameters that get gradients (default None: all; see `System`).
    """

    kind = "smoke"

    def __init__(
        self,
        model: SmokeModel,
        dt: float,
        advection: str = "maccormack",
        backtrace: str = "euler",
        buoyancy: dict | None = None,
        gravity=None,
        viscosity: float | None = None,
        vorticity: float | None = None,
        control: dict | None = None,
        tolerance: float = 0.0,
        relative_tolerance: float = 1e-4,
        adjoint_tolerance: float = 1e-4,
        preconditioner: str = "mg",
        max_iters: int | None = None,
        solver: str = "adjoint",
        unrolled_iters: int = 100,
        batch: int = 1,
        per_batch: tuple[str, ...] = (),
        requires_grad=None,
    ):
        super().__init__(batch, requires_grad=requires_grad)
        src = model.source
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise DiffsimError(f"must be > 0, got {dt}", where=f"{src}: dt")
        if advection not in ADVECTION:
            raise DiffsimError(
                f"unknown scheme {advection!r}; choose {', '.join(ADVECTION)}", where=f"{src}: advection"
            )
        if backtrace not in BACKTRACE:
            raise DiffsimError(
                f"unknown back-trace {backtrace!r}; choose {', '.join(BACKTRACE)}", where=f"{src}: backtrace"
            )
        if solver not in ("adjoint", "unrolled"):
            raise DiffsimError(
                f"unknown solver {solver!r}; choose adjoint or unrolled", where=f"{src}: solver"
            )
        for name, v in (
            ("tolerance", tolerance),
            ("relative_tolerance", relative_tolerance),
            ("adjoint_tolerance", adjoint_tolerance),
        ):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise DiffsimError(f"must be >= 0, got {v}", where=f"{src}: {name}")
        if tolerance == 0 and relative_tolerance == 0:
            raise DiffsimError(
                "tolerance and relative_tolerance are both 0: the solve could never stop",
                where=f"{src}: tolerance",
            )
        self.model = model
        self.dim = D = model.dim
        self.n = model.resolution
        self.h = model.h
        self.dt = float(dt)
        self.S = len(model.scalars)
        self.scalar_names = list(model.scalars)
        self.vshape = tuple(k + 1 for k in self.n)
        # loop extents over cells and over face slots, with a third extent of 1 in 2D (see `_at`)
        self.cext = (*self.n, 1) if self.dim == 2 else self.n
        self.vext = (*self.vshape, 1) if self.dim == 2 else self.vshape
        self.periodic = tuple(b == "periodic" for b in model.boundary)
        self.maccormack = advection == "maccormack"
        self.rk2 = backtrace == "rk2"
        self.advection, self.backtrace = advection, backtrace
        self.has_viscosity = viscosity is not None
        self.has_vorticity = vorticity is not None
        # forces added in the advection pass (see `_store_advected`)
        self.fuse_forces = not (self.has_vorticity or self.has_viscosity)
        self.W = 1 if D == 2 else 3  # components of the vorticity
        cells = self.batch * int(np.prod(self.n))
        self.serial_light = runtime.serial_loops(cells, SERIAL_BELOW_LIGHT)
        self.serial_heavy = runtime.serial_loops(cells, SERIAL_BELOW_HEAVY)
        self.tolerance = float(tolerance)
        self.relative_tolerance = float(relative_tolerance)
        self.adjoint_tolerance = float(adjoint_tolerance)

        item = 8 if runtime.current()["precision"] == "f64" else 4
        need = estimate_bytes(
            self.n,
            frames=2,
            batch=self.batch,
            n_scalars=self.S,
            maccormack=self.maccormack,
            vorticity=self.has_vorticity,
            viscosity=self.has_viscosity,
            precision_bytes=item,
        )
        check_memory(
            need,
            f"a {'x'.join(map(str, self.n))} grid (batch {self.batch})",
            f"{src}: {model.prefix}resolution",
            "use a smaller grid or batch",
        )

        arrays = model.finalize()
        pb = set(per_batch)
        known = {"initial.velocity", "gravity", "viscosity", "vorticity", "source.rate", "control.force"}
        known |= {f"initial.{k}" for k in self.scalar_names} | {f"buoyancy.{k}" for k in self.scalar_names}
        unknown = pb - known
        if unknown:
            raise DiffsimError(
                f"unknown parameter names {sorted(unknown)}; known: {', '.join(sorted(known))}",
                where="per_batch",
            )

        def param(name, shape, value, **kw):
            return self.add_param(name, shape, value, per_batch=name in pb, **kw)

        self.v0 = param(
            "initial.velocity",
            (*self.vshape, D),
            arrays["initial_velocity"],
            vector_dim=D,
            unit="m/s",
            doc="velocity at frame 0 on the MAC faces; [I][d] is the face between cells I - e_d and I",
        )
        self.q0 = [
            param(
                f"initial.{k}",
                self.n,
                arrays["initial_scalars"][..., i],
                unit="1",
                doc=f"{k} at frame 0 per cell",
            )
            for i, k in enumerate(self.scalar_names)
        ]
        buoyancy = dict(buoyancy or {})
        for k in buoyancy:
            model.scalar_index(k, where=f"{src}: buoyancy")
        self.buoyancy = [
            param(
                f"buoyancy.{k}",
                (),
                float(buoyancy.get(k, 0.0)),
                unit="m/s^2",
                doc=f"upward acceleration per unit of {k}",
            )
            for k in self.scalar_names
        ]
        g = np.zeros(D) if gravity is None else np.asarray(gravity, dtype=np.float64).reshape(-1)
        if g.shape != (D,):
            raise DiffsimError(
                f"must have {D} components, got {list(np.ravel(gravity))}", where=f"{src}: gravity"
            )
        self.gravity = param("gravity", (D,), g, vector_dim=D, unit="m/s^2")
        if self.has_viscosity:
            if not (isinstance(viscosity, (int, float)) and math.isfinite(viscosity) and viscosity >= 0):
                raise DiffsimError(f"must be >= 0, got {viscosity}", where=f"{src}: viscosity")
            self.viscosity = param("viscosity", (), float(viscosity), bounds=(0, None), unit="m^2/s")
        if self.has_vorticity:
            if not (isinstance(vorticity, (int, float)) and math.isfinite(vorticity) and vorticity >= 0):
                raise DiffsimError(f"must be >= 0, got {vorticity}", where=f"{src}: vorticity")
            self.vorticity = param(
                "vorticity",
                (),
                float(vorticity),
                bounds=(0, None),
                unit="1/s",
                doc="vorticity confinement strength eps",
            )
        self.n_sources = len(model.sources)
        if self.n_sources:
            self.source_rate = param(
                "source.rate",
                (self.n_sources, self.S),
                arrays["source_rates"][: self.n_sources],
                unit="1/s",
                doc="scalar added per second in each source's cells",
            )
        self._setup_control(control, src, param)

        real, npr = runtime.real(), runtime.np_real()
        self.face_open = ti.Vector.field(D, real, shape=self.vshape)
        self.face_open.from_numpy(arrays["face_open"].astype(npr))
        self.fluid = ti.field(real, shape=self.n)
        self.fluid.from_numpy((~arrays["solid"]).astype(npr))
        self.solid_np = arrays["solid"]
        self.face_open_np = arrays["face_open"]
        self.n_components = arrays["n_components"]
        self.source_mask = ti.field(real, shape=(max(self.n_sources, 1), *self.n))
        self.source_mask.from_numpy(arrays["sources"].astype(npr))
        self.solver = PressureSolver(
            self.n,
            self.batch,
            arrays["face_open"],
            arrays["component"],
            arrays["n_components"],
            self.periodic,
            preconditioner=preconditioner,
            max_iters=max_iters,
        )
        self.max_iters = self.solver.max_iters
        self.unrolled = UnrolledCG(self.solver, unrolled_iters) if solver == "unrolled" else None
        self._last_adjoint_fg = None
        self.check_stability()

    def _setup_control(self, control, src, param) -> None:
        self.has_control = control is not None
        if not self.has_control:
            return
        where = f"{src}: control"
        if not isinstance(control, dict):
            raise DiffsimError(f"must be a table with steps, hold, block; got {control!r}", where=where)
        unknown = set(control) - {"steps", "hold", "block", "value"}
        if unknown:
            raise DiffsimError(
                f"unknown keys {sorted(unknown)}; known: steps, hold, block, value", where=where
            )
        steps, hold = int(control.get("steps", 1)), int(control.get("hold", 1))
        block = control.get("block", 1)
        block = [int(block)] * self.dim if np.isscalar(block) else [int(b) for b in block]
        if steps < 1 or hold < 1 or len(block) != self.dim or min(block) < 1:
            raise DiffsimError(
                f"steps, hold and block must be >= 1 (block: one or {self.dim} entries), got "
                f"steps={steps}, hold={hold}, block={block}",
                where=where,
            )
        self.control_steps, self.control_hold, self.control_block = steps, hold, tuple(block)
        self.cshape = tuple(-(-k // bk) for k, bk in zip(self.n, block, strict=False))
        self.control = param(
            "control.force",
            (steps, *self.cshape, self.dim),
            control.get("value", 0.0),
            vector_dim=self.dim,
            unit="m/s^2",
            doc=f"force per unit mass on blocks of {'x'.join(map(str, block))} cells, "
            f"row min(step // {hold}, {steps - 1})",
        )

    # -- description --------------------------------------------------------------------------------------------
    @property
    def up(self) -> int:
        return self.dim - 1

    def viscous_limit(self) -> float:
        """Largest viscosity the explicit update takes at this dt and h: nu dt / h^2 <= 1 / (2 D)."""
        return self.h**2 / (2 * self.dim * self.dt)

    def check_stability(self) -> None:
        if self.has_viscosity:
            nu = float(np.max(self.viscosity.numpy()))
            if nu > self.viscous_limit():
                raise DiffsimError(
                    f"viscosity {nu:g} m^2/s is above the explicit stability limit h^2 / (2 D dt) = "
                    f"{self.viscous_limit():.4g} m^2/s for dt = {self.dt:g} s, h = {self.h:g} m; lower dt to "
                    f"{self.h**2 / (2 * self.dim * nu):.4g} s or below",
                    where=f"{self.model.source}: viscosity",
                )

    def instability_hint(self) -> str:
        return (
            f"dt={self.dt:g} s, h={self.h:g} m: advection is unconditionally stable, but a force or control "
            "that grows without bound, or a viscosity above h^2 / (2 D dt) "
            f"= {self.viscous_limit():.3g} m^2/s, diverges"
        )

    def field_specs(self) -> list[FieldSpec]:
        D, S = self.dim, self.S
        specs = [
            FieldSpec("velocity", self.vshape, D),
            FieldSpec("scalars", self.n, S),
            FieldSpec(
                "pressure", self.n, None
            ),  # phi = p dt / rho (m^2/s); state: it warm-starts the next solve
            FieldSpec("velocity_star", self.vshape, D, kind="scratch"),
            FieldSpec("pressure_rhs", self.n, None, kind="scratch"),
        ]
        if not self.fuse_forces:
            specs.append(FieldSpec("advected_velocity", self.vshape, D, kind="scratch"))
        if self.maccormack:
            specs += [
                FieldSpec("velocity_forward", self.vshape, D, kind="scratch"),
                FieldSpec("velocity_backward", self.vshape, D, kind="scratch"),
                FieldSpec("scalars_forward", self.n, S, kind="scratch"),
                FieldSpec("scalars_backward", self.n, S, kind="scratch"),
            ]
        if self.has_vorticity:
            specs += [
                FieldSpec("center_velocity", self.n, D, kind="scratch"),
                FieldSpec("vorticity_field", self.n, self.W, kind="scratch"),
                FieldSpec("confinement", self.n, D, kind="scratch"),
            ]
        return specs

    def scalar_index(self, name: str) -> int:
        return self.model.scalar_index(name, where="scalar")

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

    # -- kernels ------------------------------------------------------------------------------------------------
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
    def _star_faces(self, s: ti.template(), f, fg, b, I, Ic, adv):
        """u* of face slot I: the advected velocity adv plus dt times the forces (closed faces 0)."""
        return ti.Vector(
            [
                (adv[d] + ti.static(self.dt) * self._acceleration(s, f, fg, b, Ic, d)) * self.face_open[I][d]
                for d in ti.static(range(self.dim))
            ]
        )

    @ti.func
    def _store_advected(self, s: ti.template(), f, fg, b, I, Ic, adv):
        """Store the advected velocity of face slot I. Without vorticity confinement and viscosity (which read the
        advected field at neighbouring faces) the forces are added here and u* stored directly: one pass over the
        faces fewer, forward and in reverse."""
        if ti.static(self.fuse_forces):
            s.velocity_star[f, b, I] = self._star_faces(s, f, fg, b, I, Ic, adv)
        else:
            s.advected_velocity[f, b, I] = adv

    @ti.kernel
    def _advance(self, s: ti.template(), f: ti.i32, fg: ti.i32):
        """Advection, sources, forces and the projection's right-hand side: frame f -> scratch of f, scalars f+1.
        The scalars go first: the buoyancy in the forces reads the advected ones."""
        if ti.static(not self.maccormack):
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
        else:
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
                        lo, hi = self._cell_bounds(
                            s.scalars, f, b, self._cell_departure(s.velocity, f, b, I, 1)
                        )
                        q = s.scalars_forward[f, b, I] + 0.5 * (
                            s.scalars[f, b, I] - s.scalars_backward[f, b, I]
                        )
                        s.scalars[f + 1, b, I] = (
                            ti.min(ti.max(q, lo), hi) + self._sources(b, I)
                        ) * self.fluid[I]
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

        if ti.static(not self.fuse_forces):
            ti.loop_config(serialize=ti.static(self.serial_heavy))
            for b, i0 in ti.ndrange(self.batch, self.vext[0]):
                for i1 in range(self.vext[1]):
                    for i2 in range(self.vext[2]):
                        I = self._at(i0, i1, i2)
                        Ic = self._canonical(I)
                        adv = s.advected_velocity[f, b, Ic]
                        s.velocity_star[f, b, I] = self._star_faces(s, f, fg, b, I, Ic, adv)

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

    # -- analysis -----------------------------------------------------------------------------------------------
    def divergence(self, velocity: np.ndarray) -> np.ndarray:
        """Discrete divergence (1/s) per cell of MAC velocities ``(..., *(n + 1), D)``, 0 in solid cells."""
        v = np.asarray(velocity, dtype=np.float64)
        lead = v.ndim - self.dim - 1
        out = np.zeros(v.shape[:lead] + self.n)
        for d in range(self.dim):
            comp = v[..., d]
            lo = [slice(None)] * lead + [slice(0, k) for k in self.n]
            hi = list(lo)
            hi[lead + d] = slice(1, self.n[d] + 1)
            out += comp[tuple(hi)] - comp[tuple(lo)]
        return out / self.h * (~self.solid_np)

    def total(self, scalars: np.ndarray, name: str = "density") -> np.ndarray:
        """Integral of a scalar over the domain (units of the scalar times m^D), per leading index."""
        k = self.scalar_index(name)
        q = np.asarray(scalars, dtype=np.float64)[..., k]
        return q.reshape(*q.shape[: q.ndim - self.dim], -1).sum(axis=-1) * self.h**self.dim

    def face_weights(self) -> np.ndarray:
        """(*(n + 1), D): 1 for each distinct face (0 on padding and on the duplicate face n of a periodic axis)."""
        w = np.zeros((*self.vshape, self.dim))
        for d in range(self.dim):
            region = [slice(0, k) for k in self.n]
            region[d] = slice(0, self.n[d] + (0 if self.periodic[d] else 1))
            w[(*region, d)] = 1.0
        return w

    def energy(self, traj: dict) -> np.ndarray:
        """Kinetic energy per unit density, 1/2 sum over faces of u^2 h^D (m^{D+2}/s^2), per frame and copy."""
        v = np.asarray(traj["velocity"], dtype=np.float64) ** 2 * self.face_weights()
        return 0.5 * np.sum(v.reshape(*v.shape[:2], -1), axis=-1) * self.h**self.dim
