"""Scene tables of the rigid-body system (``[scene] system = "rigid"``) and building a `RigidSystem` from them.

A model is either a preset (``[rigid] preset = "billiards"``) or explicit ``[[bodies]]`` with ``[[shapes]]``,
``[[obstacles]]``, ``[[joints]]``, ``[[motors]]`` and ``[[springs]]`` that name bodies by ``name``. The ground,
the other contacts and, for 2D scenes seen from above, the table have their own tables.
"""

from __future__ import annotations

import numpy as np

from diffsim.scene.common import build_with_controller, scene_gravity
from diffsim.scene.control import CONTROLLER
from diffsim.scene.registry import BuildContext, Drawing, register_system
from diffsim.scene.schema import Field, Table, TableArray

__all__ = ["RIGID_SCENE", "PRESETS", "build_rigid", "rigid_drawing"]


def _billiards(options: dict):
    from diffsim.systems.rigid.robots import billiards  # noqa: PLC0415

    kw = {k: v for k, v in options.items() if v is not None}
    return billiards(**kw)


#: preset name -> function(options dict) -> RigidModel
PRESETS = {"billiards": _billiards}

_NUM = "a number in 2D, a list of 3 in 3D"

RIGID = Table(
    {
        "dim": Field(
            "int", None, choices=(2, 3), doc="2 or 3; default from the bodies' positions (or the preset)."
        ),
        "preset": Field(
            "str",
            None,
            choices=tuple(PRESETS),
            doc="A ready-made model: billiards (2D table seen from above, a cue ball and a rack of 10).",
        ),
        "options": Table(
            {},
            extra=True,
            doc="Keyword arguments of the preset (billiards: rows, radius, mass, table, rack, cue, cushion).",
        ),
        "body_collisions": Field(
            "bool",
            True,
            doc="Contacts between shapes of different bodies (never between bodies joined by a joint).",
        ),
        "exclude": Field(
            "list",
            [],
            item=Field("any"),
            doc='Pairs of body names that never collide: [["thigh", "shin"], ...].',
        ),
        "friction_smoothing": Field(
            "float",
            1e-2,
            unit="m/s",
            min=0,
            min_exclusive=True,
            doc="Slip speed eps below which Coulomb friction is smoothed.",
        ),
    },
    doc="Model-wide options.",
)

BODIES = TableArray(
    Table(
        {
            "name": Field("str", doc="Unique name, used by shapes, joints, springs and losses."),
            "position": Field(
                "vector", unit="m", doc="Initial position of the centre of mass (`initial.position`)."
            ),
            "velocity": Field("vector", None, unit="m/s", doc="Initial velocity (default zero)."),
            "angle": Field("float", None, unit="rad", doc="2D: initial angle (`initial.angle`)."),
            "orientation": Field(
                "vector",
                None,
                length=4,
                doc="3D: initial unit quaternion [w, x, y, z] "
                "(`initial.orientation`); a non-unit one is normalised with a warning.",
            ),
            "angular_velocity": Field("any", None, unit="rad/s", doc=f"Initial angular velocity: {_NUM}."),
            "density": Field(
                "float",
                None,
                unit="kg/m^3 (kg/m^2 in 2D)",
                min=0,
                min_exclusive=True,
                doc="Mass follows from the shapes (`bodies.density`); default 1000 (3D), 100 (2D).",
            ),
            "mass": Field(
                "float",
                None,
                unit="kg",
                min=0,
                min_exclusive=True,
                doc="Given mass instead of a density (`bodies.mass`).",
            ),
            "inertia": Field(
                "any",
                None,
                unit="kg m^2",
                doc=f"Principal moments along the body axes, {_NUM} (`bodies.inertia`); default from "
                "the shapes.",
            ),
            "group": Field(
                "str",
                "",
                doc='Initial-state parameter group: bodies of group "cue" get '
                "`initial.cue.position`, ... instead of `initial.position`.",
            ),
        }
    ),
    doc="Rigid bodies. Each needs a [[shapes]] entry naming it, or a mass and inertia.",
)

SHAPES = TableArray(
    Table(
        {
            "body": Field("str", doc="Name of the body the shape belongs to."),
            "kind": Field(
                "str",
                choices=("sphere", "circle", "box", "capsule"),
                doc="sphere (circle in 2D), box or capsule (axis along the shape's last axis).",
            ),
            "size": Field(
                "vector",
                unit="m",
                min=0,
                min_exclusive=True,
                doc="sphere [radius], box [half extents], capsule [radius, half length] (`shapes.size`).",
            ),
            "offset": Field("vector", None, unit="m", doc="Centre in the body's frame (default 0)."),
            "rotation": Field(
                "any",
                None,
                unit="rad",
                doc="Rotation in the body's frame: an angle (2D) or a rotation vector (3D).",
            ),
        }
    ),
    doc="Collision shapes, several per body allowed; they also give the body's mass and inertia.",
)

OBSTACLES = TableArray(
    Table(
        {
            "position": Field("vector", unit="m", doc="Centre (`obstacles.position`)."),
            "size": Field(
                "vector", unit="m", min=0, min_exclusive=True, doc="Half extents (`obstacles.size`)."
            ),
            "rotation": Field("any", None, unit="rad", doc="An angle (2D) or a rotation vector (3D)."),
        }
    ),
    doc="Static boxes.",
)

JOINTS = TableArray(
    Table(
        {
            "name": Field("str", "", doc="Name, for motors."),
            "kind": Field(
                "str",
                choices=("revolute", "hinge", "prismatic", "slider", "ball", "fixed"),
                doc="revolute (hinge), prismatic (slider), ball or fixed.",
            ),
            "a": Field("str", "world", doc='First body, or "world".'),
            "b": Field("str", doc="Second body."),
            "anchor": Field("vector", None, unit="m", doc="The joint's world position at the initial pose."),
            "anchor_a": Field(
                "vector", None, unit="m", doc="Or: the anchor in a's frame (`joints.anchor_a`)."
            ),
            "anchor_b": Field("vector", None, unit="m", doc="and in b's frame (`joints.anchor_b`)."),
            "axis": Field(
                "vector",
                None,
                doc="World axis at the initial pose (3D hinge; prismatic). Default z (3D), x (2D prismatic).",
            ),
            "stiffness": Field(
                "float",
                1e4,
                unit="N/m",
                min=0,
                min_exclusive=True,
                doc="Anchor spring k (`joints.stiffness`): the anchors drift by force / k.",
            ),
            "damping": Field("float", 10.0, unit="N s/m", min=0, doc="Anchor damping (`joints.damping`)."),
            "angular_stiffness": Field(
                "float",
                100.0,
                unit="N m/rad",
                min=0,
                doc="Axis alignment (3D hinge) or orientation lock (fixed, prismatic).",
            ),
            "angular_damping": Field("float", 1.0, unit="N m s/rad", min=0, doc="Its damping."),
            "lower": Field("float", None, unit="rad or m", doc="Lower limit of the joint coordinate."),
            "upper": Field("float", None, unit="rad or m", doc="Upper limit."),
            "limit_stiffness": Field("float", 1000.0, min=0, doc="Limit spring (N m/rad or N/m)."),
            "limit_damping": Field("float", 1.0, min=0, doc="Limit damping."),
        }
    ),
    doc="Joints: stiff spring-dampers between anchor points (soft constraints).",
)

MOTORS = TableArray(
    Table(
        {
            "joint": Field("any", doc="Joint name or index."),
            "mode": Field(
                "str",
                "torque",
                choices=("torque", "position"),
                doc="torque: tau = scale a; position: tau = kp (scale a - q) - kd dq/dt.",
            ),
            "scale": Field(
                "float", 1.0, doc="N m (or N) per unit action; rad (or m) in position mode (`motors.scale`)."
            ),
            "kp": Field("float", 0.0, min=0, doc="Position gain (`motors.kp`)."),
            "kd": Field("float", 0.0, min=0, doc="Velocity gain (`motors.kd`)."),
            "actuator": Field(
                "int", None, min=0, doc="Controller output driving it (default: the motor's index)."
            ),
        }
    ),
    doc="Motors on revolute and prismatic joints, driven by the controller.",
)

SPRINGS = TableArray(
    Table(
        {
            "a": Field("str", doc='First body, or "world".'),
            "b": Field("str", doc="Second body."),
            "anchor_a": Field(
                "vector", None, unit="m", doc="World point on a at the initial pose (default its centre)."
            ),
            "anchor_b": Field("vector", None, unit="m", doc="World point on b (default its centre)."),
            "stiffness": Field("float", unit="N/m", min=0, min_exclusive=True, doc="`springs.stiffness`."),
            "damping": Field("float", 0.0, unit="N s/m", min=0, doc="`springs.damping`."),
            "rest_length": Field(
                "float", None, unit="m", min=0, min_exclusive=True, doc="Default the initial length."
            ),
            "actuator": Field("int", -1, min=-1, doc="Controller output; -1: passive."),
            "actuation": Field("float", 0.0, doc="Rest length L0 (1 + actuation a) (`springs.actuation`)."),
        }
    ),
    doc="Springs between bodies, optionally actuated (DiffTaichi's rigid robots).",
)

GROUND = Table(
    {
        "enabled": Field("bool", True, doc="false: no ground."),
        "height": Field("float", 0.0, unit="m", doc="Height of the plane (`ground.height`)."),
        "friction": Field("float", 0.5, min=0, doc="Coulomb coefficient (`ground.friction`)."),
        "restitution": Field(
            "float", 0.5, min=0.15, max=1.0, doc="Coefficient of restitution (`ground.restitution`)."
        ),
        "stiffness": Field(
            "float", 1e4, unit="N/m", min=0, min_exclusive=True, doc="Penalty stiffness (`ground.stiffness`)."
        ),
    },
    doc="The ground plane under the bodies (normal: the last axis).",
)

CONTACT = Table(
    {
        "friction": Field(
            "float", 0.5, min=0, doc="Between bodies and against obstacles (`contact.friction`)."
        ),
        "restitution": Field("float", 0.5, min=0.15, max=1.0, doc="`contact.restitution`."),
        "stiffness": Field("float", 1e4, unit="N/m", min=0, min_exclusive=True, doc="`contact.stiffness`."),
    },
    doc="Contacts between bodies and against obstacles.",
)

TABLE = Table(
    {
        "friction": Field(
            "float",
            None,
            min=0,
            doc="2D scenes seen from above: bodies sliding on the table "
            "decelerate by friction x gravity (`table.friction`); unset: no table.",
        ),
        "gravity": Field("float", 9.81, unit="m/s^2", min=0, doc="The gravity pressing bodies on the table."),
    },
    doc="The table a 2D scene lies on (billiards).",
)

RIGID_SCENE = Table(
    {
        "rigid": RIGID,
        "bodies": BODIES,
        "shapes": SHAPES,
        "obstacles": OBSTACLES,
        "joints": JOINTS,
        "motors": MOTORS,
        "springs": SPRINGS,
        "ground": GROUND,
        "contact": CONTACT,
        "table": TABLE,
        "controller": CONTROLLER,
    }
)


def _model(ctx: BuildContext):
    from diffsim.systems.rigid.model import RigidModel  # noqa: PLC0415

    data = ctx.data
    opts = data["rigid"]
    if opts["preset"] is not None:
        for key in ("bodies", "shapes", "joints", "motors", "springs"):
            if data[key]:
                raise ctx.error(
                    ("rigid", "preset"), f"give either a preset ({opts['preset']!r}) or [[{key}]], not both"
                )
        try:
            model = PRESETS[opts["preset"]](opts["options"])
        except TypeError as e:
            raise ctx.error(("rigid", "options"), str(e)) from None
        for o in data["obstacles"]:
            model.add_obstacle(o["position"], o["size"], o["rotation"])
    else:
        if opts["options"]:
            raise ctx.error(("rigid", "options"), "applies to a preset only")
        bodies = data["bodies"]
        if not bodies:
            raise ctx.error(
                ("bodies",), "missing required key: give [rigid] preset or at least one [[bodies]]"
            )
        dim = opts["dim"] or len(bodies[0]["position"])
        if dim not in (2, 3):
            raise ctx.error(("bodies", 0, "position"), f"must have 2 or 3 components, got {dim}")
        model = RigidModel(dim=dim)
        for i, b in enumerate(bodies):
            key = "angle" if dim == 2 else "orientation"
            other = "orientation" if dim == 2 else "angle"
            if b[other] is not None:
                raise ctx.error(("bodies", i, other), f"a {dim}D body's orientation is given by {key!r}")
            density = b["density"]
            if density is None and b["mass"] is None:
                density = 100.0 if dim == 2 else 1000.0
            model.add_body(
                b["position"],
                b["velocity"],
                b[key],
                b["angular_velocity"],
                name=b["name"],
                density=density,
                mass=b["mass"],
                inertia=b["inertia"],
                group=b["group"],
            )
        for s in data["shapes"]:
            model.add_shape(s["body"], s["kind"], s["size"], s["offset"], s["rotation"])
        for o in data["obstacles"]:
            model.add_obstacle(o["position"], o["size"], o["rotation"])
        for j in data["joints"]:
            model.add_joint(
                j["kind"],
                j["a"],
                j["b"],
                anchor=j["anchor"],
                anchor_a=j["anchor_a"],
                anchor_b=j["anchor_b"],
                axis=j["axis"],
                stiffness=j["stiffness"],
                damping=j["damping"],
                angular_stiffness=j["angular_stiffness"],
                angular_damping=j["angular_damping"],
                lower=j["lower"],
                upper=j["upper"],
                limit_stiffness=j["limit_stiffness"],
                limit_damping=j["limit_damping"],
                name=j["name"],
            )
        for m in data["motors"]:
            model.add_motor(m["joint"], m["mode"], m["scale"], m["kp"], m["kd"], m["actuator"])
        for s in data["springs"]:
            model.add_spring(
                s["a"],
                s["b"],
                s["anchor_a"],
                s["anchor_b"],
                s["stiffness"],
                s["damping"],
                s["rest_length"],
                s["actuator"],
                s["actuation"],
            )
    if opts["dim"] is not None and opts["dim"] != model.dim:
        raise ctx.error(("rigid", "dim"), f"is {opts['dim']}, but the model is {model.dim}D")
    model.body_collisions = opts["body_collisions"]
    model.exclude = list(opts["exclude"])
    model.source = ctx.source
    return model


def build_rigid(ctx: BuildContext):
    """A `RigidSystem` from a validated scene."""
    from diffsim.systems.rigid import RigidSystem  # noqa: PLC0415

    model = _model(ctx)
    sim, ground, contact, table = ctx.data["sim"], ctx.data["ground"], ctx.data["contact"], ctx.data["table"]
    gravity = scene_gravity(ctx, model.dim, f"the model is {model.dim}D")

    def make(controller, per_batch):
        return RigidSystem(
            model,
            dt=sim["dt"],
            gravity=gravity,
            ground=ground["height"] if ground["enabled"] else None,
            ground_friction=ground["friction"],
            ground_restitution=ground["restitution"],
            ground_stiffness=ground["stiffness"],
            contact_friction=contact["friction"],
            contact_restitution=contact["restitution"],
            contact_stiffness=contact["stiffness"],
            friction_smoothing=ctx.data["rigid"]["friction_smoothing"],
            table_friction=table["friction"],
            table_gravity=table["gravity"],
            controller=controller,
            substeps=sim["substeps"],
            batch=sim["batch"],
            per_batch=per_batch,
            requires_grad=ctx.requires_grad,
        )

    return build_with_controller(ctx, model.n_actuators, make)


def rigid_drawing(system) -> Drawing:
    """Bodies as points (their centres of mass), joints and springs as lines between them."""
    arrays = system.arrays
    pairs = [
        (int(a), int(b)) for a, b in zip(arrays["joints"]["a"], arrays["joints"]["b"], strict=True) if a >= 0
    ]
    pairs += [
        (int(a), int(b))
        for a, b in zip(arrays["springs"]["a"], arrays["springs"]["b"], strict=True)
        if a >= 0
    ]
    ground = float(np.ravel(system.ground_height.numpy())[0]) if system.has_ground else None
    return Drawing(
        quantity="x",
        dim=system.dim,
        up_axis=system.dim - 1,
        edges=np.asarray(pairs, dtype=np.int64).reshape(-1, 2),
        ground=ground,
    )


def rigid_size(data: dict) -> tuple[int, str, str]:
    """Values per copy per frame (position, velocity, orientation, angular velocity of each body; a lower bound), for
    the memory check."""
    n = max(1, len(data["bodies"]))
    return 9 * n, "bodies", f"{n} bodies"


register_system(
    "rigid",
    RIGID_SCENE,
    build_rigid,
    drawing=rigid_drawing,
    doc="Rigid bodies in 2D or 3D: spheres, boxes and capsules, penalty contacts with smoothed Coulomb friction, "
    "penalty joints with limits, motors and springs, semi-implicit Euler (see docs/rigid.md).",
    size=rigid_size,
)
