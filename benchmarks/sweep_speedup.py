"""The speed of a sweep on Ray workers against the same trials one after the other, and of one batched rollout
against separate trials.

    python benchmarks/sweep_speedup.py [--trials 64] [--iters 10] [--workers 2] [--out /tmp/sweep-bench]

Part 1: `diffsim.sweep("rigid_sysid", random=TRIALS, mode="optimize", iters=ITERS)` with workers=0 (this process)
and workers=WORKERS (a local Ray instance); prints both wall times (the Ray one with and without its start-up, up to
the first result) and checks the two tables agree bit for bit.
Part 2: springs_sysid, forward only: TRIALS copies in one batched rollout (sim.batch, the two spring parameters
per copy) against TRIALS rollouts of one copy (the same kept simulation, values set in between).
"""

import argparse
import json
import os
import shutil
import time

import numpy as np


def part1(args) -> dict:
    import diffsim  # noqa: PLC0415

    times = {}
    tables = {}
    for workers in (0, args.workers):
        out = os.path.join(args.out, f"workers{workers}")
        shutil.rmtree(out, ignore_errors=True)
        ended = []
        t0 = time.perf_counter()
        tables[workers] = diffsim.sweep(
            "rigid_sysid", out, random=args.trials, mode="optimize", iters=args.iters, workers=workers,
            say=lambda line, ended=ended: ended.append(time.perf_counter()) if line.startswith("  trial") else None,
        )  # fmt: skip
        total = time.perf_counter() - t0
        times[workers] = {"total_s": total, "after_first_result_s": ended[-1] - ended[0]}
    same = tables[0]["best_loss"] == tables[args.workers]["best_loss"]
    return {
        "trials": args.trials, "iters": args.iters, "workers": args.workers, "times": times, "bitwise_equal": same,
        "speedup_total": times[0]["total_s"] / times[args.workers]["total_s"],
    }  # fmt: skip


def part2(args) -> dict:
    from diffsim.scene import load_scene  # noqa: PLC0415

    n = args.trials
    rng = np.random.default_rng(0)
    k = rng.uniform(60, 130, n)
    c = rng.uniform(0.3, 0.7, n)
    scene = load_scene("springs_sysid")
    scene.init_backend()
    _, sim, _ = scene.build(task=False)
    pset = sim.system.params
    sim.forward()  # compiled
    sim.trajectory()
    finals = []  # each copy's last positions (read inside the timed loop: a trial returns its result)
    t0 = time.perf_counter()
    for i in range(n):
        pset["springs.stiffness"].set(np.full(pset["springs.stiffness"].shape, k[i]))
        pset["springs.damping"].set(np.full(pset["springs.damping"].shape, c[i]))
        sim.forward()
        finals.append(sim.trajectory()["x"][-1, 0])
    separate = time.perf_counter() - t0
    batched_scene = load_scene(
        "springs_sysid", [f"sim.batch={n}", "sim.per_batch=[springs.stiffness, springs.damping]"]
    )
    _, bsim, _ = batched_scene.build(task=False)
    bp = bsim.system.params
    bsim.forward()  # compiled
    bsim.trajectory()
    t0 = time.perf_counter()
    bp["springs.stiffness"].set(np.repeat(k[:, None], bp["springs.stiffness"].shape[-1], 1))
    bp["springs.damping"].set(np.repeat(c[:, None], bp["springs.damping"].shape[-1], 1))
    bsim.forward()
    batched_finals = bsim.trajectory()["x"][-1]
    batched = time.perf_counter() - t0
    gap = float(np.max(np.abs(batched_finals - np.array(finals))))
    return {
        "copies": n, "separate_s": separate, "batched_s": batched, "batched_speedup": separate / batched,
        "max_position_difference_m": gap,
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=64)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="/tmp/sweep-bench")
    p.add_argument("--part", choices=("1", "2", "both"), default="both")
    args = p.parse_args()
    report = {"load_average_at_start": os.getloadavg()}
    if args.part in ("1", "both"):
        report["sweep"] = part1(args)
    if args.part in ("2", "both"):
        report["batched"] = part2(args)
    report["load_average_at_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
