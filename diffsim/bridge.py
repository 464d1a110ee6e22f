"""What the framework bridges share: a rollout and a single step as numpy functions with vector-Jacobian products.

`diffsim.torch`, `diffsim.jax` and `diffsim.tf` wrap these two in their own custom-gradient machinery; the physics
and its adjoint are diffsim's (`Simulation`, `engine/cotangents.py`), the bridges only move arrays.

`Rollout(sim, names, outputs)`
    params (name -> value) -> {output name: [frames = steps + 1, batch, ...], "loss": [batch]} ("loss" when the
    simulation has one: the per-copy loss, whose sum is `Simulation.forward()`'s value). Its VJP is one reverse pass
    seeded by the cotangents (`TrajectoryOutputs.backward`).
`OneStep(system)`
    (state: name -> [batch, ...], action: [batch, n_actions]) -> next state, one integration step. The action drives
    the system's `OpenLoop` controller; a system without a controller takes no action. Its VJP re-runs the step from
    the given state (every call has its own inputs: nothing from an earlier forward is assumed to be still there),
    then runs the step's adjoint.

Values are float64 numpy arrays at this level; the simulation computes in diffsim's precision (`diffsim.init`).
Each call copies its inputs into Taichi fields and its outputs out of them: one host copy each way (see
docs/interop.md).
"""

from __future__ import annotations

import numpy as np
import taichi as ti

from .control import OpenLoop
from .engine.cotangents import TrajectoryOutputs
from .engine.state import State
from .errors import DiffsimError


class Rollout:
    """A `Simulation` as the function params -> trajectory outputs (and per-copy loss), with its VJP."""

    def __init__(self, sim, names, outputs=()):
        self.sim = sim
        params = sim.system.params
        self.names = list(names)
        for name in self.names:
            if name not in params:
                raise DiffsimError(f"unknown parameter of {sim.system.kind}", where=f"params[{name!r}]")
        self.params = [params[n] for n in self.names]
        self.outputs = TrajectoryOutputs(sim, outputs)
        self.output_names = list(outputs) + (["loss"] if sim.loss is not None else [])
        if not self.output_names:
            raise DiffsimError(
                "nothing to return: name state quantities in outputs, or give the simulation a loss"
            )
        self._last = None  # the parameter values of the rollout now in the simulation's fields (`_holds`)
        self._token = None

    def allocate(self) -> None:
        """Run the rollout and its reverse pass once, with the parameters' current values, on the calling thread.

        Taichi allocates fields on the thread that started it only, and the engine allocates some on first use
        (buffers of the backward pass). Frameworks that run host callbacks on threads of their own (TensorFlow's
        numpy_function, JAX's pure_callback) call this first, from the main thread."""
        values = {p.name: p.numpy() for p in self.params}
        out = self.forward(values)
        self.vjp(values, {n: np.zeros_like(v) for n, v in out.items()})

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Output name -> shape (for frameworks that declare result shapes before running)."""
        out = {}
        sim = self.sim
        for name in self.output_names:
            if name == "loss":
                out[name] = (sim.batch,)
                continue
            field = sim.state.field(name)
            out[name] = (sim.steps + 1, *field.shape[1:], *_vec(field))
        return out

    def param_shape(self, name: str) -> tuple[int, ...]:
        p = self.sim.system.params[name]
        return p.full_shape if p.per_batch else p.shape

    def forward(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Set the parameters to `values` (every name of `names`), run the rollout, return the outputs."""
        self._run(values)
        out = self.outputs.values()
        if self.sim.loss is not None:
            out["loss"] = np.array(self.sim.loss_value, dtype=np.float64)
        return out

    def vjp(
        self, values: dict[str, np.ndarray], cotangents: dict[str, np.ndarray | None]
    ) -> dict[str, np.ndarray]:
        """d(sum of cotangent x output)/d(parameter) for every name, at the parameter values `values` (the rollout
        is run again only if the simulation last ran with other values). Missing or None cotangents are zero."""
        if not self._holds(values):
            self._run(values)
        for p in self.params:
            p.check_grad()
        traj = {n: g for n, g in cotangents.items() if n != "loss" and g is not None}
        loss = cotangents.get("loss")
        loss = np.zeros(self.sim.batch) if loss is None else loss
        self.sim.outputs = self.outputs
        self.outputs.backward(traj, loss=loss)
        return {p.name: p.grad() for p in self.params}

    def _run(self, values: dict[str, np.ndarray]) -> None:
        missing = [n for n in self.names if n not in values]
        if missing:
            raise DiffsimError(f"no value given for {missing}", where="params")
        for p in self.params:
            p.set(values[p.name])
        self.sim.outputs = self.outputs  # another Rollout of the same simulation may have attached its own
        self.sim.forward()
        self._last = {n: np.array(values[n], dtype=np.float64) for n in self.names}
        self._token = self.sim.loss_value  # a new array at every forward pass

    def _holds(self, values) -> bool:
        """Whether the simulation's fields hold this rollout's last forward pass, run with `values`: no other forward
        pass since (a framework may skip a forward whose outputs it does not need, JAX's dead-code elimination under
        jax.grad for one)."""
        if self._last is None or self.sim.loss_value is not self._token:
            return False
        return all(np.array_equal(self._last[n], np.asarray(values[n], dtype=np.float64)) for n in self.names)


class OneStep:
    """One integration step of `system` as the function (state, action) -> next state, with its VJP.

    state: the system's state quantities (`state_names`), each ``[batch, ...]`` (`initial_state()` gives frame 0
        of a rollout). action: ``[batch, n_actions]`` for a system driven by `OpenLoop` (one row per copy: build it
        with ``per_batch=True`` when batch > 1), None for a system without a controller. t: the global step index
        (phases, schedules); the action fills the `OpenLoop` row read at step t.
    """

    def __init__(self, system):
        system.check_alive()
        self.system = system
        self.batch = system.batch
        specs = system.field_specs()
        self.state_names = [s.name for s in specs if s.kind == "state"]
        self.window = State(specs, frames=2, batch=self.batch)
        self._shapes = {
            n: (*self.window.field(n).shape[1:], *_vec(self.window.field(n))) for n in self.state_names
        }
        self._step, self._step_grad = system.step_launchers(self.window)
        self.window.zero_grad()  # allocates the window now, on this thread (see `allocate`)
        ctrl = getattr(system, "controller", None)
        if ctrl is not None and not isinstance(ctrl, OpenLoop):
            raise DiffsimError(
                f"Step drives a system through an OpenLoop controller (the action of each step); this system has "
                f"{type(ctrl).__name__}",
                where="controller",
            )
        if ctrl is not None and self.batch > 1 and not ctrl.per_batch:
            raise DiffsimError(
                "with batch > 1, build OpenLoop(per_batch=True): one action per copy", where="controller"
            )
        self.controller = ctrl
        self.n_actions = ctrl.n_actions if ctrl is not None else 0

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """State quantity -> shape ``(batch, ...)``."""
        return dict(self._shapes)

    def allocate(self) -> None:
        """One step and its adjoint from the initial state, on the calling thread (see `Rollout.allocate`)."""
        s = self.initial_state()
        a = None if self.controller is None else np.zeros((self.batch, self.n_actions))
        self.vjp(s, a, {n: np.zeros_like(v) for n, v in self.forward(s, a).items()})

    def initial_state(self) -> dict[str, np.ndarray]:
        """Frame 0 of a rollout, from the system's initial-state parameters."""
        self.system.initialize(self.window)
        return {n: self.window.field(n).to_numpy()[0].astype(np.float64) for n in self.state_names}

    def forward(self, state: dict[str, np.ndarray], action=None, t: int = 0) -> dict[str, np.ndarray]:
        self._load(state, action, t)
        return {n: self.window.field(n).to_numpy()[1].astype(np.float64) for n in self.state_names}

    def vjp(self, state, action, cotangents: dict[str, np.ndarray | None], t: int = 0):
        """(d/d state, d/d action) of sum(cotangent x next state); missing or None cotangents are zero."""
        self._load(state, action, t)
        w = self.window
        w.zero_grad()
        self.system.params.zero_grad()
        for name in self.state_names:
            g = cotangents.get(name)
            if g is None:
                continue
            grad = w.field(name).grad
            full = np.zeros(tuple(grad.shape) + _vec(grad), dtype=_np_dtype(grad))
            full[1] = np.asarray(g).reshape(full.shape[1:])
            grad.from_numpy(full)
        self._step_grad(0, int(t))
        dstate = {n: w.field(n).grad.to_numpy()[0].astype(np.float64) for n in self.state_names}
        daction = None
        if self.controller is not None:
            p = self.controller.actions
            p.check_grad()
            rows = p.field.grad.to_numpy().astype(np.float64).reshape(p.full_shape)
            daction = rows[:, self._row(t)]
            if not p.per_batch:
                daction = np.broadcast_to(daction, (self.batch, self.n_actions)).copy()
        return dstate, daction

    def _row(self, t: int) -> int:
        c = self.controller
        return min(int(t) // c.substeps, c.steps - 1)

    def _load(self, state, action, t: int) -> None:
        w = self.window
        for name in self.state_names:
            if name not in state:
                raise DiffsimError(
                    f"missing state quantity; give {', '.join(self.state_names)}", where=f"state[{name!r}]"
                )
            field = w.field(name)
            shape = self._shapes[name]
            value = np.asarray(state[name], dtype=np.float64)
            if value.shape != shape:
                raise DiffsimError(f"shape {value.shape}, expected {shape}", where=f"state[{name!r}]")
            full = np.zeros((2, *shape), dtype=_np_dtype(field))
            full[0] = value
            field.from_numpy(full)
        self._set_action(action, t)
        self._step(0, int(t))

    def _set_action(self, action, t: int) -> None:
        c = self.controller
        if c is None:
            if action is not None and np.size(action):
                raise DiffsimError(f"{self.system.kind} has no controller: pass no action", where="action")
            return
        if action is None:
            raise DiffsimError(f"needs an action of shape ({self.batch}, {self.n_actions})", where="action")
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.batch, self.n_actions):
            raise DiffsimError(f"shape {a.shape}, expected ({self.batch}, {self.n_actions})", where="action")
        p = c.actions
        rows = p.numpy().reshape(p.full_shape).copy()
        rows[:, self._row(t)] = a if p.per_batch else a[:1]
        p.field.from_numpy(
            np.ascontiguousarray(rows.reshape(p.field.shape + _vec(p.field)), dtype=_np_dtype(p.field))
        )


def _np_dtype(field):
    return np.float64 if field.dtype == ti.f64 else np.float32


def _vec(field) -> tuple[int, ...]:
    return (field.n,) if isinstance(field, ti.MatrixField) else ()
