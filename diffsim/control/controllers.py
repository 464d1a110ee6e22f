"""Controllers: they write the action vector ``act[f, b, :]`` (values in about [-1, 1]) at every step.

A controller's work happens inside the system's step kernel (fused: docs/design.md, "Launches and speed"). It is a list of stages;
stage k processes `stage_sizes[k]` items per batch copy, and the system runs each stage as its own top-level loop
(`Controller.run_stages`, called at the top level of the step kernel)::

    for k in ti.static(range(len(ctrl.stage_sizes))):
        for b, j in ti.ndrange(batch, ctrl.stage_sizes[k]):
            ctrl.run_stage(k, s, f, fg, b, j)

Separate top-level loops are what Taichi's reverse mode orders correctly (not loops nested in a loop), and the
kernel's arguments may only be used inside loops (a statement outside every loop makes the kernel
non-differentiable). Intermediate values live in time-indexed scratch fields the controller declares
(`field_specs`); an accumulator is set by a store in an earlier stage, then only added to.

- `OpenLoop`: one action vector per control step (parameter ``controller.actions``, shape (steps, n_actions)).
- `Periodic`: a central pattern generator, a Fourier series in time squashed by tanh:
  act_k(t) = tanh(bias_k + sum_h a_kh sin(2 pi h nu t) + b_kh cos(2 pi h nu t)).
- `MLP`: tanh layers on an observation the system provides (positions and velocities relative to the centre of
  mass) plus phase signals sin/cos(2 pi nu_j t); output layer tanh.

`substeps`: actions are held for `substeps` integration steps (control step = fg // substeps).
"""

import math

import numpy as np
import taichi as ti

from ..engine import tmath
from ..engine.params import ParameterSet
from ..engine.state import FieldSpec
from ..errors import DiffsimError


class Controller:
    kind = "controller"
    needs_observation = False

    def __init__(self, n_actions: int):
        if int(n_actions) < 1:
            raise DiffsimError(f"needs at least one action, got {n_actions}", where="controller")
        self.n_actions = int(n_actions)
        self.system = None

    def attach(
        self, system, params: ParameterSet, n_obs: int, dt: float, substeps: int, serial: bool
    ) -> None:
        """Called once by the system: create the parameters (named ``controller.*``) in `params`."""
        self.system = system
        self.batch = system.batch
        self.dt = float(dt)
        self.substeps = int(substeps)
        self.n_obs = int(n_obs)
        self.serial = serial
        self._make_params(params)

    def _make_params(self, params: ParameterSet) -> None:
        raise NotImplementedError

    def field_specs(self) -> list[FieldSpec]:
        return [FieldSpec("act", (self.n_actions,), kind="scratch")]

    @ti.func
    def run_stages(self, s: ti.template(), f: ti.template(), fg: ti.template(), serial: ti.template()):
        """The actions act[f]: every stage as its own top-level loop over (copy, item), serialized when `serial`.
        Call it at the top level of a step kernel with the kernel's arguments: they are templates here, passed by
        reference, because a copied kernel argument would be a statement outside every loop, which makes the
        kernel non-differentiable."""
        for k in ti.static(range(len(self.stage_sizes))):
            ti.loop_config(serialize=serial)
            for b, j in ti.ndrange(self.batch, self.stage_sizes[k]):
                self.run_stage(k, s, f, fg, b, j)


@ti.data_oriented
class OpenLoop(Controller):
    """Per-step actions, optimized directly. `steps` is the number of control steps (frames // substeps)."""

    kind = "open_loop"

    def __init__(
        self,
        n_actions: int,
        steps: int,
        init: float | np.ndarray = 0.0,
        per_batch: bool = False,
        bounds=(-1.0, 1.0),
    ):
        super().__init__(n_actions)
        self.steps = int(steps)
        self.init = init
        self.per_batch = per_batch
        self.bounds = bounds

    def _make_params(self, params):
        from ..engine.params import Parameter

        self.actions = params.add(
            Parameter(
                "controller.actions",
                (self.steps, self.n_actions),
                self.init,
                batch=self.batch,
                per_batch=self.per_batch,
                bounds=self.bounds,
                doc="actions per control step",
                requires_grad=params.wants_grad("controller.actions"),
            )
        )

    @property
    def stage_sizes(self):
        return [self.n_actions]

    @ti.func
    def run_stage(self, stage: ti.template(), s: ti.template(), f, fg, b, k):
        t = ti.min(fg // ti.static(self.substeps), ti.static(self.steps - 1))
        s.act[f, b, k] = self.actions.field[self.actions.bi(b), t, k]


@ti.data_oriented
class Periodic(Controller):
    """act_k = tanh(bias_k + sum_{h=1..H} a_kh sin(2 pi h nu t) + b_kh cos(2 pi h nu t)); nu in Hz."""

    kind = "periodic"

    def __init__(
        self,
        n_actions: int,
        frequency: float = 1.0,
        harmonics: int = 2,
        init_scale: float = 0.1,
        seed: int = 0,
        per_batch: bool = False,
    ):
        super().__init__(n_actions)
        if frequency <= 0:
            raise DiffsimError(f"frequency must be > 0, got {frequency}", where="controller.frequency")
        self.frequency0 = float(frequency)
        self.harmonics = int(harmonics)
        self.init_scale = float(init_scale)
        self.seed = seed
        self.per_batch = per_batch

    def _make_params(self, params):
        from ..engine.params import Parameter

        rng = np.random.default_rng(self.seed)
        w = rng.normal(0.0, self.init_scale, size=(self.n_actions, 2 * self.harmonics + 1))
        self.weights = params.add(
            Parameter(
                "controller.weights",
                w.shape,
                w,
                batch=self.batch,
                per_batch=self.per_batch,
                doc="[bias, sin_1, cos_1, sin_2, cos_2, ...] per action",
                requires_grad=params.wants_grad("controller.weights"),
            )
        )
        self.frequency = params.add(
            Parameter(
                "controller.frequency",
                (),
                self.frequency0,
                batch=self.batch,
                per_batch=self.per_batch,
                transform="log",
                unit="Hz",
                requires_grad=params.wants_grad("controller.frequency"),
            )
        )

    @property
    def stage_sizes(self):
        return [self.n_actions]

    @ti.func
    def run_stage(self, stage: ti.template(), s: ti.template(), f, fg, b, k):
        t = (fg // ti.static(self.substeps)) * ti.static(self.dt * self.substeps)
        wb = self.weights.bi(b)
        phase = 2.0 * math.pi * self.frequency.field[self.frequency.bi(b)] * t
        z = self.weights.field[wb, k, 0]
        for h in ti.static(range(self.harmonics)):
            z += self.weights.field[wb, k, 1 + 2 * h] * tmath.sin((h + 1) * phase)
            z += self.weights.field[wb, k, 2 + 2 * h] * tmath.cos((h + 1) * phase)
        s.act[f, b, k] = tmath.tanh(z)


@ti.data_oriented
class MLP(Controller):
    """Tanh multilayer perceptron. Input: the system's observation (``obs[f, b, :]``) and 2 * n_phases phase
    signals sin/cos(2 pi nu_j t) with nu_j = frequency * (j + 1). Output: tanh, one value per action."""

    kind = "mlp"
    needs_observation = True

    def __init__(
        self,
        n_actions: int,
        hidden=(32,),
        n_phases: int = 5,
        frequency: float = 1.0,
        seed: int = 0,
        init_scale: float = 1.0,
        per_batch: bool = False,
    ):
        super().__init__(n_actions)
        self.hidden = tuple(int(h) for h in hidden)
        if not self.hidden or min(self.hidden) < 1:
            raise DiffsimError(
                f"hidden layer sizes must be >= 1, got {list(hidden)}", where="controller.hidden"
            )
        self.n_phases = int(n_phases)
        self.frequency0 = float(frequency)
        self.seed = seed
        self.init_scale = float(init_scale)
        self.per_batch = per_batch

    def _make_params(self, params):
        from ..engine.params import Parameter

        rng = np.random.default_rng(self.seed)
        self.n_in = self.n_obs + 2 * self.n_phases
        sizes = (self.n_in, *self.hidden, self.n_actions)
        self.layers = []
        for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            w = rng.normal(0.0, self.init_scale / math.sqrt(n_in), size=(n_out, n_in))
            W = params.add(
                Parameter(
                    f"controller.w{layer}",
                    w.shape,
                    w,
                    batch=self.batch,
                    per_batch=self.per_batch,
                    requires_grad=params.wants_grad(f"controller.w{layer}"),
                )
            )
            bias = params.add(
                Parameter(
                    f"controller.b{layer}",
                    (n_out,),
                    0.0,
                    batch=self.batch,
                    per_batch=self.per_batch,
                    requires_grad=params.wants_grad(f"controller.b{layer}"),
                )
            )
            self.layers.append((W, bias))
        # Taichi's ti.static accepts fields, not Parameter objects: keep the fields and batch strides in lists.
        self._w = [W.field for W, _ in self.layers]
        self._bias = [bias.field for _, bias in self.layers]
        self._bstride = 1 if self.per_batch else 0
        # each layer reads its input field and writes its output field; layer 0 reads mlp_in (observation + phases)
        self._in_names = ["mlp_in"] + [f"mlp_h{layer}" for layer in range(len(self.layers) - 1)]
        self._out_names = self._in_names[1:] + ["act"]
        self._pre_names = [f"mlp_pre{layer}" for layer in range(len(self.layers))]

    def field_specs(self):
        specs = super().field_specs() + [FieldSpec("mlp_in", (self.n_in,), kind="scratch")]
        specs += [FieldSpec(f"mlp_h{layer}", (n,), kind="scratch") for layer, n in enumerate(self.hidden)]
        specs += [
            FieldSpec(f"mlp_pre{layer}", (W.shape[0],), kind="scratch")
            for layer, (W, _) in enumerate(self.layers)
        ]
        return specs

    @ti.func
    def _input(self, s: ti.template(), f, b, k, t):
        """Input k of the first layer: an observation or a phase signal."""
        v = 0.0
        if k < ti.static(self.n_obs):
            v = s.obs[f, b, k]
        else:
            j = k - ti.static(self.n_obs)
            nu = ti.static(self.frequency0) * (j // 2 + 1)
            arg = 2.0 * math.pi * nu * t
            v = tmath.sin(arg) if j % 2 == 0 else tmath.cos(arg)
        return v

    @property
    def stage_sizes(self):
        """Stage 0 gathers the inputs (n_in items); then per layer: pre-activation = bias, += W x, tanh."""
        sizes = [self.n_in]
        for W, _ in self.layers:
            sizes += [W.shape[0]] * 3
        return sizes

    @ti.func
    def run_stage(self, stage: ti.template(), s: ti.template(), f, fg, b, j):
        if ti.static(stage == 0):
            t = (fg // ti.static(self.substeps)) * ti.static(self.dt * self.substeps)
            s.mlp_in[f, b, j] = self._input(s, f, b, j, t)
        else:
            layer = ti.static((stage - 1) // 3)
            part = ti.static((stage - 1) % 3)
            W = ti.static(self._w[layer])
            pre = ti.static(getattr(s, self._pre_names[layer]))
            wb = b * ti.static(self._bstride)
            if ti.static(part == 0):
                pre[f, b, j] = self._bias[layer][wb, j]
            elif ti.static(part == 1):
                # Accumulate into the global pre-activation, not a local: no loop-carried variable, so the
                # reverse pass needs no autodiff stack (3x cheaper backward for the walker's MLP).
                x = ti.static(getattr(s, self._in_names[layer]))
                for k in range(ti.static(W.shape[2])):
                    pre[f, b, j] += W[wb, j, k] * x[f, b, k]
            else:
                out = ti.static(getattr(s, self._out_names[layer]))
                out[f, b, j] = tmath.tanh(pre[f, b, j])
