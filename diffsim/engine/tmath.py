"""Transcendental functions that work on every backend.

SPIR-V (Vulkan) has no f64 sin, cos, tanh, exp or log, so with f64 on Vulkan these are evaluated in f32 and cast
back (relative error about 1e-7). Everything else, sqrt included, stays in f64. On other backends they are Taichi's
own functions. Kernels that need them call these instead of ``ti.sin`` and friends.

Also the row-major flattening of small square matrices, for fields that store a d x d matrix as a d*d vector.
"""

import math

import taichi as ti

from .. import runtime


def f32_transcendentals() -> bool:
    cur = runtime.current()
    return cur["arch"] == "vulkan" and cur["precision"] == "f64"


def _wrap(fn):
    @ti.func
    def wrapped(x):
        y = x
        if ti.static(f32_transcendentals()):
            y = ti.cast(fn(ti.cast(x, ti.f32)), ti.f64)
        else:
            y = fn(x)
        return y

    return wrapped


sin = _wrap(ti.sin)
cos = _wrap(ti.cos)
tanh = _wrap(ti.tanh)
exp = _wrap(ti.exp)
log = _wrap(ti.log)


@ti.func
def unflatten(a):
    """The d x d matrix whose row-major entries are the d*d vector `a`."""
    d = ti.static(math.isqrt(a.n))
    return ti.Matrix([[a[i * d + j] for j in ti.static(range(d))] for i in ti.static(range(d))])


@ti.func
def flatten(m):
    """The row-major entries of the square matrix `m`, as a vector."""
    d = ti.static(m.n)
    return ti.Vector([m[i, j] for i in ti.static(range(d)) for j in ti.static(range(d))])
