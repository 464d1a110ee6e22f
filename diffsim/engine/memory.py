"""Memory estimates checked before allocation: a rollout that cannot fit is refused with the figure, instead of
ending in the out-of-memory killer or an internal error from the allocator."""

from __future__ import annotations

import os

from ..errors import DiffsimError

__all__ = ["available_bytes", "check_memory", "format_bytes", "rollout_frames"]

#: the share of the available memory one allocation may take
HEADROOM = 0.9


def available_bytes() -> int | None:
    """Memory this process may still use (MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(needed: int, what: str, where: str, hint: str = "") -> None:
    """Refuse (DiffsimError with the estimate) when `needed` bytes exceed 90 % of the available memory."""
    avail = available_bytes()
    if avail is not None and needed > HEADROOM * avail:
        raise DiffsimError(
            f"{what} needs about {format_bytes(needed)} of memory, more than the {format_bytes(avail)} available"
            + (f"; {hint}" if hint else ""),
            where=where,
        )


def format_bytes(n: float) -> str:
    """``1.50 GiB`` from 256 MiB up, else ``12 MiB``."""
    return f"{n / 2**30:.3g} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def rollout_frames(steps: int, storage: str, checkpoint_every: int | None) -> tuple[int, int]:
    """(frames a simulation keeps in its time-indexed fields, snapshot frames of state): all steps + 1 with full
    storage; with checkpointed storage a window of k + 1 frames and a snapshot every k steps (k default
    sqrt(steps))."""
    if storage != "checkpointed":
        return steps + 1, 0
    k = checkpoint_every or max(1, int(round(steps**0.5)))
    k = min(k, steps)
    return k + 1, -(-steps // k) + 1
