"""Scaling out: sweeps, multi-start fits and population search, in one process or on Ray (``diffsim[scale]``).

    import diffsim
    table = diffsim.sweep("rigid_sysid", "runs/starts", starts=8)      # a multi-start fit of the scene's task
    table = diffsim.sweep("springs_sysid", "runs/grid", grid=["springs.stiffness=200:2000:8"])
    table.best(), table["best_loss"], table.to_pandas()

See docs/scale.md. Ray is imported only when a sweep runs on it.
"""

from .sweep import sweep
from .table import SweepTable

__all__ = ["sweep", "SweepTable"]
