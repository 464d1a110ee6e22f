"""Identify a liquid's viscosity and a jelly block's Young's modulus from particle trajectories (MLS-MPM, f64).

    python examples/mpm_sysid.py                # writes runs/mpm_sysid/{loss.png,fitted.gif,result.json}
    python examples/mpm_sysid.py --no-render

The scene is scenes/mpm_sysid.toml: a honey column slumps and a jelly block drops in a 32^2 box. The "measured"
trajectories are simulated with viscosity 5 Pa s and E = 50 kPa; the fit starts 30 % off (3.5 Pa s, 65 kPa) and
L-BFGS-B matches every 10th frame of every particle's position.
"""

import argparse
import json
import os
import sys

import diffsim
from diffsim.scene import load_scene


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=None, help="default: the scene's")
    parser.add_argument("--steps", type=int, default=None, help="default: the scene's")
    parser.add_argument("--out", default="runs/mpm_sysid")
    parser.add_argument("--no-render", action="store_true")
    parser.add_argument("--arch", default=None)
    args = parser.parse_args(argv)

    diffsim.init(arch=args.arch, precision="f64")
    overrides = ([f"task.iters={args.iters}"] if args.iters else []) + (
        [f"sim.steps={args.steps}"] if args.steps else []
    )
    scene = load_scene("mpm_sysid", overrides=overrides)
    system, sim, task = scene.build()
    eta = system.params["materials.honey.viscosity"]
    E = system.params["materials.jelly.youngs_modulus"]
    print(f"start: viscosity {float(eta.numpy()):.4g} Pa s, Young's modulus {float(E.numpy()):.4g} Pa")
    result = diffsim.fit(sim, progress=False, **task.fit_kwargs())
    print(
        f"fitted after {result.iterations} evaluations: viscosity {float(eta.numpy()):.6g} Pa s (truth 5), "
        f"Young's modulus {float(E.numpy()):.6g} Pa (truth 5e4); loss {result.history[0]['loss']:.3g} -> "
        f"{result.best_loss:.3g}"
    )
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "result.json"), "w") as fh:  # read by tests/test_examples.py
        json.dump({"loss_history": result.loss_history, "best_loss": result.best_loss}, fh, indent=1)
    if not args.no_render:
        from diffsim.scene.trajectory import render_trajectory
        from diffsim.viz import plot_loss

        os.makedirs(args.out, exist_ok=True)
        plot_loss(result.history, os.path.join(args.out, "loss.png"))
        sim.forward()
        x = sim.trajectory(["x"])["x"][:, 0]
        render_trajectory(
            x, scene.drawing(system), os.path.join(args.out, "fitted.gif"), dt=system.dt, progress=False
        )
        print(f"wrote {args.out}/loss.png, fitted.gif")
    return 0


if __name__ == "__main__":
    sys.exit(main())
