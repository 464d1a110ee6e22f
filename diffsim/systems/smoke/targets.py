"""Procedural initial fields and target images for the smoke tasks (generated here, never downloaded).

    python -m diffsim.systems.smoke.targets            # rewrites scenes/smoke_target2d_target.npy (128 x 128)

Images are indexed like the grid, ``[x, y]`` with y up (pass ``image.T`` to `diffsim.viz.grid_image`). Values are
in [0, 1], anti-aliased by supersampling so that the loss landscape has no pixel-sized steps.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from ...errors import DiffsimError

SHAPES = ("yinyang", "taijitu", "ring", "two_blobs")


def _supersample(inside, resolution, samples: int = 4) -> np.ndarray:
    """Fraction of each cell of [0, 1]^2 where inside(x, y) holds."""
    nx, ny = resolution
    offs = (np.arange(samples) + 0.5) / samples
    total = np.zeros((nx, ny))
    for ox in offs:
        for oy in offs:
            x = (np.arange(nx)[:, None] + ox) / nx
            y = (np.arange(ny)[None, :] + oy) / ny
            total += inside(np.broadcast_to(x, (nx, ny)), np.broadcast_to(y, (nx, ny)))
    return total / samples**2


def _yinyang(x, y):
    """The taijitu: a disc split by an S-curve, two small dots of the opposite colour; the dark half is 1."""
    cx, cy, r = 0.5, 0.5, 0.36
    dx, dy = x - cx, y - cy
    disc = dx * dx + dy * dy <= r * r
    upper = (dx * dx + (dy - r / 2) ** 2) <= (r / 2) ** 2
    lower = (dx * dx + (dy + r / 2) ** 2) <= (r / 2) ** 2
    dark = disc & (((dx < 0) & ~upper) | lower)
    dot = r / 7
    dark_dot = (dx * dx + (dy - r / 2) ** 2) <= dot * dot
    light_dot = (dx * dx + (dy + r / 2) ** 2) <= dot * dot
    return (dark | dark_dot) & ~light_dot


def _taijitu(x, y):
    """The whole square split by an S-curve into a dark (left, 1) and a light half, each with a dot of the other
    colour: half of the area is dark, like a checkerboard, so incompressible transport can reach it."""
    s = 0.5 + 0.18 * np.sin(2 * np.pi * (y - 0.25))
    dark = x < s
    d1 = (x - 0.3) ** 2 + (y - 0.7) ** 2 <= 0.07**2
    d2 = (x - 0.7) ** 2 + (y - 0.3) ** 2 <= 0.07**2
    return (dark & ~d1) | d2


def _ring(x, y):
    d2 = (x - 0.5) ** 2 + (y - 0.5) ** 2
    return (d2 <= 0.32**2) & (d2 >= 0.2**2)


def _two_blobs(x, y):
    return ((x - 0.3) ** 2 + (y - 0.5) ** 2 <= 0.15**2) | ((x - 0.7) ** 2 + (y - 0.5) ** 2 <= 0.15**2)


def target_image(name: str, resolution=(128, 128)) -> np.ndarray:
    """A target density image of the given 2D resolution (values in [0, 1])."""
    shapes = {"yinyang": _yinyang, "taijitu": _taijitu, "ring": _ring, "two_blobs": _two_blobs}
    if name not in shapes:
        raise DiffsimError(f"unknown target {name!r}; choose {', '.join(SHAPES)}", where="target")
    res = tuple(int(k) for k in resolution)
    if len(res) != 2 or min(res) < 2:
        raise DiffsimError(
            f"a target image is 2D with at least 2 cells per axis, got {list(res)}", where="target"
        )
    return _supersample(shapes[name], res)


def checkerboard(resolution, cells: int = 16, value: float = 1.0) -> np.ndarray:
    """The DiffTaichi smoke task's initial density: squares of `cells` x `cells` cells, alternately value and 0."""
    idx = np.meshgrid(*[np.arange(k) // int(cells) for k in resolution], indexing="ij")
    return value * (np.sum(idx, axis=0) % 2).astype(np.float64)


def shipped_target_path() -> str:
    """scenes/smoke_target2d_target.npy of the source checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "..", "scenes", "smoke_target2d_target.npy"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="write the smoke_target2d target image")
    parser.add_argument("--shape", default="taijitu", choices=SHAPES)
    parser.add_argument("--resolution", type=int, nargs=2, default=(128, 128))
    parser.add_argument("--out", default=shipped_target_path())
    args = parser.parse_args(argv)
    image = target_image(args.shape, args.resolution)
    from diffsim.fileio import atomic_path  # noqa: PLC0415

    with atomic_path(args.out) as tmp:
        np.save(tmp, image.astype(np.float32))
    print(f"wrote {args.out} ({args.shape}, {image.shape[0]}x{image.shape[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
