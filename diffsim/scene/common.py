"""What the system builders of the scene package share: the ``[sim]`` gravity check, and building a system with the
scene's controller and its per-copy parameters (``sim.per_batch``), the controller's ones included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diffsim.errors import DiffsimError
from diffsim.scene.control import build_controller
from diffsim.scene.registry import BuildContext

__all__ = ["build_with_controller", "scene_gravity"]


def scene_gravity(ctx: BuildContext, dim: int, why: str):
    """``sim.gravity`` (None: the system's default), checked to have `dim` components; `why` says where the
    dimension comes from in the error ("the body is 2D")."""
    gravity = ctx.data["sim"]["gravity"]
    if gravity is not None and len(gravity) != dim:
        raise ctx.error(("sim", "gravity"), f"must have {dim} components ({why}), got {len(gravity)}")
    return gravity


def build_with_controller(
    ctx: BuildContext,
    n_actions: int,
    make: Callable[[Any, tuple[str, ...]], Any],
    keys: dict[str, tuple] | None = None,
    list_controller_params: bool = False,
):
    """``make(controller, per_batch)``: the system, with the scene's controller for `n_actions` outputs and the
    per-copy parameter names of ``sim.per_batch`` that are not the controller's (those make the controller's
    parameters per copy, and must name parameters it has).

    A `DiffsimError` of the system about its `per_batch` argument, or about an argument named in `keys` (the error's
    `where` ends in ``": <argument>"``), is raised again at the scene key (``keys[argument]``, a key path).
    list_controller_params: a wrong controller parameter name's error lists the controller's parameters."""
    per_batch = list(ctx.data["sim"]["per_batch"])
    controller_pb = [n for n in per_batch if n.startswith("controller.")]
    controller = build_controller(ctx, n_actions, per_batch=bool(controller_pb))
    try:
        system = make(controller, tuple(n for n in per_batch if not n.startswith("controller.")))
    except DiffsimError as e:
        if e.where == "per_batch":
            raise ctx.error(("sim", "per_batch"), e.reason) from None
        for key, path in (keys or {}).items():
            if e.where and e.where.endswith(f": {key}"):
                raise ctx.error(path, e.reason) from None
        raise
    missing = [n for n in controller_pb if n not in system.params]
    if missing:
        message = f"no controller parameter named {missing[0]!r}"
        if list_controller_params:
            names = [n for n in system.params.names() if n.startswith("controller.")]
            message += f"; this controller has {', '.join(names) or 'none'}"
        raise ctx.error(("sim", "per_batch"), message)
    return system
