"""Sweep designs: the values each trial of a sweep runs with.

A design is a list of `{name: value}` dicts, one per trial, where a name is anything ``--set`` takes: a scene key
(``sim.steps``, ``ground.stiffness``) or a parameter's initial value (``ground.friction``, ``bodies.mass``).

- grid: the product of evenly spaced values, ``NAME=LO:HI:N`` each (the last name varies fastest).
- random: N points in given ranges (``NAME=LO:HI``), by default a scrambled Sobol sequence (low discrepancy: every
  projection is evenly covered), else a Latin hypercube or plain uniform draws (scipy.stats.qmc), seeded.
- starts: N starting points of a fit: the scene's own values first, then N - 1 points drawn as `random` does.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DiffsimError

DESIGNS = ("sobol", "lhs", "uniform")


def _number(text: str, spec: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DiffsimError(f"{text!r} is not a number in {spec!r}", where=where) from None
    if not math.isfinite(value):
        raise DiffsimError(f"{text!r} is not finite in {spec!r}", where=where)
    return value


def _split(spec: str, where: str) -> tuple[str, list[str]]:
    if "=" not in spec:
        raise DiffsimError(f"malformed {spec!r} (expected NAME=LO:HI...)", where=where)
    name, rest = spec.split("=", 1)
    name = name.strip()
    if not name:
        raise DiffsimError(f"malformed {spec!r}: empty NAME", where=where)
    return name, rest.split(":")


def parse_grid(spec: str, where: str = "--grid") -> tuple[str, list[float]]:
    """``NAME=LO:HI:N`` -> (name, N evenly spaced values from LO to HI, both included)."""
    name, parts = _split(spec, where)
    if len(parts) != 3:
        raise DiffsimError(f"malformed {spec!r} (expected NAME=LO:HI:N)", where=where)
    lo, hi = (_number(p, spec, where) for p in parts[:2])
    try:
        n = int(parts[2])
    except ValueError:
        raise DiffsimError(f"N must be an integer in {spec!r}", where=where) from None
    if n < 1:
        raise DiffsimError(f"N must be >= 1 in {spec!r}", where=where)
    if n > 1 and not lo < hi:
        raise DiffsimError(f"LO must be below HI in {spec!r}", where=where)
    return name, [lo] if n == 1 else np.linspace(lo, hi, n).tolist()


def parse_range(spec: str, where: str = "--range") -> tuple[str, tuple[float, float]]:
    """``NAME=LO:HI`` -> (name, (lo, hi))."""
    name, parts = _split(spec, where)
    if len(parts) != 2:
        raise DiffsimError(f"malformed {spec!r} (expected NAME=LO:HI)", where=where)
    lo, hi = (_number(p, spec, where) for p in parts)
    if not lo < hi:
        raise DiffsimError(f"LO must be below HI in {spec!r}", where=where)
    return name, (lo, hi)


def grid_design(axes: dict[str, list[float]]) -> list[dict]:
    """Every combination of the axes' values (the last axis varies fastest)."""
    names = list(axes)
    design: list[dict] = [{}]
    for name in names:
        design = [{**point, name: value} for point in design for value in axes[name]]
    return design


def random_design(
    ranges: dict[str, tuple[float, float]], n: int, method: str = "sobol", seed: int = 0
) -> list:
    """n points in the box `ranges` (name -> (lo, hi)); method: sobol (scrambled; a power of two keeps its
    balance), lhs (Latin hypercube) or uniform."""
    if n < 1:
        raise DiffsimError(f"must be >= 1, got {n}", where="--random")
    if not ranges:
        raise DiffsimError("no ranges to draw from: give --range NAME=LO:HI", where="--random")
    if method not in DESIGNS:
        raise DiffsimError(f"unknown design {method!r}; choose {', '.join(DESIGNS)}", where="--design")
    from scipy.stats import qmc  # noqa: PLC0415

    d = len(ranges)
    if method == "sobol":
        import warnings  # noqa: PLC0415

        with warnings.catch_warnings():  # "balance properties ... n = 2^m": a note, not an error
            warnings.simplefilter("ignore", UserWarning)
            unit = qmc.Sobol(d, scramble=True, seed=seed).random(n)
    elif method == "lhs":
        unit = qmc.LatinHypercube(d, seed=seed).random(n)
    else:
        unit = np.random.default_rng(seed).random((n, d))
    lo = np.array([r[0] for r in ranges.values()])
    hi = np.array([r[1] for r in ranges.values()])
    points = qmc.scale(unit, lo, hi)
    return [{name: float(row[j]) for j, name in enumerate(ranges)} for row in points]
