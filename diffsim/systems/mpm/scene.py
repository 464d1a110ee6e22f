"""Scene tables of the MPM system (``[scene] system = "mpm"``) and building an `MPMSystem` from them.

A scene lists the background ``[grid]``, the ``[[materials]]``, the ``[[bodies]]`` sampled with particles (boxes,
spheres, voxel masks), the domain ``[walls]``, optional ``[[colliders]]``, and for actuated bodies the
``[actuation]`` and the ``[controller]``.
"""

from __future__ import annotations

import math

import numpy as np

from diffsim.scene.common import build_with_controller, scene_gravity
from diffsim.scene.control import CONTROLLER
from diffsim.scene.registry import BuildContext, Drawing, register_system
from diffsim.scene.schema import Field, Table, TableArray

__all__ = ["MPM_SCENE", "build_mpm", "mpm_drawing"]

_KINDS = ("fluid", "elastic", "sand")
_WALL_MODES = ("sticky", "slip", "friction", "none")

GRID = Table(
    {
        "dim": Field("int", 2, choices=(2, 3), doc="2 or 3 dimensions (the last axis points up)."),
        "res": Field(
            "int_list", doc="Grid nodes per axis: one number for every axis, or one per axis.", min=6
        ),
        "dx": Field(
            "float",
            None,
            unit="m",
            min=0,
            min_exclusive=True,
            doc="Node spacing; default 1 / (the first res), a unit-wide domain.",
        ),
        "ppc": Field(
            "float",
            None,
            min=0,
            min_exclusive=True,
            doc="Particles per grid cell of every body (default 2^dim: 2 x 2 or 2 x 2 x 2 on a lattice); "
            "a perfect power k^dim samples a lattice, anything else uniformly at random.",
        ),
        "bound": Field("int", 3, min=1, doc="Thickness of the walls, in grid nodes at each side."),
    },
    required=True,
    doc="The background grid: `res` nodes per axis spaced `dx`; node i sits at i dx.",
)

MATERIALS = TableArray(
    Table(
        {
            "name": Field("str", doc="Name; the parameters are `materials.<name>.<constant>`."),
            "kind": Field(
                "str",
                choices=_KINDS,
                doc="fluid (weakly compressible, Tait equation of state), elastic "
                "(neo-Hookean) or sand (Drucker-Prager, Klar et al. 2016).",
            ),
            "density": Field("float", 1000.0, unit="kg/m^dim", min=0, min_exclusive=True, doc="rho."),
            "youngs_modulus": Field(
                "float", 1e5, unit="Pa", min=0, min_exclusive=True, doc="E (elastic, sand)."
            ),
            "poisson_ratio": Field(
                "float",
                0.3,
                min=-1,
                min_exclusive=True,
                doc="nu (elastic, sand); must be < 0.5 (0.5 is incompressible).",
            ),
            "bulk_modulus": Field(
                "float",
                1e5,
                unit="Pa",
                min=0,
                min_exclusive=True,
                doc="K (fluid): p = K (J^-gamma - 1) / gamma, sound speed sqrt(K / rho).",
            ),
            "viscosity": Field(
                "float", 0.0, unit="Pa s", min=0, doc="eta (fluid, elastic): Newtonian viscosity."
            ),
            "friction_angle": Field(
                "float",
                30.0,
                unit="deg",
                min=0,
                max=90,
                min_exclusive=True,
                max_exclusive=True,
                doc="phi (sand).",
            ),
            "cohesion": Field("float", 0.0, unit="Pa", min=0, doc="c (sand): mean tensile stress it bears."),
            "eos_exponent": Field(
                "float",
                7.0,
                min=0,
                min_exclusive=True,
                doc="gamma (fluid): Tait exponent, a constant (not a parameter).",
            ),
        }
    ),
    min_len=1,
    doc="Materials, named by the bodies. Every constant of a material's kind is a parameter.",
)

BODIES = TableArray(
    Table(
        {
            "shape": Field("str", choices=("box", "sphere", "voxels"), doc="What to fill with particles."),
            "material": Field("str", doc="Name of a [[materials]] entry."),
            "lo": Field("vector", None, unit="m", doc="box: lower corner."),
            "hi": Field("vector", None, unit="m", doc="box: upper corner."),
            "center": Field("vector", None, unit="m", doc="sphere: centre."),
            "radius": Field("float", None, unit="m", min=0, min_exclusive=True, doc="sphere: radius."),
            "mask": Field(
                "any",
                None,
                doc="voxels: nested lists of 0/1 (dim axes, index [i][j][k] along x, y, z), "
                "or the path of a .npy boolean array, relative to the scene file.",
            ),
            "origin": Field("vector", None, unit="m", doc="voxels: corner of voxel (0, 0[, 0])."),
            "voxel_size": Field(
                "float", None, unit="m", min=0, min_exclusive=True, doc="voxels: edge length."
            ),
            "ppc": Field(
                "float", None, min=0, min_exclusive=True, doc="Particles per cell (default: [grid] ppc)."
            ),
            "velocity": Field(
                "vector",
                None,
                unit="m/s",
                doc="Initial velocity of the body (parameter `bodies.velocity`, one row per body).",
            ),
            "actuator": Field(
                "int", -1, min=-1, doc="Controller output driving this body's active stress; -1: passive."
            ),
            "jitter": Field(
                "float",
                0.0,
                min=0,
                max=1,
                doc="Random displacement of lattice particles, as a fraction of their spacing.",
            ),
            "seed": Field("int", 0, doc="Seed of jitter and random sampling."),
            "name": Field("str", "", doc="A label for messages."),
        }
    ),
    min_len=1,
    doc="Bodies filled with particles (parameters `initial.position` per particle, `bodies.velocity` per body, "
    "plus `initial.velocity` per particle, zero by default).",
)

WALLS = Table(
    {
        "mode": Field(
            "any",
            "sticky",
            doc="sticky (a node moving into a wall stops; it may leave), slip (the "
            "velocity into the wall is removed), friction (slip plus Coulomb friction), or none; one "
            "for all walls or a list x-, x+, y-, y+ (, z-, z+).",
        ),
        "friction": Field(
            "any",
            0.5,
            doc="Coulomb mu of friction walls: one number or one per wall (parameter `walls.friction`).",
        ),
    },
    doc="The walls at the grid's sides.",
)

COLLIDERS = TableArray(
    Table(
        {
            "kind": Field("str", choices=("plane", "sphere", "box"), doc="Shape."),
            "position": Field("vector", unit="m", doc="plane: a point on it; sphere, box: centre at t = 0."),
            "normal": Field("vector", None, doc="plane: outward normal (default: up)."),
            "radius": Field("float", None, unit="m", min=0, min_exclusive=True, doc="sphere: radius."),
            "half_extents": Field("vector", None, unit="m", doc="box: half of its size along each axis."),
            "velocity": Field("vector", None, unit="m/s", doc="Constant velocity (default zero)."),
            "friction": Field("float", 0.5, min=0, doc="Coulomb mu against particles."),
        }
    ),
    doc="Rigid obstacles acting on the grid (parameters `colliders.position`, `.velocity`, `.size`, `.friction`).",
)

ACTUATION = Table(
    {
        "strength": Field(
            "any",
            1000.0,
            doc="Active stress at action 1 (Pa): one number or one per actuator "
            "(parameter `actuation.strength`).",
        ),
        "directions": Field(
            "any",
            None,
            doc="Per actuator, the material direction it stretches along (default: up), a list of vectors.",
        ),
    },
    doc="Active stress of actuated bodies: strength act (F d)(F d)^T (DiffTaichi's diffmpm muscles).",
)

MPM_SCENE = Table(
    {
        "grid": GRID,
        "materials": MATERIALS,
        "bodies": BODIES,
        "walls": WALLS,
        "colliders": COLLIDERS,
        "actuation": ACTUATION,
        "controller": CONTROLLER,
    }
)


def _load_mask(ctx: BuildContext, value, i: int) -> np.ndarray:
    import os  # noqa: PLC0415

    where = ("bodies", i, "mask")
    if isinstance(value, str):
        base = os.path.dirname(ctx.source) if not ctx.source.startswith("<") else ""
        path = value if os.path.isabs(value) else os.path.join(base, value)
        try:
            return np.load(path, allow_pickle=False).astype(bool)
        except FileNotFoundError:
            raise ctx.error(where, f"file not found: {path}") from None
        except (OSError, ValueError) as e:
            raise ctx.error(where, f"cannot read {path} as a .npy array: {e}") from None
    try:
        return np.asarray(value, dtype=np.float64) != 0
    except (TypeError, ValueError):
        raise ctx.error(where, "must be nested lists of 0 and 1 (or a .npy file)") from None


def _model(ctx: BuildContext):
    from diffsim.systems.mpm.model import MPMModel  # noqa: PLC0415

    grid = ctx.data["grid"]
    dim = grid["dim"]
    res = grid["res"]
    if len(res) not in (1, dim):
        raise ctx.error(("grid", "res"), f"must be one number or {dim}, got {len(res)}")
    res = tuple(res) * (dim if len(res) == 1 else 1)
    dx = grid["dx"] if grid["dx"] is not None else 1.0 / res[0]
    model = MPMModel(dim=dim, res=res, dx=dx, ppc=grid["ppc"], source=ctx.source)
    # the model names the file and the entry (materials[k], bodies[i]: the same indices as the scene's arrays)
    for mat in ctx.data["materials"]:
        model.add_material(
            mat["name"],
            mat["kind"],
            **{
                key: mat[key]
                for key in (
                    "density",
                    "youngs_modulus",
                    "poisson_ratio",
                    "bulk_modulus",
                    "viscosity",
                    "friction_angle",
                    "cohesion",
                    "eos_exponent",
                )
            },
        )
    names = [m.name for m in model.materials]
    needs = {"box": ("lo", "hi"), "sphere": ("center", "radius"), "voxels": ("mask", "origin", "voxel_size")}
    for i, body in enumerate(ctx.data["bodies"]):
        shape = body["shape"]
        for key in needs[shape]:
            if body[key] is None:
                raise ctx.error(("bodies", i, key), f"missing required key for shape = {shape!r}")
        for other, keys in needs.items():
            for key in keys:
                if other != shape and key not in needs[shape] and body[key] is not None:
                    raise ctx.error(("bodies", i, key), f"applies to shape = {other!r}, not {shape!r}")
        if body["material"] not in names:
            raise ctx.error(
                ("bodies", i, "material"),
                f"no material named {body['material']!r} (materials: {', '.join(names)})",
            )
        for key in ("lo", "hi", "center", "origin", "velocity"):
            if body[key] is not None and len(body[key]) != dim:
                raise ctx.error(("bodies", i, key), f"must have {dim} components, got {len(body[key])}")
        common = dict(
            material=body["material"],
            ppc=body["ppc"],
            velocity=body["velocity"],
            actuator=body["actuator"],
            jitter=body["jitter"],
            seed=body["seed"],
            name=body["name"],
        )
        if shape == "box":
            model.add_box(body["lo"], body["hi"], **common)
        elif shape == "sphere":
            model.add_sphere(body["center"], body["radius"], **common)
        else:
            model.add_voxels(_load_mask(ctx, body["mask"], i), body["origin"], body["voxel_size"], **common)
    directions = ctx.data["actuation"]["directions"]
    if directions is not None:
        try:
            arr = np.asarray(directions, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.ndim != 2 or arr.shape[1] != dim:
            raise ctx.error(("actuation", "directions"), f"must be a list of {dim}-component vectors")
        for a, d in enumerate(arr):
            model.set_actuator_direction(a, d)
    return model


def build_mpm(ctx: BuildContext):
    """An `MPMSystem` from a validated scene."""
    from diffsim.systems.mpm import MPMCollider, MPMSystem  # noqa: PLC0415

    model = _model(ctx)
    dim = model.dim
    sim = ctx.data["sim"]
    gravity = scene_gravity(ctx, dim, f"the grid is {dim}D")
    colliders = []
    for k, c in enumerate(ctx.data["colliders"]):
        kind = c["kind"]
        if kind == "sphere" and c["radius"] is None:
            raise ctx.error(("colliders", k, "radius"), "missing required key for kind = 'sphere'")
        if kind == "box" and c["half_extents"] is None:
            raise ctx.error(("colliders", k, "half_extents"), "missing required key for kind = 'box'")
        size = c["radius"] if kind == "sphere" else (c["half_extents"] if kind == "box" else 0.0)
        colliders.append(
            MPMCollider(
                kind,
                c["position"],
                size=size,
                normal=c["normal"],
                velocity=c["velocity"],
                friction=c["friction"],
            )
        )
    walls = ctx.data["walls"]
    mode = walls["mode"]
    if not (isinstance(mode, str) or (isinstance(mode, list) and all(isinstance(m, str) for m in mode))):
        raise ctx.error(("walls", "mode"), f"must be one of {', '.join(_WALL_MODES)} or a list of them")

    def make(controller, per_batch):
        return MPMSystem(
            model,
            dt=sim["dt"],
            gravity=gravity,
            walls=mode,
            wall_friction=walls["friction"],
            bound=ctx.data["grid"]["bound"],
            colliders=colliders,
            controller=controller,
            actuation_strength=ctx.data["actuation"]["strength"],
            substeps=sim["substeps"],
            batch=sim["batch"],
            per_batch=per_batch,
            requires_grad=ctx.requires_grad,
        )

    # the system's errors about these arguments are reported at their scene keys
    keys = {
        "walls": ("walls", "mode"),
        "wall_friction": ("walls", "friction"),
        "actuation_strength": ("actuation", "strength"),
        "bound": ("grid", "bound"),
    }
    return build_with_controller(ctx, model.n_actuators, make, keys=keys)


def mpm_drawing(system) -> Drawing:
    """Particles only; the floor is drawn where the bottom wall stops them, about (bound - 0.5) dx."""
    floor = None
    if system.wall_modes[2 * (system.dim - 1)] != 3:  # the bottom wall exists
        floor = (system.bound - 0.5) * system.dx
    return Drawing(quantity="x", dim=system.dim, up_axis=system.dim - 1, ground=floor)


def mpm_size(data: dict) -> tuple[int, str, str]:
    """Values per copy per frame (x, v, C, F and the affine scratch of each particle), for the memory check: the
    particle count estimated from the bodies' volumes, spacing and particles per cell (voxel bodies not counted),
    before any particle is sampled."""
    grid = data["grid"]
    dim, res = grid["dim"], grid["res"]
    dx = grid["dx"] if grid["dx"] is not None else 1.0 / res[0]
    n = 0.0
    for body in data["bodies"]:
        ppc = body["ppc"] or grid["ppc"] or 2.0**dim
        if body["shape"] == "box" and body["lo"] is not None and body["hi"] is not None:
            volume = math.prod(max(0.0, h - lo) for lo, h in zip(body["lo"], body["hi"], strict=False))
        elif body["shape"] == "sphere" and body["radius"] is not None:
            volume = (math.pi if dim == 2 else 4.0 / 3.0 * math.pi) * body["radius"] ** dim
        else:
            continue
        n += ppc * volume / dx**dim
    n = int(n)
    return (2 * dim + 3 * dim * dim) * n, "bodies", f"about {n} particles"


register_system(
    "mpm",
    MPM_SCENE,
    build_mpm,
    drawing=mpm_drawing,
    doc="The material point method (MLS-MPM with APIC transfers) in 2D or 3D: fluids, neo-Hookean solids, "
    "Drucker-Prager sand and actuated soft bodies on a background grid, with walls and colliders "
    "(see docs/mpm.md).",
    size=mpm_size,
)
