"""The ``diffsim`` command: simulate, inspect, optimize, check gradients and draw scene files.

    diffsim run SCENE --out DIR [--steps N] [--render]
    diffsim params SCENE [--json]
    diffsim optimize SCENE --out DIR [--iters N] [--fit NAME ...] [--target FILE.npz] [--optimizer adam|sgd|lbfgs]
                                     [--lr X] [--checkpoint K] [--save-every N] [--force] [--no-render]
    diffsim optimize --resume DIR [--iters N]
    diffsim sweep SCENE --out DIR (--grid NAME=LO:HI:N ... | --random N | --starts N) [--workers N] [--address A]
    diffsim gradcheck SCENE [--fit NAME ...] [--fd-steps H ...] [--json]
    diffsim render SCENE_OR_TRAJECTORY --out FILE.gif|.mp4|.png
    diffsim info
    diffsim demo
    diffsim bench [SCENE ...] [--json FILE] [--arch ...] [--repeat N]

Common flags: --arch, --precision, --seed, --set NAME=VALUE (repeatable), --quiet, --debug. Exit codes: 0 success,
1 a check failed (gradcheck), 2 bad input: one line ``diffsim: error: <file>: <key>: <reason>`` on stderr (the
traceback only with --debug), 130/143 stopped by SIGINT/SIGTERM (optimize saves its fit first). Every file is
written atomically; output locations are checked before any work. See docs/cli.md.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import math
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

from diffsim.errors import DiffsimError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2
#: `optimize` stopped because every trial step in a row blew the simulation up (stopped="unstable"); the outputs are
#: written, with the best parameters found
EXIT_UNSTABLE = 3

_CONTEXT: dict[str, str] = {}  # the scene file being worked on, to prefix errors that do not name one

COMMANDS = ("run", "params", "optimize", "sweep", "gradcheck", "render", "info", "demo", "bench")


# ----------------------------------------------------------------------------------------------------------
# Output helpers


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _seed(text: str) -> int:
    """argparse type: a seed numpy and Taichi accept, 0 <= seed < 2^31 (Taichi's is a signed 32-bit integer)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value < 2**31:
        raise argparse.ArgumentTypeError(f"must be an integer in 0..{2**31 - 1}, got {text}")
    return value


def _count(text: str, least: int = 0) -> int:
    """argparse type: an integer >= least."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be an integer >= {least}, got {text}")
    return value


def _positive_count(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _count(text, 1)


class _Parser(argparse.ArgumentParser):
    """Bad flags are reported like every other bad input: one line, exit 2."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"diffsim: error: {_one_line(message)} (see {self.prog} --help)\n")


def _check_format(args, drawn: bool) -> None:
    """An .mp4 animation needs ffmpeg: refused before any work rather than after the simulation."""
    import shutil  # noqa: PLC0415

    if drawn and getattr(args, "format", None) == ".mp4" and shutil.which("ffmpeg") is None:
        raise DiffsimError(
            "writing .mp4 needs ffmpeg, which is not on PATH; use --format .gif", where="--format .mp4"
        )


class _Out:
    """Messages for people: stdout, silenced by --quiet; never mixed into --json output."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def say(self, text: str = "") -> None:
        if not self.quiet:
            print(text, flush=True)


def _show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
    print(f"diffsim: warning: {str(message).strip()}", file=sys.stderr, flush=True)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _rel(path: str | os.PathLike) -> str:
    """A path as the user would type it: relative to the current folder when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _write_json(path: Path, data) -> None:
    from diffsim.fileio import write_text_atomic  # noqa: PLC0415

    write_text_atomic(path, json.dumps(_jsonable(data), indent=1) + "\n")


def _jsonable(value):
    """Plain JSON: numpy values converted, non-finite floats as null (JSON has no NaN)."""
    import numpy as np  # noqa: PLC0415

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _quiet_taichi_probe() -> None:
    """Probe the backends with Taichi's C++ log muted (it warns about a missing libcuda on every CPU machine)."""
    from taichi._logging import set_logging_level  # noqa: PLC0415

    from diffsim import runtime  # noqa: PLC0415

    set_logging_level("error")
    try:
        runtime.available_archs()
    finally:
        set_logging_level("warn")


# ----------------------------------------------------------------------------------------------------------
# Loading a scene with the common flags


def _load(args, **flags):
    from diffsim.scene import load_scene  # noqa: PLC0415
    from diffsim.scene.overrides import parse_set  # noqa: PLC0415

    sets = list(args.set or [])
    parse_set(sets)  # a malformed --set fails before the file is read
    scene = load_scene(args.scene, sets, **flags)
    if args.seed is not None and scene.data.get("controller", {}).get("seed") is not None:
        scene = load_scene(args.scene, [*sets, f"controller.seed={args.seed}"], **flags)
    _CONTEXT["source"] = scene.source
    return scene


def _init(args, scene, precision: str | None = None) -> dict:
    _quiet_taichi_probe()
    backend = scene.init_backend(
        arch=args.arch, precision=precision or args.precision, debug=args.debug, seed=args.seed
    )
    if args.quiet:  # Taichi's own warnings too (e.g. its kernel cache's lock, held by another process)
        from taichi._logging import set_logging_level  # noqa: PLC0415

        set_logging_level("error")
    return backend


def _load_params_file(args, system) -> None:
    if getattr(args, "params", None):
        if not os.path.exists(args.params):
            raise DiffsimError(f"file not found: {args.params}", where="--params")
        system.params.load(args.params)


def _check_file(path: str | None, flag: str) -> None:
    if path is not None and not os.path.isfile(path):
        raise DiffsimError(f"file not found: {path}", where=flag)


def _has_batch_axis(x, drawing) -> bool:
    """Whether a quantity keeps its copy axis: [frame, copy, point, dim] for points, [frame, copy, *cells,
    components] for a grid (a saved trajectory of one copy has none)."""
    return x.ndim == (drawing.dim + 3 if drawing.grid else 4)


def _positions(traj: dict, drawing, copy: int = 0):
    x = traj[drawing.quantity]
    return x[:, copy] if _has_batch_axis(x, drawing) else x


def _actions(traj: dict, copy: int = 0):
    act = traj.get("act")
    if act is None:
        return None
    return act[:, copy] if act.ndim == 3 else act


def _full_rollout(sim, twins: dict):
    """Forward with every frame kept; a checkpointed simulation gets a full-storage twin (made once) for drawing."""
    import diffsim  # noqa: PLC0415
    from diffsim.scene.trajectory import rollout  # noqa: PLC0415

    runner = sim
    if sim.storage != "full":
        if "full" not in twins:
            twins["full"] = diffsim.Simulation(sim.system, sim.steps, storage="full")
        runner = twins["full"]
    runner.forward()
    return rollout(runner)


# ----------------------------------------------------------------------------------------------------------
# Commands


def cmd_run(args) -> int:
    from diffsim.fileio import check_output_folder, remove_stale_temporaries  # noqa: PLC0415
    from diffsim.scene.trajectory import render_trajectory, rollout, save_trajectory  # noqa: PLC0415

    out = _Out(args.quiet)
    check_output_folder(args.out, "--out")
    _check_format(args, args.render)
    _check_file(args.params, "--params")
    scene = _load(args, steps=args.steps)
    backend = _init(args, scene)
    system, sim, _ = scene.build(task=False, storage="full")
    scene.check_task(system, sim)  # a broken [task] fails here as it would in optimize
    _load_params_file(args, system)
    t0 = time.perf_counter()
    sim.forward()
    elapsed = time.perf_counter() - t0
    traj = rollout(sim)
    drawing = scene.drawing(system)
    folder = Path(args.out)
    remove_stale_temporaries(folder)  # of a killed earlier run
    written = [
        save_trajectory(
            folder / "trajectory.npz",
            traj,
            drawing,
            dt=system.dt,
            batch=system.batch,
            system=scene.kind.kind,
            scene=scene.name,
            scalars=getattr(system, "scalar_names", None),
        )
    ]
    written.append(scene.write(folder / "scene.toml"))
    if args.render:
        path = folder / f"animation{args.format}"
        render_trajectory(
            _positions(traj, drawing),
            drawing,
            path,
            dt=system.dt,
            actions=_actions(traj),
            fps=args.fps,
            title=scene.name,
            scene=scene.resolved,
            progress=not args.quiet,
        )
        written.append(path)
    out.say(
        f"{scene.name}: {sim.steps} steps ({sim.steps * system.dt:.3g} s simulated) on "
        f"{backend['arch']} {backend['precision']} in {elapsed:.2f} s"
    )
    out.say("wrote " + ", ".join(_rel(p) for p in written))
    return EXIT_OK


def _value_text(value) -> str:
    import numpy as np  # noqa: PLC0415

    arr = np.asarray(value, dtype=np.float64) + 0.0  # + 0.0 turns -0 into 0
    if arr.size == 1:
        return f"{arr.item():.6g}"
    if np.all(arr == arr.flat[0]):
        return f"{arr.flat[0]:.6g} (all {arr.size})"
    if arr.size <= 8:
        return "[" + ", ".join(f"{v:.6g}" for v in arr.ravel()) + "]"
    return f"{arr.min():.4g} .. {arr.max():.4g} (mean {arr.mean():.4g})"


def _bounds_text(bounds) -> str:
    lo, hi = bounds
    return f"[{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]"


def cmd_params(args) -> int:
    _check_file(args.params, "--params")
    scene = _load(args, steps=args.steps)
    _init(args, scene)
    system, _, task = scene.build(task=scene.has_task)
    _load_params_file(args, system)
    fitted = set(task.fit) if task is not None else set()
    if args.json:
        entries = {}
        for p in system.params:
            d = p.describe()
            entries[p.name] = {
                "shape": d["shape"],
                "value": d["value"],
                "bounds": d["bounds"],
                "transform": d["transform"],
                "unit": d["unit"],
                "per_batch": d["per_batch"],
                "fit": p.name in fitted,
                "doc": d["doc"],
            }
        print(json.dumps(_jsonable({"scene": scene.name, "source": scene.source, "params": entries})))
        return EXIT_OK
    rows = [("name", "shape", "value", "bounds", "transform", "unit", "fit")]
    for p in system.params:
        shape = str(((system.batch,) if p.per_batch else ()) + tuple(p.shape))
        rows.append(
            (
                p.name,
                shape,
                _value_text(p.numpy()),
                _bounds_text(p.bounds),
                p.transform or "-",
                p.unit or "-",
                "yes" if p.name in fitted else "",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"{scene.name} ({scene.source}): {len(system.params)} parameters")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return EXIT_OK


#: the files `diffsim optimize` writes in its output folder (the animations in either format)
OPTIMIZE_OUTPUTS = (
    "checkpoint.npz", "result.json", "history.csv", "loss.png", "params.png", "trajectory.png", "scene.toml",
    "before.gif", "after.gif", "before.mp4", "after.mp4",
    "before_trajectory.npz", "after_trajectory.npz", "view.html",
)  # fmt: skip
#: the files whose presence marks a folder as holding an earlier run's outputs
_RUN_MARKS = ("checkpoint.npz", "result.json", "history.csv")


def _check_fresh_folder(folder: Path, force: bool, flag: str = "--out") -> None:
    """Refuse (exit 2) to start a fit in a folder that holds an earlier run's outputs, unless --force."""
    if force or not folder.is_dir():
        return
    found = [name for name in _RUN_MARKS if (folder / name).exists()]
    if found:
        raise DiffsimError(
            f"{folder} holds the outputs of an earlier run ({', '.join(found)}): continue it with "
            f"`diffsim optimize --resume {folder}`, replace it with --force, or give another {flag}",
            where=flag,
        )


def _clear_outputs(folder: Path) -> list[str]:
    """Delete diffsim's own outputs (and stale temporary files) from `folder`; other files are kept."""
    from diffsim.fileio import remove_stale_temporaries  # noqa: PLC0415

    removed = []
    for name in OPTIMIZE_OUTPUTS:
        path = folder / name
        if path.is_file():
            path.unlink()
            removed.append(name)
    removed += [p.name for p in remove_stale_temporaries(folder)]
    return removed


def cmd_optimize(args) -> int:
    from diffsim.fileio import check_output_folder  # noqa: PLC0415

    _check_format(args, not args.no_render)
    if args.resume is not None:
        return _resume(args)
    if args.scene is None:
        raise DiffsimError("give a SCENE to fit, or --resume DIR to continue a fit", where="optimize")
    if args.out is None:
        raise DiffsimError("the output folder is required: --out DIR", where="optimize")
    check_output_folder(args.out, "--out")
    _check_fresh_folder(Path(args.out), args.force)
    _check_file(args.target, "--target")
    _check_file(args.params, "--params")
    if args.starts is not None:  # the best of N fits (diffsim/scale)
        from diffsim.scale.command import optimize_starts  # noqa: PLC0415

        return optimize_starts(args)
    scene = _load(
        args,
        steps=args.steps,
        target=args.target,
        fit=args.fit,
        optimizer=args.optimizer,
        lr=args.lr,
        iters=args.iters,
        tol=args.tol,
        checkpoint_every=args.checkpoint,
    )
    return _optimize(args, scene, Path(args.out), render=not args.no_render)


#: flags that set up a fit, which --resume takes from the run it continues
_SETUP_FLAGS = (
    ("scene", "SCENE"), ("fit", "--fit"), ("target", "--target"), ("optimizer", "--optimizer"), ("lr", "--lr"),
    ("tol", "--tol"), ("checkpoint", "--checkpoint"), ("steps", "--steps"), ("params", "--params"),
    ("set", "--set"), ("seed", "--seed"), ("precision", "--precision"), ("force", "--force"),
)  # fmt: skip


def _resume(args) -> int:
    from diffsim.fileio import check_output_folder  # noqa: PLC0415
    from diffsim.optim.fit import CHECKPOINT_NAME, read_checkpoint  # noqa: PLC0415
    from diffsim.scene import load_scene  # noqa: PLC0415

    folder = Path(args.resume)
    given = [flag for attr, flag in _SETUP_FLAGS if getattr(args, attr, None) not in (None, False, [])]
    if given:
        raise DiffsimError(
            f"{', '.join(given)}: a resumed fit keeps the settings it was started with (only --iters, --save-every "
            "and the output options may change); start a new fit with another --out to change them",
            where="--resume",
        )
    if args.out is not None and Path(args.out).resolve() != folder.resolve():
        raise DiffsimError(
            f"a resumed fit writes into the folder it continues ({folder}), not {args.out}", where="--out"
        )
    if not folder.is_dir():
        raise DiffsimError(
            "folder not found" if not folder.exists() else "not a folder", where=f"--resume {folder}"
        )
    checkpoint = folder / CHECKPOINT_NAME
    if not checkpoint.is_file():
        raise DiffsimError(
            f"no {CHECKPOINT_NAME} in {folder}: not an output folder of `diffsim optimize`", where="--resume"
        )
    check_output_folder(folder, "--resume")
    saved = read_checkpoint(checkpoint)
    cli = saved["extra"].get("cli")
    if cli is None:
        raise DiffsimError(
            "written by diffsim.fit(), not `diffsim optimize`: resume it with fit(..., resume=...)",
            where=str(checkpoint),
        )
    scene_file = folder / "scene.toml"
    if not scene_file.is_file():
        raise DiffsimError(f"no scene.toml in {folder} (it is written when the fit starts)", where="--resume")
    scene = load_scene(scene_file, iters=args.iters)
    _CONTEXT["source"] = scene.source
    args.precision = cli["backend"]["precision"]
    args.seed = cli["seed"]
    if args.arch is None:
        args.arch = cli["backend"]["arch"]
    return _optimize(args, scene, folder, render=not args.no_render, resume=saved)


def _summary(scene, task, backend, result, start: dict, source: str) -> dict:
    summary = {
        "scene": scene.name,
        "source": source,
        "system": scene.kind.kind,
        "backend": backend,
        "loss": task.loss_kind,
        "fit": task.fit,
        "optimizer": {
            "name": task.optimizer.name,
            **{k: v for k, v in scene.data["task"]["optimizer"].items() if k != "name"},
        },
        "iterations": result.iterations,
        "final_loss": result.final_loss,
        "best_loss": result.best_loss,
        "best_iteration": result.best_iteration,
        "rejected": result.rejected,
        "loss_history": result.loss_history,
        "wall_time_s": result.wall_time_s,
        "stopped": result.stopped,
        "stop_message": result.message,
        "initial_params": start,
        "params": result.params,
    }
    if task.generated:
        summary["generated_from"] = task.generated
    return summary


def _install_signal_handlers() -> dict:
    """SIGTERM (and SIGINT) raise `Interrupted` in the main thread, so that `finally` blocks run: the fit writes
    its checkpoint and `atomic_path` deletes its temporary file. A second signal while that happens is ignored."""
    import signal  # noqa: PLC0415

    def handler(signum, _frame):
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    old = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread (an embedding program): leave its handlers alone
        pass
    return old


def _restore_signal_handlers(old: dict) -> None:
    import signal  # noqa: PLC0415

    for sig, handler in old.items():
        signal.signal(sig, handler)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; the command exits with 128 + the signal's number (130, 143)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _folder_lock(folder: Path):
    """Hold an exclusive lock on the output folder (flock on the folder itself: no file to leave behind; the
    system releases it when the process ends, however it ends), or raise DiffsimError if another process holds it."""
    try:
        import fcntl  # noqa: PLC0415
    except ImportError:  # not a POSIX system: no lock
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DiffsimError(f"{folder} is in use by another diffsim process", where="--out") from None
        yield
    finally:
        os.close(fd)


def _optimize(args, scene, folder: Path, render: bool, label: str = "", resume: dict | None = None) -> int:
    with contextlib.ExitStack() as stack:
        return _optimize_locked(args, scene, folder, render, label, resume, stack)


def _optimize_locked(args, scene, folder, render, label, resume, stack: contextlib.ExitStack) -> int:
    import numpy as np  # noqa: PLC0415

    import diffsim  # noqa: PLC0415
    from diffsim.fileio import remove_stale_temporaries  # noqa: PLC0415
    from diffsim.optim.fit import CHECKPOINT_NAME, FitResult, read_checkpoint  # noqa: PLC0415
    from diffsim.scene.trajectory import render_trajectory  # noqa: PLC0415
    from diffsim.viz import plot_loss, plot_param_paths, plot_trajectories  # noqa: PLC0415

    out = _Out(args.quiet)
    if not scene.has_task:
        raise DiffsimError(
            "the scene has no [task]: add one, or give --target FILE.npz (and --fit NAME ...)",
            where=scene.source,
        )
    backend = _init(args, scene)
    system, sim, task = scene.build(grads="task")  # gradients for the fitted parameters only
    pset = system.params
    if resume is None:
        _load_params_file(args, system)
        source = os.path.abspath(scene.source)
    else:  # every parameter as it was when the fit started; the checkpoint then sets the fitted ones
        starts = {k[6:]: v for k, v in resume["arrays"].items() if k.startswith("start:")}
        pset.load_dict(starts, source=str(folder / CHECKPOINT_NAME))
        source = resume["extra"]["cli"]["source"]
    drawing = scene.drawing(system)
    start = pset.to_dict(task.fit)
    small = sum(pset[n].size for n in task.fit) <= 64
    cli = {"source": source, "backend": backend, "seed": args.seed}
    start_all = {n: np.asarray(v, dtype=np.float64) for n, v in pset.to_dict().items()}
    # the values of a small fit's parameters at each iteration, for params.png
    paths: dict[str, list] = {n: [] for n in task.fit} if small else {}
    checkpoint = folder / CHECKPOINT_NAME
    # the folder is claimed before any work: earlier outputs go (--force), the resolved scene and the checkpoint
    # come at once, so that a fit killed at any point can be resumed
    folder.mkdir(parents=True, exist_ok=True)
    stack.enter_context(_folder_lock(folder))  # one process at a time in a folder
    if resume is None:
        if args.force:
            _clear_outputs(folder)
        else:  # again, under the lock: a run may have finished in the folder since the first look
            _check_fresh_folder(folder, force=False)
        scene.write(folder / "scene.toml")
    else:
        accepted = sum(rec["status"] == "ok" for rec in resume["history"])  # one path entry each
        for n in paths:
            paths[n] = list(resume["arrays"][f"path:{n}"][:accepted])
        if args.iters is not None:
            scene.write(folder / "scene.toml")
    remove_stale_temporaries(folder)
    verb = "continuing" if resume else "fitting"
    done = f" from iteration {resume['iterations']}" if resume else ""
    out.say(
        f"{label}{scene.name}: {verb} {', '.join(task.fit)} ({sum(pset[n].size for n in task.fit)} values) with "
        f"{task.optimizer.name}, {task.iters} iterations{done}, on {backend['arch']} {backend['precision']}"
    )
    twins: dict = {}
    before = _full_rollout(sim, twins) if render else None

    def record(_it, rec, _sim):
        if rec["status"] == "rejected":  # the parameters of a step that blew up are not on the path
            return False
        for n, values in paths.items():
            values.append(pset[n].numpy().copy())
        return False

    def arrays() -> dict:
        return {
            **{f"start:{n}": v for n, v in start_all.items()},
            **{f"path:{n}": np.asarray(v, dtype=np.float64) for n, v in paths.items()},
        }

    health = getattr(args, "health", False)
    sim.record_health = bool(health)
    try:
        result = diffsim.fit(
            sim,
            callback=record if small else None,
            progress=not args.quiet,
            checkpoint=checkpoint,
            save_every=args.save_every,
            resume=checkpoint if resume else None,
            checkpoint_extra={"cli": cli},
            checkpoint_arrays=arrays,
            **task.fit_kwargs(),
        )
    except DiffsimError as err:
        gradient = str(getattr(err, "quantity", "")).startswith(("adjoint", "gradient"))
        if health and gradient and sim.health is not None:  # the report of the backward pass that failed
            _write_health(sim, folder, scene.name, print)
        raise
    except KeyboardInterrupt:
        if not checkpoint.is_file():  # stopped before the fit's first write: nothing to keep
            raise
        saved = read_checkpoint(checkpoint)
        pset.set_flat(saved["names"], saved["best_u"])
        partial = FitResult(
            params=pset.to_dict(task.fit),
            best_loss=saved["best_loss"],
            final_loss=saved["prev"] if saved["prev"] is not None else math.nan,  # the last accepted loss
            history=saved["history"],
            iterations=saved["iterations"],
            wall_time_s=saved["elapsed_s"],
            stopped="interrupted",
            best_iteration=saved["best_iteration"],
            rejected=saved["rejected"],
        )
        _write_json(folder / "result.json", _summary(scene, task, backend, partial, start, source))
        _write_history(folder / "history.csv", partial.history)
        print(
            f"diffsim: the fit is saved after {saved['iterations']} iterations in {_rel(checkpoint)} (best loss "
            f"{saved['best_loss']:.6g} in {_rel(folder / 'result.json')}); continue it with: "
            f"diffsim optimize --resume {_rel(folder)}",
            file=sys.stderr,
            flush=True,
        )
        raise
    after = _full_rollout(sim, twins) if render else None

    written = []
    _write_json(folder / "result.json", _summary(scene, task, backend, result, start, source))
    written.append(folder / "result.json")
    _write_history(folder / "history.csv", result.history)
    written.append(folder / "history.csv")
    if result.history:
        plot_loss(result.history, folder / "loss.png", title=f"{scene.name}: loss ({task.loss_kind})")
        written.append(folder / "loss.png")
    if paths and result.history:
        plot_param_paths(paths, folder / "params.png", title=f"{scene.name}: parameters")
        written.append(folder / "params.png")
    written.append(folder / "scene.toml")  # written when the fit started
    if render and after is not None:
        if (
            task.target is not None
            and task.target.ndim == 3
            and task.loss_kind == "trajectory"
            and task.quantity == drawing.quantity
        ):
            x = np.asarray(_positions(after, drawing))
            tracked = np.arange(x.shape[1]) if task.points is None else task.points
            goal = np.full((x.shape[0], len(tracked), x.shape[2]), np.nan)
            goal[task.target_frames] = task.target
            shown = np.arange(min(len(tracked), 4))
            plot_trajectories(
                x[:, tracked[shown]],
                target=goal[:, shown],
                path=folder / "trajectory.png",
                dt=system.dt,
                title=f"{scene.name}: fitted (solid) and target (dashed)",
            )
            written.append(folder / "trajectory.png")
        for name, traj in (("before", before), ("after", after)):
            path = folder / f"{name}{args.format}"
            render_trajectory(
                _positions(traj, drawing),
                drawing,
                path,
                dt=system.dt,
                actions=_actions(traj),
                fps=args.fps,
                title=f"{scene.name} ({name})",
                progress=not args.quiet,
                scene=scene.resolved,
            )
            written.append(path)
        from diffsim.viz.viewer import write_run_views  # noqa: PLC0415

        written += write_run_views(
            folder, {"after": after, "before": before}, drawing, dt=system.dt, batch=system.batch,
            system=scene.kind.kind, scene=scene, scalars=getattr(system, "scalar_names", None),
        )  # fmt: skip
    first = result.loss_history[0] if result.loss_history else math.nan
    last = result.loss_history[-1] if result.loss_history else math.nan
    rejected = f", {result.rejected} rejected" if result.rejected else ""
    out.say(
        f"{label}loss {first:.6g} -> best {result.best_loss:.6g} (iteration {result.best_iteration}, saved), "
        f"last {last:.6g}, in {result.iterations} iterations{rejected} ({result.wall_time_s:.1f} s, stopped: "
        f"{result.stopped})"
    )
    if small:
        for n in task.fit:
            out.say(f"  {n}: {_value_text(result.params[n])}")
    if health and sim.health is not None:
        written += _write_health(sim, folder, scene.name, out.say)
    out.say("wrote " + ", ".join(_rel(p) for p in written))
    if result.stopped == "unstable":
        print(f"diffsim: fit stopped, unstable: {_one_line(result.message)}", file=sys.stderr)
        return EXIT_UNSTABLE
    if not math.isfinite(result.best_loss):
        return EXIT_CHECK_FAILED
    return EXIT_OK


def _write_health(sim, folder: Path, name: str, say) -> list[Path]:
    """health.csv and health.png of the simulation's last backward pass; say the verdict line."""
    folder.mkdir(parents=True, exist_ok=True)
    report = sim.health
    report.csv(folder / "health.csv")
    report.plot(folder / "health.png", title=f"{name}: state adjoint norm, {sim.steps} steps")
    say(f"gradient health: {report.verdict()}")
    return [folder / "health.csv", folder / "health.png"]


def _write_history(path: Path, history: list[dict]) -> None:
    from diffsim.fileio import atomic_path  # noqa: PLC0415

    columns = ["iteration", "loss", "grad_norm", "forward_s", "backward_s", "wall_time_s", "status", "cause"]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for rec in history:
            writer.writerow([rec.get(c, "") for c in columns])


def cmd_gradcheck(args) -> int:
    import diffsim  # noqa: PLC0415
    from diffsim.engine.gradcheck import DEFAULT_STEPS  # noqa: PLC0415

    if args.precision is not None and args.precision != "f64":
        raise DiffsimError(
            f"gradcheck runs in f64 (finite differences need it), got {args.precision}", where="--precision"
        )
    _check_file(args.target, "--target")
    _check_file(args.params, "--params")
    scene = _load(args, steps=args.steps, target=args.target, fit=args.fit)
    if not scene.has_task:
        raise DiffsimError(
            "the scene has no [task] (no loss to check): add one, or give --target FILE.npz",
            where=scene.source,
        )
    _init(args, scene, precision="f64")
    system, sim, task = scene.build(grads="task")
    _load_params_file(args, system)
    if args.health is not None:
        sim.record_health = True
        try:
            sim.forward()
            sim.backward()
        finally:
            if sim.health is not None:
                _write_health(sim, Path(args.health), scene.name, print)
        sim.record_health = False
    report = diffsim.gradcheck(
        sim,
        task.fit,
        directions=args.directions,
        coordinates=args.coordinates,
        tolerance=args.tolerance,
        steps=tuple(args.fd_steps) if args.fd_steps else DEFAULT_STEPS,
    )
    if args.json:
        print(json.dumps(_jsonable(report.to_dict())))
    else:
        print(
            f"{scene.name}: reverse mode against central differences (f64, {sim.steps} steps, tolerance "
            f"{args.tolerance:g})"
        )
        print(report.summary())
        print("passed" if report.passed else "FAILED")
    return EXIT_OK if report.passed else EXIT_CHECK_FAILED


def cmd_render(args) -> int:
    from diffsim.fileio import check_output_file, remove_stale_temporaries  # noqa: PLC0415
    from diffsim.scene.trajectory import load_trajectory, render_trajectory, rollout  # noqa: PLC0415
    from diffsim.viz.io import animation_kind  # noqa: PLC0415
    from diffsim.viz.viewer import scene_beside  # noqa: PLC0415

    out = _Out(args.quiet)
    animation_kind(args.out)  # a bad suffix or an unwritable place fails before anything runs
    check_output_file(args.out, "--out")
    source = args.scene
    if source.lower().endswith(".npz"):
        if args.set or args.steps is not None or args.params:
            raise DiffsimError(
                "--set, --steps and --params apply to scenes, not to a saved trajectory", where=source
            )
        data = load_trajectory(source)
        drawing, meta = data["drawing"], data["meta"]
        x = data[drawing.quantity]
        batch = meta.get("batch", 1)
        if args.copy >= (batch if _has_batch_axis(x, drawing) else 1):
            raise DiffsimError(f"--copy {args.copy}: the trajectory has {batch} copies", where=source)
        traj = {drawing.quantity: x, "act": data.get("act")}
        title = meta.get("scene") or Path(source).stem
        dt = meta.get("dt")
        scene_data = scene_beside(source)
    else:
        _check_file(args.params, "--params")
        scene = _load(args, steps=args.steps)
        _init(args, scene)
        system, sim, _ = scene.build(task=False, storage="full")
        _load_params_file(args, system)
        if args.copy >= system.batch:
            raise DiffsimError(
                f"--copy {args.copy}: the scene has batch = {system.batch}", where=scene.source
            )
        sim.forward()
        traj = rollout(sim)
        drawing, title, dt, scene_data = scene.drawing(system), scene.name, system.dt, scene.resolved
    remove_stale_temporaries(Path(args.out).parent)  # of a killed earlier render
    renderer = render_trajectory(
        _positions(traj, drawing, args.copy),
        drawing,
        args.out,
        dt=dt,
        actions=_actions(traj, args.copy),
        fps=args.fps,
        stride=args.stride,
        title=title,
        progress=not args.quiet,
        scene=scene_data,
    )
    out.say(f"wrote {_rel(args.out)} ({renderer})")
    return EXIT_OK


def cmd_view(args) -> int:
    from diffsim.fileio import check_output_file  # noqa: PLC0415
    from diffsim.viz.viewer import load_rollouts, write_view  # noqa: PLC0415

    if Path(args.out).suffix.lower() != ".html":
        raise DiffsimError(f"expected an .html file, got {args.out!r}", where="--out")
    check_output_file(args.out, "--out")
    path = write_view(load_rollouts(args.scene, overrides=args.set or (), steps=args.steps), args.out)
    _Out(args.quiet).say(f"wrote {_rel(path)} (open it in a browser)")
    return EXIT_OK


def cmd_info(args) -> int:
    import platform  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415
    import taichi as ti  # noqa: PLC0415

    import diffsim  # noqa: PLC0415
    from diffsim import runtime  # noqa: PLC0415
    from diffsim.scene import scenes_dir, system_kinds  # noqa: PLC0415

    _quiet_taichi_probe()
    archs = runtime.available_archs()
    default_arch = (os.environ.get("DIFFSIM_ARCH") or "cpu").lower()
    default_precision = (os.environ.get("DIFFSIM_PRECISION") or "f32").lower()
    vulkan = "vulkan" in archs
    ggui, ggui_reason = None, "not probed"
    if not args.no_probe:
        from diffsim.viz.render3d import _ggui_status  # noqa: PLC0415

        with contextlib.redirect_stdout(io.StringIO()):
            runtime.init(arch="cpu" if default_arch not in archs else default_arch)
            ggui, ggui_reason = _ggui_status()
    folder = scenes_dir()
    scenes = sorted(p.stem for p in folder.glob("*.toml")) if folder is not None else []
    info = {
        "diffsim": diffsim.__version__,
        "python": platform.python_version(),
        "taichi": ".".join(str(v) for v in ti.__version__),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "backends": archs,
        "default_arch": default_arch,
        "default_precision": default_precision,
        "precisions": ["f32", "f64"],
        "vulkan": vulkan,
        "ggui": ggui,
        "ggui_reason": "" if ggui else ggui_reason,
        "renderer_3d": None if ggui is None else ("ggui" if ggui else "matplotlib"),
        "ffmpeg": shutil.which("ffmpeg") is not None,
        "systems": system_kinds(),
        "scenes_dir": None if folder is None else str(folder),
        "scenes": scenes,
    }
    if args.json:
        print(json.dumps(info))
        return EXIT_OK
    print(
        f"diffsim {info['diffsim']} (Python {info['python']}, Taichi {info['taichi']}, numpy {info['numpy']})"
    )
    print(f"backends:   {', '.join(archs)} (default {default_arch}; DIFFSIM_ARCH or --arch to change)")
    print(f"precision:  {default_precision} by default; f32 and f64 (DIFFSIM_PRECISION or --precision)")
    print(
        f"Vulkan:     {'available' if vulkan else 'not found (no Vulkan driver / ICD)'}"
        + ("" if vulkan else "; software Vulkan on Debian/Ubuntu: apt-get install mesa-vulkan-drivers")
    )
    if args.no_probe:
        print("rendering:  2D matplotlib; 3D not probed")
    else:
        print(
            f"rendering:  2D matplotlib (GIF, PNG); 3D {'Taichi GGUI offscreen' if ggui else 'matplotlib'}"
            + ("" if ggui else f" (GGUI unavailable: {_one_line(ggui_reason)})")
        )
    print(f"MP4:        {'ffmpeg found' if info['ffmpeg'] else 'ffmpeg not found (GIF and PNG only)'}")
    print(f"systems:    {', '.join(info['systems'])}")
    print(f"scenes:     {info['scenes_dir'] or 'not found'}" + (f" ({', '.join(scenes)})" if scenes else ""))
    return EXIT_OK


def cmd_demo(args) -> int:
    from diffsim.fileio import check_output_folder  # noqa: PLC0415
    from diffsim.scene import find_scene  # noqa: PLC0415

    check_output_folder(args.out, "--out")
    _check_fresh_folder(Path(args.out), args.force)
    path = find_scene("walker2d")
    if not path.exists():
        raise DiffsimError(
            "cannot find scenes/walker2d.toml: run from a source checkout of diffsim, or set "
            "DIFFSIM_SCENES to the folder holding it",
            where="demo",
        )
    _check_format(args, not args.no_render)
    args.scene = str(path)
    scene = _load(args, iters=args.iters)
    folder = Path(args.out)
    t0 = time.perf_counter()
    code = _optimize(args, scene, folder, render=not args.no_render, label="demo: ")
    elapsed = time.perf_counter() - t0
    result = json.loads((folder / "result.json").read_text())
    history = result["loss_history"]
    out = _Out(args.quiet)
    if history and result["best_loss"] is not None:
        out.say(
            f"demo: the walker's centre of mass moved {-history[0]:.2f} m before training and "
            f"{-result['best_loss']:.2f} m after {result['iterations']} iterations ({elapsed:.0f} s in all)"
        )
    out.say(
        f"demo: results in {_rel(folder)}/ (result.json, loss.png"
        + ("" if args.no_render else f", before{args.format}, after{args.format}")
        + ")"
    )
    return code


def cmd_bench(argv: list[str]) -> int:
    try:
        from diffsim import bench  # noqa: PLC0415
    except ImportError as e:
        raise DiffsimError(f"the benchmark module is not available ({e})", where="bench") from None
    return int(bench.main(list(argv)) or 0)


# ----------------------------------------------------------------------------------------------------------
# Parser


def _common(parser: argparse.ArgumentParser, top: bool) -> None:
    """The flags every command takes; on subcommands their defaults are suppressed so that a flag given before
    the command (``diffsim --quiet run ...``) is not reset by the subcommand's default."""
    d = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    g = parser.add_argument_group("common options")
    g.add_argument(
        "--arch",
        choices=("cpu", "gpu", "cuda", "vulkan", "metal"),
        default=d(None),
        help="backend (default: the scene's [backend] hint, DIFFSIM_ARCH, else cpu)",
    )
    g.add_argument(
        "--precision",
        choices=("f32", "f64"),
        default=d(None),
        help="float precision (default: the scene's hint, DIFFSIM_PRECISION, else f32)",
    )
    g.add_argument(
        "--seed",
        type=_seed,
        default=d(None),
        help="seed Python's, numpy's and Taichi's generators and the controller's initial weights",
    )
    g.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        default=d(None),
        help="override a scene key (sim.steps=200, springs[3].stiffness=2e4) or a parameter's initial "
        "value (springs.stiffness=800, gravity=0,-5); repeatable",
    )
    g.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        default=d(False),
        help="print nothing but warnings and errors (Taichi's own log lines included)",
    )
    g.add_argument(
        "--debug",
        action="store_true",
        default=d(False),
        help="show tracebacks; Taichi's debug mode (bounds checks)",
    )


def _scene_arg(p, what="scene file (or the name of a shipped scene, e.g. walker2d)"):
    p.add_argument("scene", metavar="SCENE", help=what)


def _render_opts(p) -> None:
    p.add_argument(
        "--fps", type=_positive_float, default=30.0, help="frames per second of animations (default 30)"
    )
    p.add_argument(
        "--format", choices=(".gif", ".mp4"), default=".gif", help="animation format (default .gif)"
    )


def build_parser() -> argparse.ArgumentParser:
    from diffsim import __version__  # noqa: PLC0415

    parser = _Parser(
        prog="diffsim",
        description="Differentiable physics on Taichi: simulate scene files, fit their parameters, draw them.",
        epilog="Exit codes: 0 success, 1 a check failed, 2 bad input. Docs: docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"diffsim {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name, help_text, **kw):
        p = sub.add_parser(name, help=help_text, description=help_text, **kw)
        _common(p, top=False)
        return p

    p = command("run", "simulate a scene; write DIR/trajectory.npz and DIR/scene.toml (the resolved scene)")
    _scene_arg(p)
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--steps", type=int, help="steps to simulate (default: the scene's sim.steps)")
    p.add_argument("--render", action="store_true", help="also write DIR/animation.gif")
    p.add_argument(
        "--params", metavar="FILE", help="parameter values (JSON, e.g. a result.json) to start from"
    )
    _render_opts(p)
    p.set_defaults(func=cmd_run)

    p = command("params", "list the scene's differentiable parameters: name, shape, value, bounds")
    _scene_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    p.add_argument("--params", metavar="FILE", help="parameter values (JSON) to show instead of the scene's")
    p.set_defaults(func=cmd_params)

    p = command("optimize", "fit parameters: the scene's [task], or the one given by the flags")
    p.add_argument(
        "scene",
        metavar="SCENE",
        nargs="?",
        help="scene file (or the name of a shipped scene, e.g. walker2d); not with --resume",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="output folder; one that holds an earlier run's outputs is refused (see --resume, --force)",
    )
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the fit in DIR (an interrupted or finished `optimize --out DIR`) where it stopped, with "
        "its settings; --iters N raises its total iteration count",
    )
    p.add_argument(
        "--force", action="store_true", help="delete the outputs of an earlier run in --out DIR first"
    )
    p.add_argument(
        "--save-every",
        type=_positive_int,
        metavar="N",
        help="write DIR/checkpoint.npz every N iterations (default: after an iteration when a second has passed "
        "since the last write); also written at the start, at the end and on SIGINT/SIGTERM",
    )
    p.add_argument("--iters", type=int, help="iterations (default: task.iters)")
    p.add_argument(
        "--fit",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="parameters to fit (names or patterns like 'controller.*')",
    )
    p.add_argument(
        "--target",
        metavar="FILE.npz",
        help="target trajectory (as `diffsim run` writes it); the loss becomes trajectory MSE",
    )
    p.add_argument(
        "--optimizer", choices=("adam", "sgd", "lbfgs", "cma"), help="optimizer (default: task.optimizer)"
    )
    p.add_argument("--starts", type=_positive_int, metavar="N", help="keep the best of N fits (see sweep)")
    p.add_argument("--lr", type=float, help="learning rate (adam, sgd)")
    p.add_argument("--tol", type=float, help="stop when the loss changes less than this (see task.tol)")
    p.add_argument(
        "--checkpoint", type=int, metavar="K", help="checkpointed storage, a snapshot every K steps"
    )
    p.add_argument("--steps", type=int, help="steps per rollout (default: sim.steps)")
    p.add_argument("--params", metavar="FILE", help="parameter values (JSON) to start from")
    p.add_argument(
        "--health",
        action="store_true",
        help="record the state adjoint norm through each backward pass; write DIR/health.csv and DIR/health.png "
        "(the last pass) and print the verdict (stable, exploding, vanishing)",
    )
    p.add_argument("--no-render", action="store_true", help="skip the before/after animations")
    _render_opts(p)
    from diffsim.scale.command import add_scale_options, add_sweep_parser  # noqa: PLC0415

    add_scale_options(p)
    p.set_defaults(func=cmd_optimize)

    add_sweep_parser(command)

    p = command("gradcheck", "compare reverse-mode gradients with finite differences (f64)")
    _scene_arg(p)
    p.add_argument(
        "--fit", nargs="+", action="extend", metavar="NAME", help="parameters to check (default: the task's)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--target", metavar="FILE.npz", help="target trajectory, as for optimize")
    p.add_argument("--steps", type=int, help="steps per rollout (default: sim.steps)")
    p.add_argument(
        "--tolerance", type=_positive_float, default=1e-6, help="largest relative error that passes (1e-6)"
    )
    p.add_argument(
        "--directions", type=_positive_count, default=2, help="random directions per parameter (2)"
    )
    p.add_argument("--coordinates", type=_count, default=4, help="single coordinates per parameter (4)")
    p.add_argument(
        "--fd-steps",
        type=_positive_float,
        nargs="+",
        metavar="H",
        help="finite-difference steps, relative to each parameter's largest |value| (1 if all are 0); the best is kept (default: 1e-3 1e-4 1e-5 "
        "1e-6; stiff contact wants smaller ones, e.g. --fd-steps 1e-6 1e-7 1e-8)",
    )
    p.add_argument(
        "--health",
        nargs="?",
        const=".",
        metavar="DIR",
        help="also write DIR/health.csv and DIR/health.png (the state adjoint norm through the backward pass; DIR "
        "defaults to the current folder) and print the verdict",
    )
    p.add_argument("--params", metavar="FILE", help="parameter values (JSON) to check at")
    p.set_defaults(func=cmd_gradcheck)

    p = command("render", "draw a scene's rollout or a saved trajectory.npz")
    _scene_arg(p, "scene file, shipped scene name, or trajectory.npz")
    p.add_argument("--out", required=True, metavar="FILE", help="output: .gif, .mp4 (needs ffmpeg) or .png")
    p.add_argument("--steps", type=int, help="steps to simulate (scenes)")
    p.add_argument("--stride", type=_positive_count, help="draw every N-th frame (default: near real time)")
    p.add_argument("--copy", type=_count, default=0, help="which batch copy to draw (0)")
    p.add_argument("--params", metavar="FILE", help="parameter values (JSON) to simulate with")
    p.add_argument("--fps", type=_positive_float, default=30.0, help="frames per second (30)")
    p.set_defaults(func=cmd_render)

    p = command(
        "view", "write an interactive 3D viewer (one self-contained HTML page; needs diffsim[viewer])"
    )
    _scene_arg(p, "run folder, trajectory.npz, scene file or shipped scene name")
    p.add_argument("--out", required=True, metavar="FILE", help="output page (.html)")
    p.add_argument("--steps", type=int, help="steps to simulate (scenes)")
    p.set_defaults(func=cmd_view)

    p = command("info", "version, backends, precision, Vulkan and rendering status")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-probe", action="store_true", help="skip the GGUI probe (it starts Taichi)")
    p.set_defaults(func=cmd_info)

    p = command("demo", "optimize the walker (scenes/walker2d.toml) and write runs/demo/")
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="output folder (runs/demo)")
    p.add_argument("--iters", type=int, help="iterations (default: the scene's, 40)")
    p.add_argument("--force", action="store_true", help="delete the outputs of an earlier run in DIR first")
    p.add_argument(
        "--save-every",
        type=_positive_int,
        metavar="N",
        help="checkpoint every N iterations (default: each second)",
    )
    p.add_argument("--no-render", action="store_true", help="skip the animations")
    _render_opts(p)
    p.set_defaults(func=cmd_demo, params=None)

    p = sub.add_parser(
        "bench",
        help="benchmarks (diffsim.bench): bench [SCENE ...] [--json FILE] [--arch ...] [--repeat N]",
        add_help=False,
    )
    p.add_argument("bench_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    warnings.showwarning = _show_warning
    debug = "--debug" in argv
    try:
        if argv and argv[0] == "bench":
            return cmd_bench(argv[1:])
        parser = build_parser()
        args = parser.parse_args(argv)
        debug = args.debug
        if args.func is None:  # "bench" after common flags
            return cmd_bench(args.bench_args)
        old_handlers = _install_signal_handlers()
        try:
            return int(args.func(args))
        finally:
            _restore_signal_handlers(old_handlers)
    except DiffsimError as e:
        if debug:
            traceback.print_exc()
        text = str(e)
        if e.where is None and "source" in _CONTEXT:
            text = f"{_CONTEXT['source']}: {text}"  # e.g. a rollout that went non-finite
        print(f"diffsim: error: {_one_line(text)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as e:
        import signal  # noqa: PLC0415

        signum = getattr(e, "signum", signal.SIGINT)
        print(f"diffsim: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # noqa: BLE001 - a bug: one line unless --debug
        if debug:
            traceback.print_exc()
        print(
            f"diffsim: internal error: {type(e).__name__}: {_one_line(e)} (run with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_CHECK_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
