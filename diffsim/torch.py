"""PyTorch bridge: diffsim simulations as differentiable torch operations (extra ``diffsim[torch]``).

    out = diffsim.torch.simulate(sim, {"springs.stiffness": k}, outputs=("x",))
    out["x"]      # [frames = steps + 1, batch, n, dim], differentiable w.r.t. k
    out["loss"]   # [batch], the simulation's per-copy loss, when it has one

    step = diffsim.torch.Step(system)          # system driven by OpenLoop(per_batch=True) when batch > 1
    s = step.initial_state()                   # {"x": [batch, n, dim], "v": ...}
    for t in range(T):
        s = step(s, policy(s), t)              # backpropagation through time across policy and simulator

`simulate` is a `torch.autograd.Function` whose backward is diffsim's reverse pass seeded by the incoming gradients
(`diffsim.bridge.Rollout`); `Step` one whose backward re-runs the step and its adjoint (`diffsim.bridge.OneStep`).
Tensors cross to Taichi through one host copy each way (docs/interop.md). Outputs have the dtype and device of the
inputs (float64 when none is a floating tensor); the simulation computes in diffsim's precision.
"""

from __future__ import annotations

import numpy as np
import torch

from .bridge import OneStep, Rollout

__all__ = ["simulate", "Step"]


def _numpy(t) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _tensor(a, like_dtype, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=like_dtype)


def _rollout(sim, names: tuple, outputs: tuple) -> Rollout:
    """One `Rollout` per (simulation, parameter names, outputs), kept on the simulation."""
    cache = sim.__dict__.setdefault("_bridge_rollouts", {})
    key = (names, outputs)
    if key not in cache:
        cache[key] = Rollout(sim, names, outputs)
    return cache[key]


def _meta(tensors):
    floats = [t for t in tensors if torch.is_tensor(t) and t.is_floating_point()]
    if not floats:
        return torch.float64, torch.device("cpu")
    dtype = floats[0].dtype
    for t in floats[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype, floats[0].device


class _Simulate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rollout, names, *tensors):
        values = {n: _numpy(t) for n, t in zip(names, tensors, strict=True)}
        out = rollout.forward(values)
        dtype, device = _meta(tensors)
        ctx.rollout, ctx.values, ctx.inputs = rollout, values, [(t.dtype, t.device) for t in tensors]
        ctx.set_materialize_grads(False)
        return tuple(_tensor(out[n], dtype, device) for n in rollout.output_names)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        rollout = ctx.rollout
        cot = {n: None if g is None else _numpy(g) for n, g in zip(rollout.output_names, grads, strict=True)}
        d = rollout.vjp(ctx.values, cot)
        return (
            None,
            None,
            *(_tensor(d[n], dt, dev) for n, (dt, dev) in zip(rollout.names, ctx.inputs, strict=True)),
        )


def simulate(sim, params: dict, outputs=()) -> dict[str, torch.Tensor]:
    """Run `sim` (a `diffsim.Simulation`) with these parameter values and return the trajectory quantities named in
    `outputs` (state quantities, e.g. "x", "v": ``[steps + 1, batch, ...]``, frame 0 included) and "loss"
    (``[batch]``) when the simulation has a loss. Differentiable w.r.t. every tensor in `params` (name -> value of
    the parameter's shape, ``[batch, ...]`` for a per-copy one); parameters not named keep their current values."""
    names = tuple(params)
    rollout = _rollout(sim, names, tuple(outputs))
    tensors = [
        torch.as_tensor(params[n], dtype=torch.float64) if not torch.is_tensor(params[n]) else params[n]
        for n in names
    ]
    results = _Simulate.apply(rollout, names, *tensors)
    return dict(zip(rollout.output_names, results, strict=True))


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, op, t, names, action, *state):
        s = {n: _numpy(x) for n, x in zip(names, state, strict=True)}
        a = None if action is None else _numpy(action)
        out = op.forward(s, a, t)
        dtype, device = _meta([*state, action])
        ctx.op, ctx.t, ctx.s, ctx.a = op, t, s, a
        ctx.meta = [(x.dtype, x.device) for x in state]
        ctx.action = None if action is None else (action.dtype, action.device)
        ctx.set_materialize_grads(False)
        return tuple(_tensor(out[n], dtype, device) for n in names)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        op = ctx.op
        cot = {n: None if g is None else _numpy(g) for n, g in zip(op.state_names, grads, strict=True)}
        dstate, daction = op.vjp(ctx.s, ctx.a, cot, ctx.t)
        da = None if ctx.action is None else _tensor(daction, *ctx.action)
        return (
            None,
            None,
            None,
            da,
            *(_tensor(dstate[n], dt, dev) for n, (dt, dev) in zip(op.state_names, ctx.meta, strict=True)),
        )


class Step:
    """One integration step of `system` as a differentiable torch operation
    ``step(state: dict[str, Tensor], action: Tensor | None, t: int = 0) -> dict[str, Tensor]``.

    state: every state quantity of the system (`state_names`), each ``[batch, ...]``; action: ``[batch,
    n_actions]`` for a system driven by `OpenLoop` (build it with ``per_batch=True`` when batch > 1), None for a
    system without a controller; t: the global step index. See `diffsim.bridge.OneStep`."""

    def __init__(self, system):
        self.op = OneStep(system)
        self.state_names = self.op.state_names
        self.n_actions = self.op.n_actions

    def initial_state(self, dtype=torch.float64, device="cpu") -> dict[str, torch.Tensor]:
        """Frame 0 of a rollout (from the system's initial-state parameters), as tensors."""
        return {n: _tensor(a, dtype, device) for n, a in self.op.initial_state().items()}

    def __call__(self, state: dict, action=None, t: int = 0) -> dict[str, torch.Tensor]:
        names = self.op.state_names
        tensors = [state[n] for n in names]
        out = _Step.apply(self.op, int(t), names, action, *tensors)
        return dict(zip(names, out, strict=True))
