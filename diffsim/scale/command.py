"""The command line of scaling out: ``diffsim sweep`` and ``diffsim optimize --starts N`` (registered by cli.py).

diffsim sweep SCENE --out DIR (--grid NAME=LO:HI:N ... | --random N [--range NAME=LO:HI ...] | --starts N)
              [--mode run|optimize] [--workers N] [--address HOST:PORT] [--iters N] [--optimizer NAME]
diffsim sweep --resume DIR
diffsim optimize SCENE --out DIR --starts N [--workers N] [--address HOST:PORT]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from diffsim.errors import DiffsimError


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_scale_options(p: argparse.ArgumentParser) -> None:
    """--workers, --address and --gpus-per-worker (sweep, optimize --starts)."""
    g = p.add_argument_group("parallel trials (Ray, extra diffsim[scale])")
    g.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help="trials at once on a local Ray instance started and stopped here (default: one per CPU when Ray is "
        "installed); 0: one after the other in this process",
    )
    g.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="join this Ray cluster (its head's address) instead; or RAY_ADDRESS",
    )
    g.add_argument(
        "--gpus-per-worker", type=float, default=0.0, metavar="X", help="GPUs Ray gives each trial (0)"
    )


def add_sweep_parser(command) -> None:
    """Register ``sweep``; `command(name, help)` makes a subparser with the common flags."""
    p = command(
        "sweep", "run or fit a scene over a grid, a random design or many starts; write DIR/results.csv"
    )
    p.add_argument(
        "scene", metavar="SCENE", nargs="?", help="scene file or shipped scene name; not with --resume"
    )
    p.add_argument(
        "--out", metavar="DIR", help="output folder (sweep.json, results.csv/.json, trials/, plots)"
    )
    p.add_argument(
        "--resume", metavar="DIR", help="run the trials of the sweep in DIR that have no result yet"
    )
    design = p.add_argument_group("design (one of)")
    design.add_argument(
        "--grid", action="append", metavar="NAME=LO:HI:N", help="N values from LO to HI; repeat: the product"
    )
    design.add_argument("--random", type=int, metavar="N", help="N points within the --range boxes")
    design.add_argument("--starts", type=int, metavar="N", help="fit the [task] from N starting points")
    p.add_argument(
        "--range",
        action="append",
        metavar="NAME=LO:HI",
        help="a range to draw from (--random, --starts; default: the fitted parameters' bounds)",
    )
    p.add_argument(
        "--design", choices=("sobol", "lhs", "uniform"), default="sobol", help="how to draw points (sobol)"
    )
    p.add_argument(
        "--mode", choices=("run", "optimize"), help="each trial one rollout or a fit (default: optimize for "
        "--starts, else run)"
    )  # fmt: skip
    p.add_argument("--steps", type=int, help="steps per rollout (default: sim.steps)")
    p.add_argument("--iters", type=int, help="iterations of each fit (default: task.iters)")
    p.add_argument("--optimizer", choices=("adam", "sgd", "lbfgs", "cma"), help="optimizer of each fit")
    p.add_argument("--lr", type=float, help="learning rate (adam, sgd)")
    p.add_argument("--fit", nargs="+", action="extend", metavar="NAME", help="parameters to fit")
    p.add_argument("--tol", type=float, help="stop each fit when the loss changes less than this")
    add_scale_options(p)
    p.set_defaults(func=cmd_sweep)


def _say(args):
    return (lambda _text: None) if args.quiet else (lambda text: print(text, flush=True))


def cmd_sweep(args) -> int:
    from diffsim.scale import sweep  # noqa: PLC0415

    if args.resume is None and args.out is None:
        raise DiffsimError("the output folder is required: --out DIR", where="sweep")
    if args.resume is not None and args.scene is not None:
        raise DiffsimError(
            "a resumed sweep keeps its scene and design: give --resume DIR alone", where="--resume"
        )
    table = sweep(
        args.scene, args.resume or args.out, grid=args.grid, random=args.random, ranges=args.range,
        design=args.design, starts=args.starts, mode=args.mode, sets=args.set or [], steps=args.steps,
        iters=args.iters, optimizer=args.optimizer, lr=args.lr, fit=args.fit, tol=args.tol, arch=args.arch,
        precision=args.precision, seed=args.seed or 0, workers=args.workers, address=args.address,
        gpus_per_worker=args.gpus_per_worker, resume=args.resume is not None, say=_say(args),
    )  # fmt: skip
    return 0 if all(r["status"] == "ok" for r in table) else 1


def optimize_starts(args) -> int:
    """``diffsim optimize --starts N``: N fits as a sweep in DIR, the best one's parameters in DIR/best.json."""
    from diffsim.fileio import write_text_atomic  # noqa: PLC0415
    from diffsim.scale import sweep  # noqa: PLC0415

    folder = Path(args.out)
    table = sweep(
        args.scene, folder, starts=args.starts, sets=args.set or [], steps=args.steps, target=args.target, iters=args.iters,
        optimizer=args.optimizer, lr=args.lr, fit=args.fit, tol=args.tol, arch=args.arch,
        precision=args.precision, seed=args.seed or 0, workers=args.workers, address=args.address,
        gpus_per_worker=args.gpus_per_worker, say=_say(args),
    )  # fmt: skip
    best = table.best()
    if best is None:
        raise DiffsimError(f"none of the {len(table)} fits finished: see {folder / 'results.csv'}")
    trial = json.loads((Path(best["folder"]) / "result.json").read_text())
    summary = {
        "trial": best["index"], "folder": best["folder"], "best_loss": best["best_loss"],
        "starts": len(table), "losses": table["best_loss"], "initial_params": trial.get("initial_params"),
        "params": trial.get("params"),
    }  # fmt: skip
    write_text_atomic(folder / "best.json", json.dumps(summary, indent=1) + "\n")
    if not args.quiet:
        print(f"best of {len(table)} fits: trial {best['index']}, loss {best['best_loss']:.6g}")
        for name, value in (trial.get("params") or {}).items():
            print(f"  {name}: {value}")
        print(f"wrote {folder / 'best.json'}")
    return 0 if math.isfinite(best["best_loss"]) else 1
