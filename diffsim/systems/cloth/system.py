"""Triangle-mesh cloth: FEM membrane, dihedral bending, aerodynamics, colliders with friction, kinematic handles.

One step (semi-implicit Euler, dt) is one kernel; its stages are top-level loops (Taichi reverses those correctly):

1. the controller (if any) writes the handle actions ``act[f, b, 3 h + k]``;
2. the colliders' poses at this step: centre c + v t and the axes of R (rotation vector r);
3. per vertex, the force is *stored*: m g + load - c_m m v + the colliders' penalty forces
   f_n = max(0, k_c a_i pen - c_c a_i v_n) n, pen = margin - signed distance (a_i: the vertex's lumped area);
4. per triangle, += the membrane forces f = -A0 P(F) Dm^-T (F = Ds Dm^-1, the deformation gradient, 3x2):
   co-rotated linear  P = 2 mu (F - R) + lambda tr(S - I) R,  F = R S (polar decomposition, S = sqrt(F^T F));
   StVK               P = F (2 mu E + lambda tr(E) I),  E = (F^T F - I) / 2;
   viscous damping    P_d = c_s F (F^T dF/dt + dF/dt^T F)  (the Green strain rate: no damping of rigid motion);
   and the aerodynamic force on the triangle, split equally between its vertices (v_r = mean velocity - wind,
   n its unit normal, A its area):  f = -k_D A |v_r . n| v_r + k_L A (v_r . n) (v_r (v_r . n) / |v_r| - n |v_r|);
5. per hinge (two triangles sharing an edge), += the bending forces of the discrete-shell energy
   E = k_b w (theta - theta0)^2 / 2, w = 3 |e|^2 / (A1 + A2), with the dihedral angle's gradient from Bridson et
   al. (2003), and the damping -c_b w dtheta/dt along the same gradient; or, with bending_model="quadratic"
   (Bergou et al. 2006, flat rest shapes only), E = k_b |s|^2 / 2 with s = sum_i k_i x_i and constant cotangent
   weights k_i (`model.quadratic_bending_weights`): f_i = -k_i (k_b s + c_b sum_j k_j v_j), linear in x and v;
6. integrate: v* = v + dt f / m; friction with each collider acts on the tangential velocity relative to it,
   v_t <- v_t / (1 + mu f_n dt / (m sqrt(|v_t|^2 + eps^2))) (the smoothed Coulomb law of the mass-spring system);
   x' = x + dt v'. Pinned vertices stay; handles follow the controller (velocity mode: v' = scale * action;
   position mode: x' = x0 + scale * action).

mu = Y / (2 (1 + nu)) and lambda = Y nu / (1 - nu^2) are the plane-stress Lame constants of a sheet of 2D modulus
Y = E h (N/m). Every constant is a parameter with a gradient (see `ClothSystem.__init__`). Self-collision is not
modelled.
"""

import math
import warnings

import numpy as np
import taichi as ti

from ... import runtime
from ...colliders import KIND_ID
from ...engine.fields import MassView
from ...engine.simulation import DIVERGENCE_FACTOR
from ...engine.state import FieldSpec
from ...engine.system import ParamSpec, System, check_step, default_gravity
from ...errors import DiffsimError
from .kernels import ClothKernels
from .model import ClothModel, dihedral_angles

#: On the CPU a loop runs serially below this many elements (batch x items). Measured on 2 cores: a parallel loop
#: pays tens of microseconds of dispatch, and its adjoint adds every element's contribution to the parameters'
#: gradients with contended atomics (a serial loop's are plain adds): the 129 x 129 cloth's step and its adjoint
#: took 61 ms of kernel time with parallel loops, 28 ms with serial ones. GPUs always run the loops in parallel.
SERIAL_BELOW_CPU = 1_000_000

MATERIALS = ("corotated", "stvk")
BENDING_MODELS = ("dihedral", "quadratic")
#: largest rest dihedral angle (rad) the quadratic bending model accepts: it is exact only for a flat rest shape
QUADRATIC_MAX_REST_ANGLE = 1e-3
HANDLE_MODES = ("velocity", "position")


def _check_flat_rest_shape(arrays: dict, src: str) -> None:
    """The quadratic bending model is exact for a flat rest shape only: refuse a rest dihedral angle above
    QUADRATIC_MAX_REST_ANGLE, naming the hinge."""
    worst = int(np.argmax(np.abs(arrays["rest_angle"])))
    if abs(arrays["rest_angle"][worst]) > QUADRATIC_MAX_REST_ANGLE:
        raise DiffsimError(
            f"the quadratic bending model needs a flat rest shape, and hinge {worst} (edge "
            f"{int(arrays['hinges'][worst, 0])}-{int(arrays['hinges'][worst, 1])}) has a rest dihedral "
            f"angle of {float(arrays['rest_angle'][worst]):.3g} rad (at most {QUADRATIC_MAX_REST_ANGLE:g}); "
            "use bending_model = 'dihedral'",
            where=f"{src}: bending_model",
        )


#: the parameters, in the order they are built: dotted name, attribute, unit, transform, bounds, doc
PARAMETERS = (
    ParamSpec(
        "material.stretch_modulus",
        "stretch_modulus",
        "N/m",
        "log",
        doc="2D Young's modulus Y = E h of the sheet",
    ),
    ParamSpec("material.poisson_ratio", "poisson_ratio", "1", bounds=(-0.9, 0.95)),
    ParamSpec("material.bending_stiffness", "bending_stiffness", "N m", "log"),
    ParamSpec("material.density", "density", "kg/m^2", "log"),
    ParamSpec("damping.stretch", "stretch_damping", "N s/m", bounds=(0, None)),
    ParamSpec("damping.bending", "bending_damping", "N m s", bounds=(0, None)),
    ParamSpec("damping.mass", "mass_damping", "1/s", bounds=(0, None)),
    ParamSpec("gravity", "gravity", "m/s^2", vector=True),
    ParamSpec("initial.position", "x0", "m", vector=True),
    ParamSpec("initial.velocity", "v0", "m/s", vector=True),
    ParamSpec("air.wind", "wind", "m/s", vector=True),
    ParamSpec("air.drag", "drag", "kg/m^3", bounds=(0, None)),
    ParamSpec("air.lift", "lift", "kg/m^3", bounds=(0, None)),
    ParamSpec("loads.force", "loads", "N", vector=True),
    ParamSpec("colliders.position", "col_position", "m", vector=True),
    ParamSpec(
        "colliders.rotation", "col_rotation", "rad", vector=True, doc="rotation vector (axis times angle)"
    ),
    ParamSpec("colliders.velocity", "col_velocity", "m/s", vector=True),
    ParamSpec(
        "colliders.size",
        "col_size",
        "m",
        "log",
        vector=True,
        doc="sphere [r, -, -], box half extents, capsule [r, half length, -]",
    ),
    ParamSpec("colliders.friction", "col_friction", "1", bounds=(0, None)),
    ParamSpec("contact.stiffness", "contact_stiffness", "N/m^3", "log"),
    ParamSpec("contact.damping", "contact_damping", "N s/m^3", bounds=(0, None)),
)


@ti.data_oriented
class ClothSystem(ClothKernels, System):
    """A cloth (`ClothModel`) in 3D, z up.

    dt: time step (s). gravity: (3,) m/s^2, default (0, 0, -9.81). material: "corotated" or "stvk".
    bending_model: "dihedral" (default; any rest shape) or "quadratic" (Bergou et al. 2006; needs a flat rest shape:
        a rest dihedral angle above QUADRATIC_MAX_REST_ANGLE raises DiffsimError).
    wind (m/s), drag and lift (k_D, k_L in kg/m^3, about half the air density times the coefficient):
        aerodynamics is compiled in when `aerodynamics` is True (default: when any of them is non-zero).
    colliders: list of `diffsim.colliders.Collider`. contact_stiffness k_c (N/m^3: pressure per metre of
        penetration), contact_damping c_c (N s/m^3), contact_margin (m, the distance the cloth keeps from a
        surface), friction_smoothing eps (m/s).
    controller: drives the handles (3 actions per handle); handle_mode "velocity" or "position";
        handle_scale: m/s (or m) per unit action. substeps: integration steps per control step.
    per_batch: names of the parameters that get one value per batch copy.
    requires_grad: names of the parameters that get gradients (default None: all; see `System`).
    """

    kind = "cloth"

    def __init__(
        self,
        model: ClothModel,
        dt: float,
        gravity=None,
        material: str = "corotated",
        bending_model: str = "dihedral",
        wind=(0.0, 0.0, 0.0),
        drag: float = 0.0,
        lift: float = 0.0,
        aerodynamics: bool | None = None,
        colliders=(),
        contact_stiffness: float = 1e5,
        contact_damping: float = 100.0,
        contact_margin: float = 0.005,
        friction_smoothing: float = 1e-2,
        controller=None,
        handle_mode: str = "velocity",
        handle_scale: float = 1.0,
        substeps: int = 1,
        batch: int = 1,
        per_batch: tuple[str, ...] = (),
        requires_grad=None,
        check_dt: bool = True,
    ):
        super().__init__(batch, requires_grad=requires_grad)
        src = model.source
        check_step(dt, substeps, src)
        for value, choices, what, key in (
            (material, MATERIALS, "material model", "material"),
            (bending_model, BENDING_MODELS, "bending model", "bending_model"),
            (handle_mode, HANDLE_MODES, "handle mode", "handle_mode"),
        ):
            if value not in choices:
                raise DiffsimError(
                    f"unknown {what} {value!r}; choose {' or '.join(choices)}", where=f"{src}: {key}"
                )
        arrays = model.finalize()
        self.model = model
        self.arrays = arrays
        self.dim = 3
        self.dt = float(dt)
        self.substeps = int(substeps)
        self.n = len(arrays["x"])
        self.n_tri = len(arrays["faces"])
        self.n_hinge = len(arrays["hinges"])
        self.n_handles = len(arrays["handles"])
        self.stvk = material == "stvk"
        self.material = material
        self.bending_model = bending_model
        self.quadratic = bending_model == "quadratic"
        if self.quadratic and self.n_hinge:
            _check_flat_rest_shape(arrays, src)
        self.velocity_handles = handle_mode == "velocity"
        self.handle_mode = handle_mode
        self.handle_scale = float(handle_scale)
        self.friction_smoothing = float(friction_smoothing)
        self.contact_margin = float(contact_margin)
        self.has_loads = bool(np.any(arrays["loads"] != 0))
        wind = np.asarray(wind, dtype=np.float64).reshape(-1)
        if wind.shape != (3,):
            raise DiffsimError(f"must have 3 components, got {wind.tolist()}", where=f"{src}: wind")
        if aerodynamics is None:
            aerodynamics = bool(drag or lift or np.any(wind))
        self.has_air = bool(aerodynamics)
        gravity = default_gravity(gravity, 3, src)
        cols = [c.check(f"{src}: colliders[{k}]") for k, c in enumerate(colliders)]
        self.colliders = list(colliders)
        self.n_col = len(cols)
        self.col_kinds = [KIND_ID[c.kind] for c in colliders]
        self.has_controller = controller is not None
        if self.n_handles and controller is None:
            raise DiffsimError(
                f"{self.n_handles} handles need a controller (3 actions per handle)", where=f"{src}: handles"
            )
        if controller is not None and not self.n_handles:
            raise DiffsimError(
                "a controller drives handles, and the cloth has none", where=f"{src}: controller"
            )
        self.serial_v = runtime.serial_loops(self.batch * self.n, SERIAL_BELOW_CPU)
        self.serial_t = runtime.serial_loops(self.batch * self.n_tri, SERIAL_BELOW_CPU)
        self.serial_h = runtime.serial_loops(self.batch * max(self.n_hinge, 1), SERIAL_BELOW_CPU)

        values = self._parameter_values(
            arrays, gravity, (wind, drag, lift), cols, (contact_stiffness, contact_damping)
        )
        self.build_params(PARAMETERS, values, per_batch)

        self._build_mesh_fields(arrays)

        self.controller = controller
        if controller is not None:
            self._check_handle_controller(controller, src)
            controller.attach(self, self.params, n_obs=0, dt=self.dt, substeps=self.substeps, serial=True)
        self._ctrl_sizes = list(controller.stage_sizes) if controller is not None else []
        self._state = None
        if check_dt:
            self._check_time_step()

    def _parameter_values(self, arrays: dict, gravity, air, cols: list, contact) -> dict:
        """(shape, initial value) of each parameter the cloth uses, by name (see `PARAMETERS`); air: (wind, drag,
        lift), contact: (stiffness, damping)."""
        wind, drag, lift = air
        contact_stiffness, contact_damping = contact
        values = {
            "material.stretch_modulus": ((), arrays["material"]["stretch_modulus"]),
            "material.poisson_ratio": ((), arrays["material"]["poisson_ratio"]),
            "material.bending_stiffness": ((), arrays["material"]["bending_stiffness"]),
            "material.density": ((), arrays["material"]["density"]),
            "damping.stretch": ((), arrays["material"]["stretch_damping"]),
            "damping.bending": ((), arrays["material"]["bending_damping"]),
            "damping.mass": ((), arrays["material"]["mass_damping"]),
            "gravity": ((3,), gravity),
            "initial.position": ((self.n, 3), arrays["x"]),
            "initial.velocity": ((self.n, 3), arrays["v"]),
        }
        if self.has_air:
            values.update({"air.wind": ((3,), wind), "air.drag": ((), drag), "air.lift": ((), lift)})
        if self.has_loads:
            values["loads.force"] = ((self.n, 3), arrays["loads"])
        if self.n_col:
            for key in ("position", "rotation", "velocity", "size"):
                values[f"colliders.{key}"] = ((self.n_col, 3), np.array([c[key] for c in cols]))
            values["colliders.friction"] = ((self.n_col,), np.array([c["friction"] for c in cols]))
            values["contact.stiffness"] = ((), contact_stiffness)
            values["contact.damping"] = ((), contact_damping)
        return values

    def _check_handle_controller(self, controller, src: str) -> None:
        """The handles' controller needs no observation and has 3 outputs per handle."""
        if controller.needs_observation:
            raise DiffsimError(
                f"a {controller.kind!r} controller needs an observation the cloth does not "
                "provide; use open_loop or periodic",
                where=f"{src}: controller",
            )
        if controller.n_actions != 3 * self.n_handles:
            raise DiffsimError(
                f"controller has {controller.n_actions} outputs, the cloth's "
                f"{self.n_handles} handles need {3 * self.n_handles} (3 per handle)",
                where=f"{src}: controller",
            )

    def _build_mesh_fields(self, arrays: dict) -> None:
        """The mesh's constant arrays (triangles, rest shapes, lumped areas, vertex kinds, hinges) as fields of one
        SNode tree: Taichi allows a few hundred trees per process and each separately allocated field takes one."""
        itype, npi, real = runtime.index_type(), runtime.np_index(), runtime.real()
        npr = runtime.np_real()
        nh = max(self.n_hinge, 1)
        self.tri = ti.Vector.field(3, itype)
        self.dm_inv = ti.Matrix.field(2, 2, real)
        self.rest_area = ti.field(real)
        self.vertex_area = ti.field(real)
        self.vertex_kind = ti.field(itype)
        self.handle_index = ti.field(itype)
        self.hinge = ti.Vector.field(4, itype)
        self.hinge_weight = ti.field(real)
        self.rest_angle = ti.field(real)
        self.mass_weight = ti.field(real)
        builder = ti.FieldsBuilder()
        builder.dense(ti.i, self.n_tri).place(self.tri, self.dm_inv, self.rest_area)
        builder.dense(ti.i, self.n).place(self.vertex_area, self.vertex_kind, self.handle_index)
        if self.quadratic:
            # sqrt(3 / (A1 + A2)) K_i per hinge vertex (p, q, a, b): the quadratic model's only hinge constants
            self.hinge_k = ti.Vector.field(4, real)
            builder.dense(ti.i, nh).place(self.hinge, self.hinge_weight, self.rest_angle, self.hinge_k)
        else:
            builder.dense(ti.i, nh).place(self.hinge, self.hinge_weight, self.rest_angle)
        builder.dense(ti.ij, (1, self.n)).place(self.mass_weight)
        self._mesh_tree = builder.finalize()
        self.tri.from_numpy(arrays["faces"].astype(npi))
        self.dm_inv.from_numpy(arrays["dm_inv"].astype(npr))
        self.rest_area.from_numpy(arrays["area"].astype(npr))
        self.vertex_area.from_numpy(arrays["vertex_area"].astype(npr))
        self.mass_weight.from_numpy(arrays["vertex_area"][None].astype(npr))
        # Centre-of-mass losses weigh vertex i by point_mass.field[b * bstride, i]: the lumped areas (the area
        # density is uniform, so it cancels in the centre of mass)
        self.point_mass = MassView(self.mass_weight, bstride=0)
        self.vertex_kind.from_numpy(arrays["kind"].astype(npi))
        self.handle_index.from_numpy(arrays["handle_index"].astype(npi))
        if self.n_hinge:
            self.hinge.from_numpy(arrays["hinges"].astype(npi))
            self.hinge_weight.from_numpy(arrays["hinge_weight"].astype(npr))
            self.rest_angle.from_numpy(arrays["rest_angle"].astype(npr))
            if self.quadratic:
                self.hinge_k.from_numpy(arrays["hinge_k"].astype(npr))

    # -- description --------------------------------------------------------------------------------------------
    def _first(self, p) -> np.ndarray:
        """A parameter's value for every copy, (copies, *shape) -> the stiffest copy is what limits dt."""
        return np.asarray(p.numpy()).reshape(p.copies, *p.shape)

    def stability_limits(self) -> dict[str, float]:
        """Largest stable step (s) per mechanism, estimated from the current parameters. For a mode of angular
        frequency omega whose damping removes gamma of its velocity per second (v' = v - dt (omega^2 x + gamma v),
        x' = x + dt v'), semi-implicit Euler is stable if and only if (omega dt)^2 + 2 gamma dt < 4 (Jury's test, as
        for the springs), that is dt < 4 / (gamma + sqrt(gamma^2 + 4 omega^2)): 2 / omega undamped, 2 / gamma for
        damping alone.

        stretching: omega^2 = 4 (lambda + 2 mu) / (rho h^2), h the smallest triangle altitude (the highest mode
        of a lumped-mass membrane), gamma = 2 c_s omega^2 / (lambda + 2 mu) + c_m; bending: omega^2 = 9 k_b max(w /
        h^2) / (rho a_min) (within 5 % of the largest eigenvalue of a flat grid), gamma = c_b omega^2 / k_b + c_m;
        contact: omega^2 = k_c / rho, gamma = c_c / rho + c_m; damping: mass damping alone, gamma = c_m."""
        a = self.arrays
        rho = float(self._first(self.density).min())
        y = float(self._first(self.stretch_modulus).max())
        nu = float(self._first(self.poisson_ratio).max())
        mu, lam = y / (2 * (1 + nu)), y * nu / (1 - nu**2)
        p_mod = lam + 2 * mu
        x = a["x_rest"]
        f = a["faces"]
        edge = np.stack([np.linalg.norm(x[f[:, (k + 1) % 3]] - x[f[:, k]], axis=1) for k in range(3)], axis=1)
        h_min = float((2 * a["area"] / edge.max(axis=1)).min())
        cm = float(self._first(self.mass_damping).max())

        def limit(omega, gamma):
            with np.errstate(over="ignore"):
                return float(4.0 / (gamma + np.sqrt(gamma * gamma + 4.0 * omega * omega)))

        w_s = 2.0 * math.sqrt(p_mod / rho) / h_min
        cs = float(self._first(self.stretch_damping).max())
        out = {"stretching": limit(w_s, 2 * cs * w_s**2 / p_mod + cm)}
        if self.n_hinge:
            kb = float(self._first(self.bending_stiffness).max())
            hv = a["hinges"]
            alt = np.minimum(2 * a["area"].min() / np.linalg.norm(x[hv[:, 1]] - x[hv[:, 0]], axis=1), h_min)
            w_b = math.sqrt(
                9 * kb * float((a["hinge_weight"] / alt**2).max()) / (rho * a["vertex_area"].min())
            )
            cb = float(self._first(self.bending_damping).max())
            out["bending"] = limit(w_b, cb * w_b**2 / kb + cm)
        if self.n_col:
            kc = float(self._first(self.contact_stiffness).max())
            cc = float(self._first(self.contact_damping).max())
            out["contact"] = limit(math.sqrt(kc / rho), cc / rho + cm)
        if cm > 0:
            out["damping"] = 2.0 / cm
        return out

    def stable_dt(self) -> tuple[float, str]:
        """(the smallest of `stability_limits()` in s, the mechanism that sets it)."""
        limits = self.stability_limits()
        worst = min(limits, key=limits.get)
        return limits[worst], f"{worst} with its damping"

    def _check_time_step(self) -> None:
        limits = self.stability_limits()
        worst = min(limits, key=limits.get)
        if self.dt > limits[worst]:
            warnings.warn(
                f"{self.model.source}: dt={self.dt:g} s is above the estimated stability limit of semi-implicit "
                f"Euler for {worst} with its damping ({limits[worst]:.3g} s); expect a blow-up. Use dt <= "
                f"{0.9 * min(limits.values()):.3g} s",
                stacklevel=3,
            )

    def instability_hint(self) -> str:
        """Names the step, the most deformed triangle just before the state went non-finite or diverged (past the
        engine's bound, DIVERGENCE_FACTOR x max(1, |x| at the window's first frame)), and a stable dt."""
        limits = self.stability_limits()
        worst = min(limits, key=limits.get)
        text = (
            f"dt={self.dt:g} s; the estimated stable step is {limits[worst]:.3g} s ({worst}, damping included): "
            "suggested "
            f"dt <= {0.9 * min(limits.values()):.3g} s"
        )
        s = self._state
        if s is None:
            return text
        try:
            x = s.x.to_numpy()
        except Exception:  # pragma: no cover - the state may be gone
            return text
        flat = x.reshape(x.shape[0], -1).astype(np.float64)
        bound = DIVERGENCE_FACTOR * max(
            1.0, float(np.abs(flat[0]).max()) if np.isfinite(flat[0]).all() else 1.0
        )
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(flat).all(axis=1) & (
                np.abs(np.nan_to_num(flat, nan=np.inf)).max(axis=1) <= bound
            )
        if ok.all():
            return text
        bad = int(np.argmin(ok))
        if bad == 0:
            return text
        prev = x[bad - 1]  # (batch, n, 3)
        faces = self.arrays["faces"]
        stretch = np.zeros((prev.shape[0], len(faces)))
        for b in range(prev.shape[0]):
            ds = np.stack(
                [prev[b, faces[:, 1]] - prev[b, faces[:, 0]], prev[b, faces[:, 2]] - prev[b, faces[:, 0]]],
                axis=-1,
            )
            F = ds @ self.arrays["dm_inv"]
            sv = np.linalg.svd(np.where(np.isfinite(F), F, 1e30), compute_uv=False)
            stretch[b] = np.max(np.abs(np.log(np.maximum(sv, 1e-30))), axis=1)
        b, t = np.unravel_index(int(np.argmax(stretch)), stretch.shape)
        tri = ", ".join(str(int(v)) for v in faces[t])
        ratio = math.exp(min(float(stretch[b, t]), 700.0))
        return (
            f"step {bad - 1} of this window made it non-finite or diverge; triangle {t} (vertices {tri}) was the most "
            f"deformed before it (principal stretch {ratio:.3g}x); " + text
        )

    def field_specs(self) -> list[FieldSpec]:
        specs = [
            FieldSpec("x", (self.n,), 3),
            FieldSpec("v", (self.n,), 3),
            FieldSpec("force", (self.n,), 3, kind="scratch"),
        ]
        if self.n_col:
            specs += [
                FieldSpec("col_center", (self.n_col,), 3, kind="scratch"),
                FieldSpec("col_axes", (self.n_col, 3), 3, kind="scratch"),
            ]
        if self.controller is not None:
            specs += self.controller.field_specs()
        return specs

    def step_launchers(self, s):
        self._state = s
        return super().step_launchers(s)

    # -- analysis -----------------------------------------------------------------------------------------------
    def masses(self) -> np.ndarray:
        """Vertex masses (kg), (copies, n): density times lumped area."""
        return self._first(self.density)[:, None] * self.arrays["vertex_area"][None]

    def energy(self, traj: dict[str, np.ndarray]) -> np.ndarray:
        """Kinetic + gravitational + membrane + bending energy (minus the loads' work) per frame and copy (J),
        from a trajectory ``[frame, batch, ...]``. Pinned and handle vertices' kinetic energy is left out;
        contact and the wind are not included."""
        x, v = np.asarray(traj["x"], np.float64), np.asarray(traj["v"], np.float64)
        nb = x.shape[1]
        bc = lambda p: np.broadcast_to(self._first(p).reshape(p.copies, *p.shape), (nb, *p.shape))  # noqa: E731
        a = self.arrays
        free = a["kind"] == 0
        m = bc(self.density)[:, None] * a["vertex_area"][None]  # (b, n)
        ke = 0.5 * np.einsum("bi,fbid->fb", m * free, v * v)
        pe = -np.einsum("bi,fbid,bd->fb", m, x, bc(self.gravity))
        if self.has_loads:
            pe -= np.einsum("bid,fbid->fb", bc(self.loads), x)
        f = a["faces"]
        ds = np.stack([x[:, :, f[:, 1]] - x[:, :, f[:, 0]], x[:, :, f[:, 2]] - x[:, :, f[:, 0]]], axis=-1)
        F = ds @ a["dm_inv"]  # (frames, b, t, 3, 2)
        y, nu = bc(self.stretch_modulus)[None, :, None], bc(self.poisson_ratio)[None, :, None]
        mu, lam = y / (2 * (1 + nu)), y * nu / (1 - nu**2)
        sv = np.linalg.svd(F, compute_uv=False)  # principal stretches
        if self.stvk:
            e = 0.5 * (sv**2 - 1)
        else:
            e = sv - 1
        psi = mu * np.sum(e * e, axis=-1) + 0.5 * lam * np.sum(e, axis=-1) ** 2
        pe += np.einsum("fbt,t->fb", psi, a["area"])
        if self.n_hinge and self.quadratic:
            sx = np.einsum("hk,fbhkd->fbhd", a["hinge_k"], x[:, :, a["hinges"]])  # (frames, b, h, 3)
            kb = bc(self.bending_stiffness)[None, :, None]
            pe += 0.5 * np.sum(kb * np.sum(sx * sx, axis=-1), axis=-1)
        elif self.n_hinge:
            theta = dihedral_angles(x, a["hinges"])  # (frames, b, h)
            kb = bc(self.bending_stiffness)[None, :, None]
            pe += 0.5 * np.sum(kb * a["hinge_weight"] * (theta - a["rest_angle"]) ** 2, axis=-1)
        return ke + pe

    def describe(self) -> str:
        return (
            f"cloth: {self.n} vertices, {self.n_tri} triangles, {self.n_hinge} hinges, {self.material}, "
            + ("quadratic bending, " if self.quadratic else "")
            + f"{self.n_col} colliders, {self.n_handles} handles, dt={self.dt:g} s, batch={self.batch}"
        )
