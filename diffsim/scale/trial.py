"""One trial of a sweep: a scene with some values set, simulated once (``run``) or fitted (``optimize``), its outputs
written into its own folder. The same code runs in the driver (trials one after the other) and in Ray's workers.

A trial is described by a plain dict (`TrialSpec`), so that it travels to a worker as it is and is stored in the
sweep's folder for `--resume`. A process keeps the last simulation it built (`TrialRunner`): trials whose values
differ only in parameter values (``ground.friction``, ``bodies.mass``; not scene keys such as ``sim.steps``) reuse
it, with every parameter reset to its built value and the trial's values set, instead of starting Taichi again and
rebuilding (measured: see docs/scale.md).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
import traceback
from pathlib import Path

import numpy as np

from ..errors import DiffsimError

#: the file a trial writes into its folder
TRIAL_RESULT = "result.json"

#: the columns of a sweep's table, in order (the swept names come after "index")
COLUMNS = (
    "index", "status", "final_loss", "best_loss", "iterations", "wall_time_s", "folder", "stopped", "seed",
    "worker", "error",
)  # fmt: skip


def trial_spec(index: int, values: dict, setup: dict, folder: str) -> dict:
    """The description of trial `index`: its values (name -> number or list) and the sweep's setup (scene file,
    --set strings, task flags, mode, backend, seed)."""
    return {"index": index, "values": values, "folder": folder, **setup, "seed": setup["seed"] + index}


def _fingerprint(value) -> str:
    """A stable text of a scene's data (arrays by their bytes' hash)."""

    def default(obj):
        if isinstance(obj, np.ndarray):
            return hashlib.sha1(obj.tobytes()).hexdigest() + str(obj.shape)
        return repr(obj)

    return json.dumps(value, sort_keys=True, default=default)


def load_trial_scene(spec: dict, parameters: set[str] = frozenset()):
    """The scene of a trial: the file with the sweep's --set strings, then the trial's values. A value whose name
    is in `parameters` (the built system's parameter names) goes into the [params] table, even where a scene key of
    that name exists (``ground.friction``): the scene's structure stays the same, and a kept simulation serves."""
    from diffsim.scene import load_scene  # noqa: PLC0415
    from diffsim.scene.overrides import parse_key_path, parse_set  # noqa: PLC0415

    overrides = parse_set(spec["sets"])
    for name, value in spec["values"].items():
        if name in parameters:
            overrides.append((["params", name], value))
            continue
        try:
            overrides.append((parse_key_path(name), value))
        except ValueError as e:
            raise DiffsimError(str(e), where=name) from None
    flags = {k: v for k, v in spec["flags"].items() if v is not None}
    return load_scene(spec["scene"], overrides, **flags)


class TrialRunner:
    """Runs trials in this process; keeps the last built simulation for the next trial of the same structure."""

    def __init__(self):
        self._built = None  # (key, scene, system, sim, task, values of every parameter as built)
        self._parameters: dict[str, set[str]] = {}  # scene file -> its parameters' names

    def run(self, spec: dict) -> dict:
        """Run one trial and write its folder; returns its row. A trial that fails (bad values, a rollout that
        blows up) returns status "error" and the reason; the sweep goes on."""
        t0 = time.perf_counter()
        folder = Path(spec["folder"])
        row = {"index": spec["index"], **{f"values.{k}": v for k, v in spec["values"].items()}}
        row.update(status="ok", final_loss=math.nan, best_loss=math.nan, iterations=0, stopped="", error="")
        row.update(folder=str(folder), seed=spec["seed"], worker=f"{os.uname().nodename}:{os.getpid()}")
        record: dict = {}
        try:
            random.seed(spec["seed"])
            np.random.seed(spec["seed"] % 2**32)
            scene, system, sim, task = self._simulation(spec)
            if spec["mode"] == "optimize":
                record = self._optimize(sim, task)
            else:
                record = self._evaluate(sim, task)
            row.update({k: record[k] for k in ("final_loss", "best_loss", "iterations", "stopped")})
        except (DiffsimError, ArithmeticError, ValueError) as e:  # the trial's failure, not the sweep's
            self._built = None
            row.update(status="error", error=" ".join(str(e).split()))
        except Exception as e:  # noqa: BLE001 - a bug in one trial: recorded with its traceback, the sweep goes on
            self._built = None
            row.update(status="error", error=f"{type(e).__name__}: {' '.join(str(e).split())}")
            record["traceback"] = traceback.format_exc()
        row["wall_time_s"] = time.perf_counter() - t0
        _write_trial(folder, spec, row, record)
        return row

    def _simulation(self, spec: dict):
        """(scene, system, sim, task) for the trial: the kept one with the trial's values, or a new one."""
        from diffsim.scene.task import apply_named_values  # noqa: PLC0415

        scene = load_trial_scene(spec, self._parameters.get(spec["scene"], frozenset()))
        data = {k: v for k, v in scene.data.items() if k != "params"}
        key = _fingerprint(
            [data, spec["mode"], spec["arch"], spec["precision"], sorted(scene.data["params"])]
        )
        if self._built is not None and self._built[0] == key:
            _, _, system, sim, task, built = self._built
            system.params.load_dict(built, source="<sweep: built values>")
            apply_named_values(system.params, scene.data["params"], lambda n: f"{scene.source}: {n}")
            return scene, system, sim, task
        self._built = None
        scene.init_backend(arch=spec["arch"], precision=spec["precision"], seed=spec["base_seed"])
        grads = "task" if spec["mode"] == "optimize" else "all"
        system, sim, task = scene.build(grads=grads)
        if spec["mode"] == "optimize" and task is None:
            raise DiffsimError("the scene has no [task] to optimize", where=scene.source)
        built = {n: np.asarray(v, dtype=np.float64) for n, v in system.params.to_dict().items()}
        self._parameters[spec["scene"]] = set(built)
        self._built = (key, scene, system, sim, task, built)
        return scene, system, sim, task

    @staticmethod
    def _evaluate(sim, task) -> dict:
        """One forward rollout; the task's loss (NaN without a task)."""
        loss = sim.forward()
        loss = loss if task is not None else math.nan
        return {"final_loss": loss, "best_loss": loss, "iterations": 1, "stopped": "run", "history": []}

    @staticmethod
    def _optimize(sim, task) -> dict:
        import diffsim  # noqa: PLC0415

        pset = sim.system.params
        start = pset.to_dict(task.fit)
        result = diffsim.fit(sim, progress=False, **task.fit_kwargs())
        return {
            "final_loss": result.final_loss,
            "best_loss": result.best_loss,
            "iterations": result.iterations,
            "stopped": result.stopped,
            "best_iteration": result.best_iteration,
            "initial_params": start,
            "params": result.params,
            "history": result.history,
        }


def _write_trial(folder: Path, spec: dict, row: dict, record: dict) -> None:
    """The trial's folder: result.json (its spec, row, fitted parameters and loss history)."""
    from diffsim.fileio import write_text_atomic  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_jsonable({"spec": spec, "row": row, **record}), indent=1)
    write_text_atomic(folder / TRIAL_RESULT, text + "\n")


def _jsonable(value):
    """JSON-ready: numpy scalars and arrays to Python, NaN and inf kept (Python's json writes them)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


#: one runner per process (the driver's, or a Ray worker's)
_RUNNER = TrialRunner()


def run_trial(spec: dict) -> dict:
    """Run a trial in this process (Ray's task function calls this in its worker)."""
    return _RUNNER.run(spec)


# -- starting points ------------------------------------------------------------------------------------------------


def parameter_ranges(spec: dict, names: list[str] | None = None) -> dict[str, dict]:
    """For each named parameter (None: the task's fitted ones): its value, shape and the range starts are drawn
    from: its bounds where both are finite (the task's [task.bounds] included), else [v/2, 2v] for a positive value
    (v ± max(|v|, 1)/2 otherwise), cut to the bounds. Builds the scene (starts Taichi) in this process."""
    scene = load_trial_scene({**spec, "values": {}})
    scene.init_backend(arch=spec["arch"], precision=spec["precision"], seed=spec["base_seed"])
    system, sim, task = scene.build(grads="all")
    if names is None:
        if task is None:
            raise DiffsimError("the scene has no [task]: give the names to draw (--range NAME=LO:HI)")
        names = list(task.fit)
    out = {}
    for name in names:
        if name not in system.params:
            raise DiffsimError(f"no parameter named {name!r}", where=scene.source)
        p = system.params[name]
        value = p.numpy()
        lo, hi = p.bounds
        if lo is not None and hi is not None:
            rng = np.broadcast_to([lo, hi], (*value.shape, 2)).copy()
        else:
            half = np.maximum(np.abs(value), 1.0) / 2
            rng = np.where(
                (value > 0)[..., None],
                np.stack([value / 2, value * 2], -1),
                np.stack([value - half, value + half], -1),
            )
            rng = np.clip(rng, -np.inf if lo is None else lo, np.inf if hi is None else hi)
        out[name] = {"value": value.tolist(), "low": rng[..., 0].tolist(), "high": rng[..., 1].tolist()}
    return out


def start_design(ranges: dict[str, dict], n: int, method: str, seed: int) -> list[dict]:
    """n starting points: the scene's own values, then n - 1 drawn element-wise within each parameter's range."""
    from .design import random_design  # noqa: PLC0415

    first = {name: r["value"] for name, r in ranges.items()}
    if n == 1:
        return [first]
    flat = {}
    for name, r in ranges.items():
        lo, hi = np.ravel(r["low"]), np.ravel(r["high"])
        for j in range(lo.size):
            flat[(name, j)] = (float(lo[j]), float(hi[j]))
    drawn = random_design({f"{k[0]}[{k[1]}]": v for k, v in flat.items()}, n - 1, method, seed)
    design = [first]
    for point in drawn:
        values = {}
        for name, r in ranges.items():
            shape = np.shape(r["value"])
            size = int(np.prod(shape)) if shape else 1
            arr = np.array([point[f"{name}[{j}]"] for j in range(size)]).reshape(shape)
            values[name] = arr.tolist()
        design.append(values)
    return design
