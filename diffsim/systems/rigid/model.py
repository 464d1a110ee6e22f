"""Rigid-body model: bodies, shapes, static obstacles, joints, motors and springs, built in plain Python and checked
before any field is allocated.

Conventions. The last axis points up. A body's position is its centre of mass (m); if its shapes' centre of mass is
not at the given position, `finalize` moves the body there and the shapes with it, so the world geometry stays as
described. 2D orientation is an angle (rad, counter-clockwise); 3D orientation a unit quaternion [w, x, y, z] whose
rotation maps body to world coordinates; angular velocity is a scalar (rad/s) in 2D and a world-frame vector in 3D.
Shape and obstacle rotations are an angle (2D) or a rotation vector, axis times angle (3D).

Shape sizes (m): sphere (circle in 2D) [radius]; box [half extents ...]; capsule [radius, half length] along the
shape's last local axis (y in 2D, z in 3D).

A body's mass follows from its shapes and `density` (kg/m^3, kg/m^2 in 2D), or is given (`mass`, kg); its inertia
follows from its shapes (scaled to the given mass), or is given (`inertia`: principal moments along the body axes,
kg m^2, one number in 2D). A body with no shapes needs both.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ...errors import DiffsimError

SHAPE_KINDS = ("sphere", "box", "capsule")
SHAPE_ALIASES = {"circle": "sphere", "ball": "sphere", "rectangle": "box"}
SHAPE_ID = {k: i for i, k in enumerate(SHAPE_KINDS)}
SIZE_DOC = {"sphere": "[radius]", "box": "half extents", "capsule": "[radius, half length]"}

JOINT_KINDS = ("revolute", "prismatic", "ball", "fixed")
JOINT_ID = {k: i for i, k in enumerate(JOINT_KINDS)}
JOINT_ALIASES = {"hinge": "revolute", "slider": "prismatic", "weld": "fixed", "spherical": "ball"}

MOTOR_MODES = ("torque", "position")
MOTOR_ID = {k: i for i, k in enumerate(MOTOR_MODES)}

# Geometry the point of a contact candidate is tested against.
GEOM_PLANE, GEOM_SPHERE, GEOM_BOX, GEOM_CAPSULE, GEOM_SEGMENTS = range(5)
# Where a candidate's point or geometry lives.
ON_BODY, ON_OBSTACLE, ON_GROUND = range(3)

#: mass modes of a body: from density, mass given (inertia from the shapes), mass and inertia given
MASS_DENSITY, MASS_GIVEN, MASS_INERTIA_GIVEN = range(3)

WORLD_NAMES = ("world", "")


def rotation_2d(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def rotation_from_vector(r) -> np.ndarray:
    """Rodrigues: the rotation matrix of the rotation vector r (axis times angle, rad)."""
    r = np.asarray(r, dtype=np.float64)
    a = float(np.linalg.norm(r))
    k = np.array([[0.0, -r[2], r[1]], [r[2], 0.0, -r[0]], [-r[1], r[0], 0.0]])
    if a < 1e-12:
        return np.eye(3) + k
    return np.eye(3) + math.sin(a) / a * k + (1 - math.cos(a)) / a**2 * (k @ k)


def quaternion_matrix(q) -> np.ndarray:
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def shape_area_or_volume(kind: str, size, dim: int) -> float:
    """Area (2D) or volume (3D) of a shape (m^2 or m^3); the kernels compute the same in `_unit_mass`."""
    if kind == "sphere":
        r = size[0]
        return math.pi * r * r if dim == 2 else 4.0 / 3.0 * math.pi * r**3
    if kind == "box":
        return float(np.prod(2.0 * np.asarray(size[:dim])))
    r, h = size[0], size[1]
    return 4 * h * r + math.pi * r * r if dim == 2 else 2 * h * math.pi * r * r + 4.0 / 3.0 * math.pi * r**3


@dataclass
class Body:
    name: str
    position: list
    velocity: list | None = None
    orientation: float | list | None = None  # angle (2D) or quaternion [w, x, y, z] (3D)
    angular_velocity: float | list | None = None
    density: float | None = None
    mass: float | None = None
    inertia: float | list | None = None
    group: str = ""


@dataclass
class Shape:
    body: int | str
    kind: str
    size: list
    offset: list | None = None
    rotation: float | list | None = None


@dataclass
class Obstacle:
    """A static box: centre (m), half extents (m), rotation (angle or rotation vector)."""

    position: list
    size: list
    rotation: float | list | None = None


@dataclass
class Joint:
    kind: str
    a: int | str | None
    b: int | str
    anchor: list | None = None  # world point at the initial pose
    anchor_a: list | None = None  # local to a (world point if a is the world)
    anchor_b: list | None = None  # local to b
    axis: list | None = None  # world direction at the initial pose (3D hinge, prismatic)
    stiffness: float = 1e4
    damping: float = 10.0
    angular_stiffness: float = 100.0
    angular_damping: float = 1.0
    lower: float | None = None
    upper: float | None = None
    limit_stiffness: float = 1000.0
    limit_damping: float = 1.0
    name: str = ""


@dataclass
class Motor:
    joint: int | str
    mode: str = "torque"
    scale: float = 1.0
    kp: float = 0.0
    kd: float = 0.0
    actuator: int | None = None


@dataclass
class BodySpring:
    a: int | str | None
    b: int | str
    anchor_a: list | None = None  # world points at the initial pose; default the body's centre
    anchor_b: list | None = None
    stiffness: float = 100.0
    damping: float = 0.0
    rest_length: float | None = None
    actuator: int = -1
    actuation: float = 0.0


@dataclass
class RigidModel:
    """The bodies and everything attached to them, 2D or 3D. Add items, then the system calls `finalize()`."""

    dim: int = 2
    source: str = "model"
    bodies: list = field(default_factory=list)
    shapes: list = field(default_factory=list)
    obstacles: list = field(default_factory=list)
    joints: list = field(default_factory=list)
    motors: list = field(default_factory=list)
    springs: list = field(default_factory=list)
    #: contacts between shapes of different bodies (not joined by a joint)
    body_collisions: bool = True
    #: extra body pairs (names or indices) that never collide
    exclude: list = field(default_factory=list)

    # -- building -------------------------------------------------------------------------------------------
    def add_body(
        self,
        position,
        velocity=None,
        orientation=None,
        angular_velocity=None,
        *,
        name: str | None = None,
        density: float | None = None,
        mass: float | None = None,
        inertia=None,
        group: str = "",
        angle: float | None = None,
    ) -> int:
        """A body; returns its index. `angle` is the 2D spelling of `orientation`. Without density, mass and
        inertia the density defaults to 1000 kg/m^3."""
        if angle is not None:
            orientation = angle
        name = f"body{len(self.bodies)}" if name is None else str(name)
        self.bodies.append(
            Body(name, position, velocity, orientation, angular_velocity, density, mass, inertia, group)
        )
        return len(self.bodies) - 1

    def add_shape(self, body, kind: str, size, offset=None, rotation=None) -> int:
        self.shapes.append(Shape(body, kind, size, offset, rotation))
        return len(self.shapes) - 1

    def add_sphere(self, body, radius: float, offset=None) -> int:
        return self.add_shape(body, "sphere", [radius], offset)

    add_circle = add_sphere

    def add_box(self, body, half_extents, offset=None, rotation=None) -> int:
        return self.add_shape(body, "box", list(half_extents), offset, rotation)

    def add_capsule(self, body, radius: float, half_length: float, offset=None, rotation=None) -> int:
        return self.add_shape(body, "capsule", [radius, half_length], offset, rotation)

    def add_obstacle(self, position, half_extents, rotation=None) -> int:
        """A static box."""
        self.obstacles.append(Obstacle(position, list(half_extents), rotation))
        return len(self.obstacles) - 1

    def add_joint(self, kind: str, a, b, anchor=None, **kw) -> int:
        """A joint between body `a` (None or "world": the world) and body `b`. `anchor` is a world point at the
        initial pose (or give `anchor_a`, `anchor_b` in the bodies' frames); `axis` a world direction (3D
        hinge, prismatic). See `Joint` for the stiffness, damping and limit keys."""
        self.joints.append(Joint(kind, a, b, anchor=anchor, **kw))
        return len(self.joints) - 1

    def add_motor(
        self,
        joint,
        mode: str = "torque",
        scale: float = 1.0,
        kp: float = 0.0,
        kd: float = 0.0,
        actuator: int | None = None,
    ) -> int:
        """A motor on a revolute or prismatic joint, driven by controller output `actuator` (default: the next
        one). torque: tau = scale a; position: tau = kp (scale a - q) - kd dq/dt, with q the joint's angle (or
        displacement)."""
        self.motors.append(Motor(joint, mode, scale, kp, kd, actuator))
        return len(self.motors) - 1

    def add_spring(
        self,
        a,
        b,
        anchor_a=None,
        anchor_b=None,
        stiffness: float = 100.0,
        damping: float = 0.0,
        rest_length: float | None = None,
        actuator: int = -1,
        actuation: float = 0.0,
    ) -> int:
        """A spring between world points `anchor_a` on body a and `anchor_b` on body b (default: their centres);
        actuated ones have rest length L0 (1 + actuation a)."""
        self.springs.append(
            BodySpring(a, b, anchor_a, anchor_b, stiffness, damping, rest_length, actuator, actuation)
        )
        return len(self.springs) - 1

    # -- queries --------------------------------------------------------------------------------------------
    @property
    def n_bodies(self) -> int:
        return len(self.bodies)

    @property
    def n_actuators(self) -> int:
        acts = [m.actuator if m.actuator is not None else k for k, m in enumerate(self.motors)]
        acts += [s.actuator for s in self.springs]
        return max(acts, default=-1) + 1

    def body_names(self) -> list[str]:
        return [b.name for b in self.bodies]

    # -- checking -------------------------------------------------------------------------------------------
    def _where(self, *parts) -> str:
        path = ""
        for p in parts:
            path = f"{path}[{p}]" if isinstance(p, int) else (f"{path}.{p}" if path else p)
        return f"{self.source}: {path}"

    def _vector(self, value, n: int, where: str, default=None) -> np.ndarray:
        if value is None:
            value = default if default is not None else [0.0] * n
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
        if arr.shape != (n,):
            raise DiffsimError(f"must have {n} components, got {np.ravel(value).tolist()}", where=where)
        if not np.all(np.isfinite(arr)):
            raise DiffsimError(f"must be finite, got {arr.tolist()}", where=where)
        return arr

    def _rotation(self, value, where: str) -> np.ndarray:
        if self.dim == 2:
            angle = 0.0 if value is None else float(np.ravel([value])[0])
            if np.size(value if value is not None else 0.0) != 1 or not math.isfinite(angle):
                raise DiffsimError(f"a 2D rotation is one angle (rad), got {value}", where=where)
            return rotation_2d(angle)
        return rotation_from_vector(self._vector(value, 3, where))

    def _body_ref(self, ref, where: str, allow_world: bool) -> int:
        names = self.body_names()
        if ref is None or (isinstance(ref, str) and ref in WORLD_NAMES):
            if allow_world:
                return -1
            raise DiffsimError("must name a body, not the world", where=where)
        if isinstance(ref, str):
            if ref not in names:
                import difflib

                close = difflib.get_close_matches(ref, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise DiffsimError(
                    f"names body {ref!r}, which does not exist{hint}; bodies: {', '.join(names) or 'none'}",
                    where=where,
                )
            if names.count(ref) > 1:
                raise DiffsimError(f"body name {ref!r} is not unique", where=where)
            return names.index(ref)
        i = int(ref)
        if i == -1 and allow_world:
            return -1
        if not 0 <= i < len(names):
            raise DiffsimError(
                f"names body {i}, but there are {len(names)} bodies (0..{len(names) - 1})", where=where
            )
        return i

    def finalize(self) -> dict:
        """Check everything; return numpy arrays and index tables for the system."""
        dim = self.dim
        if dim not in (2, 3):
            raise DiffsimError(f"dim must be 2 or 3, got {dim}", where=f"{self.source}: dim")
        n = self.n_bodies
        if n == 0:
            raise DiffsimError("the model has no bodies", where=f"{self.source}: bodies")
        names = self.body_names()
        for i, nm in enumerate(names):
            if nm in WORLD_NAMES or names.count(nm) > 1:
                raise DiffsimError(
                    f"body name {nm!r} is reserved or used twice", where=self._where("bodies", i, "name")
                )
        adim = 1 if dim == 2 else 3
        out: dict = {"dim": dim, "n": n, "names": names}

        # -- shapes (before bodies: masses follow from them)
        ns = len(self.shapes)
        s_body = np.zeros(ns, dtype=np.int64)
        s_kind = np.zeros(ns, dtype=np.int64)
        s_size = np.ones((ns, 3))
        s_offset = np.zeros((ns, dim))
        s_rot = np.zeros((ns, dim, dim))
        for k, sh in enumerate(self.shapes):
            where = lambda key, k=k: self._where("shapes", k, key)  # noqa: E731
            s_body[k] = self._body_ref(sh.body, where("body"), allow_world=False)
            kind = SHAPE_ALIASES.get(str(sh.kind), str(sh.kind))
            if kind not in SHAPE_KINDS:
                raise DiffsimError(
                    f"unknown shape kind {sh.kind!r}; choose sphere (circle), box or capsule",
                    where=where("kind"),
                )
            s_kind[k] = SHAPE_ID[kind]
            need = {"sphere": 1, "box": dim, "capsule": 2}[kind]
            size = np.ravel(np.asarray(sh.size if sh.size is not None else [], dtype=np.float64))
            if size.shape != (need,):
                raise DiffsimError(
                    f"a {kind} needs size = {SIZE_DOC[kind]} ({need} numbers), got {size.tolist()}",
                    where=where("size"),
                )
            if not np.all((size > 0) & np.isfinite(size)):
                raise DiffsimError(f"sizes must be > 0, got {size.tolist()}", where=where("size"))
            s_size[k, :need] = size
            s_offset[k] = self._vector(sh.offset, dim, where("offset"))
            s_rot[k] = self._rotation(sh.rotation, where("rotation"))

        # -- bodies
        x0 = np.zeros((n, dim))
        v0 = np.zeros((n, dim))
        rot0 = np.zeros((n, adim if dim == 2 else 4))
        w0 = np.zeros((n, adim))
        mode = np.zeros(n, dtype=np.int64)
        density, mass, inertia = [], [], []
        slot = np.zeros(n, dtype=np.int64)
        inertia_slot = np.zeros(n, dtype=np.int64)
        groups: dict[str, list[int]] = {}
        R0 = np.zeros((n, dim, dim))
        for i, b in enumerate(self.bodies):
            where = lambda key, i=i: self._where("bodies", i, key)  # noqa: E731
            x0[i] = self._vector(b.position, dim, where("position"))
            v0[i] = self._vector(b.velocity, dim, where("velocity"))
            if dim == 2:
                ang = 0.0 if b.orientation is None else b.orientation
                if np.size(ang) != 1 or not math.isfinite(float(np.ravel([ang])[0])):
                    raise DiffsimError(
                        f"a 2D orientation is one angle (rad), got {ang}", where=where("angle")
                    )
                rot0[i, 0] = float(np.ravel([ang])[0])
                R0[i] = rotation_2d(rot0[i, 0])
                w = 0.0 if b.angular_velocity is None else b.angular_velocity
                if np.size(w) != 1 or not math.isfinite(float(np.ravel([w])[0])):
                    raise DiffsimError(
                        f"a 2D angular velocity is one number (rad/s), got {w}",
                        where=where("angular_velocity"),
                    )
                w0[i, 0] = float(np.ravel([w])[0])
            else:
                q = self._vector(b.orientation, 4, where("orientation"), default=[1.0, 0.0, 0.0, 0.0])
                norm = float(np.linalg.norm(q))
                if norm < 1e-9:
                    raise DiffsimError(
                        f"a quaternion must not be zero, got {q.tolist()}", where=where("orientation")
                    )
                if abs(norm - 1.0) > 1e-6:
                    warnings.warn(
                        f"{where('orientation')}: quaternion {q.tolist()} has norm {norm:.6g}; normalised",
                        stacklevel=3,
                    )
                rot0[i] = q / norm
                R0[i] = quaternion_matrix(rot0[i])
                w0[i] = self._vector(b.angular_velocity, 3, where("angular_velocity"))
            mine = np.nonzero(s_body == i)[0]
            vols = np.array([shape_area_or_volume(SHAPE_KINDS[s_kind[k]], s_size[k], dim) for k in mine])
            if b.mass is None and b.inertia is not None:
                raise DiffsimError(
                    "inertia is given without mass; give both, or neither", where=where("inertia")
                )
            if b.mass is not None and b.density is not None:
                raise DiffsimError("give either density or mass, not both", where=where("density"))
            if b.mass is None:
                rho = 1000.0 if b.density is None else b.density
                if not (np.isfinite(rho) and rho > 0):
                    raise DiffsimError(f"must be > 0, got {rho:g}", where=where("density"))
                if not len(mine):
                    raise DiffsimError(
                        f"body {b.name!r} has no shapes: give its mass and inertia", where=where("mass")
                    )
                mode[i] = MASS_DENSITY
                slot[i] = len(density)
                density.append(float(rho))
            else:
                m = float(b.mass)
                if not (math.isfinite(m) and m > 0):
                    raise DiffsimError(f"must be > 0, got {b.mass:g}", where=where("mass"))
                slot[i] = len(mass)
                mass.append(m)
                if b.inertia is None:
                    if not len(mine):
                        raise DiffsimError(
                            f"body {b.name!r} has no shapes: give its inertia too", where=where("inertia")
                        )
                    mode[i] = MASS_GIVEN
                else:
                    inert = self._vector(b.inertia, adim, where("inertia"))
                    if not np.all(inert > 0):
                        raise DiffsimError(f"must be > 0, got {inert.tolist()}", where=where("inertia"))
                    if dim == 3 and 2 * inert.max() > inert.sum() * (1 + 1e-9):
                        raise DiffsimError(
                            f"principal moments {inert.tolist()} violate the triangle inequality "
                            "(I1 + I2 >= I3)",
                            where=where("inertia"),
                        )
                    mode[i] = MASS_INERTIA_GIVEN
                    inertia_slot[i] = len(inertia)
                    inertia.append(inert)
            # A body's position is its centre of mass: move the body onto its shapes' centroid (uniform density).
            if len(mine):
                com = (vols[:, None] * s_offset[mine]).sum(0) / vols.sum()
                if np.linalg.norm(com) > 1e-12:
                    s_offset[mine] -= com
                    x0[i] += R0[i] @ com
            groups.setdefault(str(b.group), []).append(i)
        out.update(
            x0=x0,
            v0=v0,
            rot0=rot0,
            w0=w0,
            R0=R0,
            mass_mode=mode,
            mass_slot=slot,
            inertia_slot=inertia_slot,
            density=np.asarray(density),
            mass=np.asarray(mass),
            inertia=np.asarray(inertia).reshape(-1, adim),
            groups=groups,
        )
        out.update(
            shape_body=s_body, shape_kind=s_kind, shape_size=s_size, shape_offset=s_offset, shape_rot=s_rot
        )

        # -- obstacles
        no = len(self.obstacles)
        o_pos, o_rot, o_size = np.zeros((no, dim)), np.zeros((no, dim, dim)), np.ones((no, 3))
        for k, ob in enumerate(self.obstacles):
            where = lambda key, k=k: self._where("obstacles", k, key)  # noqa: E731
            o_pos[k] = self._vector(ob.position, dim, where("position"))
            size = self._vector(ob.size, dim, where("size"))
            if not np.all(size > 0):
                raise DiffsimError(f"half extents must be > 0, got {size.tolist()}", where=where("size"))
            o_size[k, :dim] = size
            o_rot[k] = self._rotation(ob.rotation, where("rotation"))
        out.update(obstacle_position=o_pos, obstacle_rot=o_rot, obstacle_size=o_size)

        def local(i, p):  # world point -> body i's frame at the initial pose
            return p if i < 0 else R0[i].T @ (p - x0[i])

        # -- joints
        nj = len(self.joints)
        J = {
            key: []
            for key in (
                "kind",
                "a",
                "b",
                "anchor_a",
                "anchor_b",
                "axis_a",
                "axis_b",
                "ref_a",
                "ref_b",
                "rel0",
                "angle0",
                "stiffness",
                "damping",
                "angular_stiffness",
                "angular_damping",
                "lower",
                "upper",
                "limited",
                "limit_stiffness",
                "limit_damping",
            )
        }
        joined = set()
        for j, jt in enumerate(self.joints):
            where = lambda key, j=j: self._where("joints", j, key)  # noqa: E731
            kind = JOINT_ALIASES.get(str(jt.kind), str(jt.kind))
            if kind not in JOINT_KINDS:
                raise DiffsimError(
                    f"unknown joint kind {jt.kind!r}; choose {', '.join(JOINT_KINDS)}", where=where("kind")
                )
            if dim == 2 and kind == "ball":
                kind = "revolute"
            a = self._body_ref(jt.a, where("a"), allow_world=True)
            b = self._body_ref(jt.b, where("b"), allow_world=False)
            if a == b:
                raise DiffsimError(f"joins body {names[b]!r} to itself", where=self._where("joints", j))
            joined.add((min(a, b), max(a, b)))
            if jt.anchor is not None:
                if jt.anchor_a is not None or jt.anchor_b is not None:
                    raise DiffsimError(
                        "give anchor (a world point) or anchor_a and anchor_b, not both",
                        where=where("anchor"),
                    )
                p = self._vector(jt.anchor, dim, where("anchor"))
                pa, pb = local(a, p), local(b, p)
            else:
                pa = self._vector(jt.anchor_a, dim, where("anchor_a"), default=None if a >= 0 else None)
                pb = self._vector(jt.anchor_b, dim, where("anchor_b"))
            if dim == 3 or kind == "prismatic":
                default_axis = [0.0, 0.0, 1.0] if dim == 3 else [1.0, 0.0]
                axis = self._vector(jt.axis, dim, where("axis"), default=default_axis)
                if np.linalg.norm(axis) < 1e-9:
                    raise DiffsimError(f"must not be zero, got {axis.tolist()}", where=where("axis"))
                axis = axis / np.linalg.norm(axis)
            else:
                axis = np.zeros(dim)
            Ra = np.eye(dim) if a < 0 else R0[a]
            Rb = R0[b]
            ref = np.zeros(dim)
            if dim == 3:  # a reference direction perpendicular to the axis, for the hinge angle
                helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
                ref = helper - axis * (helper @ axis)
                ref /= np.linalg.norm(ref)
            rel0 = Ra.T @ Rb
            angle0 = rot0[b, 0] - (0.0 if a < 0 else rot0[a, 0]) if dim == 2 else 0.0
            lower = -math.inf if jt.lower is None else float(jt.lower)
            upper = math.inf if jt.upper is None else float(jt.upper)
            if lower >= upper:
                raise DiffsimError(
                    f"lower limit {lower:g} must be below upper limit {upper:g}", where=where("lower")
                )
            limited = math.isfinite(lower) or math.isfinite(upper)
            if limited and kind not in ("revolute", "prismatic"):
                raise DiffsimError(
                    f"limits apply to revolute and prismatic joints, not {kind}", where=where("lower")
                )
            for key in (
                "stiffness",
                "damping",
                "angular_stiffness",
                "angular_damping",
                "limit_stiffness",
                "limit_damping",
            ):
                val = float(getattr(jt, key))
                ok = val > 0 if key == "stiffness" else val >= 0
                if not (ok and math.isfinite(val)):
                    raise DiffsimError(
                        f"must be {'> 0' if key == 'stiffness' else '>= 0'}, got {val:g}", where=where(key)
                    )
                J[key].append(val)
            J["kind"].append(JOINT_ID[kind])
            J["a"].append(a)
            J["b"].append(b)
            J["anchor_a"].append(pa)
            J["anchor_b"].append(pb)
            J["axis_a"].append(Ra.T @ axis)
            J["axis_b"].append(Rb.T @ axis)
            J["ref_a"].append(Ra.T @ ref)
            J["ref_b"].append(Rb.T @ ref)
            J["rel0"].append(rel0)
            J["angle0"].append(angle0)
            J["lower"].append(lower if math.isfinite(lower) else -1e30)
            J["upper"].append(upper if math.isfinite(upper) else 1e30)
            J["limited"].append(int(limited))
        out["joints"] = {k: np.asarray(v) for k, v in J.items()}
        out["n_joints"] = nj

        # -- motors
        M = {key: [] for key in ("joint", "mode", "scale", "kp", "kd", "actuator")}
        jnames = [jt.name for jt in self.joints]
        for k, mo in enumerate(self.motors):
            where = lambda key, k=k: self._where("motors", k, key)  # noqa: E731
            if isinstance(mo.joint, str):
                if mo.joint not in jnames or not mo.joint:
                    raise DiffsimError(
                        f"names joint {mo.joint!r}, which does not exist; joints: "
                        f"{', '.join(x for x in jnames if x) or 'none named'}",
                        where=where("joint"),
                    )
                j = jnames.index(mo.joint)
            else:
                j = int(mo.joint)
                if not 0 <= j < nj:
                    raise DiffsimError(f"names joint {j}, but there are {nj} joints", where=where("joint"))
            if J["kind"][j] not in (JOINT_ID["revolute"], JOINT_ID["prismatic"]):
                raise DiffsimError(
                    f"motors drive revolute and prismatic joints; joint {j} is {JOINT_KINDS[J['kind'][j]]}",
                    where=where("joint"),
                )
            if mo.mode not in MOTOR_MODES:
                raise DiffsimError(
                    f"unknown motor mode {mo.mode!r}; choose torque or position", where=where("mode")
                )
            for key in ("kp", "kd"):
                val = float(getattr(mo, key))
                if not (val >= 0 and math.isfinite(val)):
                    raise DiffsimError(f"must be >= 0, got {val:g}", where=where(key))
            if not math.isfinite(float(mo.scale)):
                raise DiffsimError("must be finite", where=where("scale"))
            act = k if mo.actuator is None else int(mo.actuator)
            if act < 0:
                raise DiffsimError(f"must be >= 0, got {act}", where=where("actuator"))
            M["joint"].append(j)
            M["mode"].append(MOTOR_ID[mo.mode])
            M["scale"].append(float(mo.scale))
            M["kp"].append(float(mo.kp))
            M["kd"].append(float(mo.kd))
            M["actuator"].append(act)
        out["motors"] = {k: np.asarray(v) for k, v in M.items()}

        # -- springs
        S = {
            key: []
            for key in (
                "a",
                "b",
                "anchor_a",
                "anchor_b",
                "stiffness",
                "damping",
                "rest_length",
                "actuator",
                "actuation",
            )
        }
        for k, sp in enumerate(self.springs):
            where = lambda key, k=k: self._where("springs", k, key)  # noqa: E731
            a = self._body_ref(sp.a, where("a"), allow_world=True)
            b = self._body_ref(sp.b, where("b"), allow_world=False)
            if a == b:
                raise DiffsimError(f"connects body {names[b]!r} to itself", where=self._where("springs", k))
            pa_w = self._vector(sp.anchor_a, dim, where("anchor_a"), default=(x0[a] if a >= 0 else None))
            pb_w = self._vector(sp.anchor_b, dim, where("anchor_b"), default=x0[b])
            length = float(np.linalg.norm(pb_w - pa_w))
            rest = length if sp.rest_length is None else float(sp.rest_length)
            if not (rest > 0 and math.isfinite(rest)):
                raise DiffsimError(
                    f"must be > 0, got {rest:g} (anchors at the same place?)", where=where("rest_length")
                )
            if not (sp.stiffness > 0 and math.isfinite(sp.stiffness)):
                raise DiffsimError(f"must be > 0, got {sp.stiffness:g}", where=where("stiffness"))
            if not (sp.damping >= 0 and math.isfinite(sp.damping)):
                raise DiffsimError(f"must be >= 0, got {sp.damping:g}", where=where("damping"))
            S["a"].append(a)
            S["b"].append(b)
            S["anchor_a"].append(local(a, pa_w))
            S["anchor_b"].append(local(b, pb_w))
            S["stiffness"].append(float(sp.stiffness))
            S["damping"].append(float(sp.damping))
            S["rest_length"].append(rest)
            S["actuator"].append(int(sp.actuator))
            S["actuation"].append(float(sp.actuation))
        out["springs"] = {k: np.asarray(v) for k, v in S.items()}

        excluded = set(joined)
        for k, pair in enumerate(self.exclude):
            if len(pair) != 2:
                raise DiffsimError(f"must be a pair of bodies, got {pair}", where=self._where("exclude", k))
            a = self._body_ref(pair[0], self._where("exclude", k), allow_world=False)
            b = self._body_ref(pair[1], self._where("exclude", k), allow_world=False)
            excluded.add((min(a, b), max(a, b)))
        out["excluded"] = excluded
        return out


def contact_candidates(arrays: dict, has_ground: bool, body_collisions: bool) -> list[tuple]:
    """Every (point, geometry) test the contact loop runs, as tuples

        (a_on, a_index, sign, b_on, b_index, geometry, material)

    a point: a sphere's centre, a box's corner (sign: which corner) or a capsule's end, on a body's shape
    (a_on = ON_BODY, a_index = shape) or an obstacle's corner (ON_OBSTACLE); tested against b's geometry: the ground
    plane, a sphere, box or capsule shape, an obstacle box, or (GEOM_SEGMENTS) the closest points of two capsules'
    axes. material: 0 ground, 1 everything else.

    Box against box is corner-against-box both ways: edge-edge crossings without a corner inside are missed.
    """
    dim = arrays["dim"]
    kinds = [SHAPE_KINDS[k] for k in arrays["shape_kind"]]
    body = arrays["shape_body"]
    corners = [np.array(c, dtype=np.float64) for c in np.ndindex(*(2,) * dim)]
    corners = [2.0 * c - 1.0 for c in corners]
    zero = np.zeros(dim)
    ends = [np.eye(dim)[-1] * s for s in (-1.0, 1.0)]

    def points(kind):
        return {"sphere": [zero], "box": corners, "capsule": ends}[kind]

    geom = {"sphere": GEOM_SPHERE, "box": GEOM_BOX, "capsule": GEOM_CAPSULE}
    out = []
    for s, kind in enumerate(kinds):
        if has_ground:
            out += [(ON_BODY, s, p, ON_GROUND, 0, GEOM_PLANE, 0) for p in points(kind)]
        for o in range(len(arrays["obstacle_position"])):
            out += [(ON_BODY, s, p, ON_OBSTACLE, o, GEOM_BOX, 1) for p in points(kind)]
            if kind != "sphere":  # the obstacle's corners against the shape
                out += [(ON_OBSTACLE, o, c, ON_BODY, s, geom[kind], 1) for c in corners]
    if not body_collisions:
        return out
    excluded = arrays["excluded"]
    for s, ks in enumerate(kinds):
        for t in range(s + 1, len(kinds)):
            kt = kinds[t]
            i, j = int(body[s]), int(body[t])
            if i == j or (min(i, j), max(i, j)) in excluded:
                continue
            pair = {ks, kt}
            if ks == kt == "capsule":
                out.append((ON_BODY, s, zero, ON_BODY, t, GEOM_SEGMENTS, 1))
            elif ks == "sphere" or kt == "sphere":
                a, b = (s, t) if ks == "sphere" else (t, s)  # the sphere's centre against the other shape
                out.append((ON_BODY, a, zero, ON_BODY, b, geom[kinds[b]], 1))
            elif pair == {"box"}:
                out += [(ON_BODY, s, c, ON_BODY, t, GEOM_BOX, 1) for c in corners]
                out += [(ON_BODY, t, c, ON_BODY, s, GEOM_BOX, 1) for c in corners]
            else:  # box and capsule: the capsule's ends against the box, the box's corners against the capsule
                cap, box = (s, t) if ks == "capsule" else (t, s)
                out += [(ON_BODY, cap, p, ON_BODY, box, GEOM_BOX, 1) for p in ends]
                out += [(ON_BODY, box, c, ON_BODY, cap, GEOM_CAPSULE, 1) for c in corners]
    return out
