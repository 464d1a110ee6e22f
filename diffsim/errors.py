"""The one exception type for user mistakes, and the one for a rollout that went non-finite.

User errors name where the problem is (file, key path, value) so the command line can print them on one line and
exit 2. `SimulationError` is raised when a rollout produces NaN or Inf or diverges past its bound: it names the quantity
and the frame.
"""

from __future__ import annotations


class DiffsimError(Exception):
    """A user mistake: bad input, an impossible setting, a missing file.

    `where` is a location prefix such as ``scenes/walker2d.toml: springs[3].stiffness``; the message is the reason.
    """

    def __init__(self, message: str, where: str | None = None):
        self.where = where
        self.reason = message
        super().__init__(f"{where}: {message}" if where else message)


class SimulationError(DiffsimError):
    """A rollout became non-finite (NaN or Inf) or diverged (a state quantity past its bound, still finite), usually
    an unstable time step or an exploding controller. `reason` is "non-finite" or "diverging"."""

    def __init__(self, quantity: str, frame: int, detail: str = "", reason: str = "non-finite"):
        self.quantity = quantity
        self.frame = frame
        self.reason_kind = reason
        msg = f"{reason} {quantity} at frame {frame}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
