"""Identify ground friction, restitution and a box's mass from its thrown trajectory (scenes/rigid_sysid.toml, f64).

    python examples/rigid_sysid.py                  # writes runs/rigid_sysid/{trajectory.png, loss.png, result.json}
    python examples/rigid_sysid.py --iters 6 --steps 200     # the short mode the tests run

A 1 kg box is thrown tilted and spinning onto the ground, lands on an edge, rotates onto its face, bounces and
slides to rest. The "measured" trajectory is simulated with friction 0.4, restitution 0.5 and mass 1 kg
([task.loss.generate]); the fit starts 30 % off (0.28, 0.35, 1.3 kg) and L-BFGS-B matches every 10th frame of the
box's centre of mass.
"""

import argparse
import json
import os
import sys

import numpy as np

import diffsim
from diffsim.scene import load_scene

NAMES = ("ground.friction", "ground.restitution", "bodies.mass")


def values(system) -> dict:
    return {n: float(np.ravel(system.params[n].numpy())[0]) for n in NAMES}


def path(sim) -> np.ndarray:
    sim.forward()
    return sim.trajectory(["x"])["x"][:, 0, 0]  # (frames, 3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=None, help="loss evaluations (default: the scene's)")
    parser.add_argument("--steps", type=int, default=None, help="horizon (default: the scene's 1,200 steps)")
    parser.add_argument("--out", default="runs/rigid_sysid")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    scene = load_scene("rigid_sysid", steps=args.steps, iters=args.iters)
    scene.init_backend()
    system, sim, task = scene.build()
    truth = {n: float(task.generated[n]) for n in NAMES}
    start = values(system)
    before = path(sim)
    result = diffsim.fit(sim, progress=False, **task.fit_kwargs())
    fitted = values(system)
    after = path(sim)
    summary = {
        "evaluations": len(result.loss_history),
        "wall_time_s": result.wall_time_s,
        "loss_start": float(result.loss_history[0]),
        "loss_best": float(result.best_loss),
        "truth": truth,
        "start": start,
        "fitted": fitted,
        "relative_error": {n: abs(fitted[n] / truth[n] - 1) for n in NAMES},
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "result.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    if not args.no_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from diffsim.viz import plot_loss

        frames = np.asarray(task.target_frames)  # the matched frames of the synthetic measurement
        target = np.asarray(task.target).reshape(len(frames), -1, 3)[:, 0]
        t = np.arange(len(before)) * system.dt
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
        for ax, k, label in ((axes[0], 0, "x (m)"), (axes[1], 2, "height z (m)")):
            ax.plot(frames * system.dt, target[:, k], "ko", ms=3, alpha=0.5, label="target (truth)")
            ax.plot(t, before[:, k], "--", label="start (30 % off)")
            ax.plot(t, after[:, k], label="fitted")
            ax.set(xlabel="t (s)", ylabel=label)
        axes[0].legend()
        fig.suptitle(
            "box centre of mass: " + ", ".join(f"{n} {fitted[n]:.4g} (truth {truth[n]:g})" for n in NAMES),
            fontsize=9,
        )
        fig.savefig(os.path.join(args.out, "trajectory.png"), dpi=100, bbox_inches="tight")
        plot_loss(result.history, os.path.join(args.out, "loss.png"))
    print(
        json.dumps(
            {k: summary[k] for k in ("evaluations", "loss_start", "loss_best", "fitted", "relative_error")}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
