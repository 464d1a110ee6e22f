"""The 2D smoke-target task written against PhiFlow 3.4 (JAX backend), for side-by-side timing.

An N x N closed box (unit cell), a density field advected by a velocity field for T steps (semi-Lagrangian
advection of density and velocity, then pressure projection with PhiFlow's CG solve), the initial velocity is the
optimized quantity, the loss is the squared difference between the final density and a target image. One iteration
= value and gradient of the loss (jit-compiled by JAX) + a gradient step.

    python benchmarks/peers/phiflow_smoke_target.py --res 128 --steps 20 --iters 3

Prints one JSON line: {"peer": "phiflow", "task": "smoke_target2d", "seconds_per_iteration": ..., ...}.
"""

import argparse
import json
import statistics
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--res", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--no-jit", action="store_true")
    # diffsim's scenes/smoke_target2d.toml solves to a relative 1e-3 (forward and adjoint): the same here
    parser.add_argument("--rel-tol", type=float, default=1e-3)
    parser.add_argument("--abs-tol", type=float, default=1e-5)
    args = parser.parse_args()

    from phi.jax.flow import (
        Box,
        CenteredGrid,
        Solve,
        StaggeredGrid,
        advect,
        fluid,
        jit_compile,
        math,
        spatial,
        vec,
    )

    n = args.res
    bounds = Box(x=n, y=n)
    yy, xx = [math.linspace(0, 1, spatial(**{k: n})) for k in ("y", "x")]

    def blob(cx, cy, r):
        return CenteredGrid(
            lambda p: math.exp(-math.vec_squared(p - vec(x=cx * n, y=cy * n)) / (r * n) ** 2),
            0,
            bounds,
            x=n,
            y=n,
        )

    density0 = blob(0.5, 0.3, 0.1)
    target = blob(0.6, 0.6, 0.12)

    # The adjoint solve runs inside JAX's backward pass, where a diverged solve cannot be reported eagerly.
    solve = Solve(
        "CG",
        args.rel_tol,
        args.abs_tol,
        max_iterations=200,
        suppress=[math.Diverged, math.NotConverged],
        gradient_solve=Solve(
            "CG", args.rel_tol, args.abs_tol, max_iterations=200, suppress=[math.Diverged, math.NotConverged]
        ),
    )

    def simulate(velocity):
        density = density0
        for _ in range(args.steps):
            density = advect.semi_lagrangian(density, velocity, dt=1.0)
            velocity = advect.semi_lagrangian(velocity, velocity, dt=1.0)
            velocity, _ = fluid.make_incompressible(velocity, (), solve)
        return density

    def loss_fn(velocity):
        return math.l2_loss(simulate(velocity) - target)

    grad_fn = math.gradient(loss_fn, "velocity", get_output=True)
    if not args.no_jit:
        grad_fn = jit_compile(grad_fn)
    velocity = StaggeredGrid(0, 0, bounds, x=n, y=n)

    def iteration(v):
        out = grad_fn(v)
        loss, grad = out[0], out[-1]
        loss = loss[0] if isinstance(loss, (tuple, list)) else loss
        grad = grad[0] if isinstance(grad, (tuple, list)) else grad
        return loss, v - grad * 0.1

    t0 = time.perf_counter()
    loss, velocity = iteration(velocity)
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.iters):
        a = time.perf_counter()
        loss, velocity = iteration(velocity)
        float(loss)  # wait for JAX
        times.append(time.perf_counter() - a)
    import phi

    print(
        json.dumps(
            {
                "peer": "phiflow",
                "version": phi.__version__,
                "backend": "jax",
                "task": "smoke_target2d",
                "res": n,
                "steps": args.steps,
                "first_iteration_s": first,
                "seconds_per_iteration": statistics.median(times),
                "loss": float(loss),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
