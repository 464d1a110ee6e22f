"""Taichi functions for rigid-body kinematics and contact geometry, shared by the kernels of `system.py`.

Quaternions are [w, x, y, z] and rotate body to world coordinates. Every function works for 2D and 3D vectors
where that makes sense (`segment_closest`), and is differentiable where its result is continuous. The signed
distance to a box is `diffsim.colliders.box_distance`, shared with the cloth and MPM colliders.
"""

import math

import taichi as ti

from ...engine import tmath

# Matrix products written as expressions. Taichi 1.7's `@` accumulates into a local matrix component by component,
# and reverse-mode compilation of that pattern is very slow (27 s for one 3x3 `M @ M @ M.T`, 0.8 s written out):
# the kernels use these instead of `@`.


@ti.func
def mv(a, x):
    """a x for a 2x2 or 3x3 matrix a."""
    if ti.static(a.m == 2):
        return ti.Vector([a[i, 0] * x[0] + a[i, 1] * x[1] for i in ti.static(range(a.n))])
    else:
        return ti.Vector([a[i, 0] * x[0] + a[i, 1] * x[1] + a[i, 2] * x[2] for i in ti.static(range(a.n))])


@ti.func
def mtv(a, x):
    """a^T x."""
    if ti.static(a.n == 2):
        return ti.Vector([a[0, i] * x[0] + a[1, i] * x[1] for i in ti.static(range(a.m))])
    else:
        return ti.Vector([a[0, i] * x[0] + a[1, i] * x[1] + a[2, i] * x[2] for i in ti.static(range(a.m))])


@ti.func
def mm(a, b):
    """a b."""
    if ti.static(a.m == 2):
        return ti.Matrix(
            [
                [a[i, 0] * b[0, j] + a[i, 1] * b[1, j] for j in ti.static(range(b.m))]
                for i in ti.static(range(a.n))
            ]
        )
    else:
        return ti.Matrix(
            [
                [a[i, 0] * b[0, j] + a[i, 1] * b[1, j] + a[i, 2] * b[2, j] for j in ti.static(range(b.m))]
                for i in ti.static(range(a.n))
            ]
        )


@ti.func
def atan2(y, x):
    r = ti.atan2(y, x)
    if ti.static(tmath.f32_transcendentals()):  # Vulkan has no f64 atan2
        r = ti.cast(ti.atan2(ti.cast(y, ti.f32), ti.cast(x, ti.f32)), ti.f64)
    return r


@ti.func
def asin(x):
    r = ti.asin(x)
    if ti.static(tmath.f32_transcendentals()):
        r = ti.cast(ti.asin(ti.cast(x, ti.f32)), ti.f64)
    return r


#: the lowest restitution a clamped spring-dashpot reaches (at critical damping, e = exp(-2) ~ 0.135)
MIN_RESTITUTION = 0.15


@ti.func
def damping_ratio(e):
    """The damping ratio zeta of a contact spring-dashpot whose force is clamped at zero (it only pushes) that
    gives the restitution coefficient e in [0.15, 1].

    Unclamped, e = exp(-zeta pi / sqrt(1 - zeta^2)). Clamped, the contact ends when k x + c x' = 0, before the
    spring is back at rest length, which with zeta = sin(beta) happens at omega_d t = pi - 2 beta, with the
    exit speed exactly v0 exp(-zeta omega t): e = exp(-zeta (pi - 2 asin zeta) / sqrt(1 - zeta^2)). Its inverse
    is found by Newton's method from the unclamped value, unrolled four times (residual below 1e-13 for
    e >= 0.15), so the gradient with respect to e is the implicit one to the same accuracy.
    """
    target = -tmath.log(e)
    z = target / ti.sqrt(math.pi**2 + target * target)
    for _ in ti.static(range(4)):
        one = 1.0 - z * z
        arc = math.pi - 2.0 * asin(z)
        h = arc * z / ti.sqrt(one)
        dh = arc / (one * ti.sqrt(one)) - 2.0 * z / one
        z = z - (h - target) / dh
    return z


@ti.func
def ramp_average(x, w):
    """The mean of max(0, x + t) for t uniform in [-w/2, w/2]: max(0, x) smoothed over a width w (C1)."""
    out = 0.0
    if x >= 0.5 * w:
        out = x
    elif x > -0.5 * w:
        out = (x + 0.5 * w) ** 2 / (2.0 * w)
    return out


@ti.func
def step_average(x, w):
    """The mean of [x + t > 0] for t uniform in [-w/2, w/2]: a unit step smoothed over a width w."""
    return ti.min(ti.max((x + 0.5 * w) / w, 0.0), 1.0)


@ti.func
def quat_mul(a, b):
    """Hamilton product a b."""
    return ti.Vector(
        [
            a[0] * b[0] - a[1] * b[1] - a[2] * b[2] - a[3] * b[3],
            a[0] * b[1] + a[1] * b[0] + a[2] * b[3] - a[3] * b[2],
            a[0] * b[2] - a[1] * b[3] + a[2] * b[0] + a[3] * b[1],
            a[0] * b[3] + a[1] * b[2] - a[2] * b[1] + a[3] * b[0],
        ]
    )


@ti.func
def quat_matrix(q):
    """Rotation matrix of a unit quaternion."""
    w, x, y, z = q[0], q[1], q[2], q[3]
    return ti.Matrix(
        [
            [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
            [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
            [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)],
        ]
    )


@ti.func
def rotation_2d(angle):
    c = tmath.cos(angle)
    s = tmath.sin(angle)
    return ti.Matrix([[c, -s], [s, c]])


@ti.func
def vee(m):
    """The vector of the skew-symmetric part of a 3x3 matrix: vee((M - M^T) / 2)."""
    return 0.5 * ti.Vector([m[2, 1] - m[1, 2], m[0, 2] - m[2, 0], m[1, 0] - m[0, 1]])


@ti.func
def segment_closest(p1, q1, p2, q2):
    """Parameters (s, t) in [0, 1] of the closest points p1 + s (q1 - p1) and p2 + t (q2 - p2) of two segments of
    nonzero length (Ericson, Real-Time Collision Detection, 5.1.9)."""
    d1 = q1 - p1
    d2 = q2 - p2
    r = p1 - p2
    a = d1.dot(d1)
    e = d2.dot(d2)
    f = d2.dot(r)
    c = d1.dot(r)
    b = d1.dot(d2)
    denom = a * e - b * b
    s = 0.0
    if denom > 1e-12 * a * e:  # not parallel
        s = ti.min(ti.max((b * f - c * e) / denom, 0.0), 1.0)
    t = (b * s + f) / e
    if t < 0.0:
        t = 0.0
        s = ti.min(ti.max(-c / a, 0.0), 1.0)
    elif t > 1.0:
        t = 1.0
        s = ti.min(ti.max((b - c) / a, 0.0), 1.0)
    return s, t


@ti.func
def unit_mass_2d(kind, size):
    """(area, polar moment of area about the centre) of a 2D shape: circle, box or capsule (ids 0, 1, 2)."""
    area = 0.0
    inertia = 0.0
    r = size[0]
    if kind == 0:
        area = math.pi * r * r
        inertia = 0.5 * area * r * r
    elif kind == 1:
        area = 4.0 * size[0] * size[1]
        inertia = area * (size[0] * size[0] + size[1] * size[1]) / 3.0
    else:
        # a 2r x 2h rectangle plus two half discs whose centroids sit d = 4 r / (3 pi) beyond its ends
        h = size[1]
        rect = 4.0 * r * h
        disc = math.pi * r * r
        d = 4.0 * r / (3.0 * math.pi)
        area = rect + disc
        inertia = rect * (r * r + h * h) / 3.0 + disc * (0.5 * r * r + h * h + 2.0 * h * d)
    return area, inertia


@ti.func
def unit_mass_3d(kind, size):
    """(volume, principal moments of volume about the centre) of a 3D shape: sphere, box or capsule (axis z)."""
    vol = 0.0
    moments = ti.Vector.zero(float, 3)
    r = size[0]
    if kind == 0:
        vol = 4.0 / 3.0 * math.pi * r * r * r
        moments = ti.Vector([1.0, 1.0, 1.0]) * 0.4 * vol * r * r
    elif kind == 1:
        a, b, c = size[0], size[1], size[2]
        vol = 8.0 * a * b * c
        moments = vol / 3.0 * ti.Vector([b * b + c * c, a * a + c * c, a * a + b * b])
    else:
        # a cylinder of radius r and length 2h plus two hemispheres (centroids 3r/8 beyond the ends;
        # moment of a hemisphere about its centroid, perpendicular to the axis: 83/320 m r^2)
        h = size[1]
        cyl = 2.0 * h * math.pi * r * r
        sph = 4.0 / 3.0 * math.pi * r * r * r
        vol = cyl + sph
        axial = 0.5 * cyl * r * r + 0.4 * sph * r * r
        lateral = cyl * (0.25 * r * r + h * h / 3.0) + sph * (83.0 / 320.0 * r * r + (h + 0.375 * r) ** 2)
        moments = ti.Vector([lateral, lateral, axial])
    return vol, moments
