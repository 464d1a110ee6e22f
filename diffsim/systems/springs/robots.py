"""Ready-made mass-spring bodies."""

from __future__ import annotations

from .model import SpringModel


def grid_body(
    cells: list[tuple[int, int]],
    cell: float = 0.1,
    origin=(0.0, 0.0),
    mass: float = 0.1,
    stiffness: float = 1000.0,
    damping: float = 2.0,
    actuated: dict | None = None,
    actuation: float = 0.3,
) -> SpringModel:
    """A 2D body made of square cells (i, j) on a grid, with edge and diagonal springs, each spring once.

    actuated: maps a cell's vertical edge ``(i, j, "left" | "right")`` to an actuator index.
    """
    model = SpringModel(dim=2)
    index: dict[tuple[int, int], int] = {}

    def point(i, j):
        if (i, j) not in index:
            index[(i, j)] = model.add_particle([origin[0] + i * cell, origin[1] + j * cell], mass=mass)
        return index[(i, j)]

    for i, j in cells:
        for di, dj in ((0, 0), (1, 0), (0, 1), (1, 1)):
            point(i + di, j + dj)
    seen = set()
    actuated = actuated or {}

    def spring(p, q, actuator=-1):
        key = (min(p, q), max(p, q))
        if key in seen:
            return
        seen.add(key)
        model.add_spring(
            p,
            q,
            stiffness=stiffness,
            damping=damping,
            actuator=actuator,
            actuation=actuation if actuator >= 0 else 0.0,
        )

    for i, j in cells:
        a, b, c, d = point(i, j), point(i + 1, j), point(i, j + 1), point(i + 1, j + 1)
        spring(a, c, actuated.get((i, j, "left"), -1))
        spring(b, d, actuated.get((i, j, "right"), -1))
        spring(a, b)
        spring(c, d)
        spring(a, d)
        spring(b, c)
    return model


def walker2d(cell: float = 0.1, ground_clearance: float = 0.0) -> SpringModel:
    """The classic two-legged mass-spring walker: a 4x1-cell body on two 2-cell legs (18 masses, 41 springs),
    with the 8 vertical leg springs actuated (one actuator each)."""
    body = [(i, 2) for i in range(4)]
    legs = [(0, 0), (0, 1), (3, 0), (3, 1)]
    actuated = {}
    for n, (i, j) in enumerate(legs):
        actuated[(i, j, "left")] = 2 * n
        actuated[(i, j, "right")] = 2 * n + 1
    model = grid_body(body + legs, cell=cell, origin=(0.1, ground_clearance), actuated=actuated)
    model.source = "walker2d"
    return model
