"""Mass-spring soft bodies in 2D and 3D.

One step (semi-implicit Euler, dt), all stages fused in one kernel (docs/design.md, "Launches and speed"), each a top-level loop:

1. observation for the controller (positions and velocities relative to the centre of mass), then the controller;
2. per-particle force: gravity m g plus the ground's normal penalty force
   f_n = max(0, k_c * pen - c_c * v_n), pen = ground height - x_n (the up axis is the last one);
3. springs: F = k (L - L0') + c (v_b - v_a) . d, along d = (x_b - x_a) / L, with the actuated rest length
   L0' = L0 (1 + actuation * act);
4. integrate: v* = v + dt F / m; friction acts on the tangential part of v* as
   v_t <- v_t / (1 + mu f_n dt / (m sqrt(|v_t|^2 + eps^2))), a smooth, unconditionally stable form of Coulomb's law
   (for fast sliding it removes mu f_n dt / m of speed, near zero slip it sticks); x' = x + dt v'.

Every constant is a parameter with a gradient: stiffness, damping, rest length, actuation, mass, gravity, ground
height, friction, contact stiffness and damping, initial positions and velocities.
"""

import math
import warnings

import numpy as np
import taichi as ti

from ... import runtime
from ...engine.state import FieldSpec
from ...engine.system import ParamSpec, System, check_controller_outputs, check_step, default_gravity
from .kernels import SpringKernels
from .model import SpringModel

#: on the CPU, below this many elements (batch x max(particles, springs)) the loops run serially
#: (`runtime.serial_loops`). Measured on 2 cores (docs/performance.md): the 128 x 128 grid (49k springs) took
#: 1.91-1.97 s per iteration with parallel loops and 0.61-0.79 s with serial ones; the parallel adjoint's atomic
#: adds were most of the difference.
SERIAL_BELOW = 1_000_000


#: the parameters, in the order they are built: dotted name, attribute, unit, transform, bounds
PARAMETERS = (
    ParamSpec("springs.stiffness", "stiffness", "N/m", transform="log"),
    ParamSpec("springs.damping", "damping", "N s/m", bounds=(0, None)),
    ParamSpec("springs.rest_length", "rest_length", "m", transform="log"),
    ParamSpec("springs.actuation", "actuation", "1", doc="relative rest-length change at action 1"),
    ParamSpec("particles.mass", "point_mass", "kg", transform="log"),
    ParamSpec("initial.position", "x0", "m", vector=True),
    ParamSpec("initial.velocity", "v0", "m/s", vector=True),
    ParamSpec("gravity", "gravity", "m/s^2", vector=True),
    ParamSpec("ground.height", "ground_height", "m"),
    ParamSpec("ground.friction", "friction", "1", bounds=(0, None)),
    ParamSpec("ground.stiffness", "contact_stiffness", "N/m", transform="log"),
    ParamSpec("ground.damping", "contact_damping", "N s/m", bounds=(0, None)),
)


@ti.data_oriented
class SpringSystem(SpringKernels, System):
    kind = "springs"

    def __init__(
        self,
        model: SpringModel,
        dt: float,
        gravity=None,
        ground: float | None = 0.0,
        friction: float = 1.0,
        contact_stiffness: float = 3e4,
        contact_damping: float = 50.0,
        friction_smoothing: float = 1e-2,
        controller=None,
        substeps: int = 1,
        batch: int = 1,
        per_batch: tuple[str, ...] = (),
        requires_grad=None,
    ):
        super().__init__(batch, requires_grad=requires_grad)
        check_step(dt, substeps, model.source)
        arrays = model.finalize()
        self.model = model
        self.dim = model.dim
        self.n = model.n_particles
        self.m = model.n_springs
        self.dt = float(dt)
        self.substeps = int(substeps)
        self.has_ground = ground is not None
        self.friction_smoothing = float(friction_smoothing)
        self.serial = runtime.serial_loops(self.batch * max(self.n, self.m), SERIAL_BELOW)
        gravity = default_gravity(gravity, self.dim, model.source)
        m_ = max(self.m, 1)

        def pad(a, fill):  # a body without springs keeps one inert placeholder so every field has a shape
            return a if self.m else np.full(1, fill)

        n, d = self.n, self.dim
        values = {
            "springs.stiffness": ((m_,), pad(arrays["stiffness"], 1.0)),
            "springs.damping": ((m_,), pad(arrays["damping"], 0.0)),
            "springs.rest_length": ((m_,), pad(arrays["rest_length"], 1.0)),
            "springs.actuation": ((m_,), pad(arrays["actuation"], 0.0)),
            "particles.mass": ((n,), arrays["mass"]),
            "initial.position": ((n, d), arrays["x"]),
            "initial.velocity": ((n, d), arrays["v"]),
            "gravity": ((d,), gravity),
            "ground.height": ((), 0.0 if ground is None else ground),
            "ground.friction": ((), friction),
            "ground.stiffness": ((), contact_stiffness),
            "ground.damping": ((), contact_damping),
        }
        self.build_params(PARAMETERS, values, per_batch)

        itype, npi = runtime.index_type(), runtime.np_index()
        self.springs = ti.Vector.field(2, itype, shape=(m_,))
        self.actuator = ti.field(itype, shape=(m_,))
        self.pinned = ti.field(itype, shape=(self.n,))
        self.springs.from_numpy((arrays["springs"] if self.m else np.zeros((1, 2))).astype(npi))
        self.actuator.from_numpy((arrays["actuator"] if self.m else -np.ones(1)).astype(npi))
        self.pinned.from_numpy(arrays["pinned"].astype(npi))

        check_controller_outputs(
            controller, model.n_actuators, model.source, actuated="springs", owner="body"
        )
        self.n_obs = 2 * self.dim * self.n
        self._attach_controller(controller, self.n_obs)
        self._check_time_step(arrays)

    # -- description --------------------------------------------------------------------------------------------
    def masses(self) -> np.ndarray:
        """Particle masses (kg), (copies, n)."""
        return np.broadcast_to(self.point_mass.numpy().reshape(-1, self.n), (self.batch, self.n)).copy()

    def stiffest_frequency(self) -> float:
        """Largest natural angular frequency sqrt(k / m_reduced) among springs and ground contact (rad/s)."""
        k = (
            self.stiffness.numpy().reshape(-1, self.stiffness.shape[0])[:, : self.m]
            if self.m
            else np.zeros((1, 0))
        )
        m = self.point_mass.numpy().reshape(-1, self.n)
        omega = 0.0
        if self.m:
            s = self.model.springs
            a, b = np.asarray(s)[:, 0], np.asarray(s)[:, 1]
            mr = m[:, a] * m[:, b] / (m[:, a] + m[:, b])
            omega = float(np.sqrt(k / mr).max())
        if self.has_ground:
            omega = max(omega, float(np.sqrt(np.max(self.contact_stiffness.numpy()) / m.min())))
        return omega

    def stable_dt(self) -> tuple[float, str]:
        """(largest stable dt in s, what limits it) over every spring-dashpot and the ground contact.

        A spring k with dashpot c between particles a and b moves their separation like one mass m = m_a m_b /
        (m_a + m_b) (the ground contact: k_c, c_c on the lightest particle). This step's semi-implicit Euler,
        v' = v - dt (k x + c v) / m, x' = x + dt v', has the amplification matrix [[1 - a dt^2, dt (1 - b dt)],
        [-a dt, 1 - b dt]] with a = k / m, b = c / m: trace 2 - a dt^2 - b dt, determinant 1 - b dt. Both
        eigenvalues lie inside the unit circle (Jury's test) if and only if

            (omega dt)^2 + 2 (c / m) dt < 4,    omega^2 = k / m,

        that is dt < dt_max = 4 / (b + sqrt(b^2 + 4 a)): 2 / omega without damping, 2 m / c for a pure dashpot."""
        worst, what = math.inf, ""
        m = self.point_mass.numpy().reshape(-1, self.n)  # (copies, particles)

        def limit(k, c, mass):
            a, b = k / mass, c / mass
            with np.errstate(over="ignore"):  # b^2 overflows for an absurd damping: the limit is then 0
                return 4.0 / (b + np.sqrt(b * b + 4.0 * a))

        if self.m:
            k = self.stiffness.numpy().reshape(-1, self.stiffness.shape[0])[:, : self.m]
            c = self.damping.numpy().reshape(-1, self.damping.shape[0])[:, : self.m]
            pairs = np.asarray(self.model.springs)
            ma, mb = m[:, pairs[:, 0]], m[:, pairs[:, 1]]
            dt = limit(k, c, ma * mb / (ma + mb))  # broadcast over copies
            copy, j = np.unravel_index(int(np.argmin(dt)), dt.shape)
            worst = float(dt[copy, j])
            what = (
                f"spring {j} (stiffness {k[min(copy, k.shape[0] - 1), j]:.3g} N/m, damping "
                f"{c[min(copy, c.shape[0] - 1), j]:.3g} N s/m)"
            )
        if self.has_ground:
            kc = float(np.max(self.contact_stiffness.numpy()))
            cc = float(np.max(self.contact_damping.numpy()))
            dt = float(limit(kc, cc, float(m.min())))
            if dt < worst:
                worst, what = dt, f"ground contact (stiffness {kc:.3g} N/m, damping {cc:.3g} N s/m)"
        return worst, what

    def _check_time_step(self, arrays) -> None:
        dt_max, what = self.stable_dt()
        if self.dt > dt_max:
            warnings.warn(
                f"{self.model.source}: dt={self.dt:g} s is above the stability limit of semi-implicit Euler for "
                f"{what}: dt < {dt_max:.3g} s ((omega dt)^2 + 2 c dt / m < 4); expect a blow-up",
                stacklevel=3,
            )

    def instability_hint(self) -> str:
        dt_max, what = self.stable_dt()
        return (
            f"dt={self.dt:g} s; {what} needs dt < {dt_max:.3g} s ((omega dt)^2 + 2 c dt / m < 4)"
            if math.isfinite(dt_max)
            else ""
        )

    def field_specs(self) -> list[FieldSpec]:
        specs = [
            FieldSpec("x", (self.n,), self.dim),
            FieldSpec("v", (self.n,), self.dim),
            FieldSpec("force", (self.n,), self.dim, kind="scratch"),
        ]
        if self.controller is not None:
            if self.controller.needs_observation:
                specs += [
                    FieldSpec("com", (), self.dim, kind="scratch"),
                    FieldSpec("vcom", (), self.dim, kind="scratch"),
                    FieldSpec("mtot", (), None, kind="scratch"),
                    FieldSpec("obs", (self.n_obs,), None, kind="scratch"),
                ]
            specs += self.controller.field_specs()
        return specs

    # -- analysis -----------------------------------------------------------------------------------------------
    def energy(self, traj: dict[str, np.ndarray]) -> np.ndarray:
        """Kinetic + spring + gravitational energy per frame and copy (J), from a trajectory ``[frame, batch, ...]``;
        actuation and ground contact are not included."""
        x, v = traj["x"], traj["v"]
        m = np.broadcast_to(self.point_mass.numpy(), (x.shape[1], self.n))
        ke = 0.5 * np.einsum("bi,fbid->fb", m, v * v)
        g = np.broadcast_to(self.gravity.numpy(), (x.shape[1], self.dim))
        pe_g = -np.einsum("bi,fbid,bd->fb", m, x, g)
        pe_s = np.zeros_like(ke)
        if self.m:
            s = np.asarray(self.model.springs)
            k = np.broadcast_to(self.stiffness.numpy(), (x.shape[1], self.m))
            r = np.broadcast_to(self.rest_length.numpy(), (x.shape[1], self.m))
            length = np.linalg.norm(x[:, :, s[:, 1]] - x[:, :, s[:, 0]], axis=-1)
            pe_s = 0.5 * np.sum(k * (length - r) ** 2, axis=-1)
        return ke + pe_g + pe_s
