"""Scene files: TOML descriptions of a simulation and its task, validated strictly, built into a `Simulation`.

    from diffsim.scene import load_scene
    scene = load_scene("scenes/springs_sysid.toml", overrides=["sim.steps=100"])
    scene.init_backend()              # start Taichi as the scene's [backend] table asks
    system, sim, task = scene.build()
    result = diffsim.fit(sim, **task.fit_kwargs())

Simulators register the tables they add with `register_system` (see `diffsim.scene.registry`); docs/scenes.md is
generated from the registered schemas by `reference_markdown`.
"""

from diffsim.scene.registry import (
    BuildContext,
    Drawing,
    SystemKind,
    register_system,
    system_kind,
    system_kinds,
)
from diffsim.scene.scene import COMMON_TABLES, Scene, find_scene, load_scene, scene_schema, scenes_dir
from diffsim.scene.task import Task

__all__ = [
    "BuildContext",
    "COMMON_TABLES",
    "Drawing",
    "Scene",
    "SystemKind",
    "Task",
    "find_scene",
    "load_scene",
    "reference_markdown",
    "register_system",
    "scene_schema",
    "scenes_dir",
    "system_kind",
    "system_kinds",
]


def reference_markdown() -> str:
    """docs/scenes.md: the scene file reference, generated from the registered schemas."""
    from diffsim.scene.reference import reference_markdown as _ref  # noqa: PLC0415

    return _ref()
