"""A rigid 2D walker learns to walk right (scenes/rigid_walker2d.toml: 5 boxes, 4 PD hinge motors, a periodic
controller, 2,048 steps).

    python examples/rigid_walker2d.py             # the scene's 40 Adam iterations; writes runs/rigid_walker2d/
                                                  # {progress.png, result.json}
    python examples/rigid_walker2d.py --iters 2 --steps 60 --no-plot    # the short mode the tests run

Prints the torso's displacement before and after the optimization.
"""

import argparse
import json
import os
import sys

import numpy as np

import diffsim
from diffsim.scene import load_scene


def torso_path(sim) -> np.ndarray:
    sim.forward()
    return sim.trajectory(["x"])["x"][:, 0, 0]  # (frames, 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=None, help="Adam iterations (default: the scene's)")
    parser.add_argument("--steps", type=int, default=None, help="horizon (default: the scene's 2,048 steps)")
    parser.add_argument("--out", default="runs/rigid_walker2d")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    scene = load_scene("rigid_walker2d", steps=args.steps, iters=args.iters)
    scene.init_backend()
    system, sim, task = scene.build()
    before = torso_path(sim)
    result = diffsim.fit(sim, progress=False, **task.fit_kwargs())
    after = torso_path(sim)
    os.makedirs(args.out, exist_ok=True)
    summary = {
        "iterations": len(result.loss_history),
        "torso_dx_before_m": float(before[-1, 0] - before[0, 0]),
        "torso_dx_after_m": float(after[-1, 0] - after[0, 0]),
        "loss_history": [float(v) for v in result.loss_history],
    }
    with open(os.path.join(args.out, "result.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    if not args.no_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3))
        t = np.arange(len(before)) * system.dt
        a.plot(t, before[:, 0] - before[0, 0], label="before")
        a.plot(t, after[:, 0] - after[0, 0], label="after")
        a.set(xlabel="t (s)", ylabel="torso x - x0 (m)")
        a.legend()
        b.plot(-np.asarray(result.loss_history))
        b.set(xlabel="iteration", ylabel="centre-of-mass displacement (m)")
        fig.savefig(os.path.join(args.out, "progress.png"), dpi=100, bbox_inches="tight")
    print(json.dumps({k: v for k, v in summary.items() if k != "loss_history"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
