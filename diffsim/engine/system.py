"""The interface every simulator implements; the engine knows nothing else about physics.

A system owns its model (topology, constants), its parameters and its kernels. It declares the time-indexed
quantities it needs (`field_specs`); the `Simulation` allocates them for a window of frames and drives the system:

    system.initialize(s)          write frame 0 from the initial-state parameters
    system.step(s, f, fg)         read frame f, write frame f + 1; fg is the global step index (controls, phase)

and, in reverse, `initialize_grad` and the adjoint of the step, the Taichi-generated adjoints of the same kernels;
`step_launchers(s)` hands the engine both launches of a step. Every kernel follows docs/developing.md's Taichi
rules 1 and 2: values are never overwritten after being read, stages that depend on each other are separate
top-level loops of one kernel (Taichi reverses top-level loops correctly, but not loops nested in a loop).
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import numpy as np

from .. import runtime
from ..errors import DiffsimError
from .launch import FastKernel
from .params import Parameter, ParameterSet
from .state import FieldSpec, State
from .stepper import StepKernels


def check_step(dt, substeps, source: str) -> None:
    """Refuse a time step `dt` (s) that is not a finite number > 0, or fewer than one substep; `source` names the
    model (its file) in the error."""
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise DiffsimError(f"must be > 0, got {dt}", where=f"{source}: dt")
    if int(substeps) < 1:
        raise DiffsimError(f"must be >= 1, got {substeps}", where=f"{source}: substeps")


@dataclass(frozen=True)
class ParamSpec:
    """One row of a system's parameter table: the dotted `name` users fit and set, the system attribute `attr` that
    holds the `Parameter` (the field the kernels read), its unit and one-line doc, an optional `transform` between
    the optimizer's coordinate and the value (see `engine/params.py`) and `bounds`, and `vector`: the last axis of
    the shape is a Taichi vector. The shape and the value depend on the model and come with `System.build_params`."""

    name: str
    attr: str | None
    unit: str
    transform: str | None = None
    bounds: tuple[float | None, float | None] | None = None
    doc: str = ""
    vector: bool = False


def default_gravity(gravity, dim: int, source: str) -> np.ndarray:
    """`gravity` (m/s^2) as a `dim`-vector: -9.81 along the last (up) axis when None; refuses another length and
    non-finite components."""
    if gravity is None:
        g = np.zeros(dim)
        g[-1] = -9.81
        return g
    g = np.asarray(gravity, dtype=np.float64).reshape(-1)
    if g.shape != (dim,) or not np.all(np.isfinite(g)):
        raise DiffsimError(f"must have {dim} finite components, got {g.tolist()}", where=f"{source}: gravity")
    return g


def check_controller_outputs(
    controller, n_actuators: int, source: str, actuated: str = "actuators", owner: str = "model"
) -> None:
    """Refuse actuators without a controller, and a controller whose output count is not `n_actuators`; `actuated`
    names what is actuated (springs, motors) and `owner` the thing that has them, in the messages."""
    if n_actuators and controller is None:
        raise DiffsimError(f"{n_actuators} {actuated} are actuated but no controller is given", where=source)
    if controller is not None and controller.n_actions != n_actuators:
        raise DiffsimError(
            f"controller has {controller.n_actions} outputs, the {owner} has {n_actuators} actuators",
            where=f"{source}: controller",
        )


class System(StepKernels, abc.ABC):
    """Base class. Subclasses set `self.params`, `self.dt`, `self.batch`, and define the kernels.

    Every system implements the protocol below by name (the abstract methods): the engine and the tools call these
    and nothing else, never probing a system for optional attributes."""

    #: name of the system kind, for scenes and messages
    kind = "system"

    def __init__(self, batch: int = 1, requires_grad=None):
        """requires_grad: names of the parameters that get gradients (None: all). The adjoint kernels then skip
        the others' arithmetic: fitting one parameter of many makes backward() cheaper (cloth_throw: about 5 %).
        Reading the gradient of a parameter left out raises."""
        runtime.ensure_init()
        if int(batch) < 1:
            raise DiffsimError(f"must be >= 1, got {batch}", where="batch")
        self.batch = int(batch)
        self.params = ParameterSet(requires_grad=requires_grad)
        self._generation = runtime.generation()

    # -- to implement -------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def field_specs(self) -> list[FieldSpec]:
        """The time-indexed quantities the `Simulation` allocates (see docs/design.md, "The engine contract")."""

    @abc.abstractmethod
    def initialize(self, s: State) -> None:
        """Write frame 0 of `s` from the initial-state parameters."""

    @abc.abstractmethod
    def initialize_grad(self, s: State) -> None:
        """The adjoint of `initialize`."""

    @abc.abstractmethod
    def masses(self) -> np.ndarray:
        """The masses (kg; per metre of depth in 2D) of the system's elements, (copies, elements), from the current
        parameters; a system without point masses (an Eulerian grid) raises DiffsimError saying so."""

    @abc.abstractmethod
    def stable_dt(self) -> tuple[float, str]:
        """(the largest stable time step in s, estimated from the current parameters, or inf; what limits it, in
        words, for warnings and error messages)."""

    @abc.abstractmethod
    def instability_hint(self) -> str:
        """One line for the error raised when a rollout goes non-finite: the dt in use and the bound it breaks."""

    def step(self, s: State, f: int, fg: int) -> None:
        """One step: read frame f of `s`, write frame f + 1. The default launches the kernel `self._step`."""
        self._step(s, f, fg)

    def step_launchers(self, s: State):
        """(forward, adjoint) callables taking (f, fg) for the step loop; fast launches of `self._step`."""
        return FastKernel(self._step, s), FastKernel(self._step, s, grad=True)

    def multi_step_launcher(self, s: State):
        """A callable ``(f, fg, n)`` that runs n steps from window frame f (global step fg) in one kernel launch, or
        None. The forward pass then launches once per stretch of steps between frames with loss terms instead of
        once per step: a launch costs about 5 us of Python and pybind, as much as a small system's whole step. The
        adjoint still runs one step at a time (`step_launchers`).

        Provided on the CPU for systems that write their step as ``_step_body(s, f, fg)`` (a ``ti.func`` whose f
        and fg are templates; `_step` and `_steps` below launch it) and whose loops all run serially
        (`serial_steps()`): nested in the loop over steps, they could not run in parallel."""
        if not hasattr(self, "_step_body") or runtime.current()["arch"] != "cpu" or not self.serial_steps():
            return None
        return FastKernel(self._steps, s, types="iii")

    def serial_steps(self) -> bool:
        """Whether every loop of the step runs serially (see `multi_step_launcher`)."""
        return False

    # -- shared helpers -----------------------------------------------------------------------------------------
    def add_param(self, name: str, shape, value, **kw) -> Parameter:
        return self.params.add(
            Parameter(name, shape, value, batch=self.batch, requires_grad=self.params.wants_grad(name), **kw)
        )

    @staticmethod
    def check_per_batch(table: tuple[ParamSpec, ...], per_batch) -> set[str]:
        """The names in `per_batch` (parameters with one value per copy), checked against the system's table."""
        pb = set(per_batch)
        known = [spec.name for spec in table]
        unknown = pb - set(known)
        if unknown:
            raise DiffsimError(
                f"unknown parameter names {sorted(unknown)}; known: {', '.join(sorted(known))}",
                where="per_batch",
            )
        return pb

    def build_params(self, table: tuple[ParamSpec, ...], values: dict, per_batch) -> dict:
        """Add the parameters of `table`, in its order, as attributes (where the row names one) and return them by
        name: `values[name]` is (shape of one copy, initial value) or (shape, value, doc) where the doc depends on
        the model; a name missing from `values` is not built (a feature the model does not use)."""
        pb = self.check_per_batch(table, per_batch)
        built = {}
        for spec in table:
            if spec.name not in values:
                continue
            shape, value, *doc = values[spec.name]
            kw = {"vector_dim": shape[-1]} if spec.vector else {}
            if spec.transform is not None:
                kw["transform"] = spec.transform
            if spec.bounds is not None:
                kw["bounds"] = spec.bounds
            if doc or spec.doc:
                kw["doc"] = doc[0] if doc else spec.doc
            param = self.add_param(spec.name, shape, value, per_batch=spec.name in pb, unit=spec.unit, **kw)
            if spec.attr is not None:
                setattr(self, spec.attr, param)
            built[spec.name] = param
        return built

    def _attach_controller(self, controller, n_obs: int) -> None:
        """Drive the system with `controller` (None: no control), whose outputs the caller has checked; it sees
        `n_obs` observations when it needs them. Sets `controller`, `has_controller` and `has_observation`; the
        step kernel runs the controller's stages with `controller.run_stages`. Needs `dt`, `substeps` and
        `serial`."""
        self.controller = controller
        self.has_controller = controller is not None
        self.has_observation = bool(controller is not None and controller.needs_observation)
        if controller is not None:
            controller.attach(
                self,
                self.params,
                n_obs=n_obs if controller.needs_observation else 0,
                dt=self.dt,
                substeps=self.substeps,
                serial=self.serial,
            )

    def check_alive(self) -> None:
        if self._generation != runtime.generation():
            raise DiffsimError(
                "this system was built before diffsim.init() was called again; build it again after init()"
            )

    def energy(self, traj: dict[str, np.ndarray]) -> np.ndarray | None:
        """Total energy per frame from a trajectory, if the system defines one."""
        return None
