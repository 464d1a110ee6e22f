"""Analytic colliders shared by the systems: planes, spheres, boxes and capsules.

A collider is described in plain Python (`Collider`) and, inside kernels, by its pose and size: a centre c, a
rotation R (from a rotation vector, axis times angle) and a size vector whose meaning depends on the kind:

    plane    the plane through c with normal R e_z (size unused)
    sphere   radius size[0]
    box      half extents size[0], size[1], size[2] along R's axes
    capsule  radius size[0], half length size[1] of its axis segment, along R e_z

`local_distance(kind, q, size)` gives the signed distance of a point q in the collider's frame (q = R^T (x - c)) and
the outward unit normal there, both differentiable in q and size (the normal is the gradient of the distance).
Systems build their contact model on it: penalty forces, friction. A moving collider translates with a constant
velocity (c(t) = c0 + v t).
"""

import math
from dataclasses import dataclass, field

import numpy as np
import taichi as ti

from .engine import tmath
from .errors import DiffsimError

KINDS = ("plane", "sphere", "box", "capsule")
KIND_ID = {k: i for i, k in enumerate(KINDS)}

#: meaning of the size components per kind, for messages and docs
SIZE_DOC = {
    "plane": "unused",
    "sphere": "[radius]",
    "box": "[half x, half y, half z]",
    "capsule": "[radius, half length]",
}
_SIZE_LEN = {"plane": 0, "sphere": 1, "box": 3, "capsule": 2}


@dataclass
class Collider:
    """One collider. position (m), rotation (rotation vector, rad), velocity (m/s), size (m, see module doc),
    friction: Coulomb coefficient mu against this collider."""

    kind: str
    position: tuple = (0.0, 0.0, 0.0)
    rotation: tuple = (0.0, 0.0, 0.0)
    velocity: tuple = (0.0, 0.0, 0.0)
    size: list = field(default_factory=list)
    friction: float = 0.5
    name: str = ""

    def check(self, where: str) -> dict:
        """Validated arrays: position, rotation, velocity (3,), size (3,) padded with ones, friction."""
        if self.kind not in KINDS:
            raise DiffsimError(
                f"unknown collider kind {self.kind!r}; choose {', '.join(KINDS)}", where=f"{where}.kind"
            )
        out = {}
        for key in ("position", "rotation", "velocity"):
            arr = np.asarray(getattr(self, key), dtype=np.float64).reshape(-1)
            if arr.shape != (3,) or not np.all(np.isfinite(arr)):
                raise DiffsimError(
                    f"must be three finite numbers, got {list(np.ravel(getattr(self, key)))}",
                    where=f"{where}.{key}",
                )
            out[key] = arr
        need = _SIZE_LEN[self.kind]
        size = [float(s) for s in np.ravel(self.size)] if self.size is not None else []
        if len(size) != need and not (self.kind == "plane" and not size):
            raise DiffsimError(
                f"a {self.kind} needs size = {SIZE_DOC[self.kind]} ({need} numbers), got {size}",
                where=f"{where}.size",
            )
        for s in size:
            if not (s > 0 and math.isfinite(s)):
                raise DiffsimError(f"sizes must be > 0, got {size}", where=f"{where}.size")
        out["size"] = np.array(size + [1.0] * (3 - len(size)))
        if not (self.friction >= 0 and math.isfinite(self.friction)):
            raise DiffsimError(f"must be >= 0, got {self.friction}", where=f"{where}.friction")
        out["friction"] = float(self.friction)
        return out


@ti.func
def rotation_from_vector(r):
    """R = I + (sin a / a) K + ((1 - cos a) / a^2) K^2 with K the cross-product matrix of r and a = |r|
    (Rodrigues); a Taylor series near a = 0 keeps it smooth and differentiable there."""
    a2 = r.dot(r)
    s1 = 1.0 - a2 / 6.0
    c1 = 0.5 - a2 / 24.0
    if a2 > 1e-4:
        a = ti.sqrt(a2)
        s1 = tmath.sin(a) / a
        c1 = (1.0 - tmath.cos(a)) / a2
    # I + s1 K + c1 K^2 written out (K^2 = r r^T - |r|^2 I): a matrix product would accumulate into a local,
    # which Taichi's reverse mode turns into an autodiff stack
    x, y, z = r[0], r[1], r[2]
    return ti.Matrix(
        [
            [1.0 + c1 * (x * x - a2), -s1 * z + c1 * x * y, s1 * y + c1 * x * z],
            [s1 * z + c1 * x * y, 1.0 + c1 * (y * y - a2), -s1 * x + c1 * y * z],
            [-s1 * y + c1 * x * z, s1 * x + c1 * y * z, 1.0 + c1 * (z * z - a2)],
        ]
    )


@ti.func
def box_distance(q, h):
    """(signed distance, outward unit normal) of the point q from a box of half extents h, both in the box's frame
    and of any dimension: outside, the distance to the nearest surface point; inside, minus the distance to the
    nearest face (on a tie, the first axis's face).

    Written with `ti.select` instead of a runtime `if`, and with whole vectors: Taichi's reverse mode turns a local
    assigned inside a runtime `if` into an autodiff stack, and reads the adjoint of a local vector written one
    component at a time before anything is stored to it."""
    dim = ti.static(q.n)
    sign = ti.select(q >= 0, 1.0, -1.0)
    e = ti.abs(q) - h
    out = ti.max(e, 0.0)
    r = ti.sqrt(out.dot(out) + 1e-24)
    dist_in = e[0]
    n_in = ti.Vector.unit(dim, 0) * sign[0]
    for k in ti.static(range(1, dim)):
        nearer = e[k] > dist_in
        n_in = ti.select(nearer, ti.Vector.unit(dim, k) * sign[k], n_in)
        dist_in = ti.select(nearer, e[k], dist_in)
    outside = e.max() > 0
    return ti.select(outside, r, dist_in), ti.select(outside, sign * out / r, n_in)


@ti.func
def sphere_distance(q, radius):
    """(signed distance, outward unit normal) of the point q from a sphere (a circle in 2D) centred at the origin;
    the 1e-24 keeps the normal finite at the centre."""
    r = ti.sqrt(q.dot(q) + 1e-24)
    return r - radius, q / r


@ti.func
def local_distance(kind: ti.template(), q, size):
    """(signed distance, outward unit normal) of the point q, in the collider's own frame."""
    dist = 0.0
    n = ti.Vector([0.0, 0.0, 1.0])
    if ti.static(kind == KIND_ID["plane"]):
        dist = q[2]
    elif ti.static(kind == KIND_ID["sphere"]):
        dist, n = sphere_distance(q, size[0])
    elif ti.static(kind == KIND_ID["capsule"]):
        t = ti.min(ti.max(q[2], -size[1]), size[1])
        dist, n = sphere_distance(q - ti.Vector([0.0, 0.0, t]), size[0])
    else:
        dist, n = box_distance(q, ti.Vector([size[0], size[1], size[2]]))
    return dist, n
