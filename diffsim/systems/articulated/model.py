"""An articulated robot as a tree of rigid links in joint (reduced) coordinates: plain Python, no Taichi.

`load_robot(path)` reads an MJCF (``.xml``) or URDF (``.urdf``) file through MuJoCo's own compiler (the optional
extra ``diffsim[robots]``): `mujoco.MjModel.from_xml_path` resolves defaults, includes, ``childclass``, inertias from
geoms, angle units and URDF conversion exactly as MuJoCo does, and `from_mujoco` copies the compiled arrays into the
dataclasses below. Whatever the simulator does not support (see `unsupported`) is refused in one `DiffsimError`
that names every element, never dropped silently.

Conventions are MuJoCo's: link (body) frames are given relative to the parent's frame (``pos``, ``quat`` as w, x,
y, z), a joint's anchor (``pos``) and ``axis`` in its link's frame, a hinge angle (rad) or slide displacement (m)
measured from the joint's reference ``ref`` (``qpos0``); link ``mass`` (kg) at ``ipos`` with principal moments
``inertia`` (kg m^2) along the frame ``iquat``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ...errors import DiffsimError

#: joint kinds the simulator integrates (each has one degree of freedom)
JOINT_KINDS = ("hinge", "slide")
#: MuJoCo's mjtJoint codes
_MJ_JOINT = {0: "free", 1: "ball", 2: "slide", 3: "hinge"}


@dataclass
class Link:
    """A rigid body. parent: index of the parent link, -1 for the world. joints: indices of its joints in order."""

    name: str
    parent: int
    pos: np.ndarray
    quat: np.ndarray
    mass: float
    ipos: np.ndarray
    iquat: np.ndarray
    inertia: np.ndarray
    joints: list[int] = field(default_factory=list)


@dataclass
class Joint:
    """One degree of freedom: a hinge (angle, rad) about `axis` through `pos`, or a slide (m) along `axis`.

    damping (N m s/rad or N s/m), armature (kg m^2 or kg, added to the mass matrix's diagonal), stiffness
    (N m/rad or N/m) pulling towards `spring_ref`; `ref` is the coordinate at which the link has its rest pose."""

    name: str
    kind: str
    link: int
    pos: np.ndarray
    axis: np.ndarray
    damping: float = 0.0
    armature: float = 0.0
    stiffness: float = 0.0
    spring_ref: float = 0.0
    ref: float = 0.0


@dataclass
class Actuator:
    """MuJoCo's general actuator on one joint, without activation dynamics:

        force = gain * ctrl + bias[0] + bias[1] * length + bias[2] * velocity,  length = gear q,  velocity = gear q',

    and the joint receives gear * force. A motor has gain 1 and bias 0; a position servo gain kp and bias
    (0, -kp, -kv); a velocity servo gain kv and bias (0, 0, -kv). ctrl is clamped to `ctrlrange` and the force to
    `forcerange` where they are given (None: unlimited)."""

    name: str
    joint: int
    gear: float
    gain: float
    bias: np.ndarray
    ctrlrange: tuple[float, float] | None = None
    forcerange: tuple[float, float] | None = None


@dataclass
class Geom:
    """A collision/visual shape on a link (not simulated yet: kept for drawing and later contact)."""

    name: str
    link: int
    kind: str
    size: np.ndarray
    pos: np.ndarray
    quat: np.ndarray


@dataclass
class ArticulatedModel:
    """A tree of links (parents before children), its joints in MuJoCo's degree-of-freedom order, actuators and
    geoms. gravity (m/s^2), timestep (s) as the file gives them."""

    source: str
    links: list[Link]
    joints: list[Joint]
    actuators: list[Actuator] = field(default_factory=list)
    geoms: list[Geom] = field(default_factory=list)
    gravity: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, -9.81]))
    timestep: float = 0.002
    qpos0: np.ndarray | None = None
    qvel0: np.ndarray | None = None

    @property
    def n_links(self) -> int:
        return len(self.links)

    @property
    def n_dofs(self) -> int:
        return len(self.joints)

    def dof_parent(self, j: int) -> int:
        """The joint that moves joint j's frame just before it (-1: none); the mass matrix is nonzero only between
        a joint and its ancestors along this chain."""
        link = self.joints[j].link
        own = self.links[link].joints
        k = own.index(j)
        if k > 0:
            return own[k - 1]
        parent = self.links[link].parent
        while parent >= 0:
            if self.links[parent].joints:
                return self.links[parent].joints[-1]
            parent = self.links[parent].parent
        return -1

    def dof_ancestors(self, j: int) -> list[int]:
        """Joint j and every joint that moves it, nearest first."""
        out = [j]
        while (p := self.dof_parent(out[-1])) >= 0:
            out.append(p)
        return out

    def moving_links(self) -> list[int]:
        """Links moved by at least one joint (the others are welded to the world and do not enter the dynamics)."""
        moving = []
        for i, link in enumerate(self.links):
            if link.joints or (link.parent >= 0 and link.parent in moving):
                moving.append(i)
        return moving

    def check(self) -> None:
        """Refuse what the simulator cannot integrate (one message naming the file and the value)."""
        if not self.joints:
            raise DiffsimError("the robot has no joints: nothing moves", where=self.source)
        for i, link in enumerate(self.links):
            if not (link.parent < i):
                raise DiffsimError(f"link {link.name!r} comes before its parent", where=self.source)
            if link.parent >= 0 or link.joints:
                if not (np.isfinite(link.mass) and link.mass >= 0):
                    raise DiffsimError(f"link {link.name!r} has mass {link.mass}", where=self.source)
        for j in self.joints:
            if j.kind not in JOINT_KINDS:
                raise DiffsimError(f"joint {j.name!r} is a {j.kind} joint", where=self.source)
        if self.qpos0 is None:
            self.qpos0 = np.array([j.ref for j in self.joints], dtype=np.float64)
        if self.qvel0 is None:
            self.qvel0 = np.zeros(self.n_dofs)


# -- loading -----------------------------------------------------------------------------------------------------


def _import_mujoco():
    try:
        import mujoco
    except ImportError:
        raise DiffsimError(
            "loading MJCF and URDF files needs the mujoco package: pip install 'diffsim[robots]'"
        ) from None
    return mujoco


def compile_mujoco(path: str):
    """MuJoCo's compiled model of an MJCF or URDF file (its errors become one DiffsimError naming the file)."""
    mujoco = _import_mujoco()
    if not os.path.isfile(path):
        raise DiffsimError("no such file", where=path)
    try:
        return mujoco.MjModel.from_xml_path(str(path))
    except Exception as e:  # MuJoCo raises ValueError with the parser's message
        message = " ".join(str(e).split())
        raise DiffsimError(f"MuJoCo cannot compile it: {message}", where=path) from None


def load_robot(path: str) -> ArticulatedModel:
    """Compile an MJCF (.xml) or URDF (.urdf) file with MuJoCo and describe it (see the module docstring)."""
    return from_mujoco(compile_mujoco(path), source=str(path))


def _name(mj, kind: str, i: int, prefix: str) -> str:
    mujoco = _import_mujoco()
    obj = {"body": mujoco.mjtObj.mjOBJ_BODY, "joint": mujoco.mjtObj.mjOBJ_JOINT}.get(kind)
    if obj is None:
        obj = {"actuator": mujoco.mjtObj.mjOBJ_ACTUATOR, "geom": mujoco.mjtObj.mjOBJ_GEOM}[kind]
    return mujoco.mj_id2name(mj, obj, i) or f"{prefix}{i}"


def unsupported(mj) -> list[str]:
    """Every element of the compiled model `mj` that the simulator does not support, described for an error."""
    mujoco = _import_mujoco()
    bad = []
    for j in range(mj.njnt):
        kind = _MJ_JOINT[int(mj.jnt_type[j])]
        jname = _name(mj, "joint", j, "joint")
        if kind not in JOINT_KINDS:
            bad.append(f"{kind} joint {jname!r}")
        if mj.jnt_limited[j]:
            bad.append(f"range (limit) of joint {jname!r}")
        if mj.jnt_actfrclimited[j]:
            bad.append(f"actuatorfrcrange of joint {jname!r}")
    for d in range(mj.nv):
        if mj.dof_frictionloss[d] != 0:
            bad.append(f"frictionloss of joint {_name(mj, 'joint', int(mj.dof_jntid[d]), 'joint')!r}")
        if np.any(np.asarray(getattr(mj, "dof_dampingpoly", np.zeros((mj.nv, 1)))[d]) != 0):
            bad.append(f"nonlinear damping of joint {_name(mj, 'joint', int(mj.dof_jntid[d]), 'joint')!r}")
    for j in range(mj.njnt):
        if np.any(np.asarray(getattr(mj, "jnt_stiffnesspoly", np.zeros((mj.njnt, 1)))[j]) != 0):
            bad.append(f"nonlinear stiffness of joint {_name(mj, 'joint', j, 'joint')!r}")
    for a in range(mj.nu):
        aname = _name(mj, "actuator", a, "actuator")
        if int(mj.actuator_trntype[a]) != int(mujoco.mjtTrn.mjTRN_JOINT):
            bad.append(f"actuator {aname!r} (transmission other than a joint)")
        if int(mj.actuator_dyntype[a]) != int(mujoco.mjtDyn.mjDYN_NONE):
            bad.append(f"actuator {aname!r} (activation dynamics)")
        if int(mj.actuator_gaintype[a]) != int(mujoco.mjtGain.mjGAIN_FIXED):
            bad.append(f"actuator {aname!r} (gain type other than fixed)")
        if int(mj.actuator_biastype[a]) not in (
            int(mujoco.mjtBias.mjBIAS_NONE),
            int(mujoco.mjtBias.mjBIAS_AFFINE),
        ):
            bad.append(f"actuator {aname!r} (bias type other than affine)")
        for extra in ("actuator_damping", "actuator_armature"):
            if hasattr(mj, extra) and np.any(np.asarray(getattr(mj, extra))[a] != 0):
                bad.append(f"actuator {aname!r} ({extra.split('_')[1]})")
    counts = {
        "tendon": mj.ntendon,
        "equality constraint": mj.neq,
        "flex": mj.nflex,
        "explicit contact pair": mj.npair,
        "plugin": mj.nplugin,
        "mocap body": mj.nmocap,
    }
    bad += [f"{n} {what}{'s' if n > 1 else ''}" for what, n in counts.items() if n]
    if np.any(mj.body_gravcomp != 0):
        bad.append("gravity compensation (gravcomp)")
    disabled = int(mj.opt.disableflags)
    if not disabled & int(mujoco.mjtDisableBit.mjDSBL_CONTACT) and _colliding_pairs(mj):
        a, b = _colliding_pairs(mj)[0]
        bad.append(
            f"contacts (geoms {_name(mj, 'geom', a, 'geom')!r} and {_name(mj, 'geom', b, 'geom')!r} may collide; "
            'disable them with <flag contact="disable"/> or contype="0" conaffinity="0")'
        )
    for flag in ("mjDSBL_GRAVITY", "mjDSBL_SPRING", "mjDSBL_DAMPER", "mjDSBL_ACTUATION", "mjDSBL_EULERDAMP"):
        if disabled & int(getattr(mujoco.mjtDisableBit, flag)):
            bad.append(f"the disable flag {flag[6:].lower()}")
    if int(mj.opt.integrator) != int(mujoco.mjtIntegrator.mjINT_EULER):
        bad.append("an integrator other than Euler (diffsim integrates with MuJoCo's semi-implicit Euler)")
    if np.any(np.asarray(mj.opt.wind) != 0) or mj.opt.density != 0 or mj.opt.viscosity != 0:
        bad.append("fluid forces (wind, density or viscosity)")
    return bad


def _colliding_pairs(mj) -> list[tuple[int, int]]:
    """Geom pairs that MuJoCo's collision filter lets collide (different, not parent-child bodies, matching bits)."""
    pairs = []
    parent = mj.body_parentid
    weld = mj.body_weldid
    for a in range(mj.ngeom):
        for b in range(a + 1, mj.ngeom):
            ba, bb = int(mj.geom_bodyid[a]), int(mj.geom_bodyid[b])
            if weld[ba] == weld[bb]:
                continue
            if (
                weld[parent[weld[ba]]] == weld[bb]
                and weld[bb] != 0
                or weld[parent[weld[bb]]] == weld[ba]
                and weld[ba] != 0
            ):
                continue  # MuJoCo's parent filter (not applied to the world)
            if (mj.geom_contype[a] & mj.geom_conaffinity[b]) or (mj.geom_contype[b] & mj.geom_conaffinity[a]):
                pairs.append((a, b))
    return pairs


def from_mujoco(mj, source: str = "<mujoco model>") -> ArticulatedModel:
    """Describe a compiled `mujoco.MjModel` (see `load_robot`); refuses what `unsupported` lists."""
    bad = unsupported(mj)
    if bad:
        raise DiffsimError("not supported by diffsim's articulated system: " + "; ".join(bad), where=source)
    geom_kinds = {0: "plane", 2: "sphere", 3: "capsule", 4: "ellipsoid", 5: "cylinder", 6: "box", 7: "mesh"}
    links = [
        Link(
            name=_name(mj, "body", i, "link"),
            parent=int(mj.body_parentid[i]) - 1,
            pos=np.array(mj.body_pos[i], dtype=np.float64),
            quat=np.array(mj.body_quat[i], dtype=np.float64),
            mass=float(mj.body_mass[i]),
            ipos=np.array(mj.body_ipos[i], dtype=np.float64),
            iquat=np.array(mj.body_iquat[i], dtype=np.float64),
            inertia=np.array(mj.body_inertia[i], dtype=np.float64),
        )
        for i in range(1, mj.nbody)
    ]
    joints = []
    for j in range(mj.njnt):
        d, qa = int(mj.jnt_dofadr[j]), int(mj.jnt_qposadr[j])
        joint = Joint(
            name=_name(mj, "joint", j, "joint"),
            kind=_MJ_JOINT[int(mj.jnt_type[j])],
            link=int(mj.jnt_bodyid[j]) - 1,
            pos=np.array(mj.jnt_pos[j], dtype=np.float64),
            axis=np.array(mj.jnt_axis[j], dtype=np.float64),
            damping=float(mj.dof_damping[d]),
            armature=float(mj.dof_armature[d]),
            stiffness=float(mj.jnt_stiffness[j]),
            spring_ref=float(mj.qpos_spring[qa]),
            ref=float(mj.qpos0[qa]),
        )
        assert d == j and qa == j  # one degree of freedom per joint, in joint order
        joints.append(joint)
        links[joint.link].joints.append(j)
    actuators = []
    for a in range(mj.nu):
        ctrl = tuple(map(float, mj.actuator_ctrlrange[a])) if mj.actuator_ctrllimited[a] else None
        force = tuple(map(float, mj.actuator_forcerange[a])) if mj.actuator_forcelimited[a] else None
        gain = float(mj.actuator_gainprm[a, 0])
        bias = np.array(mj.actuator_biasprm[a, :3], dtype=np.float64)
        if int(mj.actuator_biastype[a]) == 0:
            bias = np.zeros(3)
        actuators.append(
            Actuator(
                name=_name(mj, "actuator", a, "actuator"),
                joint=int(mj.actuator_trnid[a, 0]),
                gear=float(mj.actuator_gear[a, 0]),
                gain=gain,
                bias=bias,
                ctrlrange=ctrl,
                forcerange=force,
            )
        )
    geoms = [
        Geom(
            name=_name(mj, "geom", g, "geom"),
            link=int(mj.geom_bodyid[g]) - 1,
            kind=geom_kinds.get(int(mj.geom_type[g]), str(int(mj.geom_type[g]))),
            size=np.array(mj.geom_size[g], dtype=np.float64),
            pos=np.array(mj.geom_pos[g], dtype=np.float64),
            quat=np.array(mj.geom_quat[g], dtype=np.float64),
        )
        for g in range(mj.ngeom)
    ]
    model = ArticulatedModel(
        source=source,
        links=links,
        joints=joints,
        actuators=actuators,
        geoms=geoms,
        gravity=np.array(mj.opt.gravity, dtype=np.float64),
        timestep=float(mj.opt.timestep),
        qpos0=np.array(mj.qpos0, dtype=np.float64),
        qvel0=np.zeros(mj.nv),
    )
    model.check()
    return model


def quat_to_matrix(q) -> np.ndarray:
    """Rotation matrix of a unit quaternion (w, x, y, z)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
