"""Loading a scene file: overrides, strict validation, backend choice, and building the simulation.

    scene = load_scene("scenes/walker2d.toml", overrides=["sim.steps=200", "springs.stiffness=800"])
    system, sim, task = scene.build()
    result = diffsim.fit(sim, **task.fit_kwargs())

A scene has the common tables ``[scene]``, ``[sim]``, ``[backend]``, ``[params]`` and ``[task]`` plus the tables
of its system kind (``[scene] system = "springs"`` adds ``[body]``, ``[[particles]]``, ``[[springs]]``,
``[ground]``, ``[controller]``). Validation happens in two passes: ``[scene]`` first, to learn the kind, then the
whole file against the kind's schema; nothing is built from a file that fails either.

Overrides (``--set NAME=VALUE``) name either a scene key (``sim.steps``, ``springs[3].stiffness``,
``controller.kind``) or, when NAME is not a key of the schema, a parameter (``springs.stiffness``, ``gravity``),
which goes into ``[params]``: the parameter's initial value, applied after the system is built.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from diffsim.errors import DiffsimError
from diffsim.scene.overrides import apply_overrides, parse_set
from diffsim.scene.registry import BuildContext, Drawing, SystemKind, system_kind, system_kinds
from diffsim.scene.schema import (
    Field,
    Table,
    TableArray,
    Variants,
    format_key_path,
    format_path,
    load_toml,
    validate,
)
from diffsim.scene.task import TASK, apply_named_values, build_task, flatten_names
from diffsim.scene.toml_writer import dumps

__all__ = ["COMMON_TABLES", "Scene", "load_scene", "scene_schema", "scenes_dir", "find_scene"]

ARCHS = ("cpu", "gpu", "cuda", "vulkan", "metal")
PRECISIONS = ("f32", "f64")

#: tables every scene may have, whatever its system kind
COMMON_TABLES = ("scene", "sim", "backend", "params", "task")


def _scene_table() -> Table:
    return Table(
        {
            "name": Field(
                "str",
                None,
                doc="Short name, used in titles and default output folders (default: the file name).",
            ),
            "description": Field("str", "", doc="One or two sentences on what the scene shows."),
            "system": Field("str", choices=tuple(system_kinds()), doc="The simulator: its tables follow."),
        },
        required=True,
        doc="What the scene is.",
    )


SIM = Table(
    {
        "dt": Field("float", unit="s", min=0, min_exclusive=True, doc="Time step of one integration step."),
        "steps": Field("int", min=1, doc="Integration steps per rollout; a trajectory has steps + 1 frames."),
        "substeps": Field(
            "int", 1, min=1, doc="Integration steps per control step (actions are held that long)."
        ),
        "gravity": Field(
            "vector",
            None,
            unit="m/s^2",
            doc="Gravitational acceleration (parameter `gravity`); default 9.81 down the last axis.",
        ),
        "batch": Field("int", 1, min=1, doc="Copies simulated side by side in each launch."),
        "per_batch": Field(
            "list",
            [],
            item=Field("str"),
            doc="Parameters that get one value per copy (the others are shared by all copies).",
        ),
        "storage": Field(
            "str",
            "full",
            choices=("full", "checkpointed"),
            doc="full: keep every frame (memory O(steps)); checkpointed: keep a snapshot every "
            "checkpoint_every steps and recompute in the backward pass.",
        ),
        "checkpoint_every": Field(
            "int",
            None,
            min=1,
            doc="Steps per checkpoint segment (default about "
            "sqrt(steps)); setting it selects checkpointed storage.",
        ),
        "truncate": Field(
            "int",
            None,
            min=1,
            unit="steps",
            doc="Truncated backpropagation: each loss frame's adjoint is carried at most this many steps back "
            "(a biased gradient that cannot explode over long horizons; docs/concepts.md). Unset: the exact "
            "gradient.",
        ),
        "clip_adjoint": Field(
            "float",
            None,
            min=0,
            min_exclusive=True,
            doc="Rescale each copy's state adjoint to at most this norm at every frame of the backward pass (a "
            "biased gradient; docs/concepts.md). Unset: no clipping.",
        ),
    },
    required=True,
    doc="Time stepping and storage.",
)

BACKEND = Table(
    {
        "arch": Field(
            "str",
            None,
            choices=ARCHS,
            doc="Preferred backend; an unavailable one falls back to cpu "
            "with a warning. --arch overrides it.",
        ),
        "precision": Field("str", None, choices=PRECISIONS, doc="Float precision; --precision overrides it."),
    },
    doc="Hints for the backend; the defaults come from DIFFSIM_ARCH and DIFFSIM_PRECISION, else cpu and f32.",
)

PARAMS = Table(
    {},
    extra=True,
    doc="Initial values of named parameters, applied after the tables above are built: a number (broadcast to "
    'the parameter\'s shape) or a nested list of its shape, e.g. `"springs.stiffness" = 350.0`. '
    "Keys are parameter names (`diffsim params SCENE` lists them), quoted or as dotted keys.",
)


def scene_schema(kind: str = "springs") -> Table:
    """The full schema of a scene of system `kind`."""
    k = system_kind(kind)
    return Table(
        {
            "scene": _scene_table(),
            "sim": SIM,
            "backend": BACKEND,
            **k.schema.fields,
            "params": PARAMS,
            "task": TASK,
        },
        doc=k.doc,
    )


# ----------------------------------------------------------------------------------------------------------
# Finding scene files


def scenes_dir() -> Path | None:
    """The folder of the shipped scenes: ``$DIFFSIM_SCENES``, else ``scenes/`` of the source checkout."""
    env = os.environ.get("DIFFSIM_SCENES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent  # diffsim/scene
    for candidate in (here.parent / "scenes", here.parent.parent / "scenes"):
        if candidate.is_dir():
            return candidate
    return None


def find_scene(name: str | os.PathLike) -> Path:
    """A scene file: the path itself if it exists, else the shipped scene ``<scenes_dir>/<name>.toml`` for a bare
    name or for ``scenes/<name>.toml`` (as the docs write it) outside a source checkout."""
    path = Path(name)
    if _exists(path):
        return path
    shipped = path.name if len(path.parts) == 2 and path.parts[0] == "scenes" else None
    if shipped is None and not path.suffix and len(path.parts) == 1:
        shipped = f"{name}.toml"
    folder = scenes_dir()
    if shipped is not None and folder is not None and _exists(folder / shipped):
        return folder / shipped
    return path


def _exists(path: Path) -> bool:
    """Path.exists, False where the name cannot be a file (too long, say): reading it then reports why."""
    try:
        return path.exists()
    except OSError:
        return False


#: tables and arrays nested deeper than this are refused before the loader walks them (recursively)
MAX_DEPTH = 64


def _check_depth(value: Any, source: str, path: tuple = ()) -> None:
    """Refuse data nested deeper than MAX_DEPTH (no scene key nests more than a few levels) before the loader's
    recursive passes meet it, naming the key."""
    if len(path) > MAX_DEPTH:
        shown = format_key_path(list(path[:4])) + "..."
        where = f"--set {shown}" if source == "--set" else f"{source}: {shown}"
        raise DiffsimError(f"tables or arrays nested more than {MAX_DEPTH} levels deep", where=where)
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, sub in items:
        if isinstance(sub, (dict, list)):
            _check_depth(sub, source, (*path, key if isinstance(key, int) else str(key)))


# ----------------------------------------------------------------------------------------------------------
# Overrides


def _resolves_to_key(schema: Table, parts: list[str | int]) -> bool:
    """Whether a key path names a key of the schema rather than a parameter.

    Paths into a plain table (``sim.stepz``) count as keys even when misspelt, so that validation suggests the
    right one; a path into an array of tables or a controller that names no key (``springs.stiffness``,
    ``controller.w0``) is a parameter name.
    """
    first = schema.fields.get(parts[0]) if parts and isinstance(parts[0], str) else None
    if isinstance(first, Table):
        return True
    node: Any = schema
    for i, part in enumerate(parts):
        if isinstance(node, Field):
            return False
        if isinstance(node, TableArray):
            if not isinstance(part, int):
                return False
            node = node.table
            continue
        if isinstance(part, int):
            return False
        if isinstance(node, Variants):
            if part == node.tag:
                node = node.tag_field()
                continue
            tables = [t for t in node.variants.values() if part in t.fields]
            if not tables:
                return any(t.extra for t in node.variants.values())
            node = tables[0].fields[part]
            continue
        if part not in node.fields:
            return node.extra and i > 0
        node = node.fields[part]
    return True


def _split_overrides(schema: Table, pairs) -> tuple[list, dict]:
    """(scene-key overrides, parameter name -> value)."""
    keys, params = [], {}
    for path, value in pairs:
        if _resolves_to_key(schema, path) or not all(isinstance(p, str) for p in path):
            keys.append((path, value))
        else:
            params[".".join(path)] = value
    return keys, params


def _drop_none(data: Any) -> Any:
    """Remove keys set to None (an override that deletes a key)."""
    if isinstance(data, dict):
        return {k: _drop_none(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [_drop_none(v) for v in data]
    return data


def _target_loss_kind(raw: dict) -> str:
    """The loss kind a target file selects for the scene's system (the registry's `target_loss`)."""
    table = raw.get("scene")
    name = table.get("system") if isinstance(table, dict) else None
    try:
        return system_kind(name).target_loss if isinstance(name, str) else "trajectory"
    except DiffsimError:  # an unknown system: validation reports it
        return "trajectory"


def _task_flags(raw: dict, target, fit, optimizer, lr, iters, tol) -> list:
    """Overrides for the command line's task flags, given the file's raw data."""
    out: list = []
    task = raw.get("task") if isinstance(raw.get("task"), dict) else None
    loss = task.get("loss") if task and isinstance(task.get("loss"), dict) else None
    if target is not None:
        target = os.path.abspath(os.fspath(target))
        made = _target_loss_kind(raw)
        if loss is not None and loss.get("kind") in ("trajectory", "final_position", made):
            out += [(["task", "loss", "target"], target), (["task", "loss", "generate"], None)]
        else:
            out.append((["task", "loss"], {"kind": made, "target": target}))
    if fit:
        out.append((["task", "fit"], list(fit)))
    if optimizer is not None:
        current = task.get("optimizer") if task else None
        current_name = current.get("name", "adam") if isinstance(current, dict) else None
        if current_name != optimizer:
            out.append((["task", "optimizer"], {"name": optimizer}))
    if lr is not None:
        out.append((["task", "optimizer", "lr"], float(lr)))
    if iters is not None:
        out.append((["task", "iters"], int(iters)))
    if tol is not None:
        out.append((["task", "tol"], float(tol)))
    return out


def load_scene(
    path: str | os.PathLike,
    overrides: Iterable = (),
    *,
    steps: int | None = None,
    target: str | os.PathLike | None = None,
    fit: list[str] | None = None,
    optimizer: str | None = None,
    lr: float | None = None,
    iters: int | None = None,
    tol: float | None = None,
    checkpoint_every: int | None = None,
) -> Scene:
    """Read, override and validate a scene file. Nothing is built (and Taichi is not started) here.

    overrides: ``"NAME=VALUE"`` strings (as ``--set`` takes them) or (key path, value) pairs.
    steps, target, fit, optimizer, lr, iters, tol, checkpoint_every: the command line's shortcuts; they
        become overrides of ``sim.steps``, ``task.loss.target``, ``task.fit``, ... (a target file turns the task's
        loss into a trajectory loss, or creates a task when the scene has none).
    A bare name (``walker2d``) finds the shipped scene of that name.
    """
    path = find_scene(path)
    source = os.fspath(path)
    raw = load_toml(path)
    return Scene.from_dict(
        raw,
        source,
        overrides,
        steps=steps,
        target=target,
        fit=fit,
        optimizer=optimizer,
        lr=lr,
        iters=iters,
        tol=tol,
        checkpoint_every=checkpoint_every,
        base_dir=os.path.dirname(source),
    )


class Scene:
    """A validated scene: `data` (the validated tables), `source` (the file), `kind` (its system kind)."""

    def __init__(self, data: dict, source: str, kind: SystemKind, param_sources: dict[str, str]):
        self.data = data
        self.source = source
        self.kind = kind
        self._param_sources = param_sources

    # -- construction -----------------------------------------------------------------------------------------
    @classmethod
    def from_dict(
        cls,
        raw: dict,
        source: str = "<scene>",
        overrides: Iterable = (),
        *,
        steps=None,
        target=None,
        fit=None,
        optimizer=None,
        lr=None,
        iters=None,
        tol=None,
        checkpoint_every=None,
        base_dir: str | None = None,
    ) -> Scene:
        """Validate scene data (as read from TOML); see `load_scene`."""
        items = list(overrides)
        pairs = parse_set([o for o in items if isinstance(o, str)]) + [
            o for o in items if not isinstance(o, str)
        ]
        if not isinstance(raw, dict):
            raise DiffsimError(f"must be a table of tables, got {type(raw).__name__}", where=source)
        _check_depth(raw, source)
        for path, value in pairs:
            _check_depth(value, "--set", tuple(path))
        head = validate(
            {k: v for k, v in raw.items() if k == "scene"}, Table({"scene": _scene_table()}), source=source
        )
        kind = system_kind(head["scene"]["system"])
        schema = scene_schema(kind.kind)
        key_pairs, param_values = _split_overrides(schema, pairs)
        for path, value in key_pairs:
            changed = value.get("system") if list(path) == ["scene"] and isinstance(value, dict) else value
            if list(path) in (["scene"], ["scene", "system"]) and changed not in (None, kind.kind):
                raise DiffsimError(
                    f"cannot change the system kind from {kind.kind!r} to {changed!r}: the scene's other tables "
                    f"describe a {kind.kind} system (write a scene file for {changed!r})",
                    where="--set scene.system",
                )
        if steps is not None:
            key_pairs.append((["sim", "steps"], int(steps)))
        if checkpoint_every is not None:
            key_pairs += [
                (["sim", "storage"], "checkpointed"),
                (["sim", "checkpoint_every"], int(checkpoint_every)),
            ]
        key_pairs += _task_flags(raw, target, fit, optimizer, lr, iters, tol)
        data = _drop_none(apply_overrides(raw, key_pairs, source=source))
        # [params], [task.bounds], ... accept dotted keys unquoted: flatten before validation so that the
        # resolved scene spells each name once.
        param_sources: dict[str, str] = {}
        if isinstance(data.get("params"), dict):
            data["params"] = flatten_names(data["params"])
            param_sources = {n: f'{source}: params."{n}"' for n in data["params"]}
        if param_values:
            data.setdefault("params", {})
            if not isinstance(data["params"], dict):
                data["params"] = {}
            for name, value in param_values.items():
                data["params"][name] = value
                param_sources[name] = f"--set {name}"
        validated = validate(data, schema, source=source, base_dir=base_dir)
        _resolve_targets(validated, source, base_dir)
        if validated["sim"]["checkpoint_every"] is not None:
            validated["sim"]["storage"] = "checkpointed"
        if validated["scene"]["name"] is None:
            validated["scene"]["name"] = Path(source).stem if not source.startswith("<") else "scene"
        return cls(validated, source, kind, param_sources)

    # -- description ----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.data["scene"]["name"]

    @property
    def description(self) -> str:
        return self.data["scene"]["description"]

    @property
    def steps(self) -> int:
        return self.data["sim"]["steps"]

    @property
    def dt(self) -> float:
        return self.data["sim"]["dt"]

    @property
    def has_task(self) -> bool:
        return self.data.get("task") is not None

    @property
    def resolved(self) -> dict:
        """The validated scene with every default filled in, ready to be written back (`to_toml`)."""
        return copy.deepcopy(self.data)

    def to_toml(self) -> str:
        """The resolved scene as TOML text; `load_scene` on it gives the same scene."""
        data = {
            k: v for k, v in self.resolved.items() if v != []
        }  # an empty [[particles]] list reads back as such
        return dumps(data, header=f"Resolved from {self.source} by diffsim: every default filled in.")

    def write(self, path: str | os.PathLike) -> Path:
        """Write the resolved scene as TOML, atomically."""
        from diffsim.fileio import write_text_atomic  # noqa: PLC0415

        return write_text_atomic(path, self.to_toml())

    # -- backend --------------------------------------------------------------------------------------------
    def backend(self, arch: str | None = None, precision: str | None = None) -> tuple[str, str, bool]:
        """(arch, precision, arch_is_hint): command line > scene hint > environment > cpu / f32."""
        hint = self.data["backend"]
        chosen_arch = arch or hint["arch"] or os.environ.get("DIFFSIM_ARCH") or "cpu"
        chosen_precision = precision or hint["precision"] or os.environ.get("DIFFSIM_PRECISION") or "f32"
        return chosen_arch, chosen_precision, arch is None and hint["arch"] is not None

    def init_backend(
        self,
        arch: str | None = None,
        precision: str | None = None,
        debug: bool = False,
        seed: int | None = None,
    ) -> dict:
        """Start Taichi for this scene (see `backend`); an unavailable hinted arch falls back to cpu. Returns
        `diffsim.runtime.current()`."""
        from diffsim import runtime  # noqa: PLC0415

        chosen_arch, chosen_precision, soft = self.backend(arch, precision)
        with contextlib.redirect_stdout(io.StringIO()):  # Taichi prints "Starting on arch=..." to stdout
            try:
                runtime.init(arch=chosen_arch, precision=chosen_precision, debug=debug, seed=seed)
            except DiffsimError as e:
                if not soft:
                    raise
                warnings.warn(
                    f"{self.source}: backend.arch = {chosen_arch!r} is not usable here ({e.reason}); "
                    "using cpu",
                    stacklevel=2,
                )
                runtime.init(arch="cpu", precision=chosen_precision, debug=debug, seed=seed)
        return runtime.current()

    # -- building -------------------------------------------------------------------------------------------
    def build_system(self, requires_grad=None):
        """The system with the scene's [params] applied (Taichi must be initialised; see `init_backend`).
        requires_grad: the parameters (names or patterns) that get gradients; None: all."""
        from diffsim import runtime  # noqa: PLC0415

        if not runtime._state["initialized"]:
            self.init_backend()
        self._refuse_if_too_large()
        ctx = BuildContext(self.data, self.source, self.steps, requires_grad=requires_grad)
        system = self.kind.build(ctx)
        apply_named_values(
            system.params,
            self.data["params"],
            lambda n: self._param_sources.get(n, f'{self.source}: params."{n}"'),
        )
        return system

    def _refuse_if_too_large(self) -> None:
        """Estimate the bytes of the rollout's time-indexed fields from the scene's sizes (values and gradients,
        a lower bound) and refuse, with the figure, one that cannot fit, before anything is allocated."""
        if self.kind.size is None:
            return
        from diffsim import runtime  # noqa: PLC0415
        from diffsim.engine.memory import check_memory, rollout_frames  # noqa: PLC0415

        sim = self.data["sim"]
        per_frame, key, what = self.kind.size(self.data)
        frames, snapshots = rollout_frames(self.steps, sim["storage"], sim["checkpoint_every"])
        batch = sim["batch"]
        item = 8 if runtime.current()["precision"] == "f64" else 4
        need = item * batch * max(1, per_frame) * (2 * frames + snapshots)
        check_memory(
            need,
            f"{frames} frames ({self.steps} steps, {sim['storage']} storage) of {batch} "
            f"cop{'y' if batch == 1 else 'ies'} of {what}",
            f"{self.source}: {'sim.batch' if batch > max(1, per_frame) else key}",
            "use fewer steps, copies or elements, or checkpointed storage",
        )

    def build(self, task: bool = True, storage: str | None = None, grads: str = "all"):
        """(system, simulation, task): the simulation has the task's loss attached; task is None when the scene
        has no [task] or `task` is False. storage: "full" or "checkpointed" instead of the scene's.
        grads: "all" (every parameter gets a gradient) or "task" (only the task's fitted ones, as `diffsim
        optimize` does: backward() then skips the others' arithmetic)."""
        import diffsim  # noqa: PLC0415

        if grads not in ("all", "task"):
            raise DiffsimError(f"must be 'all' or 'task', got {grads!r}", where="grads")
        fitted = grads == "task" and task and self.has_task
        system = self.build_system(requires_grad=list(self.data["task"]["fit"]) if fitted else None)
        if (
            fitted
        ):  # a pattern that matches nothing: the task's error (file, key, suggestion), not requires_grad's
            from diffsim.scene.task import resolve_fit  # noqa: PLC0415

            resolve_fit(self.data["task"]["fit"], system.params.names(), self.source)
        sim_spec = self.data["sim"]
        storage = storage or sim_spec["storage"]
        sim = diffsim.Simulation(
            system,
            self.steps,
            storage=storage,
            checkpoint_every=sim_spec["checkpoint_every"] if storage == "checkpointed" else None,
            truncate=sim_spec["truncate"],
            clip_adjoint=sim_spec["clip_adjoint"],
        )
        built_task = None
        if task and self.has_task:
            built_task = build_task(self.data["task"], self.source, system, sim)
        return system, sim, built_task

    def check_task(self, system, sim) -> None:
        """Check the [task] table against the built system, with the errors `build` gives, without simulating a
        synthetic target or attaching the loss (for `diffsim run`). The target's agreement with this rollout (its
        frames, points or grid) is left to `build`: a run may preview the scene with another horizon or size."""
        if self.has_task:
            build_task(self.data["task"], self.source, system, sim, dry=True)

    def drawing(self, system) -> Drawing:
        if self.kind.drawing is None:
            raise DiffsimError(
                f"system kind {self.kind.kind!r} does not say how to draw itself", where=self.source
            )
        return self.kind.drawing(system)

    def __repr__(self) -> str:
        return f"Scene({self.name!r}, system={self.kind.kind!r}, source={self.source!r})"


def _resolve_targets(data: dict, source: str, base_dir: str | None) -> None:
    """Make a target file path absolute and check that it exists."""
    task = data.get("task")
    if not task:
        return
    loss = task["loss"]
    target = loss.get("target")
    if not isinstance(target, str):
        return
    if base_dir is None:
        base_dir = "" if source.startswith("<") else os.path.dirname(source)
    resolved = os.path.abspath(os.path.join(base_dir, os.path.expanduser(target)))
    if not os.path.exists(resolved):
        raise DiffsimError(f"file not found: {format_path(resolved)}", where=f"{source}: task.loss.target")
    loss["target"] = resolved
