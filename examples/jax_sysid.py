"""The spring-stiffness identification of examples/torch_sysid.py in JAX: Optax's Adam on log-stiffness, the loss
and its gradient jit-compiled around `diffsim.jax.simulate`.

    python examples/jax_sysid.py                 # 150 Adam steps
    python examples/jax_sysid.py --iters 3       # the short mode the tests run

Needs diffsim[jax] (jax and optax).
"""

import argparse
import os
import sys

import numpy as np

import diffsim

sys.path.insert(0, os.path.dirname(__file__))
from torch_sysid import GUESS, TRUE_STIFFNESS, build, measured, write_result  # noqa: E402


def main(argv=None) -> int:
    import jax  # noqa: PLC0415

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp  # noqa: PLC0415
    import optax  # noqa: PLC0415

    import diffsim.jax as dj  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=150)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", default="runs/jax_sysid")
    args = parser.parse_args(argv)

    diffsim.init(precision="f64")
    sim = build(args.steps)
    target = jnp.asarray(measured(sim))

    @jax.jit
    def loss_and_grad(log_k):
        def loss(log_k):
            x = dj.simulate(sim, {"springs.stiffness": jnp.exp(log_k)}, outputs=("x",))["x"]
            return 1e6 * jnp.mean(jnp.sum((x - target) ** 2, -1))  # mm^2

        return jax.value_and_grad(loss)(log_k)

    log_k = jnp.full(6, np.log(GUESS))
    opt = optax.adam(args.lr)
    state = opt.init(log_k)
    history = []
    for it in range(args.iters):
        loss, g = loss_and_grad(log_k)
        updates, state = opt.update(g, state)
        log_k = optax.apply_updates(log_k, updates)
        history.append(float(loss))
        if it % 10 == 0 or it == args.iters - 1:
            err = np.abs(np.exp(np.asarray(log_k)) / TRUE_STIFFNESS - 1).max()
            print(f"step {it:3d}  loss {float(loss):.3e} mm^2  largest stiffness error {100 * err:.3f} %")
    print("stiffness (N/m):", np.round(np.exp(np.asarray(log_k)), 3).tolist())
    write_result(args.out, history, np.exp(np.asarray(log_k)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
