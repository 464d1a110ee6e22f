"""Filling fields (zeroing gradients every iteration) through the fast launch path."""

import taichi as ti

from .. import runtime
from .launch import FastKernel

#: on the CPU, fields with fewer scalars than this are filled by a serial loop: a parallel loop's dispatch (waking
#: the worker threads) costs more than the work (`runtime.serial_loops`)
SERIAL_FILL_BELOW = 1 << 17


@ti.kernel
def _fill_scalar(x: ti.template(), serial: ti.template(), value: float):
    ti.loop_config(serialize=serial)
    for I in ti.grouped(ti.ndrange(*x.shape)):
        x[I] = value


@ti.kernel
def _fill_matrix(x: ti.template(), serial: ti.template(), value: float):
    ti.loop_config(serialize=serial)
    for I in ti.grouped(ti.ndrange(*x.shape)):
        for k in ti.static(range(x.n)):
            if ti.static(x.ndim == 1):  # a vector
                x[I][k] = value
            else:
                for m in ti.static(range(x.m)):
                    x[I][k, m] = value


def filler(field) -> FastKernel:
    """A launcher for ``field.fill(value)`` through the fast path: ``filler(x)(0.0)``. Taichi's own `fill` costs a
    full Python-side kernel call (~60 us) and a parallel loop; hot loops (zeroing gradients every iteration) keep
    one of these per field instead."""
    shape = getattr(field, "shape", ())
    n = int(getattr(field, "n", 1) or 1) * int(getattr(field, "m", 1) or 1)
    size = n
    for k in shape:
        size *= int(k)
    serial = runtime.serial_loops(size, SERIAL_FILL_BELOW)
    if isinstance(field, ti.MatrixField):
        return FastKernel(_fill_matrix, field, serial, types="f")
    return FastKernel(_fill_scalar, field, serial, types="f")
