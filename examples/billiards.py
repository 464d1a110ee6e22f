"""Billiards: shoot the cue ball so that ball 7 stops at a target (scenes/billiards.toml, 11 balls, 1,024 steps).

    python examples/billiards.py                  # up to 100 Adam iterations; writes runs/billiards/{shots.png,
                                                  # loss.png, result.json}
    python examples/billiards.py --iters 2 --steps 100 --no-plot    # the short mode the tests run

The first guess is a straight shot at 1.6 m/s that leaves ball 7 16 cm from the target; the fitted shot (cue
position and velocity) brings it within 1 cm (loss < 1e-4 m^2) in about 40 iterations.
"""

import argparse
import json
import os
import sys

import numpy as np

import diffsim
from diffsim.scene import load_scene


def paths(sim) -> np.ndarray:
    sim.forward()
    return sim.trajectory(["x"])["x"][:, 0]  # (frames, balls, 2)


def plot(before, after, target, losses, out) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
    for ax, x, title in zip(axes, (before, after), ("first guess", "optimized"), strict=True):
        for i in range(x.shape[1]):
            ax.plot(x[:, i, 0], x[:, i, 1], lw=1, color="k" if i == 0 else ("r" if i == 7 else "0.6"))
            ax.plot(*x[-1, i], "o", ms=4, color="k" if i == 0 else ("r" if i == 7 else "0.6"))
        ax.plot(*target, "x", color="b", ms=10)
        ax.set(xlim=(0, 1.2), ylim=(0, 0.6), aspect="equal", title=title)
    fig.savefig(os.path.join(out, "shots.png"), dpi=100, bbox_inches="tight")
    fig2, ax = plt.subplots(figsize=(5, 3))
    ax.semilogy(losses)
    ax.set(xlabel="iteration", ylabel="loss (m^2)")
    fig2.savefig(os.path.join(out, "loss.png"), dpi=100, bbox_inches="tight")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--steps", type=int, default=None, help="horizon (default: the scene's 1,024 steps)")
    parser.add_argument("--out", default="runs/billiards")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    scene = load_scene("billiards", steps=args.steps, iters=args.iters)
    scene.init_backend()
    system, sim, task = scene.build()
    target = np.array(scene.data["task"]["loss"]["target"][0])
    before = paths(sim)
    result = diffsim.fit(sim, progress=False, **task.fit_kwargs())
    after = paths(sim)
    ball = system.body_index("ball7")
    distance = float(np.linalg.norm(after[-1, ball] - target))
    os.makedirs(args.out, exist_ok=True)
    summary = {
        "iterations": len(result.loss_history),
        "first_loss": result.loss_history[0],
        "best_loss": result.best_loss,
        "ball7_distance_m": distance,
        "cue_position": system.params["initial.cue.position"].numpy().tolist(),
        "cue_velocity": system.params["initial.cue.velocity"].numpy().tolist(),
    }
    with open(os.path.join(args.out, "result.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    if not args.no_plot:
        plot(before, after, target, result.loss_history, args.out)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
