"""A 3D quadruped learns to move forward (scenes/quadruped3d.toml: a torso on four legs, four hinge PD motors, a
periodic controller, 1,500 steps).

    python examples/quadruped3d.py             # the scene's 30 Adam iterations; writes runs/quadruped3d/
                                               # {before_after.png, result.json}
    python examples/quadruped3d.py --iters 2 --steps 100     # the short mode the tests run

Prints the centre of mass's displacement along +x before and after the optimization. The image shows the robot
from the side (x-z) at eight times of the rollout, before and after, and the centre of mass's x over time.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

import diffsim
from diffsim.scene import load_scene
from diffsim.systems.rigid.model import quaternion_matrix

#: the 12 edges of a box, as pairs of corner indices (corner bits: x, y, z)
EDGES = [(a, a | b) for a in range(8) for b in (1, 2, 4) if not a & b]


def rollout(sim, system):
    """(positions (frames, n, 3), orientations (frames, n, 4), centre of mass (frames, 3))."""
    sim.forward()
    tr = sim.trajectory(["x", "q"])
    x, q = tr["x"][:, 0], tr["q"][:, 0]
    m = np.ravel(system.masses())[: system.n]
    return x, q, (x * m[None, :, None]).sum(axis=1) / m.sum()


def box_edges(scene, system, x, q):
    """Side-view (x, z) segments of every box shape at one frame."""
    segs = []
    for s in scene.data["shapes"]:
        i = system.body_index(s["body"])
        half = np.asarray(s["size"], dtype=float)
        offset = np.zeros(3) if s["offset"] is None else np.asarray(s["offset"], dtype=float)
        corners = np.array([[(-1) ** (1 - (c >> k & 1)) for k in range(3)] for c in range(8)]) * half + offset
        world = x[i] + corners @ quaternion_matrix(q[i]).T
        segs += [(world[a][[0, 2]], world[b][[0, 2]]) for a, b in EDGES]
    return segs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=None, help="Adam iterations (default: the scene's)")
    parser.add_argument("--steps", type=int, default=None, help="horizon (default: the scene's 1,500 steps)")
    parser.add_argument("--out", default="runs/quadruped3d")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    scene = load_scene("quadruped3d", steps=args.steps, iters=args.iters)
    scene.init_backend()
    system, sim, task = scene.build()
    before = rollout(sim, system)
    t0 = time.perf_counter()
    result = diffsim.fit(sim, progress=False, **task.fit_kwargs())
    fit_s = time.perf_counter() - t0
    after = rollout(sim, system)
    summary = {
        "iterations": len(result.loss_history),
        "fit_wall_time_s": fit_s,
        "com_dx_before_m": float(before[2][-1, 0] - before[2][0, 0]),
        "com_dx_after_m": float(after[2][-1, 0] - after[2][0, 0]),
        "com_dy_after_m": float(after[2][-1, 1] - after[2][0, 1]),
        "torso_min_height_after_m": float(after[0][:, system.body_index("torso"), 2].min()),
        "loss_history": [float(v) for v in result.loss_history],
        "grad_norms": [float(h["grad_norm"]) for h in result.history],
    }
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "result.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    if not args.no_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.collections import LineCollection

        fig, axes = plt.subplots(3, 1, figsize=(10, 7.5), gridspec_kw={"height_ratios": [1, 1, 1.2]})
        frames = np.linspace(0, len(before[0]) - 1, 8).astype(int)
        colours = plt.cm.viridis(np.linspace(0, 0.9, len(frames)))
        lo = min(before[0][:, :, 0].min(), after[0][:, :, 0].min()) - 0.25
        hi = max(before[0][:, :, 0].max(), after[0][:, :, 0].max()) + 0.25
        for ax, (x, q, _), label in ((axes[0], before, "before"), (axes[1], after, "after")):
            for f, c in zip(frames, colours, strict=True):
                ax.add_collection(LineCollection(box_edges(scene, system, x[f], q[f]), colors=[c], lw=0.8))
            ax.axhline(0.0, color="0.5", lw=1)
            ax.set(
                xlim=(lo, hi),
                ylim=(-0.02, 0.3),
                aspect="equal",
                ylabel="z (m)",
                title=f"{label} ({len(frames)} frames over {(len(x) - 1) * system.dt:.2f} s, dark to light)",
            )
        t = np.arange(len(before[2])) * system.dt
        axes[2].plot(
            t, before[2][:, 0] - before[2][0, 0], label=f"before: {summary['com_dx_before_m']:+.3f} m"
        )
        axes[2].plot(
            t,
            after[2][:, 0] - after[2][0, 0],
            label=f"after {summary['iterations']} Adam iterations: {summary['com_dx_after_m']:+.3f} m",
        )
        axes[2].set(xlabel="t (s)", ylabel="centre of mass x - x0 (m)")
        axes[2].legend()
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "before_after.png"), dpi=100)
    print(json.dumps({k: v for k, v in summary.items() if k not in ("loss_history", "grad_norms")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
