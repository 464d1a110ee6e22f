"""Cost of the gradient health report: a plain backward pass against backward(health=True), side by side.

    .venv/bin/python benchmarks/health_cost.py [--reps N] [scene ...]   (default: walker2d cloth_throw; f32, CPU)

Each scene is built as `diffsim optimize` builds it (gradients for the task's parameters only), one forward pass
runs, then plain and health backward passes alternate (N each, after a warm-up of each); the median and the best
pass of each are printed, with the difference to the plain pass. On a shared machine the passes' spread can exceed
the difference, so the health work is also timed on its own: the per-frame reduction and the parameter
contribution read, each launched many times (best of 5 batches), times how often a pass launches them.
"""

import argparse
import statistics
import time

import diffsim
from diffsim.scene import load_scene


def best_us(fn, n=200):
    out = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t0) / n)
    return 1e6 * min(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenes", nargs="*", default=["walker2d", "cloth_throw"])
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    diffsim.init(arch="cpu", precision="f32")
    for name in args.scenes:
        scene = load_scene(name)
        _system, sim, _task = scene.build(grads="task")
        sim.forward()
        times = {"plain": [], "health": [], "plain, check_finite=False": []}
        modes = [
            ("plain", {}, True),
            ("health", {"health": True}, True),
            ("plain, check_finite=False", {}, False),
        ]
        verdict = ""
        for rep in range(args.reps + 1):
            for label, kw, check in modes:
                sim.check_finite = check
                t0 = time.perf_counter()
                sim.backward(**kw)
                dt = time.perf_counter() - t0
                if rep:
                    times[label].append(dt)
                if kw:
                    verdict = sim.health.verdict()
                    frames = len(sim.health.frames)
                    marks = len(sim.health.contributions) + 1
        base, base_min = statistics.median(times["plain"]), min(times["plain"])
        print(
            f"{name}: {sim.steps} steps, {sim.storage} storage, {args.reps} passes each (interleaved): median, best"
        )
        for label, ts in times.items():
            med, best = statistics.median(ts), min(ts)
            print(
                f"  backward {label:26s} {1e3 * med:9.2f} ms ({100 * (med / base - 1):+5.1f} %)"
                f"  {1e3 * best:9.2f} ms ({100 * (best / base_min - 1):+5.1f} %)"
            )
        mon, differ = sim._monitor, sim._param_differ[1]
        t_rec = best_us(lambda: mon.record(1, 0))  # noqa: B023 (called at once)
        t_mark = best_us(lambda: differ.mark(0))  # noqa: B023 (called at once)
        work = frames * t_rec + marks * t_mark
        print(
            f"  health work alone: {frames} recorded frames x {t_rec:.2f} us + {marks} contribution reads x "
            f"{t_mark:.2f} us = {work / 1e3:.3f} ms, {100 * work / 1e3 / (1e3 * base_min):.1f} % of the best plain pass"
        )
        print(f"  verdict: {verdict}")


if __name__ == "__main__":
    main()
