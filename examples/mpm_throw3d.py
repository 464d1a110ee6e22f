"""Throw a 3D jelly cube so that its centre lands on a target: MLS-MPM in 3D, the throw velocity fitted by Adam.

    python examples/mpm_throw3d.py              # the scene's 30 iterations; writes runs/mpm_throw3d/{loss.png,
                                                # before.gif, after.gif}
    python examples/mpm_throw3d.py --iters 2 --steps 40 --no-render   # a short mode

The scene is scenes/mpm_throw3d.toml: a 0.125 m cube of jelly (E = 20 kPa, 512 particles on a 32^3 grid) is thrown
from the floor; the loss is the squared distance of its centre of mass at the end of the rollout (0.8 s: it has
landed and come to rest on the sticky floor) to the target. The distance to the target is printed after each
iteration.
"""

import argparse
import json
import os
import sys

import numpy as np

import diffsim
from diffsim.scene import load_scene
from diffsim.scene.trajectory import render_trajectory


def build(steps: int | None = None):
    """(scene, system, simulation, task) of scenes/mpm_throw3d.toml."""
    scene = load_scene("mpm_throw3d", steps=steps)
    system, sim, task = scene.build()
    return scene, system, sim, task


def centre(sim) -> np.ndarray:
    """Mass-weighted centre of the cube at the last frame (all particles weigh the same)."""
    return sim.trajectory(["x"])["x"][-1, 0].mean(axis=0)


def animate(scene, system, steps: int, path: str) -> None:
    sim = diffsim.Simulation(system, steps, storage="checkpointed", checkpoint_every=min(8, steps))
    sim.forward()
    x = sim.trajectory(["x"])["x"][:, 0]
    render_trajectory(x, scene.drawing(system), path, dt=8 * system.dt, progress=False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=None, help="default: the scene's")
    parser.add_argument("--steps", type=int, default=None, help="default: the scene's")
    parser.add_argument("--out", default="runs/mpm_throw3d")
    parser.add_argument("--no-render", action="store_true")
    parser.add_argument("--arch", default=None)
    args = parser.parse_args(argv)

    diffsim.init(arch=args.arch)
    scene, system, sim, task = build(args.steps)
    target = np.asarray(scene.data["task"]["loss"]["target"], dtype=np.float64)
    os.makedirs(args.out, exist_ok=True)
    if not args.no_render:
        animate(scene, system, sim.steps, os.path.join(args.out, "before.gif"))

    def report(it, record, _sim):
        print(
            f"iteration {it:3d}  distance to target {np.sqrt(max(record['loss'], 0.0)) * 1000:.1f} mm  "
            f"(forward {record['forward_s']:.2f} s, backward {record['backward_s']:.2f} s)",
            flush=True,
        )

    kwargs = task.fit_kwargs()
    if args.iters is not None:
        kwargs["iters"] = args.iters
    result = diffsim.fit(sim, callback=report, progress=False, **kwargs)
    sim.forward()
    print(
        f"throw velocity {np.round(system.params['bodies.velocity'].numpy().ravel(), 4).tolist()} m/s; centre "
        f"{np.round(centre(sim), 4).tolist()} m, target {target.tolist()} m, distance "
        f"{np.linalg.norm(centre(sim) - target) * 1000:.1f} mm after {result.iterations} iterations"
    )
    with open(os.path.join(args.out, "result.json"), "w") as fh:  # read by tests/test_examples.py
        json.dump({"loss_history": result.loss_history, "best_loss": result.best_loss}, fh, indent=1)
    if not args.no_render:
        from diffsim.viz import plot_loss

        plot_loss(result.history, os.path.join(args.out, "loss.png"))
        animate(scene, system, sim.steps, os.path.join(args.out, "after.gif"))
        print(f"wrote {args.out}/before.gif, after.gif, loss.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
