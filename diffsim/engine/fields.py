"""Small field helpers the systems share: constant fields allocated as one group, and the mass view that
centre-of-mass losses read."""

from __future__ import annotations

import numpy as np
import taichi as ti

from .. import runtime


class FieldGroup:
    """Fields declared one by one and allocated together in one SNode tree (`ti.FieldsBuilder`), then filled.

    Taichi allows a few hundred SNode trees per process and every separately allocated field takes one, so a
    system's constant arrays share a group. `add` returns the (not yet allocated) field; `finalize` allocates the
    tree and copies each field's data in."""

    def __init__(self):
        self.builder = ti.FieldsBuilder()
        self.fill = []

    def add(self, dtype, shape, data=None, n=None, m=None, grad=False):
        """A scalar field, a vector field of length n, or an n x m matrix field of this shape (1-D or 2-D)."""
        if m is not None:
            fld = ti.Matrix.field(n, m, dtype, needs_grad=grad)
        elif n is not None:
            fld = ti.Vector.field(n, dtype, needs_grad=grad)
        else:
            fld = ti.field(dtype, needs_grad=grad)
        axes = ti.i if len(shape) == 1 else ti.ij
        self.builder.dense(axes, shape).place(fld)
        if grad:
            self.builder.dense(axes, shape).place(fld.grad)
        if data is not None:
            self.fill.append((fld, data))
        return fld

    def finalize(self):
        self.tree = self.builder.finalize()
        for fld, data in self.fill:
            fld.from_numpy(np.ascontiguousarray(data))


class MassView:
    """What centre-of-mass losses read as a system's `point_mass` when its masses are not one parameter: a field
    ``[row, point]`` and the row stride per copy (0: one row shared by every copy; 1: a row per copy)."""

    def __init__(self, fld, bstride: int):
        self.field = fld
        self.bstride = bstride


class ConstantArrays:
    """Constant integer, vector and matrix arrays added to a `FieldGroup`; an empty array gets one placeholder
    element so that every field has a shape."""

    def __init__(self, group: FieldGroup):
        self.group = group
        self.itype, self.npi = runtime.index_type(), runtime.np_index()
        self.real, self.npr = runtime.real(), runtime.np_real()

    def ints(self, values):
        arr = np.asarray(values, dtype=np.int64).reshape(-1)
        arr = arr if len(arr) else np.zeros(1, dtype=np.int64)
        return self.group.add(self.itype, arr.shape, arr.astype(self.npi))

    def vecs(self, values, width):
        arr = np.asarray(values, dtype=np.float64).reshape(-1, width)
        arr = arr if len(arr) else np.zeros((1, width))
        return self.group.add(self.real, arr.shape[:1], arr.astype(self.npr), n=width)

    def mats(self, values, rows, cols):
        arr = np.asarray(values, dtype=np.float64).reshape(-1, rows, cols)
        arr = arr if len(arr) else np.zeros((1, rows, cols))
        return self.group.add(self.real, arr.shape[:1], arr.astype(self.npr), n=rows, m=cols)
