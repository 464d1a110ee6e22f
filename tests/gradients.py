"""The gradient check every simulator's tests share: reverse mode against central differences, in f64."""

from __future__ import annotations

import diffsim

#: relative error allowed between reverse mode and the best finite difference
TOLERANCE = 1e-6


def assert_gradcheck(sim, names, tolerance: float = TOLERANCE, abs_floor: float | None = None, **kw):
    """Run `diffsim.gradcheck` on the named parameters and fail with every failing probe listed.

    abs_floor: a probe also passes when |ad - fd| <= abs_floor * (the largest |gradient| of that parameter), for
    derivatives that are rounding-level next to the parameter's other components. Other keywords (steps,
    directions, coordinates) go to `diffsim.gradcheck`. Returns the report."""
    report = diffsim.gradcheck(sim, names, tolerance=tolerance, **kw)
    failed = {}
    for name, r in report.params.items():
        scale = max((abs(c["ad"]) for c in r.checks), default=0.0)
        bad = [
            (c["kind"], c["index"], c["ad"], c["fd"], c["rel_error"])
            for c in r.checks
            if not c["rel_error"] <= tolerance  # NaN fails too
            and (abs_floor is None or abs(c["ad"] - c["fd"]) > abs_floor * scale)
        ]
        if bad:
            failed[name] = bad
    assert not failed, report.summary() + "\n" + str(failed)
    return report
