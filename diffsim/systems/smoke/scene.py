"""Scene tables of the smoke system (``[scene] system = "smoke"``) and building a `SmokeSystem` from them.

``[grid]`` is the MAC grid (resolution, cell size, boundaries, advected scalars), ``[fluid]`` the physics,
``[solver]`` the pressure solve, ``[control]`` an optional per-step force field, ``[[obstacles]]``,
``[[sources]]`` and ``[[initial]]`` the geometry and the initial fields. The smoke losses (``density`` image
matching, ``centroid``) are added to ``[task.loss]``.
"""

from __future__ import annotations

import numpy as np

from diffsim.errors import DiffsimError
from diffsim.scene.registry import BuildContext, register_system
from diffsim.scene.schema import Field, Table, TableArray
from diffsim.scene.task import apply_named_values, flatten_names, register_loss

__all__ = ["SMOKE_SCENE", "build_smoke", "initial_fields", "smoke_frames"]

_BOX_DOC = "Either lo and hi (a box, m) or center and radius (a ball, m)."

GRID = Table(
    {
        "resolution": Field(
            "int_list", min=1, doc="Cells per axis: 2 entries (2D) or 3 (3D); the last axis points up."
        ),
        "cell_size": Field(
            "float",
            None,
            unit="m",
            min=0,
            min_exclusive=True,
            doc="Cell size h (default: 1 / resolution[0], a domain 1 m wide).",
        ),
        "boundary": Field(
            "any",
            "closed",
            doc='"closed" (walls), "open" (pressure 0 outside, outflow) or '
            '"periodic" for every axis, or one entry per axis: a name or a [lower, upper] pair of '
            '"closed" / "open".',
        ),
        "scalars": Field(
            "list",
            ["density"],
            item=Field("str"),
            doc="Names of the advected cell-centred scalars (density, temperature, ...).",
        ),
    },
    required=True,
    doc="The grid: a staggered (MAC) grid, velocity on cell faces, scalars and pressure at cell centres.",
)

FLUID = Table(
    {
        "advection": Field(
            "str",
            "maccormack",
            choices=("maccormack", "semi_lagrangian"),
            doc="Advection scheme of velocity and scalars (MacCormack with clamping, or semi-Lagrangian).",
        ),
        "backtrace": Field(
            "str", "euler", choices=("euler", "rk2"), doc="Back-trace of the semi-Lagrangian steps."
        ),
        "buoyancy": Table(
            {},
            extra=True,
            doc="Upward acceleration per unit of each scalar, m/s^2 (parameters "
            "`buoyancy.<scalar>`): `density = 1.0`.",
        ),
        "viscosity": Field(
            "float",
            None,
            unit="m^2/s",
            min=0,
            doc="Kinematic viscosity nu (parameter `viscosity`, "
            "explicit: nu dt / h^2 <= 1 / (2 D)); unset: inviscid.",
        ),
        "vorticity": Field(
            "float",
            None,
            unit="1/s",
            min=0,
            doc="Vorticity confinement strength eps (parameter `vorticity`); unset: none.",
        ),
    },
    doc="Physics. Gravity is [sim] gravity (default zero for smoke: buoyancy carries the physics).",
)

SOLVER = Table(
    {
        "tolerance": Field("float", 0.0, unit="1/s", min=0, doc="Largest divergence left after projection."),
        "relative_tolerance": Field(
            "float",
            1e-4,
            min=0,
            doc="... relative to the largest divergence before it; the solve stops at the larger of the two.",
        ),
        "adjoint_tolerance": Field(
            "float", 1e-4, min=0, doc="Relative tolerance of the adjoint (backward) solve."
        ),
        "preconditioner": Field(
            "str",
            "mg",
            choices=("mg", "mic", "jacobi", "none"),
            doc="Conjugate-gradient preconditioner: multigrid V-cycle, modified incomplete "
            "Cholesky, Jacobi or none.",
        ),
        "max_iters": Field(
            "int", None, min=1, doc="Iterations per solve (default 4 D sum(resolution), at least 200)."
        ),
    },
    doc="The pressure solve (conjugate gradients; its gradient is an adjoint solve).",
)

CONTROL = Table(
    {
        "steps": Field(
            "int", min=1, doc="Distinct control frames T (parameter `control.force`, (T, n / block ..., D))."
        ),
        "hold": Field("int", 1, min=1, doc="Steps each control frame acts: row min(step // hold, T - 1)."),
        "block": Field("int", 1, min=1, doc="Cells per control value along each axis."),
        "value": Field("float", 0.0, unit="m/s^2", doc="Initial value of every component."),
    },
    doc="A per-step force field (per unit mass) on blocks of cells; leave the table out for none.",
)

_SHAPE = {
    "lo": Field("vector", None, unit="m", doc="Lower corner of a box."),
    "hi": Field("vector", None, unit="m", doc="Upper corner of a box."),
    "center": Field("vector", None, unit="m", doc="Centre of a ball."),
    "radius": Field("float", None, unit="m", min=0, min_exclusive=True, doc="Radius of a ball."),
}

OBSTACLES = TableArray(
    Table(dict(_SHAPE), doc=_BOX_DOC),
    doc="Static solids: no flow through their faces, scalars are zero inside. " + _BOX_DOC,
)

SOURCES = TableArray(
    Table(
        {
            **_SHAPE,
            "rates": Table(
                {},
                extra=True,
                doc="Scalar added per second, per scalar: `density = 1.0` "
                "(parameter `source.rate`, one row per source).",
            ),
        }
    ),
    doc="Inflows: each step adds dt * rate of a scalar to the cells inside. " + _BOX_DOC,
)

INITIAL = TableArray(
    Table(
        {
            "kind": Field(
                "str",
                choices=("blob", "checkerboard", "uniform", "file", "velocity"),
                doc="blob (a smooth ball), checkerboard (squares of `cells` cells), uniform, file (a .npy "
                "array of the grid's shape) for a scalar; velocity: a uniform initial velocity `value`.",
            ),
            "scalar": Field("str", "density", doc="The scalar it sets (added to what earlier entries set)."),
            "value": Field(
                "any",
                1.0,
                doc='Value of the scalar (a number), or for kind = "velocity" the velocity (D numbers, m/s).',
            ),
            "center": Field("vector", None, unit="m", doc="blob: centre."),
            "radius": Field("float", None, unit="m", min=0, min_exclusive=True, doc="blob: radius."),
            "cells": Field("int", 16, min=1, doc="checkerboard: square size in cells."),
            "path": Field("path", None, doc="file: a .npy array of the grid's shape."),
        }
    ),
    doc="Initial fields (parameters `initial.<scalar>` and `initial.velocity`, which a task may fit).",
)

SMOKE_SCENE = Table(
    {
        "grid": GRID,
        "fluid": FLUID,
        "solver": SOLVER,
        "control": CONTROL,
        "obstacles": OBSTACLES,
        "sources": SOURCES,
        "initial": INITIAL,
    }
)

# where SmokeSystem's own checks point, as scene keys
_KEYS = {
    "dt": "sim.dt",
    "gravity": "sim.gravity",
    "advection": "fluid.advection",
    "backtrace": "fluid.backtrace",
    "buoyancy": "fluid.buoyancy",
    "viscosity": "fluid.viscosity",
    "vorticity": "fluid.vorticity",
    "control": "control",
    "tolerance": "solver.tolerance",
    "relative_tolerance": "solver.relative_tolerance",
    "adjoint_tolerance": "solver.adjoint_tolerance",
    "solver.preconditioner": "solver.preconditioner",
    "steps": "sim.steps",
}


def _shape_kwargs(ctx: BuildContext, table: str, i: int, entry: dict) -> dict:
    kw = {k: entry[k] for k in ("lo", "hi", "center", "radius") if entry[k] is not None}
    if not kw:
        raise ctx.error((table, i), "give lo and hi (a box) or center and radius (a ball)")
    return kw


def initial_fields(ctx: BuildContext, model) -> None:
    """Apply the [[initial]] entries to the model."""
    for i, entry in enumerate(ctx.data["initial"]):
        kind = entry["kind"]
        at = ctx.where("initial", i)
        if kind == "velocity":
            value = np.asarray(entry["value"], dtype=np.float64).reshape(-1)
            if value.shape != (model.dim,):
                raise ctx.error(
                    ("initial", i, "value"),
                    f"a velocity needs {model.dim} components, got {np.asarray(entry['value']).tolist()}",
                )
            model.set_velocity(value)
            continue
        name = entry["scalar"]
        k = model.scalar_index(name, where=ctx.where("initial", i, "scalar"))
        value = entry["value"]
        if kind != "file" and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
            raise ctx.error(("initial", i, "value"), f"must be a number for kind = {kind!r}, got {value!r}")
        if kind == "blob":
            if entry["center"] is None or entry["radius"] is None:
                raise ctx.error(("initial", i), "a blob needs center and radius")
            model.add_blob(name, entry["center"], entry["radius"], value=float(value))
        elif kind == "checkerboard":
            from diffsim.systems.smoke.targets import checkerboard  # noqa: PLC0415

            model.initial_scalars[..., k] += checkerboard(model.resolution, entry["cells"], float(value))
        elif kind == "uniform":
            model.initial_scalars[..., k] += float(value)
        else:
            if entry["path"] is None:
                raise ctx.error(("initial", i), 'kind = "file" needs path')
            arr = _load_grid_array(entry["path"], model.resolution, ctx.where("initial", i, "path"))
            model.initial_scalars[..., k] += arr
        del at


def _load_grid_array(path: str, resolution, where: str) -> np.ndarray:
    try:
        arr = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
    except (OSError, ValueError) as e:
        raise DiffsimError(f"cannot read {path}: {e}", where=where) from None
    if arr.shape != tuple(resolution):
        raise DiffsimError(
            f"{path} holds an array of shape {arr.shape}; the grid has {tuple(resolution)} cells", where=where
        )
    if not np.all(np.isfinite(arr)):
        raise DiffsimError(f"{path} contains NaN or Inf", where=where)
    return arr


def _refuse_if_too_large(ctx: BuildContext, resolution, n_scalars: int, fluid: dict, sim: dict) -> None:
    from diffsim import runtime  # noqa: PLC0415
    from diffsim.engine.memory import check_memory  # noqa: PLC0415
    from diffsim.systems.smoke.model import estimate_bytes  # noqa: PLC0415

    item = 8 if runtime.current()["precision"] == "f64" else 4
    steps = ctx.steps
    if sim["storage"] == "checkpointed":
        k = sim["checkpoint_every"] or max(1, int(round(np.sqrt(steps))))
        frames, snaps = min(k, steps) + 1, -(-steps // min(k, steps)) + 1
    else:
        frames, snaps = steps + 1, 0
    need = estimate_bytes(
        resolution,
        frames=frames,
        batch=sim["batch"],
        n_scalars=n_scalars,
        maccormack=fluid["advection"] == "maccormack",
        vorticity=fluid["vorticity"] is not None,
        viscosity=fluid["viscosity"] is not None,
        precision_bytes=item,
        snapshot_frames=snaps,
    )
    check_memory(
        need,
        f"{steps} steps of a {'x'.join(map(str, resolution))} grid ({sim['storage']} storage, "
        f"{frames} frames kept)",
        ctx.where("grid", "resolution"),
        "use checkpointed storage, fewer steps or a smaller grid",
    )


def build_smoke(ctx: BuildContext):
    """A `SmokeSystem` from a validated scene."""
    from diffsim.systems.smoke import SmokeModel, SmokeSystem  # noqa: PLC0415

    grid, fluid, solver, sim = ctx.data["grid"], ctx.data["fluid"], ctx.data["solver"], ctx.data["sim"]
    from diffsim.systems.smoke.model import _check_resolution  # noqa: PLC0415

    # refuse, with the estimate, a rollout that cannot fit, before the model allocates its initial arrays
    _refuse_if_too_large(
        ctx,
        _check_resolution(grid["resolution"], ctx.where("grid", "resolution")),
        len(grid["scalars"]),
        fluid,
        sim,
    )
    model = SmokeModel(
        grid["resolution"],
        cell_size=grid["cell_size"],
        boundary=grid["boundary"],
        scalars=grid["scalars"],
        source=ctx.source,
        prefix="grid.",
    )
    for i, entry in enumerate(ctx.data["obstacles"]):
        model.add_obstacle(**_shape_kwargs(ctx, "obstacles", i, entry))
    for i, entry in enumerate(ctx.data["sources"]):
        rates = flatten_names(entry["rates"])
        model.add_source(rates, **_shape_kwargs(ctx, "sources", i, entry))
    initial_fields(ctx, model)
    buoyancy = flatten_names(fluid["buoyancy"])
    for name, value in buoyancy.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ctx.error(("fluid", "buoyancy", name), f"must be a number, got {value!r}")
    control = None if ctx.data.get("control") is None else dict(ctx.data["control"])
    try:
        system = SmokeSystem(
            model,
            dt=sim["dt"],
            advection=fluid["advection"],
            backtrace=fluid["backtrace"],
            buoyancy=buoyancy,
            gravity=sim["gravity"],
            viscosity=fluid["viscosity"],
            vorticity=fluid["vorticity"],
            control=control,
            tolerance=solver["tolerance"],
            relative_tolerance=solver["relative_tolerance"],
            adjoint_tolerance=solver["adjoint_tolerance"],
            preconditioner=solver["preconditioner"],
            max_iters=solver["max_iters"],
            batch=sim["batch"],
            per_batch=tuple(sim["per_batch"]),
            requires_grad=ctx.requires_grad,
        )
    except DiffsimError as e:
        if e.where == "per_batch":
            raise ctx.error(("sim", "per_batch"), e.reason) from None
        prefix = f"{ctx.source}: "
        if e.where and e.where.startswith(prefix) and e.where[len(prefix) :] in _KEYS:
            raise DiffsimError(e.reason, where=prefix + _KEYS[e.where[len(prefix) :]]) from None
        raise
    return system


def smoke_frames(system, traj: dict, scalar: str = "density", copy: int = 0) -> np.ndarray:
    """(frames, *grid) values of one scalar from a trajectory (`Simulation.trajectory()`)."""
    k = system.scalar_index(scalar)
    return np.asarray(traj["scalars"])[:, copy, ..., k]


# ----------------------------------------------------------------------------------------------------------
# Losses

DENSITY_LOSS = Table(
    {
        "scalar": Field("str", "density", doc="The scalar compared."),
        "target": Field(
            "str",
            None,
            doc="A .npy image of the grid's shape (compared at the last frame), or "
            "(frames, *grid) images compared at `every`, 2 `every`, ...; or a trajectory.npz written "
            "by `diffsim run` (its `scalars`, compared at frames `every`, 2 `every`, ... (default "
            "every frame) up to the last, which it must reach, recorded with the scene's dt). "
            "Leave unset when "
            "[task.loss.generate] lists parameter values. Relative to the scene file's folder (resolved "
            'by the task loader, so not a "path" field, which would resolve it twice).',
        ),
        "every": Field(
            "int",
            None,
            min=1,
            doc="Frames between compared images (default: only the last frame for "
            "one image; the rows of a stack spread over the rollout).",
        ),
        "generate": Table(
            {},
            extra=True,
            doc="Synthetic target: the scene simulated with these parameter values "
            '(`"buoyancy.density" = 1.0`); the fit starts from the scene\'s own values.',
        ),
    },
    doc="Mean squared difference between a scalar and target images: sum (q - target)^2 / (frames cells).",
)

CENTROID_LOSS = Table(
    {
        "scalar": Field("str", "density", doc="The scalar whose centroid is compared."),
        "point": Field("vector", unit="m", doc="Target position of the centroid."),
        "frame": Field("int", None, min=0, doc="Frame compared (default the last)."),
    },
    doc="Squared distance (m^2) between the centroid sum(q x) / sum(q) of a scalar and a point.",
)


def _density_loss(task, spec: dict, where, system, sim) -> None:
    from diffsim.systems.smoke import ScalarLoss  # noqa: PLC0415

    if not hasattr(system, "scalar_names"):
        raise DiffsimError("the density loss needs a smoke system", where=where("task", "loss", "kind"))
    k = system.model.scalar_index(spec["scalar"], where=where("task", "loss", "scalar"))
    generate = flatten_names(spec["generate"])
    at = where("task", "loss", "target")
    every = spec["every"]
    if generate and spec["target"] is not None:
        raise DiffsimError("give either target or [task.loss.generate], not both", where=at)
    if generate:
        import diffsim  # noqa: PLC0415

        pset = system.params
        saved = {p.name: p.numpy().copy() for p in pset}
        try:
            apply_named_values(pset, generate, lambda n: f'{where.source}: task.loss.generate."{n}"')
            if task.dry:  # checking the table only (diffsim run): zeros stand in for the rollout
                q = np.zeros((sim.steps + 1, system.batch, *system.n))
            else:
                runner = (
                    sim if sim.storage == "full" else diffsim.Simulation(system, sim.steps, storage="full")
                )
                runner.set_loss(None)
                runner.forward()
                q = runner.trajectory(["scalars"])["scalars"][..., k]  # (frames, batch, *grid)
        finally:
            for p in pset:
                p.set(saved[p.name])
        step = every or max(1, sim.steps // 10)
        frames = np.arange(step, sim.steps + 1, step)
        rows = q[frames]
        rows = rows[:, 0] if system.batch == 1 else rows
        task.generated = generate
        task.target, task.target_frames = rows, frames
        task.loss = ScalarLoss(
            rows, scalar=spec["scalar"], frames=frames, name=where("task", "loss", "generate")
        )
        return
    if spec["target"] is None:
        raise DiffsimError(
            "missing required key (a .npy target image, or [task.loss.generate] values)", where=at
        )
    if spec["target"].lower().endswith(".npz"):
        rows, frames = _density_rows(spec["target"], spec["scalar"], k, every or 1, at, system, sim)
        task.target, task.target_frames = rows, frames
        task.loss = ScalarLoss(rows, scalar=spec["scalar"], frames=frames, name=at)
        return
    image = np.load(spec["target"], allow_pickle=False)
    n = tuple(system.n)
    if image.shape == n:
        frames = None
    elif image.ndim == len(n) + 1 and image.shape[1:] == n:
        step = every or max(1, sim.steps // image.shape[0])
        frames = step * np.arange(1, image.shape[0] + 1)
    else:
        raise DiffsimError(
            f"the target image has shape {image.shape}; the grid has {n} cells (give an image of "
            f"that shape, or a stack (frames, {', '.join(map(str, n))}))",
            where=at,
        )
    task.target = image
    task.loss = ScalarLoss(image, scalar=spec["scalar"], frames=frames, name=at)


def _density_rows(path: str, scalar: str, k: int, every: int, at: str, system, sim):
    """The images of `scalar` in a trajectory file written by `diffsim run` (its ``scalars`` array), at the
    frames every, 2 every, ... of the rollout: (rows (frames, [batch,] *grid), frame numbers)."""
    from diffsim.scene.task import check_target_dt, compared_frames, load_target_file  # noqa: PLC0415

    rows, frames, meta = load_target_file(path, "scalars", at, system=system.kind)
    check_target_dt(meta, system.dt, at)
    names = meta.get("scalars")
    if names is not None:
        if scalar not in names:
            raise DiffsimError(
                f"{path} holds the scalars {', '.join(map(repr, names))}, not {scalar!r}", where=at
            )
        k = names.index(scalar)
    n, batch = tuple(system.n), system.batch
    if rows.ndim == len(n) + 3 and rows.shape[1] == 1 and batch == 1:
        rows = rows[:, 0]
    per_copy = rows.ndim == len(n) + 3
    cells = tuple(rows.shape[2 if per_copy else 1 : -1])
    if rows.ndim not in (len(n) + 2, len(n) + 3) or cells != n:
        raise DiffsimError(
            f"{path} holds cells of shape {cells or rows.shape}; the grid has {n} cells", where=at
        )
    if per_copy and rows.shape[1] != batch:
        raise DiffsimError(
            f"{path} holds {rows.shape[1]} copies (axis 1), the scene simulates batch = {batch}", where=at
        )
    if k >= rows.shape[-1]:
        raise DiffsimError(f"{path} holds {rows.shape[-1]} scalars, {scalar!r} is number {k + 1}", where=at)
    keep = compared_frames(frames, sim.steps, every, at)
    return rows[keep][..., k], frames[keep]


def _centroid_loss(task, spec: dict, where, system, sim) -> None:
    from diffsim.systems.smoke import CentroidLoss  # noqa: PLC0415

    if not hasattr(system, "scalar_names"):
        raise DiffsimError("the centroid loss needs a smoke system", where=where("task", "loss", "kind"))
    system.model.scalar_index(spec["scalar"], where=where("task", "loss", "scalar"))
    task.loss = CentroidLoss(
        spec["point"], scalar=spec["scalar"], frame=spec["frame"], name=where("task", "loss")
    )


register_loss("density", DENSITY_LOSS, _density_loss)
register_loss("centroid", CENTROID_LOSS, _centroid_loss)


def smoke_drawing(system):
    """What `diffsim run` records with a smoke trajectory: the cell scalars, drawn as an image of the first one
    (density; summed along the depth axis in 3D)."""
    from diffsim.scene.registry import Drawing  # noqa: PLC0415

    return Drawing(quantity="scalars", dim=system.dim, up_axis=system.dim - 1, grid=True)


register_system(
    "smoke",
    SMOKE_SCENE,
    build_smoke,
    drawing=smoke_drawing,
    target_loss="density",
    doc="Eulerian smoke: incompressible flow on a MAC grid in 2D or 3D, advected scalars, buoyancy, vorticity "
    "confinement, viscosity, force controls, obstacles and sources; the pressure solve is differentiated by an "
    "adjoint solve (see docs/smoke.md).",
)
