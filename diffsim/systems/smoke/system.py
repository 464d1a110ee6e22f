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

import math

import numpy as np
import taichi as ti

from ... import runtime
from ...engine.memory import check_memory
from ...engine.state import FieldSpec
from ...engine.system import ParamSpec, System, default_gravity
from ...errors import DiffsimError
from .kernels import SmokeKernels
from .model import SmokeModel, estimate_bytes
from .solver import PressureSolver
from .unrolled import UnrolledCG

ADVECTION = ("semi_lagrangian", "maccormack")
BACKTRACE = ("euler", "rk2")

#: on the CPU, below this many (batch x cells), loops doing little work per cell run serially (dispatch costs more;
#: `runtime.serial_loops`)
SERIAL_BELOW_LIGHT = 262144
#: on the CPU, below this many, also the heavy loops (interpolation) run serially
SERIAL_BELOW_HEAVY = 100000


def _check_options(src: str, advection: str, backtrace: str, solver: str, tolerances) -> None:
    """Refuse an unknown advection scheme, back-trace or solver, and negative or all-zero tolerances."""
    tolerance, relative_tolerance, adjoint_tolerance = tolerances
    if advection not in ADVECTION:
        raise DiffsimError(
            f"unknown scheme {advection!r}; choose {', '.join(ADVECTION)}", where=f"{src}: advection"
        )
    if backtrace not in BACKTRACE:
        raise DiffsimError(
            f"unknown back-trace {backtrace!r}; choose {', '.join(BACKTRACE)}", where=f"{src}: backtrace"
        )
    if solver not in ("adjoint", "unrolled"):
        raise DiffsimError(f"unknown solver {solver!r}; choose adjoint or unrolled", where=f"{src}: solver")
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


def parameter_table(scalar_names) -> tuple[ParamSpec, ...]:
    """The smoke system's parameters, in the order they are built; each advected scalar adds ``initial.<name>`` and
    ``buoyancy.<name>``."""
    return (
        ParamSpec(
            "initial.velocity",
            "v0",
            "m/s",
            vector=True,
            doc="velocity at frame 0 on the MAC faces; [I][d] is the face between cells I - e_d and I",
        ),
        *(ParamSpec(f"initial.{k}", None, "1", doc=f"{k} at frame 0 per cell") for k in scalar_names),
        *(
            ParamSpec(f"buoyancy.{k}", None, "m/s^2", doc=f"upward acceleration per unit of {k}")
            for k in scalar_names
        ),
        ParamSpec("gravity", "gravity", "m/s^2", vector=True),
        ParamSpec("viscosity", "viscosity", "m^2/s", bounds=(0, None)),
        ParamSpec(
            "vorticity", "vorticity", "1/s", bounds=(0, None), doc="vorticity confinement strength eps"
        ),
        ParamSpec("source.rate", "source_rate", "1/s", doc="scalar added per second in each source's cells"),
        ParamSpec("control.force", "control", "m/s^2", vector=True),
    )


@ti.data_oriented
class SmokeSystem(SmokeKernels, System):
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
        _check_options(src, advection, backtrace, solver, (tolerance, relative_tolerance, adjoint_tolerance))
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

        self._check_memory(src)

        arrays = model.finalize()
        buoyancy = dict(buoyancy or {})
        for k in buoyancy:
            model.scalar_index(k, where=f"{src}: buoyancy")
        for name, value in (("viscosity", viscosity), ("vorticity", vorticity)):
            if value is not None and not (
                isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
            ):
                raise DiffsimError(f"must be >= 0, got {value}", where=f"{src}: {name}")
        self.n_sources = len(model.sources)
        values = {"initial.velocity": ((*self.vshape, D), arrays["initial_velocity"])}
        for i, k in enumerate(self.scalar_names):
            values[f"initial.{k}"] = (self.n, arrays["initial_scalars"][..., i])
        for k in self.scalar_names:
            values[f"buoyancy.{k}"] = ((), float(buoyancy.get(k, 0.0)))
        values["gravity"] = ((D,), default_gravity(np.zeros(D) if gravity is None else gravity, D, src))
        if self.has_viscosity:
            values["viscosity"] = ((), float(viscosity))
        if self.has_vorticity:
            values["vorticity"] = ((), float(vorticity))
        if self.n_sources:
            values["source.rate"] = ((self.n_sources, self.S), arrays["source_rates"][: self.n_sources])
        self._setup_control(control, src, values)
        params = self.build_params(parameter_table(self.scalar_names), values, per_batch)
        self.q0 = [params[f"initial.{k}"] for k in self.scalar_names]
        self.buoyancy = [params[f"buoyancy.{k}"] for k in self.scalar_names]

        self._build_grid_fields(arrays, preconditioner, max_iters, solver, unrolled_iters)
        self._last_adjoint_fg = None
        self.check_stability()

    def _check_memory(self, src: str) -> None:
        """Refuse a grid whose fields would not fit in memory, before any is allocated."""
        model = self.model
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

    def _build_grid_fields(
        self, arrays: dict, preconditioner, max_iters, solver: str, unrolled_iters: int
    ) -> None:
        """The grid's constant fields (open faces, fluid cells, source masks) and the pressure solver."""
        D = self.dim
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

    def _setup_control(self, control, src, values: dict) -> None:
        """Check the force control's table and add the (shape, value, doc) of ``control.force`` to `values`."""
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
        values["control.force"] = (
            (steps, *self.cshape, self.dim),
            control.get("value", 0.0),
            f"force per unit mass on blocks of {'x'.join(map(str, block))} cells, row min(step // {hold}, {steps - 1})",
        )

    # -- description --------------------------------------------------------------------------------------------
    @property
    def up(self) -> int:
        return self.dim - 1

    def viscous_limit(self) -> float:
        """Largest viscosity the explicit update takes at this dt and h: nu dt / h^2 <= 1 / (2 D)."""
        return self.h**2 / (2 * self.dim * self.dt)

    def stable_dt(self) -> tuple[float, str]:
        """(the largest stable dt in s, what sets it): advection is unconditionally stable; explicit viscosity needs
        nu dt / h^2 <= 1 / (2 D)."""
        if self.has_viscosity:
            nu = float(np.max(self.viscosity.numpy()))
            if nu > 0:
                return self.h**2 / (
                    2 * self.dim * nu
                ), f"explicit viscosity {nu:g} m^2/s (nu dt / h^2 <= 1 / (2 D))"
        return math.inf, "nothing: advection is unconditionally stable"

    def masses(self) -> np.ndarray:
        """Refused: the smoke grid is Eulerian and carries no point masses."""
        raise DiffsimError("the smoke system is an Eulerian grid: it has no point masses")

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
