"""What the Warp peer scripts (warp_*.py, warp-lang==1.9.1) share: the command line, Warp's start-up, one timed
optimisation iteration (forward under a Tape, backward, a gradient step on the initial velocities) and the timing
loop with its JSON report. The scripts run as files (``python benchmarks/peers/warp_bounce.py``), so this module is
imported from their folder."""

import argparse
import json
import statistics
import time


def parse_args(iters: int) -> argparse.Namespace:
    """``--iters`` (default `iters`) and ``--device`` (default cpu)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=iters)
    parser.add_argument("--device", default="cpu")
    return parser.parse_args()


def start_warp(device: str):
    """Warp (with warp.sim) initialised quietly on `device`; returns the `warp` module."""
    import warp as wp
    import warp.sim  # noqa: F401  (makes wp.sim available)

    wp.config.quiet = True
    wp.init()
    wp.set_device(device)
    return wp


def make_iteration(wp, model, integrator, states, dt: float, loss, launch_loss, rate: float):
    """One iteration as in Warp's examples: under a Tape, len(states) - 1 steps of `integrator` and
    `launch_loss()` (which writes `loss`); then backward, x0 velocities -= rate * gradient. The iteration returns
    the time (perf_counter) at which the forward pass ended."""

    @wp.kernel
    def descend(x: wp.array(dtype=wp.vec3), g: wp.array(dtype=wp.vec3), rate: float):
        i = wp.tid()
        x[i] = x[i] - g[i] * rate

    steps = len(states) - 1

    def iteration():
        tape = wp.Tape()
        with tape:
            for i in range(steps):
                states[i].clear_forces()
                integrator.simulate(model, states[i], states[i + 1], dt)
            launch_loss()
        t_fwd = time.perf_counter()
        tape.backward(loss)
        v = states[0].particle_qd
        wp.launch(descend, dim=len(v), inputs=[v, v.grad, rate])
        tape.zero()
        wp.synchronize()
        return t_fwd

    return iteration


def time_and_report(wp, iteration, iters: int, task: str, device: str, steps: int, loss, **extra) -> None:
    """Run `iteration` once (compilation included), then `iters` times; print one JSON line with the medians
    (`extra` entries stand after "steps")."""
    t0 = time.perf_counter()
    iteration()
    first = time.perf_counter() - t0
    times, fwd = [], []
    for _ in range(iters):
        a = time.perf_counter()
        b = iteration()
        c = time.perf_counter()
        times.append(c - a)
        fwd.append(b - a)
    print(
        json.dumps(
            {
                "peer": "warp",
                "version": wp.config.version,
                "task": task,
                "device": device,
                "steps": steps,
                **extra,
                "first_iteration_s": first,
                "forward_s": statistics.median(fwd),
                "seconds_per_iteration": statistics.median(times),
                "loss": float(loss.numpy()[0]),
            }
        )
    )
