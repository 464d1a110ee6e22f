"""Overhead of the framework bridges (docs/interop.md), measured side by side in one process, medians of repeats.

    python benchmarks/interop_overhead.py [--repeat 7] [--step-steps 100] [--frameworks torch,jax,tf]

simulate: the walker2d example (20-mass walker, in-kernel MLP, 680 steps, f32): `Simulation.value_and_grad()`
    against the same rollout and reverse pass through each bridge, gradients of the loss w.r.t. every controller
    weight (the bridge adds the parameter copies in and the gradient copies out).
Step: the walker driven by OpenLoop actions, `--step-steps` steps: `Step` called in a loop (Python loop for torch and
    TF eager, jax.lax.scan under jit for JAX), forward and backward, against the fused rollout's value_and_grad
    with the same actions.
The runs alternate (baseline, bridge, baseline, ...) so that the machine's load hits both alike.
"""

import argparse
import importlib
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))

import diffsim  # noqa: E402
from diffsim.systems.springs.robots import walker2d  # noqa: E402


def walker_mlp():
    from walker2d import build  # noqa: PLC0415

    sim = build(680)
    names = [p.name for p in sim.system.params if p.name.startswith("controller.")]
    return sim, names


def walker_open_loop(steps):
    model = walker2d()
    system = diffsim.SpringSystem(
        model,
        dt=4e-3,
        ground=0.0,
        friction=1.0,
        contact_stiffness=2000.0,
        contact_damping=10.0,
        controller=diffsim.OpenLoop(model.n_actuators, steps, init=0.3),
    )
    loss = diffsim.CenterOfMassLoss(direction=(1.0, 0.0), maximize=True)
    return diffsim.Simulation(system, steps, loss=loss), system


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def compare(label, base, bridge, repeat):
    base(), bridge()  # compile, allocate
    tb, tx = [], []
    for _ in range(repeat):
        tb.append(timed(base))
        tx.append(timed(bridge))
    mb, mx = statistics.median(tb), statistics.median(tx)
    print(
        f"{label:34s} baseline {mb * 1e3:9.2f} ms   bridge {mx * 1e3:9.2f} ms   overhead {100 * (mx / mb - 1):+7.1f} %"
    )
    return mb, mx


def torch_cases(sim, names, step_sim, step_system, n, repeat):
    import torch  # noqa: PLC0415

    import diffsim.torch as dt  # noqa: PLC0415

    params = {
        k: torch.tensor(sim.system.params[k].numpy(), dtype=torch.float32, requires_grad=True) for k in names
    }

    def bridge():
        out = dt.simulate(sim, params)
        out["loss"].sum().backward()

    compare("torch simulate (walker2d, 680)", lambda: sim.value_and_grad(names), bridge, repeat)
    step = dt.Step(step_system)
    s0 = step.initial_state(dtype=torch.float32)
    a = torch.full((1, step.n_actions), 0.3, requires_grad=True)

    def loop():
        s = s0
        for t in range(n):
            s = step(s, a, t)
        s["x"][..., 0].sum().backward()

    compare(
        f"torch Step loop ({n} steps)", lambda: step_sim.value_and_grad(["controller.actions"]), loop, repeat
    )


def jax_cases(sim, names, step_sim, step_system, n, repeat):
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    import diffsim.jax as dj  # noqa: PLC0415

    values = {k: jnp.asarray(sim.system.params[k].numpy(), jnp.float32) for k in names}
    grad = jax.jit(jax.grad(lambda v: dj.simulate(sim, v)["loss"].sum()))
    compare(
        "jax simulate (walker2d, 680)",
        lambda: sim.value_and_grad(names),
        lambda: jax.block_until_ready(grad(values)),
        repeat,
    )
    step = dj.Step(step_system)
    s0 = step.initial_state(jnp.float32)

    def rollout(a):
        s = jax.lax.scan(lambda s, t: (step(s, a, t), None), s0, jnp.arange(n))[0]
        return s["x"][..., 0].sum()

    g = jax.jit(jax.grad(rollout))
    a = jnp.full((1, step.n_actions), 0.3, jnp.float32)
    compare(
        f"jax Step scan ({n} steps)",
        lambda: step_sim.value_and_grad(["controller.actions"]),
        lambda: jax.block_until_ready(g(a)),
        repeat,
    )


def tf_cases(sim, names, step_sim, step_system, n, repeat):
    import tensorflow as tf  # noqa: PLC0415

    import diffsim.tf as dtf  # noqa: PLC0415  (before tensorflow: see diffsim/tf.py)

    vs = {k: tf.Variable(sim.system.params[k].numpy().astype(np.float32)) for k in names}

    @tf.function
    def grads():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(dtf.simulate(sim, vs)["loss"])
        return tape.gradient(loss, list(vs.values()))

    compare("tf simulate (walker2d, 680)", lambda: sim.value_and_grad(names), grads, repeat)
    step = dtf.Step(step_system)
    s0 = step.initial_state(tf.float32)
    a = tf.Variable(tf.fill((1, step.n_actions), 0.3))

    def loop():
        with tf.GradientTape() as tape:
            s = s0
            for t in range(n):
                s = step(s, a, t)
            y = tf.reduce_sum(s["x"][..., 0])
        tape.gradient(y, a)

    compare(
        f"tf Step eager loop ({n} steps)",
        lambda: step_sim.value_and_grad(["controller.actions"]),
        loop,
        repeat,
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--step-steps", type=int, default=100)
    parser.add_argument("--frameworks", default="torch,jax,tf")
    args = parser.parse_args(argv)
    frameworks = args.frameworks.split(",")
    if "tf" in frameworks:  # TensorFlow after Taichi's Vulkan probe: see diffsim/tf.py
        importlib.import_module("diffsim.tf")
    diffsim.init()
    sim, names = walker_mlp()
    step_sim, step_system = walker_open_loop(args.step_steps)
    cases = {"torch": torch_cases, "jax": jax_cases, "tf": tf_cases}
    for fw in frameworks:
        cases[fw](sim, names, step_sim, step_system, args.step_steps, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
