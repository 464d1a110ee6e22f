"""Scene tables of the cloth system (``[scene] system = "cloth"``) and building a `ClothSystem` from them.

A scene gives the mesh and its boundary conditions in ``[cloth]`` (a rectangular grid or an OBJ file, pins,
handles), the sheet's ``[material]`` and ``[damping]``, the ``[air]``, the ``[[colliders]]`` and their ``[contact]``
model, and, when the cloth has handles, the ``[handles]`` mode and the ``[controller]`` that moves them. The tables
are named like the parameters they set: ``[material] stretch_modulus`` is the initial value of the parameter
``material.stretch_modulus``.
"""

from __future__ import annotations

import math

import numpy as np

from diffsim.errors import DiffsimError
from diffsim.scene.control import CONTROLLER, build_controller
from diffsim.scene.registry import BuildContext, Drawing, register_system
from diffsim.scene.schema import Field, Table, TableArray

__all__ = ["CLOTH_SCENE", "build_cloth", "cloth_drawing"]

CLOTH = Table(
    {
        "mesh": Field(
            "str",
            "grid",
            choices=("grid", "obj"),
            doc="grid: a rectangle of `resolution` vertices; obj: the triangles of the `obj` file.",
        ),
        "size": Field(
            "vector",
            [1.0, 1.0],
            unit="m",
            length=2,
            min=0,
            min_exclusive=True,
            doc="grid: side lengths (along x and y before `rotation`).",
        ),
        "resolution": Field(
            "int_list",
            [17, 17],
            length=2,
            min=2,
            doc="grid: vertices per side (nx, ny); vertex (i, j) has index j nx + i.",
        ),
        "obj": Field(
            "path",
            None,
            doc="obj: the mesh file (v and f lines; polygons are split into triangles); a regular file of at most "
            "256 MiB.",
        ),
        "scale": Field(
            "float", 1.0, min=0, min_exclusive=True, doc="obj: factor applied to the coordinates."
        ),
        "center": Field(
            "vector",
            None,
            unit="m",
            length=3,
            doc="Where the mesh's centre goes (grid: default the origin; obj: default unmoved).",
        ),
        "rotation": Field(
            "vector",
            [0.0, 0.0, 0.0],
            unit="rad",
            length=3,
            doc="Rotation vector (axis times angle) applied about the centre; a grid starts "
            "horizontal, in the x-y plane (z is up).",
        ),
        "velocity": Field(
            "vector",
            [0.0, 0.0, 0.0],
            unit="m/s",
            length=3,
            doc="Initial velocity of every vertex (parameter `initial.velocity`).",
        ),
        "pins": Field("int_list", [], min=0, doc="Vertices held fixed."),
        "handles": Field(
            "int_list",
            [],
            min=0,
            doc="Vertices moved by the controller (three actions each, x y z, in this order).",
        ),
    },
    required=True,
    doc="The mesh (its initial shape is its rest shape) and its boundary conditions.",
)

MATERIAL = Table(
    {
        "model": Field(
            "str",
            "corotated",
            choices=("corotated", "stvk"),
            doc="In-plane elasticity: co-rotated linear or St. Venant-Kirchhoff triangles.",
        ),
        "density": Field(
            "float",
            0.2,
            unit="kg/m^2",
            min=0,
            min_exclusive=True,
            doc="Area density rho (`material.density`).",
        ),
        "stretch_modulus": Field(
            "float",
            None,
            unit="N/m",
            min=0,
            min_exclusive=True,
            doc="2D Young's modulus Y = E h (`material.stretch_modulus`); default 1000, or "
            "youngs_modulus times thickness.",
        ),
        "youngs_modulus": Field(
            "float",
            None,
            unit="Pa",
            min=0,
            min_exclusive=True,
            doc="E, with `thickness`, instead of stretch_modulus.",
        ),
        "thickness": Field(
            "float", None, unit="m", min=0, min_exclusive=True, doc="h, with `youngs_modulus`."
        ),
        "poisson_ratio": Field("float", 0.3, min=-0.9, max=0.95, doc="nu (`material.poisson_ratio`)."),
        "bending_model": Field(
            "str",
            "dihedral",
            choices=("dihedral", "quadratic"),
            doc="Bending energy: 'dihedral' (discrete shells, k_b w (theta - theta0)^2 / 2, any rest shape) or "
            "'quadratic' (Bergou et al. 2006: constant cotangent weights, forces linear in the positions; "
            "faster, for a flat rest shape and nearly isometric bending).",
        ),
        "bending_stiffness": Field(
            "float",
            None,
            unit="N m",
            min=0,
            min_exclusive=True,
            doc="k_b (`material.bending_stiffness`); default E h^3 / (12 (1 - nu^2)) "
            "when E and h are given, else 1e-4.",
        ),
    },
    doc="The sheet's material; every constant is a parameter.",
)

DAMPING = Table(
    {
        "stretch": Field(
            "float",
            0.0,
            unit="N s/m",
            min=0,
            doc="c_s, viscous in the in-plane strain rate (`damping.stretch`).",
        ),
        "bending": Field(
            "float",
            0.0,
            unit="N m s",
            min=0,
            doc="c_b, on the rate of each dihedral angle (`damping.bending`).",
        ),
        "mass": Field(
            "float", 0.0, unit="1/s", min=0, doc="c_m: a drag -c_m m v on every vertex (`damping.mass`)."
        ),
    },
    doc="Damping: internal (stretch, bending: no effect on rigid motion) and ambient (mass).",
)

AIR = Table(
    {
        "enabled": Field(
            "bool", None, doc="Compile the aerodynamic forces in (default: when any value below is non-zero)."
        ),
        "wind": Field("vector", [0.0, 0.0, 0.0], unit="m/s", length=3, doc="Wind velocity (`air.wind`)."),
        "drag": Field(
            "float",
            0.0,
            unit="kg/m^3",
            min=0,
            doc="k_D: drag -k_D A |v_r . n| v_r on each triangle (`air.drag`).",
        ),
        "lift": Field("float", 0.0, unit="kg/m^3", min=0, doc="k_L: lift coefficient (`air.lift`)."),
    },
    doc="Aerodynamic drag and lift on each triangle, from its velocity relative to the wind.",
)

COLLIDERS = TableArray(
    Table(
        {
            "kind": Field("str", choices=("plane", "sphere", "box", "capsule"), doc="Shape."),
            "position": Field(
                "vector", unit="m", length=3, doc="plane: a point on it; others: centre at t = 0."
            ),
            "rotation": Field(
                "vector",
                [0.0, 0.0, 0.0],
                unit="rad",
                length=3,
                doc="Rotation vector (box and capsule axes; a plane's normal is R z).",
            ),
            "normal": Field("vector", None, length=3, doc="plane: outward normal, instead of a rotation."),
            "radius": Field(
                "float", None, unit="m", min=0, min_exclusive=True, doc="sphere, capsule: radius."
            ),
            "half_extents": Field(
                "vector",
                None,
                unit="m",
                length=3,
                min=0,
                min_exclusive=True,
                doc="box: half of its size along each of its axes.",
            ),
            "half_length": Field(
                "float",
                None,
                unit="m",
                min=0,
                min_exclusive=True,
                doc="capsule: half the length of its axis segment (along R z).",
            ),
            "velocity": Field("vector", [0.0, 0.0, 0.0], unit="m/s", length=3, doc="Constant velocity."),
            "friction": Field("float", 0.5, min=0, doc="Coulomb mu against the cloth."),
        }
    ),
    doc="Rigid obstacles (parameters `colliders.position`, `.rotation`, `.velocity`, `.size`, `.friction`, one "
    "row per collider in this order; size is [radius, -, -], box half extents or capsule [radius, half length, -]).",
)

CONTACT = Table(
    {
        "stiffness": Field(
            "float",
            1e5,
            unit="N/m^3",
            min=0,
            min_exclusive=True,
            doc="k_c: pressure per metre of penetration (`contact.stiffness`).",
        ),
        "damping": Field("float", 100.0, unit="N s/m^3", min=0, doc="c_c (`contact.damping`)."),
        "margin": Field("float", 0.005, unit="m", min=0, doc="Distance the cloth keeps from the surfaces."),
        "smoothing": Field(
            "float",
            0.01,
            unit="m/s",
            min=0,
            min_exclusive=True,
            doc="Slip speed below which friction is smoothed (keeps gradients finite).",
        ),
    },
    doc="Penalty contact with the colliders: f_n = a_i max(0, k_c pen - c_c v_n), smoothed Coulomb friction.",
)

HANDLES = Table(
    {
        "mode": Field(
            "str",
            "velocity",
            choices=("velocity", "position"),
            doc="velocity: a handle moves at scale x action (m/s); position: it sits at its initial "
            "position + scale x action (m).",
        ),
        "scale": Field("float", 1.0, min=0, min_exclusive=True, doc="m/s (or m) per unit action."),
    },
    doc="How the controller's actions move the [cloth] handles.",
)

CLOTH_SCENE = Table(
    {
        "cloth": CLOTH,
        "material": MATERIAL,
        "damping": DAMPING,
        "air": AIR,
        "colliders": COLLIDERS,
        "contact": CONTACT,
        "handles": HANDLES,
        "controller": CONTROLLER,
    }
)


def _rotation_to(normal) -> list[float]:
    """A rotation vector taking z to `normal`."""
    n = np.asarray(normal, dtype=np.float64)
    n = n / np.linalg.norm(n)
    axis = np.cross([0.0, 0.0, 1.0], n)
    s, c = float(np.linalg.norm(axis)), float(n[2])
    if s < 1e-12:
        return [0.0, 0.0, 0.0] if c > 0 else [math.pi, 0.0, 0.0]
    return list(axis / s * math.atan2(s, c))


def _colliders(ctx: BuildContext) -> list:
    from diffsim.colliders import Collider  # noqa: PLC0415

    out = []
    need = {
        "sphere": ("radius",),
        "capsule": ("radius", "half_length"),
        "box": ("half_extents",),
        "plane": (),
    }
    for k, c in enumerate(ctx.data["colliders"]):
        kind = c["kind"]
        for key in need[kind]:
            if c[key] is None:
                raise ctx.error(("colliders", k, key), f"missing required key for kind = {kind!r}")
        for key in ("radius", "half_extents", "half_length", "normal"):
            if c[key] is not None and key not in need[kind] and not (kind == "plane" and key == "normal"):
                raise ctx.error(("colliders", k, key), f"does not apply to kind = {kind!r}")
        rotation = c["rotation"]
        if c["normal"] is not None:
            if any(rotation):
                raise ctx.error(("colliders", k, "normal"), "give either normal or rotation, not both")
            if not np.linalg.norm(c["normal"]) > 0:
                raise ctx.error(("colliders", k, "normal"), "must not be zero")
            rotation = _rotation_to(c["normal"])
        size = {
            "plane": [],
            "sphere": [c["radius"]],
            "box": c["half_extents"],
            "capsule": [c["radius"], c["half_length"]],
        }[kind]
        out.append(
            Collider(
                kind,
                position=c["position"],
                rotation=rotation,
                velocity=c["velocity"],
                size=size,
                friction=c["friction"],
                name=f"colliders[{k}]",
            )
        )
    return out


def _model(ctx: BuildContext):
    from diffsim.systems.cloth import ClothModel  # noqa: PLC0415

    cl, mat, damp = ctx.data["cloth"], ctx.data["material"], ctx.data["damping"]
    material = {
        "density": mat["density"],
        "stretch_modulus": mat["stretch_modulus"],
        "youngs_modulus": mat["youngs_modulus"],
        "thickness": mat["thickness"],
        "poisson_ratio": mat["poisson_ratio"],
        "bending_stiffness": mat["bending_stiffness"],
        "stretch_damping": damp["stretch"],
        "bending_damping": damp["bending"],
        "mass_damping": damp["mass"],
    }
    if cl["mesh"] == "grid":
        if cl["obj"] is not None:
            raise ctx.error(("cloth", "obj"), "applies to mesh = 'obj'; this cloth is a grid")
        center = cl["center"] if cl["center"] is not None else (0.0, 0.0, 0.0)
        model = ClothModel.grid(
            size=cl["size"],
            resolution=cl["resolution"],
            center=center,
            rotation=cl["rotation"],
            velocity=cl["velocity"],
            source=ctx.source,
            **material,
        )
    else:
        if cl["obj"] is None:
            raise ctx.error(("cloth", "obj"), "missing required key for mesh = 'obj'")
        try:
            model = ClothModel.from_obj(
                cl["obj"], scale=cl["scale"], center=cl["center"], rotation=cl["rotation"], **material
            )
        except DiffsimError as e:
            if e.where == cl["obj"]:  # about the file as a whole: name the scene key too
                raise ctx.error(("cloth", "obj"), f"{e.where}: {e.reason}") from None
            raise
        model.velocities = np.broadcast_to(
            np.asarray(cl["velocity"], dtype=np.float64), (model.n_vertices, 3)
        ).copy()
    model.pins = list(cl["pins"])
    model.handles = list(cl["handles"])
    return model


def _reword(ctx: BuildContext, model, e: DiffsimError) -> DiffsimError:
    """Errors the model raises about pins, handles or material name the scene key."""
    if e.where and e.where.startswith(f"{model.source}: "):
        key = e.where[len(model.source) + 2 :]
        head = key.split("[")[0]
        if head in ("pins", "handles"):
            index = key[len(head) :].strip("[]")
            parts = ("cloth", head, int(index)) if index.isdigit() else ("cloth", head)
            return ctx.error(parts, e.reason)
        if head in (
            "bending_model",
            "stretch_modulus",
            "youngs_modulus",
            "thickness",
            "poisson_ratio",
            "bending_stiffness",
            "density",
        ):
            return ctx.error(("material", head), e.reason)
    return e


def build_cloth(ctx: BuildContext):
    """A `ClothSystem` from a validated scene."""
    from diffsim.systems.cloth import ClothSystem  # noqa: PLC0415

    model = _model(ctx)
    sim, air, contact, handles = ctx.data["sim"], ctx.data["air"], ctx.data["contact"], ctx.data["handles"]
    gravity = sim["gravity"]
    if gravity is not None and len(gravity) != 3:
        raise ctx.error(("sim", "gravity"), f"must have 3 components (cloth is 3D, z up), got {len(gravity)}")
    n_handles = len(model.handles)
    kind = (ctx.data.get("controller") or {"kind": "none"})["kind"]
    if n_handles and kind == "none":
        raise ctx.error(
            ("controller", "kind"),
            f"the cloth has {n_handles} handles, so it needs a controller "
            "(open_loop or periodic) to move them, got 'none'",
        )
    if not n_handles and kind != "none":
        raise ctx.error(
            ("controller", "kind"),
            f"the cloth has no handles ([cloth] handles), so a {kind!r} "
            "controller has nothing to move; use kind = 'none'",
        )
    if kind == "mlp":
        raise ctx.error(
            ("controller", "kind"),
            "an mlp controller needs an observation the cloth does not provide; use open_loop or periodic",
        )
    per_batch = list(sim["per_batch"])
    controller_pb = [n for n in per_batch if n.startswith("controller.")]
    controller = build_controller(ctx, 3 * n_handles, per_batch=bool(controller_pb))
    try:
        system = ClothSystem(
            model,
            dt=sim["dt"],
            gravity=gravity,
            material=ctx.data["material"]["model"],
            bending_model=ctx.data["material"]["bending_model"],
            wind=air["wind"],
            drag=air["drag"],
            lift=air["lift"],
            aerodynamics=air["enabled"],
            colliders=_colliders(ctx),
            contact_stiffness=contact["stiffness"],
            contact_damping=contact["damping"],
            contact_margin=contact["margin"],
            friction_smoothing=contact["smoothing"],
            controller=controller,
            handle_mode=handles["mode"],
            handle_scale=handles["scale"],
            substeps=sim["substeps"],
            batch=sim["batch"],
            per_batch=tuple(n for n in per_batch if not n.startswith("controller.")),
            requires_grad=ctx.requires_grad,
        )
    except DiffsimError as e:
        if e.where == "per_batch":
            raise ctx.error(("sim", "per_batch"), e.reason) from None
        raise _reword(ctx, model, e) from None
    missing = [n for n in controller_pb if n not in system.params]
    if missing:
        raise ctx.error(("sim", "per_batch"), f"no controller parameter named {missing[0]!r}")
    return system


def cloth_drawing(system) -> Drawing:
    """The triangles; a horizontal plane collider (normal +z) is drawn as the ground."""
    ground = None
    for k, c in enumerate(system.colliders):
        if c.kind != "plane":
            continue
        rot = (
            np.ravel(system.col_rotation.numpy())[3 * k : 3 * k + 3]
            if system.col_rotation.copies == 1
            else None
        )
        if rot is not None and np.allclose(rot, 0.0):
            ground = float(np.ravel(system.col_position.numpy())[3 * k + 2])
            break
    arrays = system.arrays
    return Drawing(
        quantity="x", dim=3, up_axis=2, faces=arrays["faces"], edges=None, ground=ground, fixed=arrays["pins"]
    )


def cloth_size(data: dict) -> tuple[int, str, str]:
    """Values per copy per frame (x, v, force of each vertex; a lower bound), for the memory check: a grid's from
    its resolution, before its mesh is made."""
    cl = data["cloth"]
    if cl["mesh"] != "grid":
        return 9, "cloth.obj", "an OBJ mesh"
    nx, ny = cl["resolution"]
    return 9 * nx * ny, "cloth.resolution", f"a {nx} x {ny} grid of vertices"


register_system(
    "cloth",
    CLOTH_SCENE,
    build_cloth,
    drawing=cloth_drawing,
    doc="Triangle-mesh cloth in 3D (z up): co-rotated or StVK membrane, dihedral bending, damping, aerodynamic "
    "drag and lift, pins and kinematic handles, plane/sphere/box/capsule colliders with friction, semi-implicit "
    "Euler (see docs/cloth.md).",
    size=cloth_size,
)
