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
from ...colliders import KIND_ID, local_distance, rotation_from_vector
from ...engine.fields import MassView
from ...engine.simulation import DIVERGENCE_FACTOR
from ...engine.state import FieldSpec
from ...engine.system import System
from ...errors import DiffsimError
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

#: speed (m/s) below which the aerodynamic force's |.| and 1/|v| are smoothed
AIR_SMOOTHING = 1e-4


@ti.func
def _atan2(y, x):
    """atan2(y, x) from a polynomial: atan(z) = z P(z^2) on [-1, 1] (degree 19, max error 9e-10 rad), then the
    octant. Cheaper than the library call, available in f64 on every backend (Vulkan has no f64 atan2), and
    reproduced exactly by `model.atan2`, so rest angles and energies computed in numpy match the kernels. Smooth
    at y = 0 (no |y| in the quotient, whose derivative would vanish there). Written as one expression: Taichi's
    reverse mode would turn a re-assigned local (a Horner loop) into an autodiff stack."""
    swap = ti.abs(y) > ti.abs(x)  # then atan2 = sign(y) pi / 2 - atan(x / y)
    den = ti.select(swap, y, x)
    z = ti.select(swap, x, y) / ti.select(den >= 0, den + 1e-30, den - 1e-30)  # in [-1, 1], smooth (no |.|)
    t = z * z
    r = z * (
        0.99999998056148331
        + t
        * (
            -0.33333180381041494
            + t
            * (
                0.19996436860733022
                + t
                * (
                    -0.14247222936456866
                    + t
                    * (
                        0.10878010681386194
                        + t
                        * (
                            -0.082137629233744278
                            + t
                            * (
                                0.05502811168452313
                                + t
                                * (
                                    -0.028490779799398437
                                    + t * (0.0095673396522177705 - t * 0.0015093026077765174)
                                )
                            )
                        )
                    )
                )
            )
        )
    )
    half = ti.select(y >= 0, 0.5 * math.pi, -0.5 * math.pi)
    return ti.select(swap, half - r, ti.select(x >= 0, r, r + 2.0 * half))


@ti.func
def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


@ti.data_oriented
class ClothSystem(System):
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
        if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
            raise DiffsimError(f"must be > 0, got {dt}", where=f"{src}: dt")
        if int(substeps) < 1:
            raise DiffsimError(f"must be >= 1, got {substeps}", where=f"{src}: substeps")
        if material not in MATERIALS:
            raise DiffsimError(
                f"unknown material model {material!r}; choose {' or '.join(MATERIALS)}",
                where=f"{src}: material",
            )
        if bending_model not in BENDING_MODELS:
            raise DiffsimError(
                f"unknown bending model {bending_model!r}; choose {' or '.join(BENDING_MODELS)}",
                where=f"{src}: bending_model",
            )
        if handle_mode not in HANDLE_MODES:
            raise DiffsimError(
                f"unknown handle mode {handle_mode!r}; choose {' or '.join(HANDLE_MODES)}",
                where=f"{src}: handle_mode",
            )
        arrays = model.finalize()
        mat = arrays["material"]
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
            worst = int(np.argmax(np.abs(arrays["rest_angle"])))
            if abs(arrays["rest_angle"][worst]) > QUADRATIC_MAX_REST_ANGLE:
                raise DiffsimError(
                    f"the quadratic bending model needs a flat rest shape, and hinge {worst} (edge "
                    f"{int(arrays['hinges'][worst, 0])}-{int(arrays['hinges'][worst, 1])}) has a rest dihedral "
                    f"angle of {float(arrays['rest_angle'][worst]):.3g} rad (at most {QUADRATIC_MAX_REST_ANGLE:g}); "
                    "use bending_model = 'dihedral'",
                    where=f"{src}: bending_model",
                )
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
        gravity = np.array([0.0, 0.0, -9.81]) if gravity is None else np.asarray(gravity, dtype=np.float64)
        if gravity.shape != (3,):
            raise DiffsimError(f"must have 3 components, got {gravity.tolist()}", where=f"{src}: gravity")
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

        pb = set(per_batch)
        known = {
            "material.stretch_modulus",
            "material.poisson_ratio",
            "material.bending_stiffness",
            "material.density",
            "damping.stretch",
            "damping.bending",
            "damping.mass",
            "gravity",
            "initial.position",
            "initial.velocity",
            "air.wind",
            "air.drag",
            "air.lift",
            "loads.force",
            "colliders.position",
            "colliders.rotation",
            "colliders.velocity",
            "colliders.size",
            "colliders.friction",
            "contact.stiffness",
            "contact.damping",
        }
        unknown = pb - known
        if unknown:
            raise DiffsimError(f"unknown parameter names {sorted(unknown)}", where="per_batch")

        def param(name, shape, value, **kw):
            return self.add_param(name, shape, value, per_batch=name in pb, **kw)

        self.stretch_modulus = param(
            "material.stretch_modulus",
            (),
            mat["stretch_modulus"],
            transform="log",
            unit="N/m",
            doc="2D Young's modulus Y = E h of the sheet",
        )
        self.poisson_ratio = param(
            "material.poisson_ratio", (), mat["poisson_ratio"], bounds=(-0.9, 0.95), unit="1"
        )
        self.bending_stiffness = param(
            "material.bending_stiffness", (), mat["bending_stiffness"], transform="log", unit="N m"
        )
        self.density = param("material.density", (), mat["density"], transform="log", unit="kg/m^2")
        self.stretch_damping = param(
            "damping.stretch", (), mat["stretch_damping"], bounds=(0, None), unit="N s/m"
        )
        self.bending_damping = param(
            "damping.bending", (), mat["bending_damping"], bounds=(0, None), unit="N m s"
        )
        self.mass_damping = param("damping.mass", (), mat["mass_damping"], bounds=(0, None), unit="1/s")
        self.gravity = param("gravity", (3,), gravity, vector_dim=3, unit="m/s^2")
        self.x0 = param("initial.position", (self.n, 3), arrays["x"], vector_dim=3, unit="m")
        self.v0 = param("initial.velocity", (self.n, 3), arrays["v"], vector_dim=3, unit="m/s")
        if self.has_air:
            self.wind = param("air.wind", (3,), wind, vector_dim=3, unit="m/s")
            self.drag = param("air.drag", (), drag, bounds=(0, None), unit="kg/m^3")
            self.lift = param("air.lift", (), lift, bounds=(0, None), unit="kg/m^3")
        if self.has_loads:
            self.loads = param("loads.force", (self.n, 3), arrays["loads"], vector_dim=3, unit="N")
        if self.n_col:
            stack = lambda key: np.array([c[key] for c in cols])  # noqa: E731
            self.col_position = param(
                "colliders.position", (self.n_col, 3), stack("position"), vector_dim=3, unit="m"
            )
            self.col_rotation = param(
                "colliders.rotation",
                (self.n_col, 3),
                stack("rotation"),
                vector_dim=3,
                unit="rad",
                doc="rotation vector (axis times angle)",
            )
            self.col_velocity = param(
                "colliders.velocity", (self.n_col, 3), stack("velocity"), vector_dim=3, unit="m/s"
            )
            self.col_size = param(
                "colliders.size",
                (self.n_col, 3),
                stack("size"),
                vector_dim=3,
                transform="log",
                unit="m",
                doc="sphere [r, -, -], box half extents, capsule [r, half length, -]",
            )
            self.col_friction = param(
                "colliders.friction", (self.n_col,), stack("friction"), bounds=(0, None), unit="1"
            )
            self.contact_stiffness = param(
                "contact.stiffness", (), contact_stiffness, transform="log", unit="N/m^3"
            )
            self.contact_damping = param(
                "contact.damping", (), contact_damping, bounds=(0, None), unit="N s/m^3"
            )

        itype, npi, real = runtime.index_type(), runtime.np_index(), runtime.real()
        npr = runtime.np_real()
        # The mesh's constant arrays share one SNode tree: Taichi allows a few hundred trees per process and each
        # separately allocated field takes one.
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

        self.controller = controller
        if controller is not None:
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
            controller.attach(self, self.params, n_obs=0, dt=self.dt, substeps=self.substeps, serial=True)
        self._ctrl_sizes = list(controller.stage_sizes) if controller is not None else []
        self._state = None
        if check_dt:
            self._check_time_step()

    # -- description --------------------------------------------------------------------------------------------
    def _first(self, p) -> np.ndarray:
        """A parameter's value for every copy, (copies, *shape) -> the stiffest copy is what limits dt."""
        return np.asarray(p.numpy()).reshape(p.copies, *p.shape)

    def stable_dt(self) -> dict[str, float]:
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

    def _check_time_step(self) -> None:
        limits = self.stable_dt()
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
        limits = self.stable_dt()
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

    # -- kernels ------------------------------------------------------------------------------------------------
    @ti.kernel
    def _initialize(self, s: ti.template()):
        for b, i in ti.ndrange(self.batch, self.n):
            s.x[0, b, i] = self.x0.field[self.x0.bi(b), i]
            s.v[0, b, i] = self.v0.field[self.v0.bi(b), i]

    def initialize(self, s):
        self._state = s
        self._initialize(s)

    def initialize_grad(self, s):
        self._initialize.grad(s)

    @ti.func
    def _mass(self, b, i):
        return self.density.field[self.density.bi(b)] * self.vertex_area[i]

    @ti.func
    def _distance(self, s: ti.template(), f, b, i, c: ti.template()):
        """(signed distance, outward unit normal) of vertex i to collider c, in world axes."""
        size = self.col_size.field[self.col_size.bi(b), c]
        rel = s.x[f, b, i] - s.col_center[f, b, c]
        if ti.static(self.col_kinds[c] == KIND_ID["sphere"]):  # no rotation to apply
            return local_distance(ti.static(self.col_kinds[c]), rel, size)
        else:
            ax, ay, az = s.col_axes[f, b, c, 0], s.col_axes[f, b, c, 1], s.col_axes[f, b, c, 2]
            q = ti.Vector([_dot(ax, rel), _dot(ay, rel), _dot(az, rel)])  # R^T (x - c)
            dist, n_local = local_distance(ti.static(self.col_kinds[c]), q, size)
            return dist, ax * n_local[0] + ay * n_local[1] + az * n_local[2]

    @ti.func
    def _contact(self, s: ti.template(), f, b, i, c: ti.template()):
        """(normal force magnitude f_n >= 0 in N, unit normal, collider velocity) of vertex i against collider c."""
        vcol = self.col_velocity.field[self.col_velocity.bi(b), c]
        dist, n = self._distance(s, f, b, i, c)
        fn = 0.0
        pen = ti.static(self.contact_margin) - dist
        if pen > 0:
            a = self.vertex_area[i]
            kc = self.contact_stiffness.field[self.contact_stiffness.bi(b)]
            cc = self.contact_damping.field[self.contact_damping.bi(b)]
            fn = ti.max(a * (kc * pen - cc * (s.v[f, b, i] - vcol).dot(n)), 0.0)
        return fn, n, vcol

    @ti.func
    def _membrane(self, b, t, e1, e2, w1, w2):
        """Elastic + viscous forces on the triangle's vertices 1 and 2 (vertex 0 gets minus their sum), from its
        edge vectors e1 = x1 - x0, e2 = x2 - x0 and their rates w1, w2."""
        d = self.dm_inv[t]
        # deformation gradient F = [e1 e2] Dm^-1 by columns, and its rate
        fa = e1 * d[0, 0] + e2 * d[1, 0]
        fb = e1 * d[0, 1] + e2 * d[1, 1]
        ra = w1 * d[0, 0] + w2 * d[1, 0]
        rb = w1 * d[0, 1] + w2 * d[1, 1]
        y = self.stretch_modulus.field[self.stretch_modulus.bi(b)]
        nu = self.poisson_ratio.field[self.poisson_ratio.bi(b)]
        mu = y / (2.0 * (1.0 + nu))
        lam = y * nu / (1.0 - nu * nu)
        c00, c01, c11 = _dot(fa, fa), _dot(fa, fb), _dot(fb, fb)  # C = F^T F
        pa, pb = self._stress(mu, lam, fa, fb, c00, c01, c11)
        # viscous stress P_d = c_s F (F^T dF + dF^T F)
        cs = self.stretch_damping.field[self.stretch_damping.bi(b)]
        q00 = 2.0 * _dot(fa, ra)
        q01 = _dot(fa, rb) + _dot(fb, ra)
        q11 = 2.0 * _dot(fb, rb)
        pa2 = pa + cs * (fa * q00 + fb * q01)
        pb2 = pb + cs * (fa * q01 + fb * q11)
        # forces -A0 P Dm^-T, by columns
        area = self.rest_area[t]
        return -area * (pa2 * d[0, 0] + pb2 * d[0, 1]), -area * (pa2 * d[1, 0] + pb2 * d[1, 1])

    @ti.func
    def _stress(self, mu, lam, fa, fb, c00, c01, c11):
        """First Piola-Kirchhoff stress P (3x2, by columns) of F = [fa fb] with C = F^T F."""
        if ti.static(self.stvk):
            # P = F (2 mu E + lambda tr(E) I), E = (C - I) / 2
            e00, e01, e11 = 0.5 * (c00 - 1.0), 0.5 * c01, 0.5 * (c11 - 1.0)
            tr = lam * (e00 + e11)
            return fa * (2.0 * mu * e00 + tr) + fb * (2.0 * mu * e01), fa * (2.0 * mu * e01) + fb * (
                2.0 * mu * e11 + tr
            )
        else:
            # F = R S: S = sqrt(C) = (C + sqrt(det C) I) / sqrt(tr C + 2 sqrt(det C)) (Cayley-Hamilton),
            # R = F S^-1 = F adj(S) / det S with det S = sqrt(det C); P = 2 mu (F - R) + lambda tr(S - I) R
            # det S is floored at 1 % of tr C: a triangle crushed to a sliver keeps finite (if unphysical) forces
            # instead of dividing by ~0; no triangle of a working simulation gets near it
            tr_c = c00 + c11
            sd = ti.sqrt(ti.max(c00 * c11 - c01 * c01, 1e-4 * tr_c * tr_c))
            k = 1.0 / ti.sqrt(tr_c + 2.0 * sd)
            s00, s01, s11 = k * (c00 + sd), k * c01, k * (c11 + sd)
            r_a = (fa * s11 - fb * s01) / sd
            r_b = (fb * s00 - fa * s01) / sd
            g = lam * (s00 + s11 - 2.0)
            return 2.0 * mu * (fa - r_a) + g * r_a, 2.0 * mu * (fb - r_b) + g * r_b

    @ti.func
    def _aerodynamic(self, b, e1, e2, vel):
        """Drag and lift on one triangle (edges e1, e2, mean velocity vel), a third of it per vertex. Written with
        the unnormalised normal c = e1 x e2 = 2 A n, so that only 1 / |c| and 1 / speed are divisions."""
        cr = e1.cross(e2)
        cn = ti.sqrt(_dot(cr, cr) + 1e-30)
        vr = vel - self.wind.field[self.wind.bi(b)]
        vn = _dot(vr, cr) * (1.0 / cn)  # v_r . n
        speed = ti.sqrt(_dot(vr, vr) + ti.static(AIR_SMOOTHING**2))
        kd = self.drag.field[self.drag.bi(b)]
        kl = self.lift.field[self.lift.bi(b)]
        # (A / 3) (-k_D |v_n| v_r + k_L v_n (v_r v_n / speed - n speed)), with A n = c / 2
        return (1.0 / 6.0) * (
            (kl * vn * vn * cn / speed - kd * cn * ti.sqrt(vn * vn + ti.static(AIR_SMOOTHING**2))) * vr
            - (kl * vn * speed) * cr
        )

    def serial_steps(self) -> bool:
        return self.serial_v and self.serial_t and self.serial_h

    @ti.func
    def _step_body(self, s: ti.template(), f: ti.template(), fg: ti.template()):
        """One step, frame f -> f + 1 (fg: the global step index); launched by engine/stepper.py."""
        if ti.static(self.has_controller):
            for k in ti.static(range(len(self._ctrl_sizes))):
                ti.loop_config(serialize=True)
                for b, j in ti.ndrange(self.batch, self._ctrl_sizes[k]):
                    self.controller.run_stage(k, s, f, fg, b, j)

        if ti.static(self.n_col > 0):
            ti.loop_config(serialize=True)
            for b, c in ti.ndrange(self.batch, self.n_col):
                t = fg * ti.static(self.dt)
                s.col_center[f, b, c] = (
                    self.col_position.field[self.col_position.bi(b), c]
                    + t * self.col_velocity.field[self.col_velocity.bi(b), c]
                )
                rot = rotation_from_vector(self.col_rotation.field[self.col_rotation.bi(b), c])
                for k in ti.static(range(3)):
                    s.col_axes[f, b, c, k] = ti.Vector([rot[0, k], rot[1, k], rot[2, k]])

        # 3. per-vertex forces: stored (the only store), everything after adds
        ti.loop_config(serialize=ti.static(self.serial_v))
        for b, i in ti.ndrange(self.batch, self.n):
            m = self._mass(b, i)
            fi = m * (
                self.gravity.field[self.gravity.bi(b)]
                - self.mass_damping.field[self.mass_damping.bi(b)] * s.v[f, b, i]
            )
            if ti.static(self.has_loads):
                fi += self.loads.field[self.loads.bi(b), i]
            for c in ti.static(range(self.n_col)):
                fn, n, _vcol = self._contact(s, f, b, i, c)
                fi += fn * n
            s.force[f, b, i] = fi

        # 4. membrane (FEM) and aerodynamic forces, per triangle. Written out in scalars and vectors, each local
        # assigned once: Taichi's reverse mode turns a local that is re-assigned after being read (as in a matrix
        # product's accumulation) into an autodiff stack, which made this loop's adjoint ten times slower.
        ti.loop_config(serialize=ti.static(self.serial_t))
        for b, t in ti.ndrange(self.batch, self.n_tri):
            tri = self.tri[t]
            x0, x1, x2 = s.x[f, b, tri[0]], s.x[f, b, tri[1]], s.x[f, b, tri[2]]
            u0, u1, u2 = s.v[f, b, tri[0]], s.v[f, b, tri[1]], s.v[f, b, tri[2]]
            f1, f2 = self._membrane(b, t, x1 - x0, x2 - x0, u1 - u0, u2 - u0)
            if ti.static(self.has_air):
                fa = self._aerodynamic(b, x1 - x0, x2 - x0, (u0 + u1 + u2) / 3.0)
                s.force[f, b, tri[0]] += fa - f1 - f2
                s.force[f, b, tri[1]] += fa + f1
                s.force[f, b, tri[2]] += fa + f2
            else:
                s.force[f, b, tri[0]] += -f1 - f2
                s.force[f, b, tri[1]] += f1
                s.force[f, b, tri[2]] += f2

        # 5. bending, per hinge (edge p-q, opposite vertices a and b)
        if ti.static(self.n_hinge > 0 and self.quadratic):
            # quadratic model (Bergou et al. 2006): E = k_b |s|^2 / 2, s = sum_i k_i x_i with the constant weights
            # k_i = sqrt(3 / (A1 + A2)) K_i; forces -k_i (k_b s + c_b sum_j k_j v_j), linear in x and v
            ti.loop_config(serialize=ti.static(self.serial_h))
            for b, h in ti.ndrange(self.batch, self.n_hinge):
                hv = self.hinge[h]
                kw = self.hinge_k[h]
                sx = (
                    kw[0] * s.x[f, b, hv[0]]
                    + kw[1] * s.x[f, b, hv[1]]
                    + kw[2] * s.x[f, b, hv[2]]
                    + kw[3] * s.x[f, b, hv[3]]
                )
                sv = (
                    kw[0] * s.v[f, b, hv[0]]
                    + kw[1] * s.v[f, b, hv[1]]
                    + kw[2] * s.v[f, b, hv[2]]
                    + kw[3] * s.v[f, b, hv[3]]
                )
                g = -(
                    self.bending_stiffness.field[self.bending_stiffness.bi(b)] * sx
                    + self.bending_damping.field[self.bending_damping.bi(b)] * sv
                )
                s.force[f, b, hv[0]] += kw[0] * g
                s.force[f, b, hv[1]] += kw[1] * g
                s.force[f, b, hv[2]] += kw[2] * g
                s.force[f, b, hv[3]] += kw[3] * g
        if ti.static(self.n_hinge > 0 and not self.quadratic):
            ti.loop_config(serialize=ti.static(self.serial_h))
            for b, h in ti.ndrange(self.batch, self.n_hinge):
                hv = self.hinge[h]
                xp, xq, xa, xb = s.x[f, b, hv[0]], s.x[f, b, hv[1]], s.x[f, b, hv[2]], s.x[f, b, hv[3]]
                e = xq - xp
                el = ti.sqrt(_dot(e, e))
                inv_el = 1.0 / el
                n1 = (xa - xp).cross(xa - xq)
                n2 = (xb - xq).cross(xb - xp)
                theta = _atan2(_dot(n1.cross(n2), e) * inv_el, _dot(n1, n2))
                # |d theta / dx| grows like 1 / (triangle height): |n|^2 is floored at 1e-2 |e|^4 (a triangle
                # squashed to ~1/10 of a healthy one's height) so that a sliver does not make the bending stiffness,
                # and the stable time step, unbounded; it is exact for every triangle above that
                floor = 1e-2 * el * el * el * el
                m1 = n1 * (1.0 / ti.max(_dot(n1, n1), floor))
                m2 = n2 * (1.0 / ti.max(_dot(n2, n2), floor))
                # u_k = -d theta / d x_k (Bridson et al. 2003)
                ua = el * m1
                ub = el * m2
                up = (_dot(xa - xq, e) * inv_el) * m1 + (_dot(xb - xq, e) * inv_el) * m2
                uq = -(ua + ub + up)
                theta_dot = -(
                    _dot(ua, s.v[f, b, hv[2]])
                    + _dot(ub, s.v[f, b, hv[3]])
                    + _dot(up, s.v[f, b, hv[0]])
                    + _dot(uq, s.v[f, b, hv[1]])
                )
                mag = self.hinge_weight[h] * (
                    self.bending_stiffness.field[self.bending_stiffness.bi(b)] * (theta - self.rest_angle[h])
                    + self.bending_damping.field[self.bending_damping.bi(b)] * theta_dot
                )
                s.force[f, b, hv[2]] += mag * ua
                s.force[f, b, hv[3]] += mag * ub
                s.force[f, b, hv[0]] += mag * up
                s.force[f, b, hv[1]] += mag * uq

        # 6. integrate; friction; pins and handles
        ti.loop_config(serialize=ti.static(self.serial_v))
        for b, i in ti.ndrange(self.batch, self.n):
            kind = self.vertex_kind[i]
            x, v = s.x[f, b, i], s.v[f, b, i]
            x_new = x
            v_new = v * 0.0
            if kind == 0:
                m = self._mass(b, i)
                v_new = v + ti.static(self.dt) * s.force[f, b, i] / m
                for c in ti.static(range(self.n_col)):
                    fn, n, vcol = self._contact(s, f, b, i, c)
                    if fn > 0:
                        rel = v_new - vcol
                        rn = rel.dot(n)
                        rt = rel - rn * n
                        mu_c = self.col_friction.field[self.col_friction.bi(b), c]
                        slip = ti.sqrt(rt.dot(rt) + ti.static(self.friction_smoothing**2))
                        v_new = vcol + rn * n + rt / (1.0 + mu_c * fn * ti.static(self.dt) / (m * slip))
                x_new = x + ti.static(self.dt) * v_new
            if ti.static(self.n_handles > 0):
                if kind == 2:
                    h = self.handle_index[i]
                    a = ti.Vector([s.act[f, b, 3 * h], s.act[f, b, 3 * h + 1], s.act[f, b, 3 * h + 2]])
                    if ti.static(self.velocity_handles):
                        v_new = ti.static(self.handle_scale) * a
                        x_new = x + ti.static(self.dt) * v_new
                    else:
                        x_new = self.x0.field[self.x0.bi(b), i] + ti.static(self.handle_scale) * a
                        v_new = (x_new - x) / ti.static(self.dt)
            s.v[f + 1, b, i] = v_new
            s.x[f + 1, b, i] = x_new

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
