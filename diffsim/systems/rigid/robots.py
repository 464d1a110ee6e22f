"""Ready-made rigid-body models. Articulated robots are described in scene files (scenes/rigid_walker2d.toml,
scenes/quadruped3d.toml); the billiards table is generated here because its rack is a pattern."""

from __future__ import annotations

import math

from .model import RigidModel


def billiards(
    rows: int = 4,
    radius: float = 0.03,
    mass: float = 0.17,
    table=(1.2, 0.6),
    rack=(0.85, 0.3),
    cue=(0.25, 0.3),
    cushion: float = 0.05,
) -> RigidModel:
    """A 2D billiards table seen from above: a cue ball (body "cue", initial-state parameters `initial.cue.*`)
    and a triangular rack of rows (rows + 1) / 2 balls ("ball1", ...; 10 for 4 rows) whose apex is at `rack`
    pointing at the cue ball, inside four static cushions around a table of size `table` (m, corner at the
    origin). Balls: radius (m), mass (kg). The table's friction and gravity are the system's (`table_friction`,
    gravity zero in the plane)."""
    model = RigidModel(dim=2, source="billiards")
    model.add_body(list(cue), name="cue", mass=mass, group="cue")
    model.add_circle("cue", radius)
    gap = 2.0 * radius * 1.001  # balls almost touching
    k = 0
    for row in range(rows):
        for j in range(row + 1):
            k += 1
            x = rack[0] + row * gap * math.sqrt(3) / 2
            y = rack[1] + (j - row / 2) * gap
            model.add_body([x, y], name=f"ball{k}", mass=mass)
            model.add_circle(f"ball{k}", radius)
    w, h = table
    c = cushion
    model.add_obstacle([w / 2, -c], [w / 2 + 2 * c, c])
    model.add_obstacle([w / 2, h + c], [w / 2 + 2 * c, c])
    model.add_obstacle([-c, h / 2], [c, h / 2 + 2 * c])
    model.add_obstacle([w + c, h / 2], [c, h / 2 + 2 * c])
    return model
