"""JAX bridge: diffsim simulations as differentiable JAX functions (extra ``diffsim[jax]``).

    out = diffsim.jax.simulate(sim, {"springs.stiffness": k}, outputs=("x",))   # jit-able, differentiable
    step = diffsim.jax.Step(system)
    s = step(step.initial_state(), action, t)

Both are `jax.custom_vjp` functions whose primal and VJP run on the host through `jax.pure_callback` (one host
copy each way), so they work under `jax.jit`, `jax.grad` and `jax.lax.scan`; the VJP is diffsim's reverse pass
(`diffsim.bridge`). Results have the dtype of the inputs (float64 needs ``jax.config.update("jax_enable_x64",
True)``). `jax.vmap` maps a Python loop: one rollout (or step) per mapped element, one after another (`VMAP`), with
the same values and gradients as a loop; for copies run in parallel, use the system's batch axis (``batch=B`` and
per-copy parameters), which runs every copy in one kernel launch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .bridge import OneStep, Rollout

__all__ = ["simulate", "Step"]

#: what `jax.vmap` does with the host callbacks: one call per mapped element, one after another (correct, no faster
#: than a Python loop; the system's batch axis runs copies in parallel)
VMAP = "sequential"


def _rollout(sim, names: tuple, outputs: tuple) -> Rollout:
    cache = sim.__dict__.setdefault("_bridge_rollouts", {})
    if (names, outputs) not in cache:
        cache[(names, outputs)] = Rollout(sim, names, outputs)
        cache[(names, outputs)].allocate()  # on this thread: the callbacks run on threads of the framework's
    return cache[(names, outputs)]


def _float_dtype(arrays):
    dtypes = [a.dtype for a in arrays if jnp.issubdtype(a.dtype, jnp.floating)]
    return jnp.result_type(*dtypes) if dtypes else jnp.result_type(float)


def _spec(shape, dtype):
    return jax.ShapeDtypeStruct(tuple(shape), dtype)


def _simulate_fn(rollout: Rollout, dtype):
    """The custom_vjp function of `rollout` for this dtype, made once and kept on the rollout."""
    fns = rollout.__dict__.setdefault("_jax_fns", {})
    if dtype not in fns:
        fns[dtype] = _make_simulate_fn(rollout, dtype)
    return fns[dtype]


def _make_simulate_fn(rollout: Rollout, dtype):
    names, outs = rollout.names, rollout.output_names
    shapes = rollout.shapes()
    out_spec = tuple(_spec(shapes[n], dtype) for n in outs)

    def host_forward(*vals):
        out = rollout.forward({n: np.asarray(v) for n, v in zip(names, vals, strict=True)})
        return tuple(np.asarray(out[n], dtype=dtype) for n in outs)

    def host_vjp(vals, cots):
        values = {n: np.asarray(v) for n, v in zip(names, vals, strict=True)}
        d = rollout.vjp(values, {n: np.asarray(c) for n, c in zip(outs, cots, strict=True)})
        return tuple(
            np.asarray(d[n], dtype=v.dtype).reshape(v.shape) for n, v in zip(names, vals, strict=True)
        )

    @jax.custom_vjp
    def f(*vals):
        return jax.pure_callback(host_forward, out_spec, *vals, vmap_method=VMAP)

    def fwd(*vals):
        return f(*vals), vals

    def bwd(vals, cots):
        in_spec = tuple(_spec(v.shape, v.dtype) for v in vals)
        return jax.pure_callback(host_vjp, in_spec, vals, cots, vmap_method=VMAP)

    f.defvjp(fwd, bwd)
    return f


def simulate(sim, params: dict, outputs=()) -> dict:
    """Run `sim` with these parameter values; the trajectory quantities named in `outputs` (``[steps + 1, batch,
    ...]``) and "loss" (``[batch]``) when the simulation has one. Differentiable w.r.t. every value in `params`
    (name -> array of the parameter's shape, ``[batch, ...]`` for a per-copy one). See `diffsim.torch.simulate`."""
    names = tuple(params)
    rollout = _rollout(sim, names, tuple(outputs))
    vals = [jnp.asarray(params[n]) for n in names]
    vals = [v.astype(_float_dtype(vals)) for v in vals]
    results = _simulate_fn(rollout, np.dtype(_float_dtype(vals)))(*vals)
    return dict(zip(rollout.output_names, results, strict=True))


class Step:
    """One integration step as a differentiable JAX function ``step(state, action, t=0) -> state`` (dicts of
    ``[batch, ...]`` arrays; action ``[batch, n_actions]`` or None; t an integer, traced or not). See
    `diffsim.torch.Step` and `diffsim.bridge.OneStep`."""

    def __init__(self, system):
        self.op = OneStep(system)
        self.op.allocate()  # on this thread: the callbacks run on threads of the framework's
        self.state_names = self.op.state_names
        self.n_actions = self.op.n_actions
        self._fns = {}

    def initial_state(self, dtype=None) -> dict:
        dtype = dtype or jnp.result_type(float)
        return {n: jnp.asarray(a, dtype=dtype) for n, a in self.op.initial_state().items()}

    def __call__(self, state: dict, action=None, t=0) -> dict:
        names = self.state_names
        xs = [jnp.asarray(state[n]) for n in names]
        dtype = np.dtype(_float_dtype(xs))
        a = jnp.zeros((self.op.batch, 0), dtype) if action is None else jnp.asarray(action, dtype)
        fn = self._fns.get(dtype)
        if fn is None:
            fn = self._fns[dtype] = self._make(dtype)
        out = fn(jnp.asarray(t, jnp.int32), a, *[x.astype(dtype) for x in xs])
        return dict(zip(names, out, strict=True))

    def _make(self, dtype):
        op, names = self.op, self.state_names
        shapes = op.shapes()
        out_spec = tuple(_spec(shapes[n], dtype) for n in names)
        none = op.controller is None

        def host_forward(t, a, *xs):
            out = op.forward(dict(zip(names, xs, strict=True)), None if none else np.asarray(a), int(t))
            return tuple(np.asarray(out[n], dtype=dtype) for n in names)

        def host_vjp(t, a, xs, cots):
            s = dict(zip(names, xs, strict=True))
            dstate, da = op.vjp(
                s, None if none else np.asarray(a), dict(zip(names, cots, strict=True)), int(t)
            )
            da = np.zeros(np.shape(a), dtype) if da is None else np.asarray(da, dtype)
            return (da, *(np.asarray(dstate[n], dtype) for n in names))

        @jax.custom_vjp
        def f(t, a, *xs):
            return jax.pure_callback(host_forward, out_spec, t, a, *xs, vmap_method=VMAP)

        def fwd(t, a, *xs):
            return f(t, a, *xs), (t, a, xs)

        def bwd(res, cots):
            t, a, xs = res
            spec = (_spec(a.shape, a.dtype), *(_spec(x.shape, x.dtype) for x in xs))
            da, *dxs = jax.pure_callback(host_vjp, spec, t, a, xs, cots, vmap_method=VMAP)
            return (None, da, *dxs)

        f.defvjp(fwd, bwd)
        return f
