"""`diffsim.sweep`: run a scene over a design of values (grid, random, multi-start), locally or on Ray.

The sweep's folder (Ray Tune's layout, simplified):

    DIR/sweep.json            the setup and every trial's spec (what --resume reads)
    DIR/scene.toml            the resolved scene every trial starts from (the --set values applied)
    DIR/results.csv, .json    one row per finished trial, rewritten as each trial ends
    DIR/loss.png              loss over one or two swept values (grid, random)
    DIR/convergence.png       best-of-N loss and each fit's loss curve (starts, optimize)
    DIR/trials/trial_NNNNN/   each trial's result.json (spec, row, fitted parameters, loss history)

`resume=True` reads sweep.json and results.json and runs only the trials without a row; a trial that ran and
failed (status "error") has its row and is not run again.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import DiffsimError
from .design import grid_design, parse_grid, parse_range, random_design
from .execute import ray_available, run_ray, run_serial
from .table import SweepTable
from .trial import parameter_ranges, start_design, trial_spec

_FORMAT, _VERSION = "diffsim-sweep", 1
SETUP_FILE, RESULTS_CSV, RESULTS_JSON = "sweep.json", "results.csv", "results.json"


def sweep(
    scene: str | os.PathLike | None,
    out: str | os.PathLike,
    *,
    grid: list[str] | dict | None = None,
    random: int | None = None,
    ranges: list[str] | dict | None = None,
    design: str = "sobol",
    starts: int | None = None,
    mode: str | None = None,
    sets: list[str] = (),
    steps: int | None = None,
    target: str | os.PathLike | None = None,
    iters: int | None = None,
    optimizer: str | None = None,
    lr: float | None = None,
    fit: list[str] | None = None,
    tol: float | None = None,
    arch: str | None = None,
    precision: str | None = None,
    seed: int = 0,
    workers: int | None = None,
    address: str | None = None,
    gpus_per_worker: float = 0,
    resume: bool = False,
    say: Callable[[str], None] | None = print,
) -> SweepTable:
    """Run `scene` once per point of a design and return the table of results (also written into `out`).

    grid: ``["NAME=LO:HI:N", ...]`` (or {name: [values]}): every combination. random: that many points within
    `ranges` (``["NAME=LO:HI", ...]`` or {name: (lo, hi)}; default: the task's fitted parameters within their
    bounds, see `trial.parameter_ranges`), by `design` (sobol, lhs, uniform). starts: a multi-start fit of the
    scene's [task]: the scene's values, then starts - 1 points drawn as `random` does. A NAME is a scene key or a
    parameter's initial value, as ``--set`` takes it.
    mode: "run" (one rollout, the task's loss) or "optimize" (fit the task from those values); default: optimize
    for starts, run otherwise. sets, steps, target, iters, optimizer, lr, fit, tol: as for ``diffsim optimize``.
    workers: parallel trials on a local Ray instance (None: one per CPU when Ray is installed, else 0); 0: one
    after the other in this process. address: a Ray cluster to join (or ``RAY_ADDRESS``). seed: trial i gets
    seed + i (Python's and numpy's generators).
    resume: continue the sweep in `out`: only trials without a result run (the other arguments are not needed).
    """
    say = say or (lambda _text: None)
    folder = Path(out)
    if resume:
        setup, specs = _read_setup(folder)
    else:
        if scene is None:
            raise DiffsimError("give a SCENE to sweep, or --resume DIR", where="sweep")
        setup, specs = _plan(
            scene, folder, grid, random, ranges, design, starts, mode, list(sets),
            dict(steps=steps, target=target, iters=iters, optimizer=optimizer, lr=lr, fit=fit, tol=tol), arch, precision, seed,
        )  # fmt: skip
    rows = _read_rows(folder) if resume else {}
    todo = [s for s in specs if s["index"] not in rows]
    names = setup["names"]
    say(
        f"sweep {setup['label']}: {len(specs)} trials ({setup['mode']}), "
        + (f"{len(rows)} done, {len(todo)} to run" if resume else f"{len(todo)} to run")
    )

    def on_result(row: dict) -> None:
        rows[row["index"]] = row
        _write_results(folder, SweepTable(list(rows.values()), names))
        loss = row["best_loss"]
        state = f"loss {loss:.6g}" if row["status"] == "ok" else f"error: {row['error']}"
        say(f"  trial {row['index']} ({len(rows)}/{len(specs)}): {state} ({row['wall_time_s']:.1f} s)")

    t0 = time.perf_counter()
    if todo:
        use_ray = workers != 0 and (address or os.environ.get("RAY_ADDRESS") or workers or ray_available())
        if use_ray and not ray_available():
            raise DiffsimError(
                "Ray is not installed: pip install 'diffsim[scale]', or --workers 0", where="--workers"
            )
        if use_ray:
            run_ray(
                todo, on_result, workers=workers, address=address, gpus_per_worker=gpus_per_worker, say=say
            )
        else:
            if workers is None:
                say(
                    "note: Ray is not installed (pip install 'diffsim[scale]'): the trials run one after the other"
                )
            run_serial(todo, on_result)
    table = SweepTable(list(rows.values()), names)
    _write_results(folder, table)
    _write_plots(folder, table, setup)
    best = table.best()
    say(
        f"{len(table)} trials in {time.perf_counter() - t0:.1f} s"
        + (f"; best loss {best['best_loss']:.6g} (trial {best['index']}, {best['folder']})" if best else "")
    )
    return table


def _plan(scene, folder, grid, random, ranges, method, starts, mode, sets, flags, arch, precision, seed):
    """Write the sweep's folder (scene.toml, sweep.json) and return (setup, trial specs)."""
    from diffsim.fileio import check_output_folder, write_text_atomic  # noqa: PLC0415
    from diffsim.scene import load_scene  # noqa: PLC0415

    kinds = [k for k, v in (("--grid", grid), ("--random", random), ("--starts", starts)) if v]
    if len(kinds) != 1:
        raise DiffsimError("give one of --grid, --random N or --starts N", where=" ".join(kinds) or "sweep")
    if mode not in (None, "run", "optimize"):
        raise DiffsimError(f"must be run or optimize, got {mode!r}", where="--mode")
    mode = mode or ("optimize" if starts else "run")
    check_output_folder(folder, "--out")
    if (folder / SETUP_FILE).exists():
        raise DiffsimError(
            f"{folder} holds a sweep: continue it with `diffsim sweep --resume {folder}`, or give another --out",
            where="--out",
        )
    base = load_scene(scene, sets, **{k: v for k, v in flags.items() if v is not None})
    # the design is made before anything is written: bad input leaves no folder behind
    setup = {
        "scene": os.path.abspath(base.source), "sets": list(sets), "flags": flags, "mode": mode, "arch": arch,
        "precision": precision, "seed": int(seed), "base_seed": int(seed), "source": base.source,
        "label": base.name,
    }  # fmt: skip
    if grid:
        axes = dict(grid) if isinstance(grid, dict) else dict(parse_grid(g) for g in grid)
        design, kind = grid_design({k: list(v) for k, v in axes.items()}), "grid"
    elif random:
        box = _ranges(ranges, setup)
        design, kind = random_design(box, int(random), method, seed), "random"
    else:
        if starts < 1:
            raise DiffsimError(f"must be >= 1, got {starts}", where="--starts")
        given = _ranges(ranges, setup) if ranges else None
        per_param = parameter_ranges(setup, list(given) if given else None)
        for name, (lo, hi) in (given or {}).items():
            per_param[name].update(
                low=_full(lo, per_param[name]["value"]), high=_full(hi, per_param[name]["value"])
            )
        design, kind = start_design(per_param, int(starts), method, seed), "starts"
    names = list(design[0]) if design else []
    folder.mkdir(parents=True, exist_ok=True)
    scene_file = base.write(folder / "scene.toml")  # every trial starts from it, the --set values applied
    setup.update(kind=kind, names=names, scene=str(scene_file.resolve()), sets=[], flags={})
    specs = [trial_spec(i, v, setup, str(folder / "trials" / f"trial_{i:05d}")) for i, v in enumerate(design)]
    text = json.dumps({"format": _FORMAT, "version": _VERSION, "setup": setup, "trials": specs}, indent=1)
    write_text_atomic(folder / SETUP_FILE, text + "\n")
    return setup, specs


def _full(value: float, like) -> list | float:
    import numpy as np  # noqa: PLC0415

    return np.full(np.shape(like), value).tolist()


def _ranges(ranges, setup: dict) -> dict:
    """name -> (lo, hi): the given ranges, else the task's fitted scalar parameters within their default ranges."""
    if ranges:
        return dict(ranges) if isinstance(ranges, dict) else dict(parse_range(r) for r in ranges)
    box = {}
    for name, r in parameter_ranges(setup).items():
        if len(_flat(r["value"])) != 1:
            raise DiffsimError(
                f"{name} has {len(_flat(r['value']))} values: give its range with --range {name}=LO:HI (the same "
                "value for all), or sweep it with --starts",
                where="--random",
            )
        box[name] = (_flat(r["low"])[0], _flat(r["high"])[0])
    return box


def _flat(value) -> list:
    import numpy as np  # noqa: PLC0415

    return np.ravel(value).tolist()


def _read_setup(folder: Path) -> tuple[dict, list[dict]]:
    path = folder / SETUP_FILE
    if not path.is_file():
        raise DiffsimError(f"no {SETUP_FILE} in {folder}: not a sweep's folder", where="--resume")
    try:
        data = json.loads(path.read_text())
        if data.get("format") != _FORMAT:
            raise ValueError("no format mark")
    except ValueError as e:
        raise DiffsimError(f"not a diffsim sweep ({e})", where=str(path)) from None
    return data["setup"], data["trials"]


def _read_rows(folder: Path) -> dict[int, dict]:
    """The finished trials' rows (results.json), by index; each trial's own result.json fills in a row the table
    missed (the driver killed between a trial's end and the table's write)."""
    rows = {}
    path = folder / RESULTS_JSON
    if path.is_file():
        rows = {r["index"]: r for r in json.loads(path.read_text())["rows"]}
    for result in sorted((folder / "trials").glob("trial_*/result.json")):
        try:
            row = json.loads(result.read_text())["row"]
        except (ValueError, KeyError):
            continue
        rows.setdefault(row["index"], row)
    return rows


def _write_results(folder: Path, table: SweepTable) -> None:
    from diffsim.fileio import write_text_atomic  # noqa: PLC0415

    write_text_atomic(folder / RESULTS_JSON, table.to_json())
    write_text_atomic(folder / RESULTS_CSV, table.to_csv())


def _write_plots(folder: Path, table: SweepTable, setup: dict) -> None:
    from .plots import plot_convergence, plot_landscape  # noqa: PLC0415

    ok = [r for r in table if r["status"] == "ok" and math.isfinite(r["best_loss"])]
    if not ok:
        return
    if setup["kind"] in ("grid", "random") and 1 <= len(table.names) <= 2:
        plot_landscape(
            ok, table.names, folder / "loss.png", title=f"{setup['label']}: loss ({setup['mode']})"
        )
    if setup["mode"] == "optimize":
        plot_convergence(ok, folder / "convergence.png", title=f"{setup['label']}: best of {len(ok)} fits")
