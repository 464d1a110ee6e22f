"""The spring-stiffness identification of examples/torch_sysid.py in TensorFlow: Keras's Adam on log-stiffness, the
loss and its gradient in a tf.function around `diffsim.tf.simulate`.

    python examples/tf_sysid.py                  # 150 Adam steps
    python examples/tf_sysid.py --iters 3        # the short mode the tests run

Needs diffsim[tf] (tensorflow-cpu).
"""

import argparse
import os
import sys

import numpy as np
import tensorflow as tf

import diffsim
import diffsim.tf as dtf  # before tensorflow: see diffsim/tf.py

sys.path.insert(0, os.path.dirname(__file__))
from torch_sysid import GUESS, TRUE_STIFFNESS, build, measured, write_result  # noqa: E402


def main(argv=None) -> int:

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=150)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--out", default="runs/tf_sysid")
    args = parser.parse_args(argv)

    diffsim.init(precision="f64")
    sim = build(args.steps)
    target = tf.constant(measured(sim))
    log_k = tf.Variable(np.full(6, np.log(GUESS)))
    opt = tf.keras.optimizers.Adam(args.lr)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            x = dtf.simulate(sim, {"springs.stiffness": tf.exp(log_k)}, outputs=("x",))["x"]
            loss = 1e6 * tf.reduce_mean(tf.reduce_sum((x - target) ** 2, -1))  # mm^2
        opt.apply_gradients([(tape.gradient(loss, log_k), log_k)])
        return loss

    history = []
    for it in range(args.iters):
        loss = train_step()
        history.append(float(loss))
        if it % 10 == 0 or it == args.iters - 1:
            err = np.abs(np.exp(log_k.numpy()) / TRUE_STIFFNESS - 1).max()
            print(f"step {it:3d}  loss {float(loss):.3e} mm^2  largest stiffness error {100 * err:.3f} %")
    print("stiffness (N/m):", np.round(np.exp(log_k.numpy()), 3).tolist())
    write_result(args.out, history, np.exp(log_k.numpy()))
    return 0


if __name__ == "__main__":
    code = main()
    # TensorFlow and Taichi in one process can abort in their exit handlers ("free(): invalid pointer", docs/interop.md)
    # after all the work is done: leave without running them
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
