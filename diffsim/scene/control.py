"""The ``[controller]`` table, shared by every system with actuators, and building the controller from it."""

from __future__ import annotations

import math

from diffsim.scene.registry import BuildContext
from diffsim.scene.schema import Field, Table, Variants

__all__ = ["CONTROLLER", "build_controller"]

_SEED = Field("int", 0, doc="Seed of the random initial weights.")

CONTROLLER = Variants(
    {
        "none": Table({}, doc="No controller; the body must have no actuated springs."),
        "open_loop": Table(
            {
                "init": Field(
                    "float", 0.0, min=-1, max=1, doc="Initial action of every actuator at every step."
                ),
            },
            doc="One free action per actuator and control step (parameter `controller.actions`, shape "
            "(control steps, actuators), bounded to [-1, 1]).",
        ),
        "periodic": Table(
            {
                "frequency": Field(
                    "float",
                    1.0,
                    unit="Hz",
                    min=0,
                    min_exclusive=True,
                    doc="Base frequency nu (parameter `controller.frequency`).",
                ),
                "harmonics": Field("int", 2, min=1, doc="Number of harmonics H."),
                "init_scale": Field("float", 0.1, min=0, doc="Standard deviation of the initial weights."),
                "seed": _SEED,
            },
            doc="A central pattern generator: act_k = tanh(bias_k + sum_h a_kh sin(2 pi h nu t) + "
            "b_kh cos(2 pi h nu t)) (parameters `controller.weights`, `controller.frequency`).",
        ),
        "mlp": Table(
            {
                "hidden": Field("int_list", [32], min=1, doc="Sizes of the hidden tanh layers."),
                "n_phases": Field(
                    "int", 5, min=0, doc="Phase inputs: sin and cos of 2 pi nu_j t, nu_j = frequency (j+1)."
                ),
                "frequency": Field(
                    "float",
                    1.0,
                    unit="Hz",
                    min=0,
                    min_exclusive=True,
                    doc="Base frequency of the phase inputs (fixed, not a parameter).",
                ),
                "init_scale": Field(
                    "float", 1.0, min=0, doc="Initial weights ~ N(0, init_scale^2 / fan_in)."
                ),
                "seed": _SEED,
            },
            doc="A tanh multilayer perceptron on the body's state relative to its centre of mass plus phase "
            "signals (parameters `controller.w0`, `controller.b0`, `controller.w1`, ...).",
        ),
    },
    tag="kind",
    default="none",
    doc="What drives the actuated springs: output k of the controller, a_k in [-1, 1], sets the rest length of "
    "the springs with `actuator = k` to L0 (1 + actuation a_k).",
    tag_doc="Controller type.",
)


def build_controller(ctx: BuildContext, n_actions: int, per_batch: bool = False):
    """The controller described by ``ctx.data["controller"]`` for `n_actions` actuators, or None for kind "none"."""
    import diffsim  # noqa: PLC0415 - keep `diffsim.scene` importable without Taichi until a build

    spec = ctx.data.get("controller") or {"kind": "none"}
    kind = spec["kind"]
    if kind == "none":
        if n_actions:
            raise ctx.error(
                ("controller", "kind"),
                f"the body has {n_actions} actuators, so it needs a controller "
                "(open_loop, periodic or mlp), got 'none'",
            )
        return None
    if n_actions == 0:
        raise ctx.error(
            ("controller", "kind"),
            f"the body has no actuated springs (actuator >= 0), so a {kind!r} "
            "controller has nothing to drive; use kind = 'none'",
        )
    sim = ctx.data["sim"]
    if kind == "open_loop":
        control_steps = math.ceil(ctx.steps / sim["substeps"])
        return diffsim.OpenLoop(n_actions, control_steps, init=spec["init"], per_batch=per_batch)
    if kind == "periodic":
        return diffsim.Periodic(
            n_actions,
            frequency=spec["frequency"],
            harmonics=spec["harmonics"],
            init_scale=spec["init_scale"],
            seed=spec["seed"],
            per_batch=per_batch,
        )
    if not spec["hidden"]:
        raise ctx.error(("controller", "hidden"), "needs at least one hidden layer size, got []")
    return diffsim.MLP(
        n_actions,
        hidden=tuple(spec["hidden"]),
        n_phases=spec["n_phases"],
        frequency=spec["frequency"],
        seed=spec["seed"],
        init_scale=spec["init_scale"],
        per_batch=per_batch,
    )
