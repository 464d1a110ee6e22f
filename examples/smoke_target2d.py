"""Shape smoke into a target image by optimizing the initial velocity (scenes/smoke_target2d.toml), from Python.

    python examples/smoke_target2d.py [--out runs/smoke_target2d] [--size 128] [--iters 100]

Writes density_before.png (the final density with the fluid at rest: the checkerboard), density_after.png (the
final density with the fitted initial velocity), target.png, and prints the loss before and after. --size picks
a smaller grid (the target image is regenerated at that size) for a quick run.
"""

import argparse
import json
import os

import numpy as np

import diffsim
from diffsim.scene import load_scene
from diffsim.systems.smoke.targets import target_image
from diffsim.viz import grid_image


def final_density(system, sim):
    sim.forward()
    return sim.trajectory(["scalars"])["scalars"][-1, 0, ..., system.scalar_index("density")]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/smoke_target2d")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iters", type=int, default=None)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    overrides = []
    if args.size != 128:
        path = os.path.join(args.out, f"target{args.size}.npy")
        np.save(path, target_image("taijitu", (args.size, args.size)))
        overrides = [
            f"grid.resolution=[{args.size}, {args.size}]",
            f"initial[0].cells={max(1, args.size // 8)}",
            f"task.loss.target={os.path.abspath(path)}",
        ]
    scene = load_scene("smoke_target2d", overrides, iters=args.iters)
    scene.init_backend()
    system, sim, task = scene.build()
    before = final_density(system, sim)
    result = diffsim.fit(sim, progress=True, **task.fit_kwargs())
    after = final_density(system, sim)
    target = np.load(scene.data["task"]["loss"]["target"])
    paths = []
    for name, img in (("before", before), ("after", after), ("target", target)):
        p = os.path.join(args.out, f"density_{name}.png" if name != "target" else "target.png")
        grid_image(np.asarray(img).T, p, cmap="gray_r", vmin=0.0, vmax=1.0, title=f"{scene.name}: {name}")
        paths.append(p)
    h = result.loss_history
    print(
        f"loss {h[0]:.4g} -> {result.best_loss:.4g} ({result.best_loss / h[0]:.1%} of the start) in "
        f"{result.iterations} iterations, {result.wall_time_s:.0f} s"
    )
    with open(os.path.join(args.out, "result.json"), "w") as fh:  # read by tests/test_examples.py
        json.dump({"loss_history": h, "best_loss": result.best_loss}, fh, indent=1)
    print("wrote " + ", ".join(paths))
    return {"result": result, "before": before, "after": after}


if __name__ == "__main__":
    main()
