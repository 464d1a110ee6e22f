"""Fingerprint every shipped scene: its loss and the gradient of every fitted parameter, in f64 on the CPU.

Run it on two versions of diffsim and compare the JSON files, to show that a change that should not move the
physics did not (equal to 1e-12 relative):

    python benchmarks/fingerprint.py --out before.json            # on the old commit
    python benchmarks/fingerprint.py --out after.json             # on the new one
    python benchmarks/fingerprint.py --compare before.json after.json

Rollouts are cut to --max-steps steps (default 300) so the whole set runs in minutes; --scenes picks some.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def fingerprint(path: Path, max_steps: int) -> dict:
    import diffsim  # noqa: F401  (diffsim.init via the scene)
    from diffsim.scene import load_scene

    scene = load_scene(str(path))
    steps = min(scene.steps, max_steps)
    scene = load_scene(str(path), [f"sim.steps={steps}"])
    scene.init_backend(arch="cpu", precision="f64")
    if not scene.has_task:
        system, sim, _ = scene.build()
        sim.run()
        traj = sim.trajectory()
        return {"steps": steps, "state": {k: float(np.abs(v).sum()) for k, v in traj.items()}}
    _system, sim, task = scene.build(grads="task")
    t0 = time.perf_counter()
    loss, grads = sim.value_and_grad(task.fit)
    return {
        "steps": steps,
        "loss": loss,
        "grads": {k: np.asarray(v, dtype=np.float64).ravel().tolist() for k, v in grads.items()},
        "seconds": time.perf_counter() - t0,
    }


def compare(a: dict, b: dict, tol: float) -> int:
    worst_all = 0.0
    print(f"{'scene':24s} {'loss rel diff':>14s} {'max grad rel diff':>18s}")
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"{name:24s} missing on one side")
            worst_all = np.inf
            continue
        x, y = a[name], b[name]
        if "loss" not in x:
            d = max(abs(x["state"][k] - y["state"][k]) / max(abs(x["state"][k]), 1e-300) for k in x["state"])
            print(f"{name:24s} {d:14.2e} {'(no task: state sums)':>18s}")
            worst_all = max(worst_all, d)
            continue
        dl = abs(x["loss"] - y["loss"]) / max(abs(x["loss"]), 1e-300)
        dg = 0.0
        for k, g in x["grads"].items():
            g, h = np.asarray(g), np.asarray(y["grads"][k])
            dg = max(dg, float(np.max(np.abs(g - h)) / max(np.max(np.abs(g)), 1e-300)))
        print(f"{name:24s} {dl:14.2e} {dg:18.2e}")
        worst_all = max(worst_all, dl, dg)
    print(f"largest relative difference: {worst_all:.2e} (tolerance {tol:g})")
    return 0 if worst_all <= tol else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="write the fingerprints here (JSON)")
    p.add_argument("--scenes", nargs="*", help="scene names (default: every scenes/*.toml)")
    p.add_argument("--max-steps", type=int, default=300)
    p.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    p.add_argument("--tolerance", type=float, default=1e-12)
    args = p.parse_args(argv)
    if args.compare:
        a, b = (json.loads(Path(f).read_text()) for f in args.compare)
        return compare(a, b, args.tolerance)
    names = args.scenes or sorted(q.stem for q in (ROOT / "scenes").glob("*.toml"))
    out = {}
    for name in names:
        t0 = time.perf_counter()
        out[name] = fingerprint(ROOT / "scenes" / f"{name}.toml", args.max_steps)
        print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    text = json.dumps(out, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
