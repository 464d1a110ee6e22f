"""The ``[task]`` table: the loss, its target, the parameters to fit, their bounds, the optimizer.

Targets. A trajectory target is an array whose row i is frame i of a rollout (frame 0 is the initial state), as
`diffsim run` writes it (``trajectory.npz``: the array named after the quantity, ``x``, plus a ``frame`` array that
numbers the rows); a ``.npy`` file or an inline list holds the rows alone, starting at frame 0. The loss compares
frames ``every, 2 every, ...`` up to the rollout's last frame (frame 0 is left out: it is the given initial state),
so a target recorded over a longer rollout works with ``--steps`` cut short; a target that ends before the last
compared frame, or was recorded with another dt (meta of a ``.npz``), or by another system, is refused.
``[task.loss.generate]`` makes the target synthetic: the scene is simulated once with the listed parameter values
and that rollout is the target, then the fit starts from the scene's own values.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffsim.errors import DiffsimError
from diffsim.scene.schema import Field, Table, Variants, format_value

__all__ = [
    "TASK",
    "Task",
    "build_task",
    "load_target_file",
    "check_target_dt",
    "compared_frames",
    "flatten_names",
    "apply_named_values",
    "register_loss",
]

_PARAM_TABLE_DOC = "Keys are parameter names (`diffsim params SCENE` lists them), quoted or as dotted keys."

_GENERATE = Table(
    {},
    extra=True,
    doc='Synthetic data: when it lists parameter values (`"springs.stiffness" = 500.0`), the target is this '
    "scene simulated with those values, and the fit then starts from the scene's own values. "
    + _PARAM_TABLE_DOC,
)
_TARGET_DOC = (
    "A trajectory file, relative to the scene file: a `.npz` written by `diffsim run` or a `.npy` array "
    "(frames, points, dim) whose row i is frame i; or an inline array. Leave unset when "
    "[task.loss.generate] lists parameter values."
)
_POINTS = Field("int_list", None, min=0, doc="Indices of the tracked particles (default: all).")
_QUANTITY = Field(
    "str", "x", choices=("x", "v"), doc="The state quantity compared: x (positions) or v (velocities)."
)

LOSS = Variants(
    {
        "trajectory": Table(
            {
                "target": Field("any", None, doc=_TARGET_DOC),
                "every": Field("int", 1, min=1, doc="Compare frames every, 2 every, 3 every, ..."),
                "points": _POINTS,
                "quantity": _QUANTITY,
                "generate": _GENERATE,
            },
            doc="Mean over frames and tracked points of the squared distance |q - target|^2 (m^2 for x).",
        ),
        "final_position": Table(
            {
                "target": Field(
                    "any",
                    None,
                    doc="Positions (points, dim) inline, or a trajectory file (its row for "
                    "the last frame is used). Leave unset when [task.loss.generate] lists values.",
                ),
                "points": _POINTS,
                "quantity": _QUANTITY,
                "generate": _GENERATE,
            },
            doc="Mean squared distance of the tracked points to the target at the last frame.",
        ),
        "com_displacement": Table(
            {
                "direction": Field(
                    "vector", None, doc="Unit direction; default the first axis (1, 0) or (1, 0, 0)."
                ),
                "maximize": Field(
                    "bool", False, doc="Reward moving along direction (loss = minus the distance)."
                ),
            },
            doc="Displacement of the centre of mass along direction between the first and last frame (m).",
        ),
        "com_target": Table(
            {"target": Field("vector", unit="m", doc="The point the centre of mass should reach.")},
            doc="Squared distance |com - target|^2 of the (mass-weighted) centre of mass at the last frame to a "
            "point (m^2).",
        ),
    },
    tag="kind",
    required=True,
    doc="The loss the fit minimizes.",
    tag_doc="Loss type.",
)

_LR = Field(
    "float", 0.01, min=0, min_exclusive=True, doc="Learning rate (step size in unconstrained coordinates)."
)
_CLIP = Field("float", None, min=0, min_exclusive=True, doc="Rescale the gradient to at most this norm.")

OPTIMIZER = Variants(
    {
        "adam": Table({"lr": _LR, "clip_norm": _CLIP}, doc="Adam (Kingma and Ba, 2015)."),
        "sgd": Table(
            {
                "lr": _LR,
                "momentum": Field("float", 0.0, min=0, max=1, max_exclusive=True, doc="Heavy-ball momentum."),
                "clip_norm": _CLIP,
            },
            doc="Gradient descent with momentum.",
        ),
        "lbfgs": Table(
            {"memory": Field("int", 10, min=1, doc="Correction pairs kept.")},
            doc="scipy's L-BFGS-B: quasi-Newton with bounds, for smooth problems such as system identification.",
        ),
        "cma": Table(
            {
                "sigma": Field(
                    "float", 0.25, min=0, min_exclusive=True, doc="Initial step, relative to each range."
                ),
                "popsize": Field("int", None, min=2, doc="Points per generation (default 4 + 3 ln n)."),
                "polish": Field("int", 0, min=0, doc="L-BFGS-B evaluations from the best point (of iters)."),
                "seed": Field("int", 1, min=1, doc="The sampler's seed."),
            },
            doc="CMA-ES, gradient-free (needs diffsim[scale]), then an optional L-BFGS-B polish.",
        ),
    },
    tag="name",
    default="adam",
    doc="The optimizer.",
    tag_doc="Optimizer.",
)

TASK = Table(
    {
        "fit": Field(
            "list",
            ["controller.*"],
            item=Field("str"),
            doc="Parameters to optimize: names or shell patterns (`controller.*`).",
        ),
        "iters": Field("int", 100, min=1, doc="Iterations (for lbfgs: loss evaluations)."),
        "tol": Field(
            "float",
            None,
            min=0,
            doc="Stop when the loss falls below tol, or changes by less than "
            "tol max(1, |loss|) for `patience` iterations in a row.",
        ),
        "patience": Field("int", 3, min=1, doc="See tol."),
        "loss": LOSS,
        "optimizer": OPTIMIZER,
        "bounds": Table(
            {},
            extra=True,
            doc="Bounds [lo, hi] per parameter, replacing the system's (inf and -inf "
            'for none): `"springs.damping" = [0.0, 10.0]`. ' + _PARAM_TABLE_DOC,
        ),
        "transforms": Table(
            {},
            extra=True,
            doc="Transform per parameter between the optimizer's coordinate u and "
            'the value: "log" (value = exp u, stays positive), "sigmoid" (stays inside finite '
            'bounds) or "none". ' + _PARAM_TABLE_DOC,
        ),
    },
    doc="What `diffsim optimize` and `diffsim gradcheck` do: the loss, the parameters to fit, the optimizer.",
)


# ----------------------------------------------------------------------------------------------------------
# Tables keyed by parameter name


def flatten_names(table: dict, prefix: str = "") -> dict[str, Any]:
    """``{"springs": {"stiffness": 1}, "gravity": [0, -9]}`` -> ``{"springs.stiffness": 1, "gravity": [0, -9]}``.

    TOML reads an unquoted dotted key (``springs.stiffness = 1``) as nested tables; parameter names are dotted,
    so both spellings name the same parameter.
    """
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(flatten_names(value, name))
        else:
            out[name] = value
    return out


def _names_where(source: str, table: str, name: str) -> str:
    return f'{source}: {table}."{name}"'


def _suggest(name: str, names: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f"; parameters: {', '.join(names)}"


def _as_array(value: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except OverflowError:  # an integer past a float's range
        raise DiffsimError(f"must be finite, got {format_value(value)}", where=where) from None
    except (TypeError, ValueError):
        raise DiffsimError(
            f"must be a number or a (nested) list of numbers, got {format_value(value)}", where=where
        ) from None
    return arr


def apply_named_values(pset, values: dict[str, Any], where_of) -> None:
    """Set each named parameter of `pset`; where_of(name) names the source in errors."""
    names = pset.names()
    for name, value in values.items():
        if name not in names:
            raise DiffsimError(f"no parameter named {name!r}{_suggest(name, names)}", where=where_of(name))
        arr = _as_array(value, where_of(name))
        try:
            pset[name].set(arr)
        except DiffsimError as e:
            raise DiffsimError(e.reason, where=where_of(name)) from None


# ----------------------------------------------------------------------------------------------------------
# Targets


def load_target_file(
    path: str, quantity: str, where: str, system: str | None = None
) -> tuple[np.ndarray, np.ndarray, dict]:
    """(rows, frame numbers, meta) from a trajectory file; rows are ``(frames, [batch,] points, dim)`` (for a grid
    quantity ``(frames, [batch,] *cells, components)``). system: the scene's system kind; a ``.npz`` whose meta
    names another one is refused."""
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(str(npz["meta"])) if "meta" in npz.files else {}
                made_by = meta.get("system")
                if system is not None and made_by is not None and made_by != system:
                    raise DiffsimError(
                        f"{path} was written by a {made_by!r} scene; this scene simulates {system!r}",
                        where=where,
                    )
                if quantity not in npz.files:
                    raise DiffsimError(
                        f"{path} has no array {quantity!r} (arrays: {', '.join(npz.files)})", where=where
                    )
                rows = np.asarray(npz[quantity], dtype=np.float64)
                frames = np.asarray(npz["frame"], dtype=np.int64) if "frame" in npz.files else None
        elif ext == ".npy":
            rows = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
            frames, meta = None, {}
        else:
            raise DiffsimError(f"a target file must be .npz or .npy, got {path}", where=where)
    except DiffsimError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise DiffsimError(f"cannot read {path}: {e}", where=where) from None
    if rows.ndim == 0 or len(rows) == 0:
        raise DiffsimError(f"{path} holds no frames (array of shape {rows.shape})", where=where)
    if frames is None:
        frames = np.arange(len(rows))
    if len(frames) != len(rows):
        raise DiffsimError(f"{path}: 'frame' has {len(frames)} entries for {len(rows)} rows", where=where)
    return rows, frames, meta


def check_target_dt(meta: dict, dt: float, where: str) -> None:
    """Refuse a target recorded with another time step: its frames would not be the rollout's."""
    if meta.get("dt") is not None and not math.isclose(float(meta["dt"]), dt, rel_tol=1e-9):
        raise DiffsimError(
            f"the target was recorded with dt = {meta['dt']:g} s, the scene has dt = {dt:g} s (its frames are "
            f"not the rollout's: fit with --set sim.dt={meta['dt']:g}, or record the target with the scene's dt)",
            where=where,
        )


def compared_frames(frames: np.ndarray, steps: int, every: int, where: str) -> np.ndarray:
    """Which rows of a target with frame numbers `frames` a trajectory loss compares: frames every, 2 every, ...
    up to the rollout's last frame. The target must reach the last of them: a target that ends early is refused
    (fitting its first frames only would pass unnoticed)."""
    last = steps - steps % every  # the last frame the loss compares
    end = int(frames.max())
    if end < last:
        raise DiffsimError(
            f"the target holds frames {int(frames.min())}..{end}, the {steps}-step rollout is compared up to "
            f"frame {last}: give --steps {end} (sim.steps = {end}) or a target that covers the rollout",
            where=where,
        )
    keep = (frames > 0) & (frames <= steps) & (frames % every == 0)
    if not keep.any():
        raise DiffsimError(
            f"no target frame in 1..{steps} is a multiple of every = {every} (target frames "
            f"{int(frames.min())}..{end})",
            where=where,
        )
    return keep


@dataclass
class Task:
    """A scene's task, built: the loss (bound to the simulation), what to fit and how."""

    loss_kind: str
    loss: Any
    fit: list[str]
    optimizer: Any
    iters: int
    tol: float | None
    patience: int
    target: np.ndarray | None = None  # (frames, [batch,] points, dim) rows compared, or None
    target_frames: np.ndarray | None = None
    points: np.ndarray | None = None
    quantity: str = "x"  # the state quantity the target is compared with
    generated: dict = field(default_factory=dict)  # parameter values the synthetic target was made with
    dry: bool = False  # built only to check the table: a synthetic target is not simulated (zeros stand in)

    def fit_kwargs(self) -> dict:
        """Keyword arguments for `diffsim.fit`."""
        return {
            "names": self.fit,
            "optimizer": self.optimizer,
            "iters": self.iters,
            "tol": self.tol,
            "patience": self.patience,
        }


class _Where:
    def __init__(self, source: str):
        self.source = source

    def __call__(self, *parts) -> str:
        from diffsim.scene.schema import format_key_path

        return f"{self.source}: {format_key_path(list(parts))}"


#: loss kinds added by system modules (`register_loss`): kind -> build(task, spec, where, system, sim), which sets
#: task.loss (and task.target when it has one)
LOSS_BUILDERS: dict = {}


def register_loss(kind: str, table: Table, build) -> None:
    """Add a loss kind to ``[task.loss]``: `table` is its keys, `build` makes the loss (a system module calls this
    when it is imported, next to `register_system`)."""
    if kind in LOSS.variants and kind not in LOSS_BUILDERS:
        raise ValueError(f"loss kind {kind!r} is built in")
    LOSS.variants[kind] = table
    LOSS_BUILDERS[kind] = build


def resolve_fit(patterns: list[str], names: list[str], source: str) -> list[str]:
    """The parameter names the task's fit patterns match, in order; an error names the pattern that matches none."""
    where = _Where(source)
    fit: list[str] = []
    for i, pattern in enumerate(patterns):
        matched = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise DiffsimError(
                f"no parameter matches {pattern!r}{_suggest(pattern, names)}", where=where("task", "fit", i)
            )
        fit += [n for n in matched if n not in fit]
    if not fit:
        raise DiffsimError("no parameters to fit", where=where("task", "fit"))
    return fit


def build_task(spec: dict, source: str, system, sim, dry: bool = False) -> Task:
    """Build the task of a validated ``[task]`` table for `system`, and attach its loss to `sim`.

    dry: only check the table (as `diffsim run` does, with the errors `diffsim optimize` would give): a synthetic
    target's parameter values are checked but not simulated, the loss is not attached, and the parameters' bounds
    and transforms are left as they were."""
    pset = system.params
    if not dry:
        return _build_task(spec, source, system, sim, dry)
    saved = {p.name: (p.bounds, p.transform) for p in pset}
    try:
        return _build_task(spec, source, system, sim, dry)
    finally:
        for p in pset:
            p.bounds, p.transform = saved[p.name]


def _build_task(spec: dict, source: str, system, sim, dry: bool) -> Task:
    from diffsim.engine.params import _normalize_bounds  # noqa: PLC0415
    from diffsim.optim.fit import make_optimizer  # noqa: PLC0415

    where = _Where(source)
    pset = system.params
    names = pset.names()
    fit = resolve_fit(spec["fit"], names, source)

    for name, value in flatten_names(spec["bounds"]).items():
        at = _names_where(source, "task.bounds", name)
        if name not in names:
            raise DiffsimError(f"no parameter named {name!r}{_suggest(name, names)}", where=at)
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        ):
            raise DiffsimError(
                f"must be [lo, hi] (numbers, inf or -inf), got {format_value(value)}", where=at
            )
        lo, hi = (float(v) for v in value)
        if math.isnan(lo) or math.isnan(hi) or not lo < hi:
            raise DiffsimError(f"must have lo < hi, got {format_value(value)}", where=at)
        p = pset[name]
        p.bounds = _normalize_bounds((lo, hi))
        current = p.numpy()
        if (p.bounds[0] is not None and current.min() < p.bounds[0]) or (
            p.bounds[1] is not None and current.max() > p.bounds[1]
        ):
            raise DiffsimError(
                f"the parameter's value (min {current.min():g}, max {current.max():g}) is outside "
                f"{format_value(value)}",
                where=at,
            )
    for name, value in flatten_names(spec["transforms"]).items():
        at = _names_where(source, "task.transforms", name)
        if name not in names:
            raise DiffsimError(f"no parameter named {name!r}{_suggest(name, names)}", where=at)
        if value not in ("log", "sigmoid", "none"):
            raise DiffsimError(
                f"must be one of 'log', 'sigmoid', 'none', got {format_value(value)}", where=at
            )
        p = pset[name]
        if value == "log" and p.numpy().min() <= 0:
            raise DiffsimError(
                f"a log transform needs positive values, the parameter's minimum is {p.numpy().min():g}",
                where=at,
            )
        if value == "sigmoid" and (p.bounds[0] is None or p.bounds[1] is None):
            raise DiffsimError("a sigmoid transform needs finite bounds: set them in [task.bounds]", where=at)
        p.transform = None if value == "none" else value

    opt = dict(spec["optimizer"])
    name = opt.pop("name")
    optimizer = make_optimizer(name, **{k: v for k, v in opt.items() if v is not None})

    loss_spec = spec["loss"]
    kind = loss_spec["kind"]
    task = Task(
        loss_kind=kind,
        loss=None,
        fit=fit,
        optimizer=optimizer,
        iters=spec["iters"],
        tol=spec["tol"],
        patience=spec["patience"],
        dry=dry,
    )
    try:
        _build_loss(task, loss_spec, where, system, sim)
    except DiffsimError as e:
        # the target's agreement with this rollout (its frames, points, grid) is optimize's to check: `diffsim
        # run` may preview the scene with another horizon or size
        if not (dry and e.where == where("task", "loss", "target")):
            raise
    if not dry:
        sim.set_loss(task.loss)
    return task


def _build_loss(task: Task, loss_spec: dict, where, system, sim) -> None:
    """Set task.loss (and its target) for the validated ``[task.loss]`` table."""
    import diffsim  # noqa: PLC0415

    kind = loss_spec["kind"]
    if kind in LOSS_BUILDERS:
        LOSS_BUILDERS[kind](task, loss_spec, where, system, sim)
    elif kind == "com_displacement":
        dim = system.dim
        direction = loss_spec["direction"]
        if direction is None:
            direction = [1.0] + [0.0] * (dim - 1)
        if len(direction) != dim:
            raise DiffsimError(
                f"must have {dim} components, got {format_value(direction)}",
                where=where("task", "loss", "direction"),
            )
        norm = float(np.linalg.norm(direction))
        if norm == 0:
            raise DiffsimError("must not be zero", where=where("task", "loss", "direction"))
        task.loss = diffsim.CenterOfMassLoss(
            direction=np.asarray(direction) / norm, maximize=loss_spec["maximize"]
        )
    elif kind == "com_target":
        from diffsim.optim.losses import CenterOfMassTargetLoss  # noqa: PLC0415

        target = loss_spec["target"]
        if len(target) != system.dim:
            raise DiffsimError(
                f"must have {system.dim} components, got {format_value(target)}",
                where=where("task", "loss", "target"),
            )
        task.loss = CenterOfMassTargetLoss(np.asarray(target, dtype=np.float64))
    else:
        _point_loss(task, loss_spec, where, system, sim)


def _generate(
    generate: dict, where, system, sim, quantity: str, dry: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate with the parameter values in `generate`; the rows of `quantity` (frames, batch, n, dim). dry: check
    the values only; zeros stand in for the rollout."""
    import diffsim  # noqa: PLC0415

    pset = system.params
    saved = {p.name: p.numpy().copy() for p in pset}
    try:
        apply_named_values(pset, generate, lambda n: _names_where(where.source, "task.loss.generate", n))
        if dry:
            spec = {s.name: s for s in system.field_specs()}[quantity]
            rows = np.zeros((sim.steps + 1, system.batch, *spec.shape, spec.dim or 1))
            return rows, np.arange(len(rows))
        runner = sim if sim.storage == "full" else diffsim.Simulation(system, sim.steps, storage="full")
        runner.set_loss(None)
        runner.forward()
        rows = runner.trajectory([quantity])[quantity]
    finally:
        for p in pset:
            p.set(saved[p.name])
    return np.asarray(rows, dtype=np.float64), np.arange(len(rows))


def _point_loss(task: Task, spec: dict, where, system, sim) -> None:
    import diffsim  # noqa: PLC0415

    kind, quantity = spec["kind"], spec["quantity"]
    task.quantity = quantity
    generate = flatten_names(spec["generate"])
    target = spec["target"]
    at = where("task", "loss", "target")
    steps, batch = sim.steps, system.batch
    n_elem = {s.name: s for s in system.field_specs()}[quantity].shape[0]
    dim = system.dim
    if generate and target is not None:
        raise DiffsimError("give either target or [task.loss.generate], not both", where=at)
    meta: dict = {}
    if generate:
        rows, frames = _generate(generate, where, system, sim, quantity, dry=task.dry)
        task.generated = generate
        at = where("task", "loss", "generate")
    elif target is None:
        raise DiffsimError(
            "missing required key (a target file or array, or [task.loss.generate] values)", where=at
        )
    elif isinstance(target, str):
        rows, frames, meta = load_target_file(target, quantity, at, system=system.kind)
    else:
        rows = _as_array(target, at)
        if kind == "final_position" and rows.ndim == 2:
            rows = rows[None]
            frames = np.array([steps])
        else:
            frames = np.arange(len(rows))
    check_target_dt(meta, system.dt, at)
    # rows: (frames, n, dim) or (frames, batch, n, dim)
    if rows.ndim == 4 and rows.shape[1] == 1 and batch == 1:
        rows = rows[:, 0]
    if rows.ndim == 4 and rows.shape[1] != batch:
        raise DiffsimError(
            f"the target has {rows.shape[1]} copies (axis 1), the scene simulates batch = {batch}", where=at
        )
    if rows.ndim not in (3, 4) or rows.shape[-1] != dim:
        raise DiffsimError(f"expected an array of shape (frames, points, {dim}), got {rows.shape}", where=at)
    points = None if spec["points"] is None else np.asarray(spec["points"], dtype=np.int64)
    if points is not None and np.any(points >= n_elem):
        raise DiffsimError(
            f"particle indices must be < {n_elem}, got {spec['points']}",
            where=where("task", "loss", "points"),
        )
    n_cols = rows.shape[-2]
    if points is not None and n_cols == n_elem and len(points) != n_elem:
        rows = rows[..., points, :]
    elif n_cols != (n_elem if points is None else len(points)):
        want = n_elem if points is None else len(points)
        raise DiffsimError(
            f"the target has {n_cols} points per frame, expected {want}"
            + ("" if points is None else f" (the tracked points) or {n_elem} (all)"),
            where=at,
        )
    if kind == "final_position":
        hit = np.nonzero(frames == steps)[0]
        if len(hit) == 0:
            raise DiffsimError(
                f"the target has no row for the last frame, {steps} (its frames: {frames.min()}.."
                f"{frames.max()})",
                where=at,
            )
        final = rows[hit[-1]]
        task.target, task.target_frames, task.points = final[None], np.array([steps]), points
        task.loss = diffsim.FinalPositionLoss(final, points=points, quantity=quantity, name=at)
        return
    keep = compared_frames(frames, steps, spec["every"], at)
    rows, frames = rows[keep], frames[keep]
    task.target, task.target_frames, task.points = rows, frames, points
    task.loss = diffsim.PointLoss(rows, frames=frames, points=points, quantity=quantity, name=at)
