"""Time-indexed state buffers.

Every quantity a step writes lives in a field indexed ``[frame, batch, ...]``. A step reads frame `f` and writes
frame `f + 1`, so nothing is overwritten and Taichi's reverse mode sees every value it needs.

Two kinds of quantity:
- ``state``: what defines the system at a frame (positions, velocities). Checkpoints snapshot these.
- ``scratch``: per-step intermediates (forces, controller activations). They are recomputed, never snapshotted.
"""

from dataclasses import dataclass

import numpy as np
import taichi as ti

from .. import runtime
from .fill import filler


@dataclass(frozen=True)
class FieldSpec:
    """One time-indexed quantity.

    name: attribute name on the `State` (``x``, ``v``, ``act``).
    shape: per-copy shape (e.g. ``(n_particles,)``).
    dim: vector length, or None for a scalar per element.
    kind: "state" or "scratch".
    dtype: "real" (the active precision) or "i32".
    """

    name: str
    shape: tuple[int, ...]
    dim: int | None = None
    kind: str = "state"
    dtype: str = "real"

    def elements_per_frame(self, batch: int) -> int:
        return batch * int(np.prod(self.shape, dtype=np.int64)) * (self.dim or 1)


@ti.data_oriented
class State:
    """The window of frames a simulation keeps: one field per `FieldSpec`, each ``(frames, batch, *shape)``.

    Kernels receive the whole object as a ``ti.template()`` argument and read ``s.x[f, b, i]``.
    """

    def __init__(self, specs: list[FieldSpec], frames: int, batch: int, needs_grad: bool = True):
        self.specs = list(specs)
        self.needs_grad = needs_grad
        self._zeroers = None
        self.frames = int(frames)
        self.batch = int(batch)
        real = runtime.real()
        runtime.check_field_capacity(len(self.specs), "simulation state")
        for spec in self.specs:
            dtype = runtime.index_type() if spec.dtype == "i32" else real
            shape = (self.frames, self.batch, *spec.shape)
            grad = needs_grad and spec.dtype != "i32"
            if spec.dim is None:
                field = ti.field(dtype, shape=shape, needs_grad=grad)
            else:
                field = ti.Vector.field(spec.dim, dtype, shape=shape, needs_grad=grad)
            setattr(self, spec.name, field)

    def field(self, name: str):
        return getattr(self, name)

    def state_specs(self) -> list[FieldSpec]:
        return [s for s in self.specs if s.kind == "state"]

    def zero_grad(self) -> None:
        if not self.needs_grad:
            return
        if self._zeroers is None:
            self._zeroers = [
                filler(getattr(self, spec.name).grad) for spec in self.specs if spec.dtype != "i32"
            ]
        for zero in self._zeroers:
            zero(0.0)

    def nbytes(self, with_grad: bool = True) -> int:
        """Bytes held by the fields (and their gradients), counted from the shapes."""
        return state_nbytes(self.specs, self.frames, self.batch, with_grad and self.needs_grad)


def state_nbytes(specs: list[FieldSpec], frames: int, batch: int, needs_grad: bool = True) -> int:
    """Bytes a `State` of these specs takes (with gradients when `needs_grad`), known before it is allocated."""
    item = 8 if runtime.current()["precision"] == "f64" else 4
    total = 0
    for spec in specs:
        n = frames * spec.elements_per_frame(batch)
        total += n * (4 if spec.dtype == "i32" else item) * (2 if needs_grad and spec.dtype != "i32" else 1)
    return total


@ti.kernel
def copy_frame(src: ti.template(), dst: ti.template(), src_frame: ti.i32, dst_frame: ti.i32):
    """dst[dst_frame, ...] = src[src_frame, ...] for fields of equal trailing shape."""
    for idx in ti.grouped(ti.ndrange(*src.shape[1:])):
        dst[ti.Vector([dst_frame] + [idx[k] for k in ti.static(range(len(src.shape) - 1))])] = src[
            ti.Vector([src_frame] + [idx[k] for k in ti.static(range(len(src.shape) - 1))])
        ]


@ti.func
def _bad_element(v, is_vector: ti.template(), is_f64: ti.template(), limit) -> bool:
    bad = False
    if ti.static(is_vector):
        for k in ti.static(range(v.n)):
            if _is_bad(v[k], is_f64, limit):
                bad = True
    else:
        bad = _is_bad(v, is_f64, limit)
    return bad


@ti.func
def nonfinite_element(v, is_vector: ti.template(), is_f64: ti.template()) -> bool:
    """NaN or Inf in the scalar or vector v (a bound at the largest finite number)."""
    bad = False
    if ti.static(is_f64):
        bad = _bad_element(v, is_vector, is_f64, ti.u64(0x7FEFFFFFFFFFFFFF))
    else:
        bad = _bad_element(v, is_vector, is_f64, ti.u32(0x7F7FFFFF))
    return bad


@ti.func
def _limit_bits(scale: ti.template(), slot, factor, is_f64: ti.template()):
    """The bit pattern of the bound factor x max(1, scale[slot]) when factor > 0, at most that of the largest finite
    number, which is the bound for factor <= 0 (finiteness only). See `_is_bad`."""
    bound = factor * ti.max(1.0, scale[slot])
    if ti.static(is_f64):
        limit = ti.u64(0x7FEFFFFFFFFFFFFF)
        if factor > 0:
            limit = ti.min(limit, ti.bit_cast(ti.cast(bound, ti.f64), ti.u64))
        return limit
    else:
        limit = ti.u32(0x7F7FFFFF)
        if factor > 0:
            limit = ti.min(limit, ti.bit_cast(ti.cast(bound, ti.f32), ti.u32))
        return limit


@ti.func
def _is_bad(x, is_f64: ti.template(), limit) -> bool:
    """|x| above the bound whose bit pattern is `limit` (`_limit_bits`), or NaN or Inf, in one integer comparison:
    the bits of a non-negative float, read as an unsigned integer, are ordered as the floats are, and Inf and NaN
    (exponent all ones) lie above every finite number. (Float comparisons with NaN are unreliable under fast math.)"""
    bad = False
    if ti.static(is_f64):
        bad = (ti.bit_cast(x, ti.u64) & ti.u64(0x7FFFFFFFFFFFFFFF)) > limit
    else:
        bad = (ti.bit_cast(x, ti.u32) & ti.u32(0x7FFFFFFF)) > limit
    return bad


@ti.kernel
def _first_bad_nested(
    field: ti.template(),
    out: ti.template(),
    scale: ti.template(),
    start: ti.i32,
    stop: ti.i32,
    slot: ti.i32,
    factor: float,
):
    """Lower out[None] to the first frame in [start, stop) holding NaN, Inf or, when factor > 0, a component above
    factor x max(1, scale[slot]) in magnitude (CPU). Frames and copies are the parallel loop, the element axes nested
    loops inside it (a grouped loop over every axis spent half its time decomposing its index: 6.3 against 3.4 ms
    for a 101-frame 128^2 velocity field)."""
    vec = ti.static(isinstance(field, ti.MatrixField))
    f64 = ti.static(field.dtype == ti.f64)
    nd = ti.static(len(field.shape))
    for fr, b in ti.ndrange((start, ti.min(stop, field.shape[0])), field.shape[1]):
        limit = _limit_bits(scale, slot, factor, f64)
        bad = False
        if ti.static(nd == 2):
            bad = _bad_element(field[fr, b], vec, f64, limit)
        elif ti.static(nd == 3):
            for i in range(field.shape[2]):
                if _bad_element(field[fr, b, i], vec, f64, limit):
                    bad = True
        elif ti.static(nd == 4):
            for i, j in ti.ndrange(field.shape[2], field.shape[3]):
                if _bad_element(field[fr, b, i, j], vec, f64, limit):
                    bad = True
        else:
            for i, j, k in ti.ndrange(field.shape[2], field.shape[3], field.shape[4]):
                if _bad_element(field[fr, b, i, j, k], vec, f64, limit):
                    bad = True
        if bad:
            ti.atomic_min(out[None], fr)


@ti.kernel
def _first_bad_grouped(
    field: ti.template(),
    out: ti.template(),
    scale: ti.template(),
    start: ti.i32,
    stop: ti.i32,
    slot: ti.i32,
    factor: float,
):
    """The same on GPUs: one thread per element (a few frames of a large grid would give the nested loop's frames
    x copies too few threads)."""
    for idx in ti.grouped(field):
        if start <= idx[0] < stop:
            vec = ti.static(isinstance(field, ti.MatrixField))
            f64 = ti.static(field.dtype == ti.f64)
            if _bad_element(field[idx], vec, f64, _limit_bits(scale, slot, factor, f64)):
                ti.atomic_min(out[None], idx[0])


#: on the CPU, `max_abs_frame` runs serially below this many elements per frame: a parallel loop's dispatch costs
#: 15-20 us (docs/developing.md rule 11), more than scanning a small frame
MAX_ABS_SERIAL_BELOW = 50_000


def _serial_frame(field) -> bool:
    return runtime.current()["arch"] == "cpu" and int(np.prod(field.shape[1:])) < MAX_ABS_SERIAL_BELOW


@ti.kernel
def max_abs_frame(field: ti.template(), out: ti.template(), slot: ti.i32, frame: ti.i32):
    """out[slot] = the largest |component| of field[frame] over copies and elements."""
    ti.loop_config(serialize=True)
    for _ in range(1):
        out[slot] = 0.0
    vec = ti.static(isinstance(field, ti.MatrixField))
    ti.loop_config(serialize=ti.static(_serial_frame(field)))
    for idx in ti.grouped(ti.ndrange(*field.shape[1:])):
        v = field[ti.Vector([frame] + [idx[k] for k in ti.static(range(len(field.shape) - 1))])]
        if ti.static(vec):
            for k in ti.static(range(v.n)):
                ti.atomic_max(out[slot], ti.abs(v[k]))
        else:
            ti.atomic_max(out[slot], ti.abs(v))


def nonfinite_kernel(field):
    """The kernel that finds the first non-finite frame of `field` (shape (frames, copies, *element axes), at most
    three element axes): ``kernel(field, out, scale, start, stop, slot, factor)`` lowers out[None] to the first frame
    in [start, stop) holding NaN, Inf or, when factor > 0, a component whose magnitude exceeds
    factor x max(1, scale[slot]) (`scale` a 1-D field: the bound stays on the device)."""
    if runtime.current()["arch"] != "cpu":
        return _first_bad_grouped
    if not 2 <= len(field.shape) <= 5:
        raise ValueError(
            f"a state field has 2 to 5 axes (frames, copies, element axes), got shape {field.shape}"
        )
    return _first_bad_nested
