"""Reverse passes seeded by cotangents on the trajectory: the vector-Jacobian product of a whole rollout.

`Simulation.backward` differentiates a built-in loss. A framework bridge (`diffsim.torch`, `diffsim.jax`,
`diffsim.tf`) needs more: the rollout as a function params -> (trajectory quantities, per-copy loss), and the
product of an arbitrary cotangent on its outputs with its Jacobian. `TrajectoryOutputs` attaches to a simulation
and gives both:

    outputs = TrajectoryOutputs(sim, ["x", "v"])
    sim.forward()
    traj = outputs.values()                      # {"x": [frames = steps + 1, batch, ...], ...}
    outputs.backward({"x": dx}, loss=dloss)      # parameter gradients land in sim.system.params, as after backward()

The cotangent of a quantity is an array like its trajectory (frame 0 included: the initial state's parameters get
its share); frames and copies that do not matter are zeros, and only frames holding a non-zero cotangent cost a
launch. `loss` is a cotangent per copy (shape (batch,)) on the per-copy loss `sim.loss_value`; None is 0 (or, when
no trajectory cotangent is given either, the built-in loss's own seed: 1 per copy, as `Simulation.backward`).

How the seeds reach the adjoint: the engine calls `seed(f, fg)` where it evaluates the loss's adjoint at global frame
fg (window frame f), just before the adjoint of the step that wrote that frame; the cotangent of frame fg is added
into the state adjoint there. With checkpointed storage a segment's frames exist only while the backward pass
recomputes it, and that is when they are seeded; the forward pass copies each segment's frames into the recorded
trajectory (`record`) after the segment runs. Both storage policies therefore give the same gradients.

(No ``from __future__ import annotations`` here: Taichi reads a kernel's annotations as objects.)
"""

import numpy as np
import taichi as ti

from .. import runtime
from ..errors import DiffsimError
from .launch import FastKernel

#: on the CPU, frames with fewer scalars than this are copied by a serial loop (see engine/fill.py)
SERIAL_COPY_BELOW = 1 << 17


@ti.kernel
def _add_frame(
    src: ti.template(), dst: ti.template(), serial: ti.template(), src_frame: ti.i32, dst_frame: ti.i32
):
    """dst[dst_frame, ...] += src[src_frame, ...] for fields of equal trailing shape."""
    ti.loop_config(serialize=serial)
    for idx in ti.grouped(ti.ndrange(*src.shape[1:])):
        dst[ti.Vector([dst_frame] + [idx[k] for k in ti.static(range(len(src.shape) - 1))])] += src[
            ti.Vector([src_frame] + [idx[k] for k in ti.static(range(len(src.shape) - 1))])
        ]


class TrajectoryOutputs:
    """Records state quantities at every frame of `sim`'s rollouts and seeds its reverse pass with cotangents on
    them (see the module docstring). One per simulation; building a second replaces the first."""

    def __init__(self, sim, names):
        names = list(names)
        known = [s.name for s in sim._state_specs]
        for name in names:
            if name not in known:
                raise DiffsimError(
                    f"unknown state quantity {name!r} of {sim.system.kind}; choose from {', '.join(known)}",
                    where="outputs",
                )
        self.sim = sim
        self.names = names
        self.frames = sim.steps + 1
        self._specs = {s.name: s for s in sim._state_specs}
        self._record = {}
        self._cot = {}
        self._launch = {}
        for name in names:
            window = sim.state.field(name)
            serial = runtime.serial_loops(int(np.prod(window.shape[1:])) * _width(window), SERIAL_COPY_BELOW)
            if sim.storage == "checkpointed":
                self._record[name] = _like(window, self.frames)
            self._cot[name] = _like(window, self.frames)
            self._launch[name] = (
                FastKernel(_copy_window, window, self._record.get(name, window), serial, types="iii"),
                FastKernel(_add_frame, self._cot[name], window.grad, serial, types="ii"),
            )
        for field in self._cot.values():
            field.fill(
                0
            )  # allocates the new fields now, on this thread (Taichi allocates on the main thread only)
        self._seed_frames: dict[int, list] = {}
        self._loss_seed = None
        sim.outputs = self

    # -- forward --------------------------------------------------------------------------------------------------
    def record(self, a: int, b: int) -> None:
        """Copy window frames 0 .. b - a (global frames a .. b) into the recorded trajectory (checkpointed storage;
        with full storage the window is the trajectory). Called by `Simulation.forward` after each segment."""
        if self.sim.storage != "checkpointed":
            return
        for name in self.names:
            self._launch[name][0](0, a, b - a + 1)

    def values(self) -> dict[str, np.ndarray]:
        """The recorded quantities of the last forward pass, ``[frame (steps + 1), batch, ...]``."""
        src = self._record if self.sim.storage == "checkpointed" else None
        return {n: (src[n] if src else self.sim.state.field(n)).to_numpy() for n in self.names}

    # -- reverse --------------------------------------------------------------------------------------------------
    def backward(self, cotangents: dict[str, np.ndarray] | None = None, loss=None) -> None:
        """Run the simulation's reverse pass seeded by `cotangents` (name -> array like `values()[name]`; missing
        names are zero) and `loss` (per-copy cotangent on the loss, shape (batch,), or a scalar for every copy);
        parameter gradients land in the system's parameters as after `Simulation.backward`."""
        self.set_cotangents(cotangents or {}, loss)
        try:
            self.sim.backward()
        finally:
            self._seed_frames = {}
            self._loss_seed = None

    def set_cotangents(self, cotangents: dict[str, np.ndarray], loss=None) -> None:
        sim = self.sim
        for name in cotangents:
            if name not in self._cot:
                raise DiffsimError(
                    f"{name!r} is not an output; outputs are {', '.join(self.names)}", where="cotangents"
                )
        self._seed_frames = {}
        for name in self.names:
            field = self._cot[name]
            g = cotangents.get(name)
            if g is None:
                continue
            g = np.asarray(g, dtype=np.float64)
            if g.shape != tuple(field.shape) + _vshape(field):
                raise DiffsimError(
                    f"cotangent of shape {g.shape}, expected {tuple(field.shape) + _vshape(field)}",
                    where=f"cotangents[{name!r}]",
                )
            if not np.all(np.isfinite(g)):
                raise DiffsimError("cotangent must be finite", where=f"cotangents[{name!r}]")
            field.from_numpy(np.ascontiguousarray(g, dtype=runtime.np_real()))
            nonzero = np.flatnonzero(np.any(g.reshape(g.shape[0], -1) != 0, axis=1))
            for fg in nonzero.tolist():
                self._seed_frames.setdefault(fg, []).append(self._launch[name][1])
        if loss is None:
            self._loss_seed = np.zeros(sim.batch) if cotangents else None
        else:
            seed = np.broadcast_to(np.asarray(loss, dtype=np.float64), (sim.batch,))
            if not np.all(np.isfinite(seed)):
                raise DiffsimError("cotangent must be finite", where="cotangents['loss']")
            self._loss_seed = np.ascontiguousarray(seed)

    def seed_loss(self, leaf, weight: float) -> None:
        """Seed a loss term's per-copy adjoint: weight x the loss cotangent of each copy."""
        if self._loss_seed is None:  # no cotangents set: the built-in loss's own seed
            leaf.reset(weight)
        else:
            leaf.value.grad.from_numpy((weight * self._loss_seed).astype(runtime.np_real()))

    def seed(self, f: int, fg: int) -> None:
        """Add the cotangent of global frame fg into window frame f's state adjoint."""
        for launch in self._seed_frames.get(fg, ()):
            launch(fg, f)


@ti.kernel
def _copy_window(
    src: ti.template(),
    dst: ti.template(),
    serial: ti.template(),
    src_frame: ti.i32,
    dst_frame: ti.i32,
    n: ti.i32,
):
    """dst[dst_frame + k, ...] = src[src_frame + k, ...] for k < n."""
    ti.loop_config(serialize=serial)
    for I in ti.grouped(ti.ndrange(*src.shape[1:])):
        for k in range(n):
            dst[ti.Vector([dst_frame + k] + [I[m] for m in ti.static(range(len(src.shape) - 1))])] = src[
                ti.Vector([src_frame + k] + [I[m] for m in ti.static(range(len(src.shape) - 1))])
            ]


def _width(field) -> int:
    return int(getattr(field, "n", 1) or 1) * int(getattr(field, "m", 1) or 1)


def _vshape(field) -> tuple[int, ...]:
    if not isinstance(field, ti.MatrixField):
        return ()
    return (field.n,) if field.ndim == 1 else (field.n, field.m)


def _like(field, frames: int):
    """A field like the window `field` with `frames` frames and no gradient."""
    shape = (frames, *field.shape[1:])
    if isinstance(field, ti.MatrixField):
        if field.ndim == 1:
            return ti.Vector.field(field.n, field.dtype, shape=shape)
        return ti.Matrix.field(field.n, field.m, field.dtype, shape=shape)
    return ti.field(field.dtype, shape=shape)
