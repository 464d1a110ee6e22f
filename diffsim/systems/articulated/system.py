"""Articulated robots in joint coordinates, stepped as MuJoCo steps them (semi-implicit Euler, implicit joint damping).

State per copy: joint coordinates ``q`` (rad or m), their rates ``qd``, and the world positions of the link origins
``x`` (m; written from q for losses and drawing); scratch: the total energy ``energy`` of frame f (J) and the
controller's actions. The step's stages are in kernels.py; one kernel per step, one loop over the copies (the tree
is unrolled inside, see kernels.py), plus the controller's own loops before it.

Parameters (stable names from the robot file; `diffsim params` lists them):
``links.<name>.mass`` (kg), ``links.<name>.inertia`` (principal moments, kg m^2), ``joints.<name>.damping``,
``joints.<name>.armature``, ``joints.<name>.stiffness``, ``actuators.<name>.gain``, ``actuators.<name>.bias``
(MuJoCo's biasprm[0:3]), ``initial.qpos``, ``initial.qvel``, ``gravity`` and the controller's weights.
"""

import math

import numpy as np
import taichi as ti

from ... import runtime
from ...engine.state import FieldSpec
from ...engine.system import System, check_step
from ...errors import DiffsimError
from .kernels import ArticulatedKernels
from .model import ArticulatedModel, quat_to_matrix

#: on the CPU, below this many copies the loop over copies runs serially (each copy's tree is unrolled inside)
SERIAL_BELOW = 64


def _skew(a) -> list[list[float]]:
    x, y, z = (float(c) for c in a)
    return [[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]]


@ti.data_oriented
class ArticulatedSystem(ArticulatedKernels, System):
    kind = "articulated"

    def __init__(
        self,
        model: ArticulatedModel,
        dt: float | None = None,
        gravity=None,
        controller=None,
        substeps: int = 1,
        batch: int = 1,
        per_batch: tuple[str, ...] = (),
        requires_grad=None,
    ):
        """dt: the time step (s; None: the file's timestep). gravity: (3,) m/s^2 (None: the file's)."""
        super().__init__(batch, requires_grad=requires_grad)
        model.check()
        dt = model.timestep if dt is None else dt
        check_step(dt, substeps, model.source)
        self.model = model
        self.dt = float(dt)
        self.substeps = int(substeps)
        self.nv = model.n_dofs
        self.serial = runtime.serial_loops(self.batch, SERIAL_BELOW)
        self._bake_topology()
        self._make_params(gravity, set(per_batch))
        n_act = len(model.actuators)
        if controller is not None and controller.n_actions != n_act:
            raise DiffsimError(
                f"controller has {controller.n_actions} outputs, the robot has {n_act} actuators",
                where=f"{model.source}: controller",
            )
        self._attach_controller(controller, 2 * self.nv)

    # -- set-up -----------------------------------------------------------------------------------------------
    def _bake_topology(self) -> None:
        """Constant geometry as nested Python lists (baked into the kernel) and the tree's index lists."""
        m = self.model
        self._link_rot = [quat_to_matrix(link.quat).tolist() for link in m.links]
        self._link_pos = [[float(c) for c in link.pos] for link in m.links]
        self._inertial_rot = [quat_to_matrix(link.iquat).tolist() for link in m.links]
        self._inertial_pos = [[float(c) for c in link.ipos] for link in m.links]
        self._joint_axis = [[float(c) for c in j.axis / np.linalg.norm(j.axis)] for j in m.joints]
        self._joint_pos = [[float(c) for c in j.pos] for j in m.joints]
        self._joint_skew = [_skew(a) for a in self._joint_axis]
        self._children = [[c for c, link in enumerate(m.links) if link.parent == i] for i in range(m.n_links)]
        self._ancestors = [m.dof_ancestors(j) for j in range(m.n_dofs)]
        moving = set(m.moving_links())
        self._moving = [i in moving for i in range(m.n_links)]
        self._ctrl_limited = [a.ctrlrange is not None for a in m.actuators]
        self._force_limited = [a.forcerange is not None for a in m.actuators]
        self._joint_actuators = [
            [a for a, act in enumerate(m.actuators) if act.joint == j] for j in range(m.n_dofs)
        ]

    def _make_params(self, gravity, per_batch: set[str]) -> None:
        m = self.model
        names = []

        def param(name, shape, value, **kw):
            names.append(name)
            return self.add_param(name, shape, value, per_batch=name in per_batch, **kw)

        moving = set(m.moving_links())
        self._mass, self._inertia = [], []
        for i, link in enumerate(m.links):
            if i not in moving:
                self._mass.append(None)
                self._inertia.append(None)
                continue
            self._mass.append(param(f"links.{link.name}.mass", (), link.mass, bounds=(0, None), unit="kg"))
            self._inertia.append(
                param(
                    f"links.{link.name}.inertia",
                    (3,),
                    link.inertia,
                    vector_dim=3,
                    bounds=(0, None),
                    unit="kg m^2",
                    doc="principal moments of inertia about the centre of mass",
                )
            )
        self._damping, self._armature, self._stiffness = [], [], []
        for j in m.joints:
            unit = "N m" if j.kind == "hinge" else "N"
            per = "rad" if j.kind == "hinge" else "m"
            self._damping.append(
                param(f"joints.{j.name}.damping", (), j.damping, bounds=(0, None), unit=f"{unit} s/{per}")
            )
            self._armature.append(
                param(
                    f"joints.{j.name}.armature",
                    (),
                    j.armature,
                    bounds=(0, None),
                    unit="kg m^2" if j.kind == "hinge" else "kg",
                )
            )
            self._stiffness.append(
                param(f"joints.{j.name}.stiffness", (), j.stiffness, bounds=(0, None), unit=f"{unit}/{per}")
            )
        self._gain, self._bias = [], []
        for a in m.actuators:
            self._gain.append(param(f"actuators.{a.name}.gain", (), a.gain, doc="force per unit of control"))
            self._bias.append(
                param(
                    f"actuators.{a.name}.bias",
                    (3,),
                    a.bias,
                    vector_dim=3,
                    doc="force = gain ctrl + bias0 + bias1 length + bias2 velocity (MuJoCo's biasprm)",
                )
            )
        gravity = m.gravity if gravity is None else np.asarray(gravity, dtype=np.float64)
        if gravity.shape != (3,) or not np.all(np.isfinite(gravity)):
            raise DiffsimError(
                f"must be 3 finite numbers, got {np.asarray(gravity).tolist()}", where=f"{m.source}: gravity"
            )
        self.gravity = param("gravity", (3,), gravity, vector_dim=3, unit="m/s^2")
        self.qpos0 = param(
            "initial.qpos", (self.nv,), m.qpos0, unit="rad or m", doc="initial joint coordinates"
        )
        self.qvel0 = param(
            "initial.qvel", (self.nv,), m.qvel0, unit="rad/s or m/s", doc="initial joint rates"
        )
        unknown = per_batch - set(names)
        if unknown:
            raise DiffsimError(f"unknown parameter names {sorted(unknown)}", where="per_batch")

    # -- the engine contract ------------------------------------------------------------------------------------
    def field_specs(self) -> list[FieldSpec]:
        specs = [
            FieldSpec("q", (self.nv,), None),
            FieldSpec("qd", (self.nv,), None),
            FieldSpec("x", (self.model.n_links,), 3),
            FieldSpec("energy", (), None, kind="scratch"),
        ]
        if self.controller is not None:
            if self.controller.needs_observation:
                specs.append(FieldSpec("obs", (2 * self.nv,), None, kind="scratch"))
            specs += self.controller.field_specs()
        return specs

    @ti.kernel
    def _initialize(self, s: ti.template()):
        ti.loop_config(serialize=ti.static(self.serial))
        for b in range(self.batch):
            q = []
            for j in ti.static(range(self.nv)):
                qj = self.qpos0.field[self.qpos0.bi(b), j]
                s.q[0, b, j] = qj
                s.qd[0, b, j] = self.qvel0.field[self.qvel0.bi(b), j]
                ti.static(q.append(qj))
            self.write_positions(s, 0, b, q)

    def initialize(self, s):
        self._initialize(s)

    def initialize_grad(self, s):
        self._initialize.grad(s)

    def serial_steps(self) -> bool:
        return self.serial

    @ti.func
    def _step_body(self, s: ti.template(), f: ti.template(), fg: ti.template()):
        """One step, frame f -> f + 1 (fg: the global step index); launched by engine/stepper.py."""
        if ti.static(self.has_controller):
            if ti.static(self.has_observation):
                ti.loop_config(serialize=ti.static(self.serial))
                for b, j in ti.ndrange(self.batch, self.nv):
                    s.obs[f, b, j] = s.q[f, b, j]
                    s.obs[f, b, self.nv + j] = s.qd[f, b, j]
            self.controller.run_stages(s, f, fg, self.serial)
        ti.loop_config(serialize=ti.static(self.serial))
        for b in range(self.batch):
            self.advance(s, f, b)

    # -- analysis -----------------------------------------------------------------------------------------------
    def masses(self) -> np.ndarray:
        """Link masses (kg), (copies, links)."""
        per_link = [np.broadcast_to(m.numpy().reshape(-1), (self.batch,)) for m in self._mass]
        return np.stack(per_link, axis=1) if per_link else np.zeros((self.batch, 0))

    def stable_dt(self) -> tuple[float, str]:
        """No bound is estimated for articulated bodies yet: (inf, the reason). The divergence and non-finite
        checks of every rollout still apply."""
        return math.inf, "no stability bound is estimated for articulated bodies"

    def instability_hint(self) -> str:
        return "a smaller dt, or more joint damping or armature"

    def energy(self, traj: dict[str, np.ndarray]) -> np.ndarray | None:
        return traj.get("energy")
