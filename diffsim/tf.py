"""TensorFlow bridge: diffsim simulations as differentiable TensorFlow operations (extra ``diffsim[tf]``).

    out = diffsim.tf.simulate(sim, {"springs.stiffness": k}, outputs=("x",))   # eager or inside tf.function
    step = diffsim.tf.Step(system)
    s = step(step.initial_state(), action, t)

Both are `tf.custom_gradient` functions whose primal and gradient run on the host through `tf.numpy_function`
(one host copy each way), so they work eagerly, under `tf.GradientTape` and inside `tf.function`; the gradient is
diffsim's reverse pass (`diffsim.bridge`). Results have the dtype of the inputs.
"""

from __future__ import annotations

import numpy as np

from . import runtime

# Taichi's Vulkan probe after TensorFlow has loaded makes the process abort at exit ("free(): invalid pointer",
# exit status 134) on machines with Mesa's software Vulkan driver: probe first (import diffsim.tf before tensorflow)
runtime.available_archs()

import tensorflow as tf  # noqa: E402

from .bridge import OneStep, Rollout  # noqa: E402

__all__ = ["simulate", "Step"]


# tf.function's autograph would rewrite every Python function called while it traces, Taichi kernels included:
# the bridge's functions run as written (`do_not_convert`)
@tf.autograph.experimental.do_not_convert
def _rollout(sim, names: tuple, outputs: tuple) -> Rollout:
    cache = sim.__dict__.setdefault("_bridge_rollouts", {})
    if (names, outputs) not in cache:
        cache[(names, outputs)] = Rollout(sim, names, outputs)
        cache[(names, outputs)].allocate()  # on this thread: the callbacks run on threads of the framework's
    return cache[(names, outputs)]


def _numpy_function(func, inp, tout, stateful=True) -> list:
    """tf.numpy_function, always a list of tensors (eagerly, a single output comes back as a bare tensor)."""
    out = tf.numpy_function(func, inp, tout, stateful=stateful)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _zeros_for_none(grads, like):
    return [tf.zeros_like(y) if g is None else g for g, y in zip(grads, like, strict=True)]


@tf.autograph.experimental.do_not_convert
def simulate(sim, params: dict, outputs=()) -> dict:
    """Run `sim` with these parameter values; the trajectory quantities named in `outputs` (``[steps + 1, batch,
    ...]``) and "loss" (``[batch]``) when the simulation has one. Differentiable w.r.t. every value in `params`.
    See `diffsim.torch.simulate`."""
    names = tuple(params)
    rollout = _rollout(sim, names, tuple(outputs))
    outs = rollout.output_names
    shapes = rollout.shapes()
    vals = [tf.convert_to_tensor(params[n]) for n in names]
    dtype = vals[0].dtype if vals else tf.float64
    vals = [tf.cast(v, dtype) for v in vals]
    npdt = dtype.as_numpy_dtype

    def host_forward(*xs):
        out = rollout.forward(dict(zip(names, xs, strict=True)))
        return tuple(np.asarray(out[n], dtype=npdt) for n in outs)

    def host_vjp(*args):
        xs, cots = args[: len(names)], args[len(names) :]
        d = rollout.vjp(dict(zip(names, xs, strict=True)), dict(zip(outs, cots, strict=True)))
        return tuple(
            np.asarray(d[n], dtype=npdt).reshape(np.shape(x)) for n, x in zip(names, xs, strict=True)
        )

    @tf.custom_gradient
    def f(*xs):
        ys = _numpy_function(host_forward, list(xs), [dtype] * len(outs), stateful=True)
        for y, n in zip(ys, outs, strict=True):
            y.set_shape(shapes[n])

        def grad(*dys):
            dys = _zeros_for_none(dys, ys)
            gs = _numpy_function(host_vjp, [*xs, *dys], [dtype] * len(xs), stateful=True)
            for g, x in zip(gs, xs, strict=True):
                g.set_shape(x.shape)
            return gs

        return ys, grad

    return dict(zip(outs, f(*vals), strict=True))


class Step:
    """One integration step as a differentiable TensorFlow operation ``step(state, action, t=0) -> state`` (dicts of
    ``[batch, ...]`` tensors; action ``[batch, n_actions]`` or None; t an integer, a tensor inside tf.function). See
    `diffsim.torch.Step` and `diffsim.bridge.OneStep`."""

    def __init__(self, system):
        self.op = OneStep(system)
        self.op.allocate()  # on this thread: the callbacks run on threads of the framework's
        self.state_names = self.op.state_names
        self.n_actions = self.op.n_actions

    def initial_state(self, dtype=tf.float64) -> dict:
        return {n: tf.constant(a, dtype=dtype) for n, a in self.op.initial_state().items()}

    @tf.autograph.experimental.do_not_convert
    def __call__(self, state: dict, action=None, t=0) -> dict:
        op, names = self.op, self.state_names
        shapes = op.shapes()
        xs = [tf.convert_to_tensor(state[n]) for n in names]
        dtype = xs[0].dtype
        npdt = dtype.as_numpy_dtype
        none = op.controller is None
        a = tf.zeros((op.batch, 0), dtype) if action is None else tf.cast(action, dtype)
        t = tf.cast(t, tf.int32)

        def host_forward(t, a, *xs):
            out = op.forward(dict(zip(names, xs, strict=True)), None if none else a, int(t))
            return tuple(np.asarray(out[n], dtype=npdt) for n in names)

        def host_vjp(t, a, *args):
            xs, cots = args[: len(names)], args[len(names) :]
            dstate, da = op.vjp(
                dict(zip(names, xs, strict=True)),
                None if none else a,
                dict(zip(names, cots, strict=True)),
                int(t),
            )
            da = np.zeros(np.shape(a), npdt) if da is None else np.asarray(da, npdt)
            return (da, *(np.asarray(dstate[n], npdt) for n in names))

        @tf.custom_gradient
        def f(a, *xs):
            ys = _numpy_function(host_forward, [t, a, *xs], [dtype] * len(names), stateful=True)
            for y, n in zip(ys, names, strict=True):
                y.set_shape(shapes[n])

            def grad(*dys):
                dys = _zeros_for_none(dys, ys)
                gs = _numpy_function(host_vjp, [t, a, *xs, *dys], [dtype] * (1 + len(xs)), stateful=True)
                for g, x in zip(gs, [a, *xs], strict=True):
                    g.set_shape(x.shape)
                return gs

            return ys, grad

        return dict(zip(names, f(a, *xs), strict=True))
