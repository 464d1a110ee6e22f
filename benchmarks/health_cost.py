"""Cost of the gradient health report: a plain backward pass against backward(health=True), side by side.

    .venv/bin/python benchmarks/health_cost.py [scene ...]   (default: walker2d cloth_throw; f32, CPU)

Each scene is built as `diffsim optimize` builds it (gradients for the task's parameters only), one forward pass
runs, then plain and health backward passes alternate (REPS each, after a warm-up of each); the median and the best
pass of each are printed, with the difference to the plain pass (the best is steadier on a shared machine).
"""

import statistics
import sys
import time

import diffsim
from diffsim.scene import load_scene

REPS = 15


def main(names):
    diffsim.init(arch="cpu", precision="f32")
    for name in names:
        scene = load_scene(name)
        _system, sim, _task = scene.build(grads="task")
        sim.forward()
        times = {"plain": [], "health": [], "plain, check_finite=False": []}
        modes = [("plain", {}, True), ("health", {"health": True}, True), ("plain, check_finite=False", {}, False)]
        for rep in range(REPS + 1):
            for label, kw, check in modes:
                sim.check_finite = check
                t0 = time.perf_counter()
                sim.backward(**kw)
                dt = time.perf_counter() - t0
                if rep:
                    times[label].append(dt)
                if kw:
                    verdict = sim.health.verdict()
        base, base_min = statistics.median(times["plain"]), min(times["plain"])
        print(f"{name}: {sim.steps} steps, {sim.storage} storage, {REPS} passes each (interleaved): median, best")
        for label, ts in times.items():
            med, best = statistics.median(ts), min(ts)
            print(
                f"  backward {label:26s} {1e3 * med:9.2f} ms ({100 * (med / base - 1):+5.1f} %)"
                f"  {1e3 * best:9.2f} ms ({100 * (best / base_min - 1):+5.1f} %)"
            )
        print(f"  verdict: {verdict}")



if __name__ == "__main__":
    main(sys.argv[1:] or ["walker2d", "cloth_throw"])
