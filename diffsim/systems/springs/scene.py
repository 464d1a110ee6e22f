"""Scene tables of the mass-spring system (``[scene] system = "springs"``) and building a `SpringSystem` from them.

A body is either a preset (``[body] preset = "walker2d"``) or explicit ``[[particles]]`` and ``[[springs]]``;
``[ground]`` is a penalty contact plane under it, ``[controller]`` drives its actuated springs.
"""

from __future__ import annotations

import numpy as np

from diffsim.scene.common import build_with_controller, scene_gravity
from diffsim.scene.control import CONTROLLER
from diffsim.scene.registry import BuildContext, Drawing, register_system
from diffsim.scene.schema import Field, Table, TableArray

__all__ = ["SPRINGS_SCENE", "PRESETS", "build_springs", "springs_drawing"]


def _walker2d(body: dict):
    from diffsim.systems.springs.robots import walker2d  # noqa: PLC0415

    return walker2d(
        cell=0.1 if body["cell"] is None else body["cell"],
        ground_clearance=0.0 if body["clearance"] is None else body["clearance"],
    )


def _cube3d(body: dict):
    """A 3D cube: 8 corner masses joined by all 28 springs (12 edges, 12 face and 4 body diagonals), one corner
    at the origin and the bottom face `clearance` above z = 0."""
    from itertools import combinations, product  # noqa: PLC0415

    from diffsim.systems.springs.model import SpringModel  # noqa: PLC0415

    edge = 0.2 if body["cell"] is None else body["cell"]
    z0 = 0.0 if body["clearance"] is None else body["clearance"]
    mass = 0.1 if body["mass"] is None else body["mass"]
    model = SpringModel(dim=3)
    for i, j, k in product((0, 1), repeat=3):
        model.add_particle([i * edge, j * edge, z0 + k * edge], mass=mass)
    for a, b in combinations(range(8), 2):
        model.add_spring(a, b, stiffness=500.0, damping=1.0)
    model.source = "cube3d"
    return model


#: preset name -> function(validated [body] table) -> SpringModel
PRESETS = {"walker2d": _walker2d, "cube3d": _cube3d}

_PRESET_OPTIONS = ("cell", "clearance", "mass", "stiffness", "damping", "actuation")

BODY = Table(
    {
        "preset": Field(
            "str",
            None,
            choices=tuple(PRESETS),
            doc="A ready-made body: walker2d (2D, 18 masses, 41 springs, 8 actuated leg springs) or "
            "cube3d (3D, 8 masses, 28 springs). Unset: the body is the [[particles]] and [[springs]].",
        ),
        "cell": Field(
            "float",
            None,
            unit="m",
            min=0,
            min_exclusive=True,
            doc="Preset: cell size (walker2d: 0.1; cube3d: edge length 0.2).",
        ),
        "clearance": Field(
            "float", None, unit="m", doc="Preset: height of the lowest particles (default 0)."
        ),
        "mass": Field(
            "float",
            None,
            unit="kg",
            min=0,
            min_exclusive=True,
            doc="Preset: mass of every particle (default 0.1).",
        ),
        "stiffness": Field(
            "float",
            None,
            unit="N/m",
            min=0,
            min_exclusive=True,
            doc="Preset: stiffness of every spring (walker2d: 1000; cube3d: 500).",
        ),
        "damping": Field(
            "float",
            None,
            unit="N s/m",
            min=0,
            doc="Preset: damping of every spring (walker2d: 2; cube3d: 1).",
        ),
        "actuation": Field("float", None, doc="Preset: actuation of the actuated springs (walker2d: 0.3)."),
    },
    doc="The body: a preset, or the [[particles]] and [[springs]] listed in the file.",
)

PARTICLES = TableArray(
    Table(
        {
            "position": Field(
                "vector", unit="m", doc="Initial position, 2 or 3 components (the last axis points up)."
            ),
            "velocity": Field("vector", None, unit="m/s", doc="Initial velocity (default zero)."),
            "mass": Field("float", 1.0, unit="kg", min=0, min_exclusive=True, doc="Mass (`particles.mass`)."),
            "pinned": Field("bool", False, doc="Held in place: it never moves."),
        }
    ),
    doc="Point masses of an explicit body (parameters `particles.mass`, `initial.position`, `initial.velocity`).",
)

SPRINGS = TableArray(
    Table(
        {
            "a": Field("int", min=0, doc="Index of one particle (0-based, in [[particles]] order)."),
            "b": Field("int", min=0, doc="Index of the other particle."),
            "stiffness": Field(
                "float", unit="N/m", min=0, min_exclusive=True, doc="k (`springs.stiffness`)."
            ),
            "damping": Field(
                "float", 0.0, unit="N s/m", min=0, doc="c, along the spring (`springs.damping`)."
            ),
            "rest_length": Field(
                "float",
                None,
                unit="m",
                min=0,
                min_exclusive=True,
                doc="L0 (`springs.rest_length`); default the initial distance.",
            ),
            "actuator": Field("int", -1, min=-1, doc="The controller output driving it; -1: passive."),
            "actuation": Field(
                "float", 0.0, doc="Rest length under action a: L0 (1 + actuation a) (`springs.actuation`)."
            ),
        }
    ),
    doc="Springs of an explicit body: F = k (L - L0) + c (relative velocity along the spring).",
)

GROUND = Table(
    {
        "enabled": Field("bool", True, doc="false: no ground, the body falls freely."),
        "height": Field("float", 0.0, unit="m", doc="Height of the plane (`ground.height`)."),
        "friction": Field("float", 1.0, min=0, doc="Coulomb friction coefficient mu (`ground.friction`)."),
        "stiffness": Field(
            "float",
            3e4,
            unit="N/m",
            min=0,
            min_exclusive=True,
            doc="Penalty stiffness k_c (`ground.stiffness`).",
        ),
        "damping": Field("float", 50.0, unit="N s/m", min=0, doc="Penalty damping c_c (`ground.damping`)."),
        "smoothing": Field(
            "float",
            1e-2,
            unit="m/s",
            min=0,
            min_exclusive=True,
            doc="Slip speed eps below which friction is smoothed (keeps gradients finite).",
        ),
    },
    doc="A horizontal contact plane: normal force max(0, k_c pen - c_c v_n), smoothed Coulomb friction.",
)

SPRINGS_SCENE = Table(
    {"body": BODY, "particles": PARTICLES, "springs": SPRINGS, "ground": GROUND, "controller": CONTROLLER}
)


def _model(ctx: BuildContext):
    from diffsim.systems.springs.model import SpringModel  # noqa: PLC0415

    body, particles, springs = ctx.data["body"], ctx.data["particles"], ctx.data["springs"]
    preset = body["preset"]
    if preset is not None:
        if particles or springs:
            raise ctx.error(
                ("body", "preset"),
                f"give either a preset ({preset!r}) or [[particles]] and [[springs]], not both",
            )
        model = PRESETS[preset](body)
        n_springs = model.n_springs
        if body["mass"] is not None:
            model.masses = [body["mass"]] * model.n_particles
        if body["stiffness"] is not None:
            model.stiffness = [body["stiffness"]] * n_springs
        if body["damping"] is not None:
            model.damping = [body["damping"]] * n_springs
        if body["actuation"] is not None:
            model.actuation = [body["actuation"] if a >= 0 else 0.0 for a in model.actuator]
    else:
        for key in _PRESET_OPTIONS:
            if body[key] is not None:
                raise ctx.error(
                    ("body", key),
                    "applies to a preset body only; set it on each of the [[particles]] or [[springs]]",
                )
        if not particles:
            raise ctx.error(
                ("particles",),
                'missing required key: give [body] preset = "walker2d" or at least one [[particles]] entry',
            )
        dim = len(particles[0]["position"])
        if dim not in (2, 3):
            raise ctx.error(("particles", 0, "position"), f"must have 2 or 3 components, got {dim}")
        model = SpringModel(dim=dim)
        for i, p in enumerate(particles):
            for key in ("position", "velocity"):
                if p[key] is not None and len(p[key]) != dim:
                    raise ctx.error(
                        ("particles", i, key),
                        f"must have {dim} components like particles[0].position, got {len(p[key])}",
                    )
            model.add_particle(p["position"], p["velocity"], mass=p["mass"], pinned=p["pinned"])
        for s in springs:
            model.add_spring(
                s["a"],
                s["b"],
                s["stiffness"],
                damping=s["damping"],
                rest_length=s["rest_length"],
                actuator=s["actuator"],
                actuation=s["actuation"],
            )
    model.source = ctx.source
    return model


def build_springs(ctx: BuildContext):
    """A `SpringSystem` from a validated scene."""
    from diffsim.systems.springs import SpringSystem  # noqa: PLC0415

    model = _model(ctx)
    sim, ground = ctx.data["sim"], ctx.data["ground"]
    gravity = scene_gravity(ctx, model.dim, f"the body is {model.dim}D")

    def make(controller, per_batch):
        return SpringSystem(
            model,
            dt=sim["dt"],
            gravity=gravity,
            ground=ground["height"] if ground["enabled"] else None,
            friction=ground["friction"],
            contact_stiffness=ground["stiffness"],
            contact_damping=ground["damping"],
            friction_smoothing=ground["smoothing"],
            controller=controller,
            substeps=sim["substeps"],
            batch=sim["batch"],
            per_batch=per_batch,
            requires_grad=ctx.requires_grad,
        )

    return build_with_controller(ctx, model.n_actuators, make, list_controller_params=True)


def springs_drawing(system) -> Drawing:
    model = system.model
    actuator = np.asarray(model.actuator, dtype=np.int64).reshape(-1)
    actuated = np.nonzero(actuator >= 0)[0]
    ground = None
    if system.has_ground:
        ground = float(np.ravel(system.ground_height.numpy())[0])
    return Drawing(
        quantity="x",
        dim=model.dim,
        up_axis=model.dim - 1,
        edges=np.asarray(model.springs, dtype=np.int64).reshape(-1, 2),
        ground=ground,
        actuated=actuated,
        actuator=actuator[actuated],
        fixed=np.nonzero(np.asarray(model.pinned, dtype=bool))[0],
    )


def springs_size(data: dict) -> tuple[int, str, str]:
    """Values per copy per frame (x, v, force of each particle; a lower bound), for the memory check."""
    particles = data["particles"]
    n = len(particles) if particles else 8  # a preset body: at least cube3d's 8
    dim = len(particles[0]["position"]) if particles and particles[0].get("position") else 2
    return 3 * dim * n, "particles", f"{n} particles"


register_system(
    "springs",
    SPRINGS_SCENE,
    build_springs,
    drawing=springs_drawing,
    doc="Mass-spring soft bodies in 2D or 3D: point masses, damped springs (some actuated), a penalty ground "
    "with smoothed Coulomb friction, semi-implicit Euler (see docs/springs.md).",
    size=springs_size,
)
