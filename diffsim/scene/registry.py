"""The system kinds a scene file can name: each simulator registers its scene tables and a builder.

    register_system("springs", SPRINGS_TABLES, build_springs, drawing=springs_drawing, doc="...")

`schema_table` is a `Table` whose fields are the top-level tables the system adds to a scene (for the mass-spring
system: ``body``, ``particles``, ``springs``, ``ground``, ``controller``); the common tables (``scene``, ``sim``,
``backend``, ``params``, ``task``) come from `diffsim.scene.scene`. `build_fn(ctx)` receives a `BuildContext` (the
validated scene and helpers that name the file and key in errors) and returns a `diffsim.engine.system.System`.
`drawing(system)` says how to draw the system's particles (edges, faces, ground), for `diffsim run --render` and
`diffsim render`.

A new simulator adds one module that defines its tables and builder and calls `register_system` at import, and
adds that module to `BUILTIN_MODULES` so scene files find it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffsim.errors import DiffsimError
from diffsim.scene.schema import Table, format_key_path

__all__ = [
    "BuildContext",
    "Drawing",
    "SystemKind",
    "register_system",
    "system_kind",
    "system_kinds",
    "unregister_system",
]

#: modules that register the built-in system kinds, imported on first use
BUILTIN_MODULES = (
    "diffsim.systems.springs.scene",
    "diffsim.systems.cloth.scene",
    "diffsim.systems.mpm.scene",
    "diffsim.systems.smoke.scene",
    "diffsim.systems.rigid.scene",
)


@dataclass
class Drawing:
    """What to draw for a system, besides its particle positions.

    quantity: the state field holding positions (``x``). dim: 2 or 3. up_axis: index of the vertical axis of the
    system's coordinates (the last one for the mass-spring system). edges: (m, 2) index pairs drawn as lines;
    faces: (k, 3) triangles; ground: height of the ground plane (m) or None; actuated: indices of the edges that
    are actuated, and actuator: for each of those, the index of its action (column of ``act``); fixed: indices of
    the particles that never move (pinned), drawn darker. grid: the quantity is a cell field ``(frames, *cells,
    components)`` (smoke), drawn as an image of its first component (in 3D summed along the horizontal axis that is
    not the first), instead of particle positions.
    """

    quantity: str = "x"
    dim: int = 2
    up_axis: int = -1
    edges: np.ndarray | None = None
    faces: np.ndarray | None = None
    ground: float | None = None
    actuated: np.ndarray | None = None
    actuator: np.ndarray | None = None
    fixed: np.ndarray | None = None
    grid: bool = False


@dataclass
class BuildContext:
    """Passed to a system's builder: the validated scene (`data`), the file name for errors, the horizon, and the
    parameters that need gradients."""

    data: dict
    source: str
    steps: int
    extras: dict = field(default_factory=dict)
    #: names of the parameters that get gradients (None: all); builders pass it to the system
    requires_grad: list[str] | None = None

    def where(self, *parts: str | int) -> str:
        """``scenes/x.toml: springs[3].stiffness`` for parts ``("springs", 3, "stiffness")``."""
        path = format_key_path(list(parts))
        return f"{self.source}: {path}" if path else self.source

    def error(self, parts: tuple | list, message: str) -> DiffsimError:
        return DiffsimError(message, where=self.where(*parts))


@dataclass(frozen=True)
class SystemKind:
    kind: str
    schema: Table
    build: Callable[[BuildContext], Any]
    drawing: Callable[[Any], Drawing] | None = None
    doc: str = ""
    #: the loss kind `--target FILE` makes: one that compares the quantity `diffsim run` writes for the system
    target_loss: str = "trajectory"
    #: size(data) -> (values per copy per frame, scene key, description): a lower bound of what one frame of the
    #: system's time-indexed fields holds, from the validated scene, to refuse a rollout that cannot fit before
    #: anything is allocated (None: the builder checks itself)
    size: Callable[[dict], tuple[int, str, str]] | None = None


_KINDS: dict[str, SystemKind] = {}
_loaded = False


def register_system(
    kind: str,
    schema_table: Table,
    build_fn: Callable[[BuildContext], Any],
    *,
    drawing: Callable[[Any], Drawing] | None = None,
    doc: str = "",
    replace: bool = False,
    target_loss: str = "trajectory",
    size: Callable[[dict], tuple[int, str, str]] | None = None,
) -> SystemKind:
    """Make `kind` available to scene files (``[scene] system = "<kind>"``). Returns the registration.

    target_loss: the ``[task.loss]`` kind that ``--target FILE`` selects, one that compares the quantity
    `diffsim run` writes for the system with the file (``trajectory``: point positions; smoke: ``density``).
    size: see `SystemKind.size`."""
    if not isinstance(schema_table, Table):
        raise TypeError(f"schema_table must be a Table, got {type(schema_table).__name__}")
    if kind in _KINDS and not replace:
        raise ValueError(f"system kind {kind!r} is already registered (pass replace=True to override)")
    from diffsim.scene.scene import COMMON_TABLES  # noqa: PLC0415 - scene imports this module

    clash = set(schema_table.fields) & set(COMMON_TABLES)
    if clash:
        raise ValueError(f"system kind {kind!r}: tables {sorted(clash)} are common to every scene")
    entry = SystemKind(kind, schema_table, build_fn, drawing, doc, target_loss, size)
    _KINDS[kind] = entry
    return entry


def unregister_system(kind: str) -> None:
    """Forget a registered kind (for tests and plugins that replace one)."""
    _KINDS.pop(kind, None)


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def system_kinds() -> list[str]:
    """The registered kinds, built-in ones first."""
    _load_builtins()
    return list(_KINDS)


def system_kind(kind: str) -> SystemKind:
    _load_builtins()
    try:
        return _KINDS[kind]
    except KeyError:
        raise DiffsimError(f"unknown system kind {kind!r}; registered: {', '.join(_KINDS)}") from None
