"""Losses on the smoke's scalar fields (they read the state quantity ``scalars``).

ScalarLoss
    Mean squared difference between one scalar (density by default) and target images at given frames:
    value = sum over frames and cells of (q - target)^2 / (frames * cells).
CentroidLoss
    Squared distance (m^2) between the centroid of a scalar, c = sum q x / sum q, and a target point at a frame.
"""

import numpy as np
import taichi as ti

from ... import runtime
from ...errors import DiffsimError
from ...optim.losses import LeafLoss

#: on the CPU, grid losses over fewer cells (times copies) than this run serially (`runtime.serial_loops`)
SERIAL_BELOW = 65536


def _serial(system) -> bool:
    return runtime.serial_loops(system.batch * int(np.prod(system.n)), SERIAL_BELOW)


@ti.data_oriented
class ScalarLoss(LeafLoss):
    """target: an image of the grid's shape (compared at the last frame), or (frames, *grid) images at `frames`
    (global frame numbers; default every, 2 every, ...), or (frames, batch, *grid) per copy."""

    quantity = "scalars"

    def __init__(
        self, target, scalar: str = "density", frames=None, every: int | None = None, name: str = "target"
    ):
        super().__init__()
        self.scalar = scalar
        self.name = name
        self.target_np = np.asarray(target, dtype=np.float64)
        if not np.all(np.isfinite(self.target_np)):
            raise DiffsimError("the target contains NaN or Inf", where=name)
        self.frames_arg = None if frames is None else np.asarray(frames, dtype=np.int64).ravel()
        self.every = every
        self._key = None
        self.k = None

    def bind(self, system, steps: int) -> None:
        super().bind(system, steps)
        if not hasattr(system, "scalar_names"):
            raise DiffsimError(
                f"{type(self).__name__} needs a smoke system, got {system.kind}", where=self.name
            )
        k = system.model.scalar_index(self.scalar, where=self.name)
        if self.k is not None and k != self.k:
            raise DiffsimError(
                f"this loss was bound to a system whose {self.scalar!r} is scalar {self.k}; build a "
                "new loss for this system",
                where=self.name,
            )
        self.k = k
        n, B = tuple(system.n), system.batch
        t = self.target_np
        if t.shape == n:
            t = t[None]
        single = t.ndim == len(n) + 1 and t.shape[1:] == n
        per_copy = t.ndim == len(n) + 2 and t.shape[2:] == n and t.shape[1] == B
        if not (single or per_copy):
            raise DiffsimError(
                f"the target has shape {self.target_np.shape}; expected the grid's {n} (one image), "
                f"(frames, {', '.join(map(str, n))}) or (frames, {B}, {', '.join(map(str, n))}) (per copy)",
                where=self.name,
            )
        rows = t.shape[0]
        if self.frames_arg is not None:
            frames = self.frames_arg
        elif self.every is not None:
            frames = self.every * np.arange(1, rows + 1)
        elif rows == 1:
            frames = np.array([steps])
        else:
            frames = np.arange(1, rows + 1) * max(1, steps // rows)
        if len(frames) != rows:
            raise DiffsimError(f"{rows} target images for {len(frames)} frames", where=self.name)
        if np.any(frames < 0) or np.any(frames > steps):
            raise DiffsimError(
                f"target frames must be in [0, {steps}], got {frames.min()}..{frames.max()}", where=self.name
            )
        key = (B, t.shape, per_copy)
        if key != self._key:
            self.target = ti.field(runtime.real(), shape=(rows, B if per_copy else 1, *n))
            self._per_copy = 1 if per_copy else 0
            self._serial = _serial(system)
            self._n = n
            self._key = key
        self.target.from_numpy((t if per_copy else t[:, None]).astype(runtime.np_real()))
        self._frames = frames
        self._coef = 1.0 / (rows * int(np.prod(n)))

    def schedule(self, steps: int):
        return [(int(fg), row, self._coef) for row, fg in enumerate(self._frames)]

    @ti.kernel
    def eval(self, x: ti.template(), f: ti.i32, row: ti.i32, coef: float):
        ti.loop_config(serialize=ti.static(self._serial))
        for J in ti.grouped(ti.ndrange(x.shape[1], *self._n)):
            b = J[0]
            I = ti.Vector([J[k + 1] for k in ti.static(range(len(self._n)))])
            d = x[f, b, I][ti.static(self.k)] - self.target[row, b * ti.static(self._per_copy), I]
            self.value[b] += coef * d * d


@ti.data_oriented
class CentroidLoss(LeafLoss):
    """|centroid of `scalar` - target|^2 (m^2) at `frame` (default the last); the centroid weighs each cell centre
    by the scalar (which should stay positive there)."""

    quantity = "scalars"

    def __init__(self, target, scalar: str = "density", frame: int | None = None, name: str = "target"):
        super().__init__()
        self.scalar = scalar
        self.name = name
        self.target_np = np.asarray(target, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(self.target_np)):
            raise DiffsimError("the target point must be finite", where=name)
        self.frame = frame
        self._key = None
        self.k = None

    def bind(self, system, steps: int) -> None:
        super().bind(system, steps)
        if not hasattr(system, "scalar_names"):
            raise DiffsimError(
                f"{type(self).__name__} needs a smoke system, got {system.kind}", where=self.name
            )
        k = system.model.scalar_index(self.scalar, where=self.name)
        if self.k is not None and k != self.k:
            raise DiffsimError("this loss was bound to another system; build a new loss", where=self.name)
        self.k = k
        D = system.dim
        if self.target_np.shape != (D,):
            raise DiffsimError(
                f"the target point must have {D} components, got {self.target_np.tolist()}", where=self.name
            )
        frame = steps if self.frame is None else int(self.frame)
        if not 0 <= frame <= steps:
            raise DiffsimError(f"frame must be in [0, {steps}], got {frame}", where=self.name)
        self._frame = frame
        key = (system.batch, D, tuple(system.n))
        if key != self._key:
            real = runtime.real()
            self.point = ti.Vector.field(D, real, shape=())
            self.moment = ti.Vector.field(D, real, shape=(system.batch,), needs_grad=True)
            self.total = ti.field(real, shape=(system.batch,), needs_grad=True)
            self._n = tuple(system.n)
            self._h = float(system.h)
            self._serial = _serial(system)
            self._key = key
        self.point.from_numpy(self.target_np.astype(runtime.np_real()))

    def schedule(self, steps: int):
        return [(self._frame, 0, 1.0)]

    def zero_grad(self) -> None:
        self.moment.grad.fill(0)
        self.total.grad.fill(0)

    @ti.kernel
    def eval(self, x: ti.template(), f: ti.i32, row: ti.i32, coef: float):
        for b in range(x.shape[1]):
            self.moment[b] = ti.Vector.zero(float, ti.static(len(self._n)))
            self.total[b] = 0.0
        ti.loop_config(serialize=ti.static(self._serial))
        for J in ti.grouped(ti.ndrange(x.shape[1], *self._n)):
            b = J[0]
            I = ti.Vector([J[k + 1] for k in ti.static(range(len(self._n)))])
            q = x[f, b, I][ti.static(self.k)]
            self.moment[b] += q * (I + 0.5) * ti.static(self._h)
            self.total[b] += q
        for b in range(x.shape[1]):
            d = self.moment[b] / self.total[b] - self.point[None]
            self.value[b] += coef * d.dot(d)
