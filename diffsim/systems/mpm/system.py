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
from ...colliders import box_distance, sphere_distance
from ...engine import tmath
from ...engine.launch import FastKernel
from ...engine.state import FieldSpec
from ...engine.system import System, check_step
from ...errors import DiffsimError
from .model import ELASTIC, FLUID, KIND_CONSTANTS, MATERIAL_KINDS, SAND, UNITS, MPMModel

#: On a CPU backend, below this many particles (batch x n) or grid nodes (batch x nodes) a loop runs serially.
#: Measured on the 2-core development machine (shared, loaded): a serial P2G of the 2,976-particle walker was 3.5x
#: faster than a parallel one (the scattered atomic adds contend between threads), and the 30k and 300k scaling
#: cases ran 4-5x more steps per second serially. On a GPU backend loops are never serialized.
SERIAL_PARTICLES_BELOW = 2_000_000
SERIAL_NODES_BELOW = 8_000_000

WALL_MODES = ("sticky", "slip", "friction", "none")
STICKY, SLIP, FRICTION, OPEN = range(4)
COLLIDER_KINDS = ("plane", "sphere", "box")
PLANE, SPHERE, BOX = range(3)

#: The largest stable dt is about CFL_NUMBER dx / (c + |v|), c the fastest wave speed at rest, and for a viscous
#: material VISCOUS_NUMBER rho dx^2 / (dim eta). Measured in 2D (f32, a block dropped on the floor, 0.5 s): an
#: elastic block (nu = 0.3) blew up from dt = 1.15 dx / c on, a Tait fluid (gamma = 7) from 1.0 dx / c, and a
#: viscous fluid from 0.38 rho dx^2 / eta; the limits keep a 10 % margin.
CFL_NUMBER = 0.9
VISCOUS_NUMBER = 0.7

#: per-material constants packed for the kernels (`MPMSystem.mat_const[b, material, constant]`)
RHO, BULK, ETA, MU, LAM, ALPHA, COHESION = range(7)
N_CONSTANTS = 7

#: what `MPMSystem._box_row` does to the active box's nodes
CLEAR, CLEAR_GRAD, UPDATE = range(3)


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


@ti.data_oriented
class MPMSystem(System):
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

        # -- walls and colliders
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

        up = np.zeros(dim)
        up[-1] = 1.0
        gravity = -9.81 * up if gravity is None else np.asarray(gravity, dtype=np.float64).reshape(-1)
        if gravity.shape != (dim,):
            raise DiffsimError(f"must have {dim} components, got {gravity.tolist()}", where=f"{src}: gravity")

        # -- parameters
        allowed = {
            "initial.position",
            "initial.velocity",
            "bodies.velocity",
            "gravity",
            "walls.friction",
            "colliders.position",
            "colliders.velocity",
            "colliders.size",
            "colliders.friction",
            "actuation.strength",
        }
        for m in model.materials:
            allowed |= {f"materials.{m.name}.{c}" for c in KIND_CONSTANTS[m.kind]}
        pb = set(per_batch)
        unknown = pb - allowed
        if unknown:
            raise DiffsimError(f"unknown parameter names {sorted(unknown)}", where="per_batch")

        def param(name, shape, value, **kw):
            return self.add_param(name, shape, value, per_batch=name in pb, **kw)

        transforms = {
            "density": dict(transform="log"),
            "bulk_modulus": dict(transform="log"),
            "youngs_modulus": dict(transform="log"),
            "viscosity": dict(bounds=(0, None)),
            "poisson_ratio": dict(bounds=(-1.0, 0.5), transform="sigmoid"),
            "friction_angle": dict(bounds=(0.0, 90.0), transform="sigmoid"),
            "cohesion": dict(bounds=(0, None)),
        }
        # per constant: one 0-D parameter field per material (None where the kind has no such constant)
        self._mf = {c: [None] * self.n_mat for c in UNITS}
        self._ms = {c: [0] * self.n_mat for c in UNITS}
        self.material_params = {}
        for k, m in enumerate(model.materials):
            for c in KIND_CONSTANTS[m.kind]:
                p = param(
                    f"materials.{m.name}.{c}",
                    (),
                    getattr(m, c),
                    unit=UNITS[c].replace("dim", str(dim)),
                    **transforms[c],
                )
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

        self.x0 = param("initial.position", (self.n, dim), arrays["x"], vector_dim=dim, unit="m")
        self.v0 = param(
            "initial.velocity",
            (self.n, dim),
            arrays["v"],
            vector_dim=dim,
            unit="m/s",
            doc="per particle, added to its body's velocity",
        )
        self.n_bodies = len(model.bodies)
        self.body_v0 = param(
            "bodies.velocity",
            (self.n_bodies, dim),
            arrays["body_velocity"],
            vector_dim=dim,
            unit="m/s",
            doc="initial velocity of each body (in the order they were added)",
        )
        self.gravity = param("gravity", (dim,), gravity, vector_dim=dim, unit="m/s^2")
        self.wall_friction = param(
            "walls.friction",
            (2 * dim,),
            wf,
            bounds=(0, None),
            unit="1",
            doc="Coulomb friction of the walls x-, x+, y-, y+ (, z-, z+)",
        )
        # colliders and actuation get parameters only when the model has them
        nc, na = max(self.n_col, 1), max(self.n_act, 1)
        if cols:
            stack = lambda key: np.stack([c[key] for c in cols])  # noqa: E731
            self.col_position = param(
                "colliders.position",
                (nc, dim),
                stack("position"),
                vector_dim=dim,
                unit="m",
                doc="plane: a point on it; sphere, box: the centre (at t = 0)",
            )
            self.col_velocity = param(
                "colliders.velocity", (nc, dim), stack("velocity"), vector_dim=dim, unit="m/s"
            )
            self.col_size = param(
                "colliders.size",
                (nc, dim),
                stack("size"),
                vector_dim=dim,
                unit="m",
                doc="sphere: the radius (first component); box: half extents; plane: unused",
            )
            self.col_friction = param(
                "colliders.friction",
                (nc,),
                np.array([c["friction"] for c in cols]),
                bounds=(0, None),
                unit="1",
            )
        if self.n_act:
            strength = np.asarray(actuation_strength, dtype=np.float64).reshape(-1)
            if strength.size not in (1, na):
                raise DiffsimError(
                    f"must be one number or {na} (one per actuator), got {strength.size}",
                    where=f"{src}: actuation_strength",
                )
            self.act_strength = param(
                "actuation.strength",
                (na,),
                np.broadcast_to(strength, (na,)),
                unit="Pa",
                doc="active Kirchhoff stress at action 1",
            )

        # -- constant per-particle and per-actuator data
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

        # -- the grid, reused by every step (never time-indexed)
        shape = (self.batch, *self.res)
        self.grid_m = ti.field(real, shape=shape, needs_grad=True)
        self.grid_mv = ti.Vector.field(dim, real, shape=shape, needs_grad=True)
        self.grid_v = ti.Vector.field(dim, real, shape=shape, needs_grad=True)
        self._sums = ti.field(real, shape=(self.batch, dim + 1))
        # The active box: [box[0, q], box[1, q]) on axis q holds every node a particle's stencil touches at the
        # current step (all copies together). Each step clears and updates only these nodes; nodes outside hold
        # stale values that no particle reads (see `_clear`).
        self._box = ti.field(itype, shape=(2, dim))

        # -- control
        if self.n_act and controller is None:
            raise DiffsimError(f"{self.n_act} actuators but no controller", where=f"{src}: controller")
        self.n_obs = 2 * dim * self.n_act
        if controller is not None and controller.n_actions != self.n_act:
            raise DiffsimError(
                f"controller has {controller.n_actions} outputs, the model has {self.n_act} actuators",
                where=f"{src}: controller",
            )
        self._attach_controller(controller, self.n_obs)
        if controller is not None:
            counts = np.bincount(arrays["actuator"][arrays["actuator"] >= 0], minlength=self.n_act)
            self.inv_count = ti.field(real, shape=(self.n_act + 1,))
            self.inv_count.from_numpy(np.append(1.0 / counts, 1.0 / self.n).astype(npr))
        self._check_time_step()

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

    def cfl_limit(self) -> float:
        """The largest stable time step (s): CFL_NUMBER dx / (c + |v0|max), and VISCOUS_NUMBER rho dx^2 / (dim eta)
        where a material is viscous."""
        v0 = float(np.max(np.linalg.norm(self.v0.numpy().reshape(-1, self.dim), axis=1))) + float(
            np.max(np.linalg.norm(self.body_v0.numpy().reshape(-1, self.dim), axis=1))
        )
        limit = CFL_NUMBER * self.dx / (self.wave_speed() + v0)
        for m in self.model.materials:
            if "viscosity" in KIND_CONSTANTS[m.kind]:
                eta = float(np.max(self.material_params[(m.name, "viscosity")].numpy()))
                rho = float(np.min(self.material_params[(m.name, "density")].numpy()))
                if eta > 0:
                    limit = min(limit, VISCOUS_NUMBER * rho * self.dx**2 / (self.dim * eta))
        return limit

    def _check_time_step(self) -> None:
        limit = self.cfl_limit()
        if self.dt > limit:
            warnings.warn(
                f"{self.model.source}: dt={self.dt:g} s is above the CFL limit of explicit MPM, dt_max = {limit:.3g} s "
                f"(the smaller of {CFL_NUMBER} dx / (c + |v|), with dx = {self.dx:g} m and wave speed c = "
                f"{self.wave_speed():.4g} m/s, and the viscous limit {VISCOUS_NUMBER} rho dx^2 / (dim eta)); expect a "
                "blow-up",
                stacklevel=3,
            )

    def instability_hint(self) -> str:
        return f"dt={self.dt:g} s; the CFL limit of this model is about {self.cfl_limit():.3g} s"

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

    @ti.func
    def _const(self, name: ti.template(), k: ti.template(), b):
        """Material k's constant `name` for batch copy b."""
        fld = ti.static(self._mf[name][k])
        return fld[b * ti.static(self._ms[name][k])]

    @ti.func
    def _stencil(self, xp):
        """(base node, fractional position in cells, B-spline weights as a 3 x dim matrix)."""
        X = xp * ti.static(self.inv_dx)
        base = ti.cast(ti.floor(X - 0.5), ti.i32)
        base = ti.max(
            ti.min(base, ti.Vector(self.res, ti.i32) - 3), 0
        )  # a stray particle clamps, never crashes
        fx = X - ti.cast(base, float)
        w0 = 0.5 * (1.5 - fx) ** 2
        w1 = 0.75 - (fx - 1.0) ** 2
        w2 = 0.5 * (fx - 0.5) ** 2
        return base, fx, ti.Matrix.rows([w0, w1, w2])

    # -- kernels ------------------------------------------------------------------------------------------------
    @ti.kernel
    def _pack(self):
        for b in range(self.batch):
            for k in ti.static(range(self.n_mat)):
                kind = ti.static(self.mat_kinds[k])
                self.mat_const[b, k, RHO] = self._const("density", k, b)
                if ti.static(kind == FLUID):
                    self.mat_const[b, k, BULK] = self._const("bulk_modulus", k, b)
                    self.mat_const[b, k, ETA] = self._const("viscosity", k, b)
                else:
                    E = self._const("youngs_modulus", k, b)
                    nu = self._const("poisson_ratio", k, b)
                    self.mat_const[b, k, MU] = E / (2.0 * (1.0 + nu))
                    self.mat_const[b, k, LAM] = E * nu / ((1.0 + nu) * (1.0 - 2.0 * nu))
                    if ti.static(kind == ELASTIC):
                        self.mat_const[b, k, ETA] = self._const("viscosity", k, b)
                    else:
                        # Drucker-Prager cone of friction angle phi (Klar et al. 2016, eq. 27)
                        sphi = tmath.sin(self._const("friction_angle", k, b) * (math.pi / 180.0))
                        self.mat_const[b, k, ALPHA] = (
                            ti.static(math.sqrt(2.0 / 3.0)) * 2.0 * sphi / (3.0 - sphi)
                        )
                        # cohesion as the volumetric Hencky strain where the mean stress
                        # tr(tau) / d = (lambda + 2 mu / d) tr(eps) reaches it: the apex of the cone
                        self.mat_const[b, k, COHESION] = self._const("cohesion", k, b) / (
                            E * nu / ((1.0 + nu) * (1.0 - 2.0 * nu)) + E / ((1.0 + nu) * ti.static(self.dim))
                        )

    @ti.kernel
    def _initialize(self, s: ti.template()):
        for b, p in ti.ndrange(self.batch, self.n):
            s.x[0, b, p] = self.x0.field[self.x0.bi(b), p]
            s.v[0, b, p] = (
                self.v0.field[self.v0.bi(b), p] + self.body_v0.field[self.body_v0.bi(b), self.p_body[p]]
            )
            s.C[0, b, p] = tmath.flatten(ti.Matrix.zero(float, self.dim, self.dim))
            s.F[0, b, p] = tmath.flatten(ti.Matrix.identity(float, self.dim))
            if ti.static(self.has_sand):
                s.strain[0, b, p] = tmath.flatten(ti.Matrix.zero(float, self.dim, self.dim))

    def initialize(self, s):
        self._pack()
        self._initialize(s)

    def initialize_grad(self, s):
        self._initialize.grad(s)
        self._pack.grad()
        self.mat_const.grad.fill(
            0
        )  # accumulated by the step adjoints, handed on; clean for the next backward

    @ti.func
    def _clear_node(self, J, with_grad: ti.template()):
        self.grid_m[J] = 0.0
        self.grid_mv[J] = ti.Vector.zero(float, self.dim)
        if ti.static(with_grad):
            self.grid_m.grad[J] = 0.0
            self.grid_mv.grad[J] = ti.Vector.zero(float, self.dim)
            self.grid_v.grad[J] = ti.Vector.zero(float, self.dim)

    # Reverse-mode note: a local variable assigned inside a runtime `if` becomes an autodiff stack in Taichi's
    # adjoint (slow to compile, slow to run). Every choice below is therefore a ti.select, ti.max or ti.min on
    # values computed unconditionally; `if ti.static(...)` choices are resolved at compile time and cost nothing.

    @ti.func
    def _drucker_prager(self, eps, mu, lam, alpha, tr_c):
        """Klar et al. (2016), Algorithm 2, on the Hencky strain eps, with the cone's apex moved to the volumetric
        strain tr_c >= 0 by cohesion: beyond the apex (tr eps > tr_c) the strain returns to the apex (tr_c / d) I;
        outside the cone, dgamma = ||dev eps|| + (d lam + 2 mu) / (2 mu) (tr eps - tr_c) alpha > 0, eps is
        projected back onto it along dev eps. With tr_c = 0 (no cohesion) the stress-free state is the apex, where
        the map is not differentiable."""
        d = ti.static(self.dim)
        ident = ti.Matrix.identity(float, d)
        tr = eps.trace()
        dev = eps - (tr / d) * ident
        dev_norm = ti.sqrt((dev * dev).sum() + 1e-30)
        # 1e-30 keeps the ratio finite for a non-sand particle (mu = 0), whose result is discarded
        dgamma = dev_norm + (d * lam + 2.0 * mu) / (2.0 * mu + 1e-30) * (tr - tr_c) * alpha
        projected = eps - (ti.max(dgamma, 0.0) / dev_norm) * dev
        return ti.select(tr > tr_c, (tr_c / d) * ident, projected)

    # P2G is written as single assignments (each local assigned once, choices made by ti.select or resolved at
    # compile time inside small functions): with a matrix local re-assigned by `+=` or a select in the two-kind
    # case, Taichi's adjoint read a variable before it was stored (a compile-time warning) and the gradients of a
    # fluid + solid scene were wrong.

    @ti.func
    def _only(self, kind, k: ti.template(), m):
        """m for particles of material kind k, zero for the others (no select when k is the only kind)."""
        if ti.static(len(self.kinds_present) == 1):
            return m
        else:
            return ti.select(kind == k, m, ti.Matrix.zero(float, self.dim, self.dim))

    @ti.func
    def _fluid_F(self, J):
        """A fluid keeps only its volume change: F = J^(1/d) I."""
        if ti.static(self.dim == 2):
            return ti.sqrt(J) * ti.Matrix.identity(float, 2)
        else:
            return tmath.exp(tmath.log(J) / 3.0) * ti.Matrix.identity(float, 3)

    @ti.func
    def _new_F(self, kind, Fn, J):
        if ti.static(FLUID not in self.kinds_present):
            return Fn
        elif ti.static(len(self.kinds_present) == 1):
            return self._fluid_F(J)
        else:
            return ti.select(kind == FLUID, self._fluid_F(J), Fn)

    @ti.func
    def _fluid_stress(self, kind, b, mid, J):
        """Tait equation of state: p = K (J^-gamma - 1) / gamma; Kirchhoff stress -J p I."""
        if ti.static(FLUID in self.kinds_present):
            gamma = self.mat_gamma[mid]
            pressure = self.mat_const[b, mid, BULK] / gamma * (tmath.exp(-gamma * tmath.log(J)) - 1.0)
            return self._only(kind, FLUID, -J * pressure * ti.Matrix.identity(float, self.dim))
        else:
            return ti.Matrix.zero(float, self.dim, self.dim)

    @ti.func
    def _elastic_stress(self, kind, b, mid, Fn, J):
        """Compressible neo-Hookean: tau = mu (F F^T - I) + lambda log(J) I."""
        if ti.static(ELASTIC in self.kinds_present):
            ident = ti.Matrix.identity(float, self.dim)
            mu = self.mat_const[b, mid, MU]
            lam = self.mat_const[b, mid, LAM]
            return self._only(kind, ELASTIC, mu * (Fn @ Fn.transpose() - ident) + lam * tmath.log(J) * ident)
        else:
            return ti.Matrix.zero(float, self.dim, self.dim)

    @ti.func
    def _sand_strain(self, s: ti.template(), f, b, p, kind, mid, Cp):
        """Sand's elastic Hencky strain at f + 1: objective (Jaumann) rate update with the velocity gradient C,
        then the Drucker-Prager return mapping. Zero for other particles."""
        if ti.static(SAND in self.kinds_present):
            eps = tmath.unflatten(s.strain[f, b, p])
            rate = 0.5 * (Cp + Cp.transpose())
            spin = 0.5 * (Cp - Cp.transpose())
            trial = eps + ti.static(self.dt) * (rate + spin @ eps - eps @ spin)
            out = self._drucker_prager(
                trial,
                self.mat_const[b, mid, MU],
                self.mat_const[b, mid, LAM],
                self.mat_const[b, mid, ALPHA],
                self.mat_const[b, mid, COHESION],
            )
            return self._only(kind, SAND, out)
        else:
            return ti.Matrix.zero(float, self.dim, self.dim)

    @ti.func
    def _sand_stress(self, b, mid, eps):
        """Hencky elasticity (Klar et al. 2016): tau = 2 mu eps + lambda tr(eps) I (eps = 0 off sand)."""
        if ti.static(SAND in self.kinds_present):
            return 2.0 * self.mat_const[b, mid, MU] * eps + self.mat_const[
                b, mid, LAM
            ] * eps.trace() * ti.Matrix.identity(float, self.dim)
        else:
            return ti.Matrix.zero(float, self.dim, self.dim)

    @ti.func
    def _active_stress(self, s: ti.template(), f, b, p, F_new):
        """DiffTaichi's muscle: strength_k act_k (F d_k)(F d_k)^T for a particle of actuator k."""
        if ti.static(self.has_actuators):
            a = self.p_act[p]
            ai = ti.max(a, 0)
            Fd = F_new @ self.act_dir[ai]
            gain = self.act_strength.field[self.act_strength.bi(b), ai] * s.act[f, b, ai]
            return ti.select(a >= 0, gain, 0.0) * Fd.outer_product(Fd)
        else:
            return ti.Matrix.zero(float, self.dim, self.dim)

    @ti.func
    def _p2g_particle(self, s: ti.template(), f, b, p, store: ti.template()):
        """Particle to grid: stress, F' (written to frame f + 1 when `store`), mass and momentum scatter."""
        d = ti.static(self.dim)
        dt = ti.static(self.dt)
        xp = s.x[f, b, p]
        Cp = tmath.unflatten(s.C[f, b, p])
        vol = self.p_vol[p]
        mid = self.p_mat[p]
        kind = self.p_kind[p]
        mass = self.mat_const[b, mid, RHO] * vol
        Fn = (ti.Matrix.identity(float, d) + dt * Cp) @ tmath.unflatten(s.F[f, b, p])
        J = Fn.determinant()
        F_new = self._new_F(kind, Fn, J)
        strain_new = self._sand_strain(s, f, b, p, kind, mid, Cp)
        # Kirchhoff stress J sigma: Newtonian viscosity 2 eta J D (APIC's C approximates grad v) + the material's
        tau = (
            self.mat_const[b, mid, ETA] * J * (Cp + Cp.transpose())
            + self._fluid_stress(kind, b, mid, J)
            + self._elastic_stress(kind, b, mid, Fn, J)
            + self._sand_stress(b, mid, strain_new)
            + self._active_stress(s, f, b, p, F_new)
        )
        if ti.static(store):
            s.F[f + 1, b, p] = tmath.flatten(F_new)
            if ti.static(self.has_sand):
                s.strain[f + 1, b, p] = tmath.flatten(strain_new)
        affine = (-dt * 4.0 * ti.static(self.inv_dx**2)) * vol * tau + mass * Cp
        mv = mass * s.v[f, b, p]
        if ti.static(store or not self.unroll):
            # kept for the adjoint's `_regrid`, and handed to `_scatter_particle` (a later top-level loop)
            s.p_affine[f, b, p] = tmath.flatten(affine)
        if ti.static(not self.unroll):
            s.p_momentum[f, b, p] = mv
            s.p_mass[f, b, p] = mass
        if ti.static(self.unroll):
            base, fx, W = self._stencil(xp)
            for offset in ti.static(ti.grouped(ti.ndrange(*([3] * d)))):
                self._scatter(b, base, fx, W, offset, mv, affine, mass)

    @ti.func
    def _scatter_particle(self, s: ti.template(), f, b, p):
        """P2G's scatter as a runtime loop over the 3^dim nodes (3D: an unrolled adjoint took many minutes to
        compile). Taichi differentiates a loop nested in the particle loop correctly only when its body reads
        nothing but global fields and indices (no local computed outside it), so the body re-derives the stencil
        from x and reads the particle's momentum, affine matrix and mass from the scratch fields."""
        for o in range(ti.static(3**self.dim)):
            base, fx, W = self._stencil(s.x[f, b, p])
            self._scatter(
                b,
                base,
                fx,
                W,
                self._offset(o),
                s.p_momentum[f, b, p],
                tmath.unflatten(s.p_affine[f, b, p]),
                s.p_mass[f, b, p],
            )

    @ti.func
    def _scatter_stored(self, s: ti.template(), f, b, p):
        """P2G's scatter with the affine matrix stored by the forward step f (unrolled stencil); mass and momentum
        are recomputed as in `_p2g_particle` (two products)."""
        base, fx, W = self._stencil(s.x[f, b, p])
        mass = self.mat_const[b, self.p_mat[p], RHO] * self.p_vol[p]
        mv = mass * s.v[f, b, p]
        affine = tmath.unflatten(s.p_affine[f, b, p])
        for offset in ti.static(ti.grouped(ti.ndrange(*([3] * self.dim)))):
            self._scatter(b, base, fx, W, offset, mv, affine, mass)

    @ti.func
    def _offset(self, o):
        """Stencil node o in [0, 3^dim) as an offset vector (row-major)."""
        if ti.static(self.dim == 2):
            return ti.Vector([o // 3, o % 3])
        else:
            return ti.Vector([o // 9, (o // 3) % 3, o % 3])

    @ti.func
    def _weight(self, W, offset):
        """B-spline weight of stencil node `offset`: the product over axes q of W[offset[q], q] (selects, so the
        offset may be a runtime value)."""
        w = 1.0
        for q in ti.static(range(self.dim)):
            w *= ti.select(offset[q] == 0, W[0, q], ti.select(offset[q] == 1, W[1, q], W[2, q]))
        return w

    @ti.func
    def _scatter(self, b, base, fx, W, offset, mv, affine, mass):
        dpos = (ti.cast(offset, float) - fx) * ti.static(self.dx)
        weight = self._weight(W, offset)
        self.grid_mv[b, base + offset] += weight * (mv + affine @ dpos)
        self.grid_m[b, base + offset] += weight * mass

    @ti.func
    def _gather(self, s: ti.template(), f, b, p, base, fx, W, offset):
        """G2P of one stencil node, added straight into frame f + 1 (zeroed by an earlier top-level loop)."""
        dpos = ti.cast(offset, float) - fx
        weight = self._weight(W, offset)
        gv = self.grid_v[b, base + offset]
        s.v[f + 1, b, p] += weight * gv
        s.C[f + 1, b, p] += tmath.flatten((4.0 * ti.static(self.inv_dx) * weight) * gv.outer_product(dpos))

    @ti.func
    def _contact(self, v, n, vc, mu, mode: ti.template()):
        """Velocity of a grid node after contact with a surface of outward normal n moving at vc: when it moves
        into the surface (vn < 0), sticky stops it (v = vc), slip removes vn, friction also scales the tangential
        velocity by max(0, 1 + mu vn / |vt|) (Coulomb; |vt| smoothed by eps)."""
        vr = v - vc
        vn = vr.dot(n)
        out = v
        if ti.static(mode == STICKY):
            out = ti.select(vn < 0, vc, v)
        elif ti.static(mode == SLIP):
            out = v - ti.min(vn, 0.0) * n
        elif ti.static(mode == FRICTION):
            vt = vr - vn * n
            slip = ti.sqrt(vt.dot(vt) + ti.static(self.eps_slip**2))
            out = vc + ti.max(vn, 0.0) * n + ti.max(0.0, 1.0 + mu * ti.min(vn, 0.0) / slip) * vt
        return out

    @ti.func
    def _collider_distance(self, c: ti.template(), xg, b, t):
        """(signed distance, outward unit normal) of node position xg to collider c at time t."""
        kind = ti.static(self.col_kinds[c])
        centre = (
            self.col_position.field[self.col_position.bi(b), c]
            + t * self.col_velocity.field[self.col_velocity.bi(b), c]
        )
        q = xg - centre
        size = self.col_size.field[self.col_size.bi(b), c]
        dist = 0.0
        n = self.col_normal[c]
        if ti.static(kind == PLANE):
            dist = q.dot(n)
        elif ti.static(kind == SPHERE):
            dist, n = sphere_distance(q, size[0])
        else:
            dist, n = box_distance(q, size)
        return dist, n

    @ti.func
    def _grid_node(self, J, fg):
        """Grid update of node J = (b, i, j[, k]): momentum to velocity, gravity, walls, colliders. Nodes without
        mass (most of the grid) are skipped; their velocity is 0 and no particle reads them with a nonzero weight.
        So are nodes with a vanishing mass (below `mass_eps`: a particle almost exactly half a cell off a node gives
        it a weight near 0), whose v = (m v) / m has an adjoint ~ 1 / m^2 that overflowed in f32."""
        d = ti.static(self.dim)
        m = self.grid_m[J]
        if m > ti.static(self.mass_eps):
            b = J[0]
            node = ti.Vector([J[k + 1] for k in ti.static(range(d))])
            v = self.grid_mv[J] / m + ti.static(self.dt) * self.gravity.field[self.gravity.bi(b)]
            for w in ti.static(range(2 * d)):
                if ti.static(self.wall_modes[w] != OPEN):
                    axis = ti.static(w // 2)
                    inside = False
                    if ti.static(w % 2 == 0):
                        inside = node[axis] < ti.static(self.bound)
                    else:
                        inside = node[axis] >= ti.static(self.res[axis] - self.bound)
                    normal = ti.Vector.unit(d, axis) * ti.static(1.0 if w % 2 == 0 else -1.0)
                    mu = self.wall_friction.field[self.wall_friction.bi(b), w]
                    v = ti.select(
                        inside, self._contact(v, normal, ti.Vector.zero(float, d), mu, self.wall_modes[w]), v
                    )
            if ti.static(self.n_col > 0):
                t = fg * ti.static(self.dt)
                xg = ti.cast(node, float) * ti.static(self.dx)
                for c in ti.static(range(self.n_col)):
                    dist, normal = self._collider_distance(c, xg, b, t)
                    vc = self.col_velocity.field[self.col_velocity.bi(b), c]
                    mu = self.col_friction.field[self.col_friction.bi(b), c]
                    # contact blends in over a layer one cell thick centred on the surface (smoothstep: C1), so
                    # the collider's position and size get gradients (a hard inside test would be a step in them)
                    depth = ti.min(1.0, ti.max(0.0, 0.5 - dist * ti.static(self.inv_dx)))
                    blend = depth * depth * (3.0 - 2.0 * depth)
                    v = v + blend * (self._contact(v, normal, vc, mu, FRICTION) - v)
            self.grid_v[J] = v
        else:
            self.grid_v[J] = ti.Vector.zero(float, d)

    @ti.func
    def _g2p_zero(self, s: ti.template(), f, b, p):
        s.v[f + 1, b, p] = ti.Vector.zero(float, self.dim)
        s.C[f + 1, b, p] = ti.Vector.zero(float, self.dim * self.dim)

    @ti.func
    def _g2p_particle(self, s: ti.template(), f, b, p):
        """v' = sum w v_i, C' = (4 / dx^2) sum w v_i (x_i - x_p)^T, accumulated in the state fields."""
        d = ti.static(self.dim)
        if ti.static(self.unroll):
            base, fx, W = self._stencil(s.x[f, b, p])
            for offset in ti.static(ti.grouped(ti.ndrange(*([3] * d)))):
                self._gather(s, f, b, p, base, fx, W, offset)
        else:
            for o in range(ti.static(3**d)):  # globals only in the body, see `_scatter_particle`
                base, fx, W = self._stencil(s.x[f, b, p])
                self._gather(s, f, b, p, base, fx, W, self._offset(o))

    @ti.func
    def _move(self, s: ti.template(), f, b, p):
        s.x[f + 1, b, p] = s.x[f, b, p] + ti.static(self.dt) * s.v[f + 1, b, p]

    @ti.func
    def _group_sums(self, s: ti.template(), f, b, p):
        a = self.p_act[p]
        s.group_x[f, b, self.n_act] += self.inv_count[self.n_act] * s.x[f, b, p]
        s.group_v[f, b, self.n_act] += self.inv_count[self.n_act] * s.v[f, b, p]
        if a >= 0:
            s.group_x[f, b, a] += self.inv_count[a] * s.x[f, b, p]
            s.group_v[f, b, a] += self.inv_count[a] * s.v[f, b, p]

    @ti.func
    def _observation(self, s: ti.template(), f, b, k):
        rel = s.group_x[f, b, k] - s.group_x[f, b, self.n_act]
        for q in ti.static(range(self.dim)):
            s.obs[f, b, 2 * self.dim * k + q] = rel[q]
            s.obs[f, b, 2 * self.dim * k + self.dim + q] = s.group_v[f, b, k][q]

    # Both kernels below spell out their top-level loops: Taichi reverses top-level loops of a kernel correctly,
    # and a kernel argument used outside every loop (even passed to a ti.func) makes it non-differentiable.
    # The MLP's observation (per actuator: centroid relative to the body's centroid, and mean velocity) is
    # accumulated in global scratch fields (store, then +=), never in loop-carried locals.

    @ti.func
    def _box_row(self, b, i, what: ti.template(), fg):
        """Clear (`CLEAR`, `CLEAR_GRAD`: values and gradients) or update (`UPDATE`) the active box's nodes
        (b, i, ...). Inner loops with bounds read from `_box`: a grouped ndrange over the box decoded each node's
        index with runtime divisions, which cost as much as visiting the whole grid."""
        if ti.static(self.dim == 2):
            for j in range(self._box[0, 1], self._box[1, 1]):
                self._box_node(ti.Vector([b, i, j]), what, fg)
        else:
            for j in range(self._box[0, 1], self._box[1, 1]):
                for k in range(self._box[0, 2], self._box[1, 2]):
                    self._box_node(ti.Vector([b, i, j, k]), what, fg)

    @ti.func
    def _box_node(self, J, what: ti.template(), fg):
        if ti.static(what == UPDATE):
            self._grid_node(J, fg)
        else:
            self._clear_node(J, what == CLEAR_GRAD)

    @ti.func
    def _box_reset(self):
        for q in ti.static(range(self.dim)):
            self._box[0, q] = self.res[q]
            self._box[1, q] = 0

    @ti.func
    def _box_particle(self, s: ti.template(), f, b, p):
        base, _fx, _W = self._stencil(s.x[f, b, p])
        for q in ti.static(range(self.dim)):
            ti.atomic_min(self._box[0, q], base[q])
            ti.atomic_max(self._box[1, q], base[q] + 3)

    # The grid is cleared and updated only inside the active box of step f (the bounding box of the particles'
    # stencils), about a tenth of the walker's 128^2 grid: the loops over all nodes were ~15 % of an iteration.
    # The box is a function of frame f alone, so `_regrid` finds the same box again for the adjoint, and the
    # adjoint's grid loops (`_advance.grad`) run over it too. Nodes outside it keep stale values (and gradients)
    # of earlier steps; nothing reads them: P2G, G2P and their adjoints touch stencil nodes only.

    # The stages below are ti.funcs made of top-level loops, shared by the kernels that follow. Inlined at a kernel's
    # top level, their loops stay top-level loops (parallel or serialized as configured, reversed in the adjoint).
    # Their arguments are templates, passed by reference: a copied kernel argument (a non-template argument) would
    # be a statement outside every loop and make `_advance` non-differentiable.

    @ti.func
    def _find_box(self, s: ti.template(), f: ti.template()):
        """Step f's active box: the bounding box of its particles' stencils."""
        ti.loop_config(serialize=True)
        for _ in range(1):
            self._box_reset()
        ti.loop_config(serialize=ti.static(self.serial_p))
        for b, p in ti.ndrange(self.batch, self.n):
            self._box_particle(s, f, b, p)

    @ti.func
    def _on_box(self, what: ti.template(), fg: ti.template()):
        """`_box_node(what)` on every node of the active box."""
        if ti.static(self.serial_g):
            ti.loop_config(serialize=True)
            for b, i in ti.ndrange(self.batch, (self._box[0, 0], self._box[1, 0])):
                self._box_row(b, i, what, fg)
        else:  # parallel (GPU, huge grids): a box row per thread would starve it; all nodes
            for J in ti.grouped(ti.ndrange(self.batch, *self.res)):
                self._box_node(J, what, fg)

    @ti.func
    def _observe(self, s: ti.template(), f: ti.template()):
        """The MLP's observation of frame f: per-actuator and whole-body centroids and mean velocities."""
        ti.loop_config(serialize=True)
        for b, k in ti.ndrange(self.batch, self.n_act + 1):
            s.group_x[f, b, k] = ti.Vector.zero(float, self.dim)
            s.group_v[f, b, k] = ti.Vector.zero(float, self.dim)
        ti.loop_config(serialize=ti.static(self.serial_p))
        for b, p in ti.ndrange(self.batch, self.n):
            self._group_sums(s, f, b, p)
        ti.loop_config(serialize=True)
        for b, k in ti.ndrange(self.batch, self.n_act):
            self._observation(s, f, b, k)

    @ti.func
    def _scatter_loop(self, s: ti.template(), f: ti.template()):
        """P2G's scatter as its own top-level loop (runtime stencil loop only, see `_scatter_particle`)."""
        if ti.static(not self.unroll):
            ti.loop_config(serialize=ti.static(self.serial_p))
            for b, p in ti.ndrange(self.batch, self.n):
                self._scatter_particle(s, f, b, p)

    @ti.kernel
    def _clear(self, s: ti.template(), f: ti.i32):
        """Find step f's active box and clear its nodes."""
        self._find_box(s, f)
        self._on_box(CLEAR, 0)

    @ti.kernel
    def _clear_all(self):
        ti.loop_config(serialize=ti.static(self.serial_g))
        for J in ti.grouped(ti.ndrange(self.batch, *self.res)):
            self._clear_node(J, False)

    @ti.kernel
    def _advance(self, s: ti.template(), f: ti.i32, fg: ti.i32):
        """One step after `_clear`; every stage a top-level loop: (observe,) control, P2G, grid update, G2P."""
        if ti.static(self.has_observation):
            self._observe(s, f)
        if ti.static(self.has_controller):
            self.controller.run_stages(s, f, fg, True)
        ti.loop_config(serialize=ti.static(self.serial_p))
        for b, p in ti.ndrange(self.batch, self.n):
            self._p2g_particle(s, f, b, p, True)
        self._scatter_loop(s, f)
        self._on_box(UPDATE, fg)
        ti.loop_config(serialize=ti.static(self.serial_p))
        for b, p in ti.ndrange(self.batch, self.n):
            self._g2p_zero(s, f, b, p)
        ti.loop_config(serialize=ti.static(self.serial_p))
        for b, p in ti.ndrange(self.batch, self.n):
            self._g2p_particle(s, f, b, p)
        ti.loop_config(serialize=ti.static(self.serial_p))
        for b, p in ti.ndrange(self.batch, self.n):
            self._move(s, f, b, p)

    @ti.kernel
    def _regrid(self, s: ti.template(), stored: ti.template(), f: ti.i32, fg: ti.i32):
        """The grid of step f again, for its adjoint: clear (values and gradients), control, P2G, grid update.
        `stored`: the forward step f ran in this window, so its actions and P2G's scatter inputs (the stress, the
        expensive part) are still in the state; P2G only scatters them. Otherwise (`grid_totals`) all is recomputed."""
        self._find_box(s, f)
        self._on_box(CLEAR_GRAD, 0)
        if ti.static(not stored):
            if ti.static(self.has_observation):
                self._observe(s, f)
            if ti.static(self.has_controller):
                self.controller.run_stages(s, f, fg, True)
            ti.loop_config(serialize=ti.static(self.serial_p))
            for b, p in ti.ndrange(self.batch, self.n):
                self._p2g_particle(s, f, b, p, False)
        if ti.static(stored and self.unroll):
            ti.loop_config(serialize=ti.static(self.serial_p))
            for b, p in ti.ndrange(self.batch, self.n):
                self._scatter_stored(s, f, b, p)
        self._scatter_loop(s, f)
        self._on_box(UPDATE, fg)

    def step(self, s, f, fg):
        self._clear(s, f)
        self._advance(s, f, fg)

    def step_launchers(self, s):
        """Forward: the fused step. Adjoint: recompute step f's grid (its gradients zeroed), then the step's adjoint
        (G2P.grad, grid_update.grad, P2G.grad, control.grad)."""
        clear = FastKernel(self._clear, s, types="i")
        advance = FastKernel(self._advance, s)
        regrid = FastKernel(self._regrid, s, True)
        reverse = FastKernel(self._advance, s, grad=True)

        def forward(f, fg):
            clear(f)
            advance(f, fg)

        def adjoint(f, fg):
            regrid(f, fg)
            reverse(f, fg)

        return forward, adjoint

    # -- diagnostics ----------------------------------------------------------------------------------------------
    @ti.kernel
    def _grid_sums(self):
        for b, k in ti.ndrange(self.batch, self.dim + 1):
            self._sums[b, k] = 0.0
        for J in ti.grouped(self.grid_m):
            self._sums[J[0], 0] += self.grid_m[J]
            for k in ti.static(range(self.dim)):
                self._sums[J[0], k + 1] += self.grid_mv[J][k]

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

    def particle_masses(self) -> np.ndarray:
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
        m = self.particle_masses()
        g = np.broadcast_to(self.gravity.numpy(), (x.shape[1], self.dim))
        return 0.5 * np.einsum("bi,fbid->fb", m, v * v) - np.einsum("bi,fbid,bd->fb", m, x, g)
