"""MLS-MPM (APIC) in 2D and 3D: fluids, neo-Hookean solids, Drucker-Prager sand, actuated soft bodies.

Particles carry position x, velocity v, the affine velocity C (APIC, Jiang et al. 2015), the deformation gradient F
and, for sand, the elastic Hencky strain. One step (Hu et al. 2018, MLS-MPM), dt, over a background grid of
spacing dx with quadratic B-spline weights w_ip:

1. control: the controller writes the actions act[f] (an MLP sees per-actuator centroids, see `_observation`);
2. P2G: F' = (I + dt C) F; the Kirchhoff stress tau(F') of the particle's material plus the active stress;
   m_i += w_ip m_p,  (m v)_i += w_ip (m_p v_p + (m_p C_p - dt V_p (4 / dx^2) tau_p)(x_i - x_p));
3. grid update: v_i = (m v)_i / m_i + dt g, then domain walls and colliders act on v_i;
4. G2P: v_p' = sum w_ip v_i, C_p' = (4 / dx^2) sum w_ip v_i (x_i - x_p)^T, x_p' = x_p + dt v_p'.

Memory: the grid is not stored per step. It lives in fields of shape (batch, *res) reused by every step; a step clears
and updates only its active box, the nodes its particles' stencils touch (see `_clear`). The adjoint of step f first
recomputes that step's grid from frame f (`_regrid`: clear values and gradients, control, P2G, grid update) and then
runs the fused step kernel's Taichi adjoint, whose top-level loops run in reverse: G2P.grad, grid_update.grad, P2G.grad, control.grad (`step_launchers`). So memory grows with particles x
stored frames, never with the grid x steps, and long rollouts use the engine's checkpointed storage.

Every physical constant is a parameter: per material ``materials.<name>.density`` (and ``bulk_modulus``,
``viscosity``, ``youngs_modulus``, ``poisson_ratio``, ``friction_angle``, ``cohesion`` by kind),
``initial.position``, ``bodies.velocity`` and ``initial.velocity``, ``gravity``, ``walls.friction``,
``colliders.*``, ``actuation.strength`` and the controller's.
docs/mpm.md gives the equations and references.
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np
import taichi as ti

from ... import runtime
from ...engine.state import FieldSpec
from ...engine.system import ParamSpec, System, check_controller_outputs, check_step, default_gravity
from ...errors import DiffsimError
from .kernels import N_CONSTANTS, MPMKernels
from .model import KIND_CONSTANTS, MATERIAL_KINDS, SAND, UNITS, MPMModel

#: On a CPU backend, below this many particles (batch x n) or grid nodes (batch x nodes) a loop runs serially.
#: Measured on the 2-core development machine (shared, loaded): a serial P2G of the 2,976-particle walker was 3.5x
#: faster than a parallel one (the scattered atomic adds contend between threads), and the 30k and 300k scaling
#: cases ran 4-5x more steps per second serially. On a GPU backend loops are never serialized.
SERIAL_PARTICLES_BELOW = 2_000_000
SERIAL_NODES_BELOW = 8_000_000

WALL_MODES = ("sticky", "slip", "friction", "none")
COLLIDER_KINDS = ("plane", "sphere", "box")

#: The largest stable dt is about CFL_NUMBER dx / (c + |v|), c the fastest wave speed at rest, and for a viscous
#: material VISCOUS_NUMBER rho dx^2 / (dim eta). Measured in 2D (f32, a block dropped on the floor, 0.5 s): an
#: elastic block (nu = 0.3) blew up from dt = 1.15 dx / c on, a Tait fluid (gamma = 7) from 1.0 dx / c, and a
#: viscous fluid from 0.38 rho dx^2 / eta; the limits keep a 10 % margin.
CFL_NUMBER = 0.9
VISCOUS_NUMBER = 0.7


@dataclass
class MPMCollider:
    """A rigid obstacle that acts on the grid velocities: nodes inside it cannot move into it (relative to the
    collider), and Coulomb friction `friction` acts on their tangential velocity. The contact blends in across a
    layer one cell thick centred on the surface (weight smoothstep(clamp(1/2 - distance / dx, 0, 1))), which keeps
    the rollout differentiable in the collider's position and size.

    kind: "plane" (the half-space behind the plane through `position` with outward `normal`), "sphere" (radius
    `size` or size[0]) or "box" (axis-aligned, half extents `size`). velocity: constant (m/s), the collider moves
    as position + velocity t. friction: mu >= 0 (inf: sticky).
    """

    kind: str
    position: tuple
    size: tuple | float = 0.0
    normal: tuple | None = None
    velocity: tuple | None = None
    friction: float = 0.5
    name: str = ""

    def check(self, dim: int, where: str) -> dict:
        if self.kind not in COLLIDER_KINDS:
            raise DiffsimError(
                f"unknown collider kind {self.kind!r}; choose {', '.join(COLLIDER_KINDS)}",
                where=f"{where}.kind",
            )

        def vec(value, key, default=None):
            arr = np.asarray(default if value is None else value, dtype=np.float64).reshape(-1)
            if arr.shape != (dim,) or not np.all(np.isfinite(arr)):
                raise DiffsimError(
                    f"must be {dim} finite numbers, got {np.ravel(value).tolist()}", where=f"{where}.{key}"
                )
            return arr

        out = {
            "position": vec(self.position, "position"),
            "velocity": vec(self.velocity, "velocity", [0.0] * dim),
        }
        size = np.zeros(dim)
        if self.kind == "plane":
            n = vec(self.normal, "normal", np.eye(dim)[-1])
            if np.linalg.norm(n) == 0:
                raise DiffsimError("must not be zero", where=f"{where}.normal")
            out["normal"] = n / np.linalg.norm(n)
        else:
            out["normal"] = np.eye(dim)[-1]
            s = np.ravel(np.asarray(self.size, dtype=np.float64))
            need = 1 if self.kind == "sphere" else dim
            if s.size != need or not np.all(s > 0) or not np.all(np.isfinite(s)):
                what = "a radius" if self.kind == "sphere" else f"{dim} half extents"
                raise DiffsimError(
                    f"a {self.kind} needs size = {what} > 0, got {s.tolist()}", where=f"{where}.size"
                )
            size[: s.size] = s
        out["size"] = size
        mu = float(self.friction)
        if not mu >= 0:
            raise DiffsimError(f"must be >= 0, got {mu}", where=f"{where}.friction")
        out["friction"] = min(mu, 1e6)
        return out


#: the parameters every model has (materials add theirs, `material_specs`), in the order they are built
PARAMETERS = (
    ParamSpec("initial.position", "x0", "m", vector=True),
    ParamSpec("initial.velocity", "v0", "m/s", vector=True, doc="per particle, added to its body's velocity"),
    ParamSpec(
        "bodies.velocity",
        "body_v0",
        "m/s",
        vector=True,
        doc="initial velocity of each body (in the order they were added)",
    ),
    ParamSpec("gravity", "gravity", "m/s^2", vector=True),
    ParamSpec(
        "walls.friction",
        "wall_friction",
        "1",
        bounds=(0, None),
        doc="Coulomb friction of the walls x-, x+, y-, y+ (, z-, z+)",
    ),
    ParamSpec(
        "colliders.position",
        "col_position",
        "m",
        vector=True,
        doc="plane: a point on it; sphere, box: the centre (at t = 0)",
    ),
    ParamSpec("colliders.velocity", "col_velocity", "m/s", vector=True),
    ParamSpec(
        "colliders.size",
        "col_size",
        "m",
        vector=True,
        doc="sphere: the radius (first component); box: half extents; plane: unused",
    ),
    ParamSpec("colliders.friction", "col_friction", "1", bounds=(0, None)),
    ParamSpec("actuation.strength", "act_strength", "Pa", doc="active Kirchhoff stress at action 1"),
)

#: transform and bounds of each material constant (`materials.<name>.<constant>`); units from `model.UNITS`
MATERIAL_TRANSFORMS = {
    "density": dict(transform="log"),
    "bulk_modulus": dict(transform="log"),
    "youngs_modulus": dict(transform="log"),
    "viscosity": dict(bounds=(0, None)),
    "poisson_ratio": dict(bounds=(-1.0, 0.5), transform="sigmoid"),
    "friction_angle": dict(bounds=(0.0, 90.0), transform="sigmoid"),
    "cohesion": dict(bounds=(0, None)),
}


def material_specs(model: MPMModel) -> tuple[ParamSpec, ...]:
    """The parameter rows of the model's materials, `materials.<name>.<constant>` for each constant of its kind."""
    return tuple(
        ParamSpec(
            f"materials.{m.name}.{c}", None, UNITS[c].replace("dim", str(model.dim)), **MATERIAL_TRANSFORMS[c]
        )
        for m in model.materials
        for c in KIND_CONSTANTS[m.kind]
    )


def _actuation_strength(value, n_act: int, src: str) -> np.ndarray:
    """The active stress (Pa) per actuator from one number or one per actuator."""
    strength = np.asarray(value, dtype=np.float64).reshape(-1)
    if strength.size not in (1, n_act):
        raise DiffsimError(
            f"must be one number or {n_act} (one per actuator), got {strength.size}",
            where=f"{src}: actuation_strength",
        )
    return np.broadcast_to(strength, (n_act,))


@ti.data_oriented
class MPMSystem(MPMKernels, System):
    """An MLS-MPM simulation of `model` (see the module docstring).

    dt: time step (s). gravity: default 9.81 m/s^2 down the last axis.
    walls: the domain walls, one mode for all or one per wall in the order x-, x+, y-, y+ (, z-, z+):
        "sticky" (a node moving into the wall stops; it may leave it), "slip" (the velocity into the wall is
        removed, the tangential part kept), "friction" (like slip, with Coulomb friction `wall_friction` on the
        tangential part) or "none". A wall is the band of `bound` nodes at that side of the grid.
    wall_friction: mu of the walls (a number or one per wall; parameter ``walls.friction``).
    colliders: `MPMCollider`s. controller: drives the actuators (`diffsim.control`); actuation_strength (Pa, one
        number or one per actuator; parameter ``actuation.strength``): the active Kirchhoff stress of a particle
        with actuator k is strength_k act_k (F d_k)(F d_k)^T, d_k the actuator's material direction.
    friction_smoothing: slip speed (m/s) below which Coulomb friction is smoothed: |v_t| ~ sqrt(|v_t|^2 + eps^2).
    batch, per_batch: copies simulated side by side, and the parameters that get one value per copy.
    requires_grad: names of the parameters that get gradients (default None: all; see `System`).
    unroll_stencil: unroll the 3^dim-node B-spline stencil at compile time (default in 2D: about twice as fast) or
        loop over it at run time (default in 3D: the unrolled 3D adjoint took many minutes to compile).
    """

    kind = "mpm"

    def __init__(
        self,
        model: MPMModel,
        dt: float,
        gravity=None,
        walls="sticky",
        wall_friction=0.5,
        bound: int = 3,
        colliders=(),
        controller=None,
        actuation_strength=1.0,
        friction_smoothing: float = 1e-6,
        substeps: int = 1,
        batch: int = 1,
        per_batch: tuple[str, ...] = (),
        requires_grad=None,
        unroll_stencil: bool | None = None,
    ):
        super().__init__(batch, requires_grad=requires_grad)
        src = model.source
        check_step(dt, substeps, src)
        arrays = model.finalize()
        self.model = model
        self.dim = dim = model.dim
        self.res = model.res
        self.dx = float(model.dx)
        self.inv_dx = 1.0 / self.dx
        self.n = model.n_particles
        self.dt = float(dt)
        self.substeps = int(substeps)
        self.n_mat = len(model.materials)
        self.mat_kinds = [MATERIAL_KINDS.index(m.kind) for m in model.materials]
        self.has_sand = SAND in self.mat_kinds
        self.kinds_present = sorted(set(self.mat_kinds))
        self.n_act = model.n_actuators
        self.has_actuators = self.n_act > 0
        self.eps_slip = float(friction_smoothing)
        self._set_grid_options(bound, unroll_stencil, arrays, src)

        wf, cols = self._set_boundaries(walls, wall_friction, colliders, src)
        gravity = default_gravity(gravity, dim, src)

        # -- parameters
        nc, na = max(self.n_col, 1), max(self.n_act, 1)
        self.n_bodies = len(model.bodies)
        values = {
            f"materials.{m.name}.{c}": ((), getattr(m, c))
            for m in model.materials
            for c in KIND_CONSTANTS[m.kind]
        }
        values.update(
            {
                "initial.position": ((self.n, dim), arrays["x"]),
                "initial.velocity": ((self.n, dim), arrays["v"]),
                "bodies.velocity": ((self.n_bodies, dim), arrays["body_velocity"]),
                "gravity": ((dim,), gravity),
                "walls.friction": ((2 * dim,), wf),
            }
        )
        if cols:  # colliders and actuation get parameters only when the model has them
            for key in ("position", "velocity", "size"):
                values[f"colliders.{key}"] = ((nc, dim), np.stack([c[key] for c in cols]))
            values["colliders.friction"] = ((nc,), np.array([c["friction"] for c in cols]))
        if self.n_act:
            values["actuation.strength"] = ((na,), _actuation_strength(actuation_strength, na, src))
        params = self.build_params(material_specs(model) + PARAMETERS, values, per_batch)
        self._pack_material_parameters(params)

        self._build_constant_fields(arrays, cols, nc, na)
        self._build_grid()

        # -- control
        check_controller_outputs(controller, self.n_act, src, actuated="particle groups")
        self.n_obs = 2 * dim * self.n_act
        self._attach_controller(controller, self.n_obs)
        if controller is not None:
            counts = np.bincount(arrays["actuator"][arrays["actuator"] >= 0], minlength=self.n_act)
            self.inv_count = ti.field(runtime.real(), shape=(self.n_act + 1,))
            self.inv_count.from_numpy(np.append(1.0 / counts, 1.0 / self.n).astype(runtime.np_real()))
        self._check_time_step()

    def _pack_material_parameters(self, params: dict) -> None:
        """Index the material parameters by constant and material (`_const` in the kernels) and allocate the packed
        constants `mat_const` that `initialize` fills."""
        model = self.model
        # per constant: one 0-D parameter field per material (None where the kind has no such constant)
        self._mf = {c: [None] * self.n_mat for c in UNITS}
        self._ms = {c: [0] * self.n_mat for c in UNITS}
        self.material_params = {}
        for k, m in enumerate(model.materials):
            for c in KIND_CONSTANTS[m.kind]:
                p = params[f"materials.{m.name}.{c}"]
                self._mf[c][k], self._ms[c][k] = p.field, p.bstride
                self.material_params[(m.name, c)] = p
        # The kernels read the material constants as mat_const[b, material, RHO | BULK | ETA | MU | ...]:
        # an array lookup instead of a branch per material. `initialize` packs it from the parameters (so derived
        # constants such as the Lame parameters are computed once per rollout) and `initialize_grad` routes its
        # gradient back to them.
        real = runtime.real()
        self.mat_const = ti.field(real, shape=(self.batch, self.n_mat, N_CONSTANTS), needs_grad=True)
        self.mat_gamma = ti.field(real, shape=(self.n_mat,))
        self.mat_gamma.from_numpy(
            np.array(
                [m.eos_exponent if m.kind == "fluid" else 1.0 for m in model.materials],
                dtype=runtime.np_real(),
            )
        )

    def _set_grid_options(self, bound: int, unroll_stencil, arrays: dict, src: str) -> None:
        """The wall band `bound` (cells), serial or parallel loops, unrolled stencils and the empty-node mass."""
        dim, model = self.dim, self.model
        if int(bound) < 1 or any(2 * int(bound) + 3 > r for r in self.res):
            raise DiffsimError(
                f"must be >= 1 and leave room inside the grid, got {bound}", where=f"{src}: bound"
            )
        self.bound = int(bound)
        self.n_nodes = int(np.prod(self.res))
        self.serial_p = runtime.serial_loops(self.batch * self.n, SERIAL_PARTICLES_BELOW)
        self.serial_g = runtime.serial_loops(self.batch * self.n_nodes, SERIAL_NODES_BELOW)
        self.serial = self.serial_p  # controllers' stages
        # Stencil loops: unrolled at compile time (faster), or runtime loops (the adjoint of a 3D kernel unrolled
        # over 27 nodes took many minutes to compile)
        self.unroll = bool(unroll_stencil if unroll_stencil is not None else dim == 2)
        self.arrays = arrays
        # nodes lighter than this are treated as empty (see `_grid_node`): 1e-9 of the lightest particle in f32,
        # where the adjoint's 1 / m^2 overflowed, 1e-24 in f64 (linear momentum is then exact to rounding)
        rel = 1e-9 if runtime.current()["precision"] == "f32" else 1e-24
        self.mass_eps = rel * float(np.min(arrays["volume"])) * min(m.density for m in model.materials)

    def _set_boundaries(self, walls, wall_friction, colliders, src: str) -> tuple[np.ndarray, list]:
        """Check the walls' modes and friction and the colliders; returns (the walls' friction per side, the
        colliders' checked values)."""
        dim = self.dim
        modes = [walls] * (2 * dim) if isinstance(walls, str) else list(walls)
        if len(modes) != 2 * dim or any(m not in WALL_MODES for m in modes):
            raise DiffsimError(
                f"must be one of {', '.join(WALL_MODES)} or a list of {2 * dim} of them (x-, x+, "
                f"y-, y+{', z-, z+' if dim == 3 else ''}), got {walls!r}",
                where=f"{src}: walls",
            )
        self.wall_modes = [WALL_MODES.index(m) for m in modes]
        wf = np.broadcast_to(np.asarray(wall_friction, dtype=np.float64), (2 * dim,))
        if not np.all(wf >= 0):
            raise DiffsimError(f"must be >= 0, got {wf.tolist()}", where=f"{src}: wall_friction")
        cols = [c.check(dim, f"{src}: colliders[{k}]") for k, c in enumerate(colliders)]
        self.colliders = list(colliders)
        self.n_col = len(cols)
        self.col_kinds = [COLLIDER_KINDS.index(c.kind) for c in colliders]
        return wf, cols

    def _build_constant_fields(self, arrays: dict, cols: list, nc: int, na: int) -> None:
        """Per-particle (volume, material, kind, body, actuator) and per-actuator and per-collider constants."""
        dim = self.dim
        real, itype, npi, npr = runtime.real(), runtime.index_type(), runtime.np_index(), runtime.np_real()
        self.p_vol = ti.field(real, shape=(self.n,))
        self.p_mat = ti.field(itype, shape=(self.n,))
        self.p_act = ti.field(itype, shape=(self.n,))
        self.p_kind = ti.field(itype, shape=(self.n,))
        self.p_body = ti.field(itype, shape=(self.n,))
        self.p_body.from_numpy(arrays["body"].astype(npi))
        self.p_kind.from_numpy(np.asarray(self.mat_kinds, dtype=npi)[arrays["material"]])
        self.act_dir = ti.Vector.field(dim, real, shape=(na,))
        self.col_normal = ti.Vector.field(dim, real, shape=(nc,))
        self.p_vol.from_numpy(arrays["volume"].astype(npr))
        self.p_mat.from_numpy(arrays["material"].astype(npi))
        self.p_act.from_numpy(arrays["actuator"].astype(npi))
        self.act_dir.from_numpy(arrays["actuator_direction"].astype(npr))
        if cols:
            self.col_normal.from_numpy(np.stack([c["normal"] for c in cols]).astype(npr))

    def _build_grid(self) -> None:
        """The grid, reused by every step (never time-indexed), and the active box."""
        dim = self.dim
        real, itype = runtime.real(), runtime.index_type()
        shape = (self.batch, *self.res)
        self.grid_m = ti.field(real, shape=shape, needs_grad=True)
        self.grid_mv = ti.Vector.field(dim, real, shape=shape, needs_grad=True)
        self.grid_v = ti.Vector.field(dim, real, shape=shape, needs_grad=True)
        self._sums = ti.field(real, shape=(self.batch, dim + 1))
        # The active box: [box[0, q], box[1, q]) on axis q holds every node a particle's stencil touches at the
        # current step (all copies together). Each step clears and updates only these nodes; nodes outside hold
        # stale values that no particle reads (see `_clear`).
        self._box = ti.field(itype, shape=(2, dim))

    # -- description ---------------------------------------------------------------------------------------------
    def wave_speed(self) -> float:
        """The fastest wave speed at rest over all materials (m/s), from the current parameter values."""
        c = 0.0
        for m in self.model.materials:
            val = {
                name: float(np.max(self.material_params[(m.name, name)].numpy()))
                for name in KIND_CONSTANTS[m.kind]
            }
            rho = float(np.min(self.material_params[(m.name, "density")].numpy()))
            if m.kind == "fluid":
                c = max(c, math.sqrt(val["bulk_modulus"] / rho))
            else:
                e, nu = val["youngs_modulus"], val["poisson_ratio"]
                lam, mu = e * nu / ((1 + nu) * (1 - 2 * nu)), e / (2 * (1 + nu))
                c = max(c, math.sqrt((lam + 2 * mu) / rho))
        return c

    def stable_dt(self) -> tuple[float, str]:
        """(the largest stable time step in s, what sets it): CFL_NUMBER dx / (c + |v0|max), and VISCOUS_NUMBER rho
        dx^2 / (dim eta) where a material is viscous."""
        v0 = float(np.max(np.linalg.norm(self.v0.numpy().reshape(-1, self.dim), axis=1))) + float(
            np.max(np.linalg.norm(self.body_v0.numpy().reshape(-1, self.dim), axis=1))
        )
        limit = CFL_NUMBER * self.dx / (self.wave_speed() + v0)
        what = "the CFL limit"
        for m in self.model.materials:
            if "viscosity" in KIND_CONSTANTS[m.kind]:
                eta = float(np.max(self.material_params[(m.name, "viscosity")].numpy()))
                rho = float(np.min(self.material_params[(m.name, "density")].numpy()))
                if eta > 0 and VISCOUS_NUMBER * rho * self.dx**2 / (self.dim * eta) < limit:
                    limit = VISCOUS_NUMBER * rho * self.dx**2 / (self.dim * eta)
                    what = f"the viscous limit of material {m.name!r}"
        return limit, what

    def _check_time_step(self) -> None:
        limit, _what = self.stable_dt()
        if self.dt > limit:
            warnings.warn(
                f"{self.model.source}: dt={self.dt:g} s is above the CFL limit of explicit MPM, dt_max = {limit:.3g} s "
                f"(the smaller of {CFL_NUMBER} dx / (c + |v|), with dx = {self.dx:g} m and wave speed c = "
                f"{self.wave_speed():.4g} m/s, and the viscous limit {VISCOUS_NUMBER} rho dx^2 / (dim eta)); expect a "
                "blow-up",
                stacklevel=3,
            )

    def instability_hint(self) -> str:
        return f"dt={self.dt:g} s; the CFL limit of this model is about {self.stable_dt()[0]:.3g} s"

    def field_specs(self) -> list[FieldSpec]:
        d, n = self.dim, self.n
        specs = [
            FieldSpec("x", (n,), d),
            FieldSpec("v", (n,), d),
            FieldSpec("C", (n,), d * d),
            FieldSpec("F", (n,), d * d),
        ]
        if self.has_sand:
            specs.append(FieldSpec("strain", (n,), d * d))
        # P2G's affine momentum matrix per particle (stress included): written by every forward step, read by the
        # adjoint's `_regrid`, which then skips the stress, and by the runtime stencil loop's scatter
        specs.append(FieldSpec("p_affine", (n,), d * d, kind="scratch"))
        if not self.unroll:
            specs += [
                FieldSpec("p_momentum", (n,), d, kind="scratch"),
                FieldSpec("p_mass", (n,), None, kind="scratch"),
            ]
        if self.controller is not None:
            if self.has_observation:
                specs += [
                    FieldSpec("group_x", (self.n_act + 1,), d, kind="scratch"),
                    FieldSpec("group_v", (self.n_act + 1,), d, kind="scratch"),
                    FieldSpec("obs", (self.n_obs,), None, kind="scratch"),
                ]
            specs += self.controller.field_specs()
        return specs

    # Reverse-mode note: a local variable assigned inside a runtime `if` becomes an autodiff stack in Taichi's
    # adjoint (slow to compile, slow to run). Every choice below is therefore a ti.select, ti.max or ti.min on
    # values computed unconditionally; `if ti.static(...)` choices are resolved at compile time and cost nothing.

    # P2G is written as single assignments (each local assigned once, choices made by ti.select or resolved at
    # compile time inside small functions): with a matrix local re-assigned by `+=` or a select in the two-kind
    # case, Taichi's adjoint read a variable before it was stored (a compile-time warning) and the gradients of a
    # fluid + solid scene were wrong.

    # Both kernels below spell out their top-level loops: Taichi reverses top-level loops of a kernel correctly,
    # and a kernel argument used outside every loop (even passed to a ti.func) makes it non-differentiable.
    # The MLP's observation (per actuator: centroid relative to the body's centroid, and mean velocity) is
    # accumulated in global scratch fields (store, then +=), never in loop-carried locals.

    # The grid is cleared and updated only inside the active box of step f (the bounding box of the particles'
    # stencils), about a tenth of the walker's 128^2 grid: the loops over all nodes were ~15 % of an iteration.
    # The box is a function of frame f alone, so `_regrid` finds the same box again for the adjoint, and the
    # adjoint's grid loops (`_advance.grad`) run over it too. Nodes outside it keep stale values (and gradients)
    # of earlier steps; nothing reads them: P2G, G2P and their adjoints touch stencil nodes only.

    # The stages below are ti.funcs made of top-level loops, shared by the kernels that follow. Inlined at a kernel's
    # top level, their loops stay top-level loops (parallel or serialized as configured, reversed in the adjoint).
    # Their arguments are templates, passed by reference: a copied kernel argument (a non-template argument) would
    # be a statement outside every loop and make `_advance` non-differentiable.

    def grid_totals(self, s, f: int, fg: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(total grid mass (batch,), total grid momentum (batch, dim)) after P2G of window frame f of `s`."""
        self._clear_all()  # the sums run over every node; `_regrid` clears the active box only
        self._regrid(s, False, f, f if fg is None else fg)
        self._grid_sums()
        sums = self._sums.to_numpy().astype(np.float64)
        return sums[:, 0], sums[:, 1:]

    def grid_bytes(self) -> int:
        """Bytes of the background grid (mass, momentum and velocity with their gradients): one (batch, *res)
        buffer reused by every step and recomputed in each step's adjoint, so it does not grow with the steps
        (`Simulation.memory_bytes` counts the time-indexed particle state only)."""
        itemsize = 8 if runtime.current()["precision"] == "f64" else 4
        return self.batch * self.n_nodes * (1 + 2 * self.dim) * 2 * itemsize

    def masses(self) -> np.ndarray:
        """Particle masses (batch copies, n) in kg: density of the material x particle volume."""
        vol = self.arrays["volume"]
        mat = self.arrays["material"]
        out = np.zeros((self.batch, self.n))
        for k, m in enumerate(self.model.materials):
            rho = np.broadcast_to(np.ravel(self.material_params[(m.name, "density")].numpy()), (self.batch,))
            out[:, mat == k] = rho[:, None] * vol[mat == k]
        return out

    def energy(self, traj: dict[str, np.ndarray]) -> np.ndarray:
        """Kinetic + gravitational energy per frame and copy (J in 3D, J/m in 2D); elastic energy is not included."""
        x, v = traj["x"], traj["v"]
        m = self.masses()
        g = np.broadcast_to(self.gravity.numpy(), (x.shape[1], self.dim))
        return 0.5 * np.einsum("bi,fbid->fb", m, v * v) - np.einsum("bi,fbid,bd->fb", m, x, g)
