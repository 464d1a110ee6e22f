"""The gradient check every simulator's tests share: reverse mode against central differences, in f64."""

from __future__ import annotations

import numpy as np

import diffsim

#: relative error allowed between reverse mode and the best finite difference
TOLERANCE = 1e-6


#: the relative rounding error of a rollout's loss in f64, in units of the machine epsilon (see `roundoff`)
LOSS_ROUNDING = 100


def assert_gradcheck(
    sim, names, tolerance: float = TOLERANCE, abs_floor: float | None = None, roundoff: bool = False, **kw
):
    """Run `diffsim.gradcheck` on the named parameters and fail with every failing probe listed.

    abs_floor: a probe also passes when |ad - fd| <= abs_floor * (the largest |gradient| of that parameter), for
    derivatives that are rounding-level next to the parameter's other components.
    roundoff: a probe also passes when |ad - fd| is below the central difference's own rounding error,
    2 * LOSS_ROUNDING * eps * |L| / (2 h) at the step h it used: each of the two losses carries a relative rounding
    error of about LOSS_ROUNDING * eps after a rollout through stiff contact, whatever the derivative's size, so a
    derivative far smaller than |L| / h cannot be resolved to `tolerance` of itself (the rigid 3D set-up's
    joints.damping direction: |g . u| = 8.5e-8, agreed to 1.3e-13 absolute, 1.5e-6 relative, on an AMD EPYC; the same
    code agreed within 1e-6 on an Intel Xeon).
    Other keywords (steps, directions, coordinates) go to `diffsim.gradcheck`. Returns the report."""
    loss = abs(sim.forward()) if roundoff else 0.0
    eps = float(np.finfo(np.float64).eps)
    report = diffsim.gradcheck(sim, names, tolerance=tolerance, **kw)
    failed = {}
    for name, r in report.params.items():
        scale = max((abs(c["ad"]) for c in r.checks), default=0.0)
        bad = [
            (c["kind"], c["index"], c["ad"], c["fd"], c["rel_error"])
            for c in r.checks
            if not c["rel_error"] <= tolerance  # NaN fails too
            and (abs_floor is None or abs(c["ad"] - c["fd"]) > abs_floor * scale)
            and (not roundoff or abs(c["ad"] - c["fd"]) > LOSS_ROUNDING * eps * loss / c["step"])
        ]
        if bad:
            failed[name] = bad
    assert not failed, report.summary() + "\n" + str(failed)
    return report
