"""A square water column collapses in a box (MLS-MPM, weakly compressible water); its surge front against Martin and
Moyce (1952).

    python examples/mpm_dam_break2d.py              # writes runs/mpm_dam_break2d/{dam_break.gif,front.png,result.json}
    python examples/mpm_dam_break2d.py --no-render  # only the table of the front position

The scene is scenes/dam_break2d.toml: a column of side a = 0.2 m, 16 cells across, released at t = 0. The front
Z = z / a (z from the left wall) is printed against T = t sqrt(2 g / a) next to Martin and Moyce's measurements of
a square column (the same numbers as tests/mpm/test_physics.py).
"""

import argparse
import json
import os
import sys

import numpy as np

import diffsim
from diffsim.scene import load_scene

MM_T = [0.41, 0.84, 1.19, 1.43, 1.63, 1.83, 1.98, 2.20, 2.32, 2.51, 2.65, 2.83, 2.98]
MM_Z = [1.11, 1.22, 1.44, 1.67, 1.89, 2.11, 2.33, 2.56, 2.78, 3.00, 3.22, 3.44, 3.67]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=None, help="default: the scene's (a short run for a check)"
    )
    parser.add_argument("--out", default="runs/mpm_dam_break2d")
    parser.add_argument("--no-render", action="store_true")
    parser.add_argument("--arch", default=None)
    args = parser.parse_args(argv)

    diffsim.init(arch=args.arch)
    overrides = ["sim.checkpoint_every=10"] + ([f"sim.steps={args.steps}"] if args.steps else [])
    scene = load_scene("dam_break2d", overrides=overrides)
    system, sim, _ = scene.build(task=False)
    sim.forward()
    x = sim.trajectory(["x"])["x"][:, 0]
    a, g = 0.2, 9.81
    T = np.arange(len(x)) * sim.K * system.dt * np.sqrt(2 * g / a)
    Z = (x[:, :, 0].max(1) - system.bound * system.dx) / a
    print(f"{'T':>5s} {'Z (MPM)':>8s} {'Z (M&M)':>8s} {'error':>7s}")
    for t, z in zip(MM_T, MM_Z, strict=True):
        zs = float(np.interp(t, T, Z))
        print(f"{t:5.2f} {zs:8.3f} {z:8.2f} {100 * (zs / z - 1):+6.1f}%")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "result.json"), "w") as fh:  # read by tests/test_examples.py
        json.dump({"T": T.tolist(), "Z": Z.tolist(), "cell": system.dx / a}, fh, indent=1)
    if not args.no_render:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from diffsim.scene.trajectory import render_trajectory

        os.makedirs(args.out, exist_ok=True)
        render_trajectory(
            x,
            scene.drawing(system),
            os.path.join(args.out, "dam_break.gif"),
            dt=sim.K * system.dt,
            progress=False,
        )
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(T, Z, label="MLS-MPM (16 cells across)")
        ax.plot(MM_T, MM_Z, "o", label="Martin and Moyce (1952)")
        ax.set_xlabel("T = t sqrt(2g/a)")
        ax.set_ylabel("Z = z / a")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "front.png"), dpi=120)
        print(f"wrote {args.out}/dam_break.gif, front.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
