"""Losses as sums of per-frame terms.

Each leaf loss accumulates ``value[b] += coef * term(state at frame f)`` for the frames in its schedule, right after
the simulation writes them. The engine seeds ``value.grad`` with the loss weight and calls the adjoint kernels at the
same frames in reverse, so a loss works unchanged under full and checkpointed storage.

Compose with arithmetic: ``loss = trajectory_mse + 0.1 * final_distance``.

A user loss subclasses `Loss`, sets `quantity` (the state field it reads) and writes `eval` as a Taichi kernel with
the signature ``eval(self, x: ti.template(), f: ti.i32, row: ti.i32, coef: real)`` that only *adds* into
``self.value[b]``; `schedule` returns (global frame, row, coef) triples. See `FinalPositionLoss` for a short example.
"""

import numpy as np
import taichi as ti

from .. import runtime
from ..engine.fill import filler
from ..errors import DiffsimError

#: losses over fewer elements (copies x points) than this run their loops serially: on the CPU backend a parallel
#: loop wakes the worker threads, which costs more than a few thousand dot products, every evaluated frame
SERIAL_BELOW = 1 << 16


class Loss:
    """Base class of all losses; supports ``+``, ``-`` and scalar ``*``."""

    def terms(self) -> "list[tuple[Loss, float]]":
        return [(self, 1.0)]

    def __add__(self, other: "Loss") -> "Loss":
        return CompositeLoss(self.terms() + other.terms())

    def __sub__(self, other: "Loss") -> "Loss":
        return CompositeLoss(self.terms() + [(leaf, -w) for leaf, w in other.terms()])

    def __mul__(self, k: float) -> "Loss":
        return CompositeLoss([(leaf, float(k) * w) for leaf, w in self.terms()])

    __rmul__ = __mul__


class CompositeLoss(Loss):
    def __init__(self, terms: "list[tuple[Loss, float]]"):
        self._terms = terms

    def terms(self):
        return list(self._terms)


@ti.data_oriented
class LeafLoss(Loss):
    """A loss with its own accumulator `value` (one entry per batch copy)."""

    quantity = "x"

    def __init__(self):
        self.value = None
        self._batch = None

    def _alloc(self, batch: int) -> None:
        if self._batch != batch:
            self.value = ti.field(runtime.real(), shape=(batch,), needs_grad=True)
            self._batch = batch
            self._fill_value, self._fill_grad = filler(self.value), filler(self.value.grad)

    def reset(self, grad_weight: float | None = None) -> None:
        """value = 0 (before a forward pass); or, given a weight, value.grad = weight (before a backward pass)."""
        if grad_weight is None:
            self._fill_value(0.0)
        else:
            self._fill_grad(float(grad_weight))

    def bind(self, system, steps: int) -> None:
        """Check targets against the system and horizon, allocate buffers. Called by `Simulation.set_loss`."""
        self._alloc(system.batch)

    def schedule(self, steps: int) -> list[tuple[int, int, float]]:
        raise NotImplementedError

    def zero_grad(self) -> None:
        pass


@ti.data_oriented
class PointLoss(LeafLoss):
    """Mean squared distance between tracked points and a target, over a set of frames.

    target: array ``(n_frames, n_points, dim)`` (or ``(n_frames, batch, n_points, dim)`` for a per-copy target).
    frames: the global frames the target rows correspond to; by default every `every` frames starting at
        `every` (frame 0 is the given initial state and usually not worth fitting).
    points: indices of the tracked elements (all by default).
    quantity: the state field compared (``x`` for positions).

    value = sum over frames and points of |q - target|^2 / (n_frames * n_points).
    """

    def __init__(
        self, target, frames=None, every: int = 1, points=None, quantity: str = "x", name: str = "target"
    ):
        super().__init__()
        self.quantity = quantity
        self.name = name
        self.target_np = np.asarray(target, dtype=np.float64)
        if self.target_np.ndim not in (3, 4):
            raise DiffsimError(
                f"target must have shape (frames, points, dim) or (frames, batch, points, dim), "
                f"got {self.target_np.shape}",
                where=name,
            )
        if not np.all(np.isfinite(self.target_np)):
            raise DiffsimError("target contains NaN or Inf", where=name)
        self.frames_arg = frames
        self.every = int(every)
        if self.every < 1:
            raise DiffsimError(f"every must be >= 1, got {every}", where=name)
        self.points_np = None if points is None else np.asarray(points, dtype=np.int64).ravel()
        self._bound_key = None

    def _frames(self, steps: int) -> np.ndarray:
        if self.frames_arg is not None:
            return np.asarray(self.frames_arg, dtype=np.int64).ravel()
        n_rows = self.target_np.shape[0]
        return self.every * np.arange(1, n_rows + 1)

    def bind(self, system, steps: int) -> None:
        super().bind(system, steps)
        spec = {s.name: s for s in system.field_specs()}.get(self.quantity)
        if spec is None:
            raise DiffsimError(f"the system has no state quantity {self.quantity!r}", where=self.name)
        n_elem, dim = spec.shape[0], spec.dim or 1
        frames = self._frames(steps)
        t = self.target_np
        per_copy = t.ndim == 4
        n_points = t.shape[-2]
        points = self.points_np if self.points_np is not None else np.arange(n_elem)
        expected = (len(frames), *((system.batch,) if per_copy else ()), len(points), dim)
        if t.shape != expected:
            raise DiffsimError(
                f"target has shape {t.shape}, expected {expected} "
                f"({len(frames)} frames x {'batch x ' if per_copy else ''}{len(points)} points x {dim})",
                where=self.name,
            )
        if np.any(points < 0) or np.any(points >= n_elem):
            raise DiffsimError(
                f"point indices must be in [0, {n_elem}), got {points.tolist()}", where=self.name
            )
        if np.any(frames < 0) or np.any(frames > steps):
            raise DiffsimError(
                f"target frames must be in [0, {steps}] for a {steps}-step rollout; got {frames.min()}..{frames.max()}"
                f" (is the target from a longer run, or sampled every {self.every} frames?)",
                where=self.name,
            )
        key = (system.batch, t.shape, per_copy, dim, len(points))
        if key != self._bound_key:
            real = runtime.real()
            self.target = ti.Vector.field(
                dim, real, shape=(len(frames), system.batch if per_copy else 1, n_points)
            )
            self.index = ti.field(runtime.index_type(), shape=(len(points),))
            self._per_copy = 1 if per_copy else 0
            self._serial = runtime.serial_loops(system.batch * len(points), SERIAL_BELOW)
            self._bound_key = key
        tt = t if per_copy else t[:, None]
        self.target.from_numpy(tt.astype(runtime.np_real()))
        self.index.from_numpy(points.astype(runtime.np_index()))
        self._frames_bound = frames
        self._n_points = len(points)

    def schedule(self, steps: int):
        coef = 1.0 / (len(self._frames_bound) * self._n_points)
        return [(int(fg), row, coef) for row, fg in enumerate(self._frames_bound)]

    @ti.kernel
    def eval(self, x: ti.template(), f: ti.i32, row: ti.i32, coef: float):
        ti.loop_config(serialize=ti.static(self._serial))
        for b, p in ti.ndrange(x.shape[1], self.index.shape[0]):
            d = x[f, b, self.index[p]] - self.target[row, b * ti.static(self._per_copy), p]
            self.value[b] += coef * d.dot(d)


class FinalPositionLoss(PointLoss):
    """Mean squared distance of tracked points to a target at the last frame: target ``(n_points, dim)``."""

    def __init__(self, target, points=None, quantity: str = "x", name: str = "target"):
        t = np.asarray(target, dtype=np.float64)
        super().__init__(t[None], frames=None, points=points, quantity=quantity, name=name)

    def _frames(self, steps: int) -> np.ndarray:
        return np.array([steps])


@ti.data_oriented
class _MassWeightedLoss(LeafLoss):
    """What the centre-of-mass losses share: the points' masses, read from the system's `point_mass` (a parameter
    or a view with ``field[copy, i]`` and ``bstride``) or all 1, and the accumulators `moment` and `total` that the
    subclass allocates (their gradients zeroed before each backward pass)."""

    def _bind_masses(self, mass, n: int) -> None:
        """Use the system's `point_mass` (`mass`), or unit masses for its `n` points when it has none."""
        self.uniform = mass is None
        if mass is None:
            self._unit = ti.field(runtime.real(), shape=(n,))
            self._unit.fill(1.0)
            self._mass_field, self._mass_stride = self._unit, 0
        else:
            self._mass_field, self._mass_stride = mass.field, mass.bstride

    def zero_grad(self) -> None:
        if self._zeroers is None:
            self._zeroers = (filler(self.moment.grad), filler(self.total.grad))
        for zero in self._zeroers:
            zero(0.0)

    @ti.func
    def _mass(self, b, i):
        m = 0.0
        if ti.static(self.uniform):
            m = self._unit[i]
        else:
            m = self._mass_field[b * ti.static(self._mass_stride), i]
        return m


@ti.data_oriented
class CenterOfMassLoss(_MassWeightedLoss):
    """Displacement of the (mass-weighted) centre of mass along `direction` between frame 0 and the last frame.

    value = direction . (com(T) - com(0)); `maximize=True` flips the sign, to reward moving forward. Masses come
    from the system's `point_mass` parameter when it has one (so their gradients are included), else all points
    weigh the same. com = sum(m_i x_i) / sum(m_i) is computed with global accumulators (`moment`, `total`), not a
    loop-carried local: Taichi's reverse mode of loops nested in a parallel loop is wrong on Vulkan.
    """

    def __init__(self, direction=(1.0, 0.0), maximize: bool = False, quantity: str = "x", target_frame=None):
        super().__init__()
        self.quantity = quantity
        self.direction_np = np.asarray(direction, dtype=np.float64)
        self.sign = -1.0 if maximize else 1.0
        self.target_frame = target_frame
        self._key = None

    def bind(self, system, steps: int) -> None:
        super().bind(system, steps)
        spec = {s.name: s for s in system.field_specs()}[self.quantity]
        dim = spec.dim
        if self.direction_np.shape != (dim,):
            raise DiffsimError(
                f"direction must have {dim} components, got {self.direction_np.tolist()}", where="loss"
            )
        mass = getattr(system, "point_mass", None)
        key = (system.batch, dim, id(mass))
        if key != self._key:
            real = runtime.real()
            self.direction = ti.Vector.field(dim, real, shape=())
            self.mass = mass
            self._bind_masses(mass, spec.shape[0])
            self.moment = ti.field(real, shape=(2, system.batch), needs_grad=True)
            self.total = ti.field(real, shape=(2, system.batch), needs_grad=True)
            self._zeroers = None
            self._key = key
        self.direction.from_numpy(self.direction_np.astype(runtime.np_real()))
        self._last = steps if self.target_frame is None else int(self.target_frame)

    def schedule(self, steps: int):
        return [(0, 0, -self.sign), (self._last, 1, self.sign)]

    @ti.kernel
    def eval(self, x: ti.template(), f: ti.i32, row: ti.i32, coef: float):
        ti.loop_config(serialize=True)
        for b in range(x.shape[1]):
            self.moment[row, b] = 0.0
            self.total[row, b] = 0.0
        ti.loop_config(serialize=ti.static(runtime.serial_loops(x.shape[1] * x.shape[2], SERIAL_BELOW)))
        for b, i in ti.ndrange(x.shape[1], x.shape[2]):
            m = self._mass(b, i)
            self.moment[row, b] += m * x[f, b, i].dot(self.direction[None])
            self.total[row, b] += m
        ti.loop_config(serialize=True)
        for b in range(x.shape[1]):
            self.value[b] += coef * self.moment[row, b] / self.total[row, b]


@ti.data_oriented
class CenterOfMassTargetLoss(_MassWeightedLoss):
    """Squared distance (m^2) of the (mass-weighted) centre of mass at one frame to a target point.

    value = |com(frame) - target|^2, frame = the last one unless given. Masses come from the system's
    `point_mass` (a parameter or a view with ``field[copy, i]`` and ``bstride``), else all points weigh the same.
    target: ``(dim,)``, or ``(batch, dim)`` for one target per copy.
    """

    def __init__(self, target, frame=None, quantity: str = "x"):
        super().__init__()
        self.quantity = quantity
        self.target_np = np.asarray(target, dtype=np.float64)
        if self.target_np.ndim not in (1, 2) or not np.all(np.isfinite(self.target_np)):
            raise DiffsimError(
                f"target must be a finite point (dim,) or (batch, dim), got {target!r}", where="loss.target"
            )
        self.frame = frame
        self._key = None

    def bind(self, system, steps: int) -> None:
        super().bind(system, steps)
        spec = {s.name: s for s in system.field_specs()}.get(self.quantity)
        if spec is None or spec.dim is None:
            raise DiffsimError(f"the system has no vector quantity {self.quantity!r}", where="loss")
        dim = spec.dim
        t = self.target_np
        if t.shape[-1] != dim or (t.ndim == 2 and t.shape[0] != system.batch):
            raise DiffsimError(
                f"target must have shape ({dim},) or ({system.batch}, {dim}), got {t.shape}",
                where="loss.target",
            )
        self._last = steps if self.frame is None else int(self.frame)
        if not 0 <= self._last <= steps:
            raise DiffsimError(f"frame must be in [0, {steps}], got {self.frame}", where="loss.frame")
        mass = getattr(system, "point_mass", None)
        key = (system.batch, dim, id(mass))
        if key != self._key:
            real = runtime.real()
            self.target = ti.Vector.field(dim, real, shape=(system.batch,))
            self._bind_masses(mass, spec.shape[0])
            self.moment = ti.Vector.field(dim, real, shape=(system.batch,), needs_grad=True)
            self.total = ti.field(real, shape=(system.batch,), needs_grad=True)
            self._zeroers = None
            self._key = key
        self.target.from_numpy(
            np.ascontiguousarray(np.broadcast_to(t, (system.batch, dim)), dtype=runtime.np_real())
        )

    def schedule(self, steps: int):
        return [(self._last, 0, 1.0)]

    @ti.kernel
    def eval(self, x: ti.template(), f: ti.i32, row: ti.i32, coef: float):
        ti.loop_config(serialize=True)
        for b in range(x.shape[1]):
            self.moment[b] = self.moment[b] * 0.0
            self.total[b] = 0.0
        ti.loop_config(serialize=ti.static(runtime.serial_loops(x.shape[1] * x.shape[2], SERIAL_BELOW)))
        for b, i in ti.ndrange(x.shape[1], x.shape[2]):
            m = self._mass(b, i)
            self.moment[b] += m * x[f, b, i]
            self.total[b] += m
        ti.loop_config(serialize=True)
        for b in range(x.shape[1]):
            d = self.moment[b] / self.total[b] - self.target[b]
            self.value[b] += coef * d.dot(d)
