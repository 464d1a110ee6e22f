"""Grid, boundaries, obstacles, sources and initial fields of a smoke simulation, built in plain Python.

Everything here is checked before any Taichi field is allocated: a bad resolution, a boundary name, an obstacle that
fills the domain, a source outside it, or a grid too large for this machine's memory raises `DiffsimError` naming
the item.

Layout (MAC, staggered): cell ``I`` covers ``[I h, (I + 1) h]`` per axis; scalars and pressure live at cell centres;
velocity component ``d`` lives on the faces normal to axis ``d``. Velocity arrays have shape ``(n_0 + 1, ...,
n_{D-1} + 1, D)``: entry ``[I][d]`` is the face between cells ``I - e_d`` and ``I``, at ``(I + 1/2 - e_d / 2) h``.
Entries with ``I_k = n_k`` for an axis ``k != d`` are padding (always zero) so that one array serves every
component. The last axis points up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import DiffsimError

SIDES = ("closed", "open")
BOUNDARIES = ("closed", "open", "periodic")

#: largest number of cells we accept without asking for memory; the real limit is the memory estimate
MAX_CELLS = 512**3


@dataclass
class Shape:
    """A box (``lo``, ``hi`` corners, m) or a ball (``center``, ``radius``, m) or a boolean cell mask."""

    kind: str
    lo: tuple | None = None
    hi: tuple | None = None
    center: tuple | None = None
    radius: float | None = None
    mask: np.ndarray | None = None

    def rasterize(self, centers: np.ndarray) -> np.ndarray:
        """Boolean mask over cells whose centre is inside. centers: (*n, D) in m."""
        if self.kind == "mask":
            return np.asarray(self.mask, dtype=bool)
        if self.kind == "box":
            lo, hi = np.asarray(self.lo), np.asarray(self.hi)
            return np.all((centers >= lo) & (centers <= hi), axis=-1)
        c = np.asarray(self.center)
        return np.sum((centers - c) ** 2, axis=-1) <= self.radius**2


@dataclass
class Source:
    """An inflow region: each step adds ``dt * rate[k]`` of scalar k to the cells inside (parameter
    ``source.rate``, one row per source)."""

    shape: Shape
    rates: dict


class SmokeModel:
    """A smoke (incompressible, inviscid or viscous) flow on a uniform grid in 2D or 3D.

    resolution: cells per axis, 2 or 3 entries (the last axis points up).
    cell_size: h in m (default: the domain is 1 m along axis 0, h = 1 / resolution[0]).
    boundary: one of "closed" (solid walls, no flow through), "open" (pressure 0 outside, free outflow) or
        "periodic" for every axis, or one entry per axis, each a name or a (lower, upper) pair of "closed" / "open".
    scalars: names of the advected cell-centred scalars (density, temperature, ...); at least one.
    """

    def __init__(
        self,
        resolution,
        cell_size: float | None = None,
        boundary="closed",
        scalars=("density",),
        source: str = "model",
        prefix: str = "",
    ):
        self.source = source
        self.prefix = prefix  # key path of the grid settings in error messages ("grid." in a scene file)
        self.resolution = _check_resolution(resolution, f"{source}: {prefix}resolution")
        self.dim = len(self.resolution)
        if cell_size is None:
            cell_size = 1.0 / self.resolution[0]
        if not (isinstance(cell_size, (int, float)) and math.isfinite(cell_size) and cell_size > 0):
            raise DiffsimError(f"must be > 0, got {cell_size}", where=f"{source}: {prefix}cell_size")
        self.h = float(cell_size)
        self.boundary = _check_boundary(boundary, self.dim, f"{source}: {prefix}boundary")
        names = [str(s) for s in scalars]
        if not names:
            raise DiffsimError(
                "at least one advected scalar is needed (e.g. density)", where=f"{source}: {prefix}scalars"
            )
        if len(set(names)) != len(names):
            raise DiffsimError(
                f"scalar names must be unique, got {names}", where=f"{source}: {prefix}scalars"
            )
        self.scalars = names
        self.obstacles: list[Shape] = []
        self.sources: list[Source] = []
        n = self.resolution
        self.initial_scalars = np.zeros((*n, len(names)))
        self.initial_velocity = np.zeros((*(k + 1 for k in n), self.dim))

    # -- geometry -----------------------------------------------------------------------------------------------
    @property
    def extent(self) -> tuple[float, ...]:
        """Domain size per axis (m)."""
        return tuple(k * self.h for k in self.resolution)

    @property
    def n_cells(self) -> int:
        return int(np.prod(self.resolution))

    def cell_centers(self) -> np.ndarray:
        """(*n, D) cell centre coordinates in m."""
        axes = [(np.arange(k) + 0.5) * self.h for k in self.resolution]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)

    def face_centers(self, d: int) -> np.ndarray:
        """(*(n + 1), D) positions of the faces holding velocity component d (padding entries included)."""
        axes = [(np.arange(k + 1) + (0.0 if a == d else 0.5)) * self.h for a, k in enumerate(self.resolution)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)

    def scalar_index(self, name: str, where: str = "scalar") -> int:
        if name not in self.scalars:
            raise DiffsimError(
                f"no scalar named {name!r}; the model has {', '.join(self.scalars)}", where=where
            )
        return self.scalars.index(name)

    # -- builders -----------------------------------------------------------------------------------------------
    def _shape(self, what: str, lo=None, hi=None, center=None, radius=None, mask=None) -> Shape:
        where = f"{self.source}: {what}"
        given = [k for k, v in (("box", lo), ("ball", center), ("mask", mask)) if v is not None]
        if len(given) != 1:
            raise DiffsimError(
                "give exactly one of: lo and hi (a box), center and radius (a ball), or mask", where=where
            )
        if mask is not None:
            m = np.asarray(mask)
            if m.shape != self.resolution:
                raise DiffsimError(
                    f"mask has shape {m.shape}, the grid has {self.resolution} cells", where=where
                )
            return Shape("mask", mask=m.astype(bool))
        if lo is not None:
            if hi is None:
                raise DiffsimError("a box needs both lo and hi", where=where)
            lo, hi = _vector(lo, self.dim, f"{where}.lo"), _vector(hi, self.dim, f"{where}.hi")
            if np.any(lo >= hi):
                raise DiffsimError(
                    f"lo must be below hi on every axis, got lo={lo.tolist()} hi={hi.tolist()}", where=where
                )
            return Shape("box", lo=tuple(lo), hi=tuple(hi))
        c = _vector(center, self.dim, f"{where}.center")
        if radius is None or not (math.isfinite(radius) and radius > 0):
            raise DiffsimError(f"radius must be > 0, got {radius}", where=f"{where}.radius")
        return Shape("ball", center=tuple(c), radius=float(radius))

    def add_obstacle(self, *, lo=None, hi=None, center=None, radius=None, mask=None) -> int:
        """A static solid: no flow through its faces, scalars are zero inside. Returns its index."""
        shape = self._shape(f"obstacles[{len(self.obstacles)}]", lo, hi, center, radius, mask)
        self.obstacles.append(shape)
        return len(self.obstacles) - 1

    def add_source(self, rates: dict, *, lo=None, hi=None, center=None, radius=None, mask=None) -> int:
        """An inflow: each step adds dt * rates[name] (units of the scalar per second) to the cells inside."""
        where = f"{self.source}: sources[{len(self.sources)}]"
        if not isinstance(rates, dict) or not rates:
            raise DiffsimError(
                "rates must name at least one scalar, e.g. {'density': 1.0}", where=f"{where}.rates"
            )
        for name, value in rates.items():
            self.scalar_index(name, where=f"{where}.rates")
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise DiffsimError(f"must be a finite number, got {value!r}", where=f"{where}.rates.{name}")
        shape = self._shape(f"sources[{len(self.sources)}]", lo, hi, center, radius, mask)
        self.sources.append(Source(shape, {k: float(v) for k, v in rates.items()}))
        return len(self.sources) - 1

    def set_scalar(self, name: str, values) -> None:
        """Initial values of one scalar over the cells (parameter ``initial.<name>``)."""
        k = self.scalar_index(name, where=f"{self.source}: initial.{name}")
        arr = np.asarray(values, dtype=np.float64)
        try:
            arr = np.broadcast_to(arr, self.resolution)
        except ValueError:
            raise DiffsimError(
                f"has shape {arr.shape}, the grid has {self.resolution} cells",
                where=f"{self.source}: initial.{name}",
            ) from None
        if not np.all(np.isfinite(arr)):
            raise DiffsimError("must be finite", where=f"{self.source}: initial.{name}")
        self.initial_scalars[..., k] = arr

    def add_blob(self, name: str, center, radius: float, value: float = 1.0, sharpness: float = 4.0) -> None:
        """Add a smooth ball of scalar `name`: value * (1 - smoothstep) falling off over the outer 1/sharpness of
        the radius (m)."""
        where = f"{self.source}: blob"
        c = _vector(center, self.dim, f"{where}.center")
        if not (radius > 0):
            raise DiffsimError(f"radius must be > 0, got {radius}", where=f"{where}.radius")
        r = np.sqrt(np.sum((self.cell_centers() - c) ** 2, axis=-1)) / radius
        edge = np.clip((1.0 - r) * sharpness, 0.0, 1.0)
        k = self.scalar_index(name, where=where)
        self.initial_scalars[..., k] += value * edge * edge * (3 - 2 * edge)

    def set_velocity(self, velocity) -> None:
        """Initial velocity: a constant vector (m/s), an array of the MAC shape ``(*(n + 1), D)``, or a function
        ``u(x) -> (..., D)`` of positions ``x`` (..., D) in m, sampled at each component's faces."""
        where = f"{self.source}: initial.velocity"
        shape = (*(k + 1 for k in self.resolution), self.dim)
        if callable(velocity):
            out = np.zeros(shape)
            for d in range(self.dim):
                out[..., d] = np.asarray(velocity(self.face_centers(d)), dtype=np.float64)[..., d]
        else:
            arr = np.asarray(velocity, dtype=np.float64)
            if arr.shape == (self.dim,):
                out = np.broadcast_to(arr, shape).copy()
            elif arr.shape == shape:
                out = arr.copy()
            else:
                raise DiffsimError(
                    f"expected {self.dim} components or an array of shape {shape}, got {arr.shape}",
                    where=where,
                )
        if not np.all(np.isfinite(out)):
            raise DiffsimError("must be finite", where=where)
        self.initial_velocity = out

    # -- finalize -----------------------------------------------------------------------------------------------
    def finalize(self) -> dict[str, np.ndarray]:
        """Masks and initial arrays for the system; raises on a domain without fluid.

        Returns solid (n, bool), face_open (MAC shape + (D,), 1.0 where the face is a free fluid face),
        component (n, int: index of the closed fluid region the cell belongs to, -1 if the region touches an open
        boundary or the cell is solid), n_components, sources (n_sources, n) float masks, source_rates
        (n_sources, S), initial_scalars, initial_velocity (zero on closed faces and padding).
        """
        src, n, D = self.source, self.resolution, self.dim
        centers = self.cell_centers()
        solid = np.zeros(n, dtype=bool)
        for shape in self.obstacles:
            solid |= shape.rasterize(centers)
        face_open = np.zeros((*(k + 1 for k in n), D))
        for _ in range(2):  # a second pass after cells without any open face became solid
            face_open[...] = 0.0
            for d in range(D):
                face_open[..., d] = self._open_faces(d, solid)
            per_cell = np.zeros(n)
            for d in range(D):
                lower = [slice(0, k) for k in n]
                upper = [slice(0, k) for k in n]
                upper[d] = slice(1, n[d] + 1)
                per_cell += face_open[(*lower, d)] + face_open[(*upper, d)]
            isolated = (per_cell == 0) & ~solid
            if not isolated.any():
                break
            solid |= isolated
        if solid.all():
            raise DiffsimError(
                f"the obstacles cover the whole domain ({self.n_cells} cells): there is no fluid left",
                where=f"{src}: obstacles",
            )
        component, n_comp = self._closed_regions(solid, face_open)
        S = len(self.scalars)
        src_masks = np.zeros((max(len(self.sources), 1), *n))
        rates = np.zeros((max(len(self.sources), 1), S))
        for i, s in enumerate(self.sources):
            m = s.shape.rasterize(centers) & ~solid
            if not m.any():
                raise DiffsimError(
                    "the source covers no fluid cell (outside the domain, or inside an obstacle)",
                    where=f"{src}: sources[{i}]",
                )
            src_masks[i] = m
            for name, value in s.rates.items():
                rates[i, self.scalars.index(name)] = value
        init_q = self.initial_scalars * (~solid)[..., None]
        init_v = self.initial_velocity * face_open
        return {
            "solid": solid,
            "face_open": face_open,
            "component": component,
            "n_components": n_comp,
            "sources": src_masks,
            "source_rates": rates,
            "initial_scalars": init_q,
            "initial_velocity": init_v,
        }

    def _open_faces(self, d: int, solid: np.ndarray) -> np.ndarray:
        """1.0 where the component-d face at each MAC index is a free fluid face, 0 on walls, solids, padding."""
        n = self.resolution
        out = np.zeros(tuple(k + 1 for k in n))
        # interior faces of axis d: between cells i-1 and i along d
        region = [slice(0, k) for k in n]
        region[d] = slice(0, n[d] + 1)
        faces = np.zeros(tuple(n[k] + (1 if k == d else 0) for k in range(self.dim)))
        lo_cells = np.take(solid, np.arange(-1, n[d]), axis=d, mode="wrap")
        hi_cells = np.take(solid, np.arange(0, n[d] + 1), axis=d, mode="wrap")
        faces[...] = (~lo_cells & ~hi_cells).astype(float)
        side = self.boundary[d]
        first = [slice(None)] * self.dim
        last = [slice(None)] * self.dim
        first[d], last[d] = 0, n[d]
        if side == "periodic":
            pass  # the wrapped neighbours above are right; faces 0 and n are the same face
        else:
            lo_kind, hi_kind = side
            inside_lo = ~np.take(solid, 0, axis=d)
            inside_hi = ~np.take(solid, n[d] - 1, axis=d)
            faces[tuple(first)] = inside_lo if lo_kind == "open" else 0.0
            faces[tuple(last)] = inside_hi if hi_kind == "open" else 0.0
        out[tuple(region)] = faces
        return out

    def _closed_regions(self, solid: np.ndarray, face_open: np.ndarray) -> tuple[np.ndarray, int]:
        """Label the connected fluid regions (through open faces); those touching no open boundary make the
        pressure equation singular (pressure defined up to a constant) and get an index >= 0."""
        n, D = self.resolution, self.dim
        parent = np.arange(self.n_cells)
        flat = np.arange(self.n_cells).reshape(n)

        def find(a):
            root = a
            while parent[root] != root:
                root = parent[root]
            while parent[a] != root:
                parent[a], a = root, parent[a]
            return root

        open_boundary = np.zeros(n, dtype=bool)
        for d in range(D):
            f = np.moveaxis(face_open[..., d], d, 0)
            cells = np.moveaxis(flat, d, 0)
            inner = [slice(0, k) for k in np.moveaxis(np.zeros(n), d, 0).shape]
            f = f[(slice(None), *inner[1:])]
            # faces 1..n-1 join cells i-1 and i; periodic face 0 joins n-1 and 0
            pairs_a, pairs_b = [], []
            w = f[1 : n[d]] > 0
            pairs_a.append(cells[:-1][w])
            pairs_b.append(cells[1:][w])
            if self.boundary[d] == "periodic":
                w0 = f[0] > 0
                pairs_a.append(cells[-1][w0])
                pairs_b.append(cells[0][w0])
            else:
                lo_kind, hi_kind = self.boundary[d]
                ob = np.moveaxis(open_boundary, d, 0)
                if lo_kind == "open":
                    ob[0] |= f[0] > 0
                if hi_kind == "open":
                    ob[-1] |= f[n[d]] > 0
            for a_, b_ in zip(np.concatenate(pairs_a), np.concatenate(pairs_b), strict=False):
                ra, rb = find(int(a_)), find(int(b_))
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
        roots = np.array([find(i) for i in range(self.n_cells)]).reshape(n)
        leaky = set(np.unique(roots[open_boundary]).tolist())
        component = -np.ones(n, dtype=np.int64)
        labels: dict[int, int] = {}
        for idx in zip(*np.nonzero(~solid), strict=False):
            r = int(roots[idx])
            if r in leaky:
                continue
            component[idx] = labels.setdefault(r, len(labels))
        return component, len(labels)


# ----------------------------------------------------------------------------------------------------------
# Checks


def _check_resolution(resolution, where: str) -> tuple[int, ...]:
    try:
        res = tuple(resolution)
    except TypeError:
        raise DiffsimError(f"must be a list of 2 or 3 cell counts, got {resolution!r}", where=where) from None
    if len(res) not in (2, 3):
        raise DiffsimError(f"must have 2 or 3 entries (2D or 3D), got {len(res)}: {list(res)}", where=where)
    out = []
    for k, v in enumerate(res):
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, np.integer))
            and not (isinstance(v, float) and v.is_integer())
        ):
            raise DiffsimError(f"must be whole numbers, got {v!r} on axis {k}", where=where)
        if int(v) < 1:
            raise DiffsimError(f"must be >= 1 cell per axis, got {int(v)} on axis {k}", where=where)
        if int(v) < 2:
            raise DiffsimError(f"needs at least 2 cells per axis, got {int(v)} on axis {k}", where=where)
        out.append(int(v))
    cells = int(np.prod(out, dtype=np.int64))
    if cells > MAX_CELLS:
        raise DiffsimError(
            f"{'x'.join(map(str, out))} = {cells:,} cells is more than the {MAX_CELLS:,} "
            f"supported (about {estimate_bytes(out, frames=2) / 2**30:.0f} GiB for even two frames)",
            where=where,
        )
    return tuple(out)


def _check_boundary(boundary, dim: int, where: str) -> tuple:
    entries = [boundary] * dim if isinstance(boundary, str) else list(boundary)
    if len(entries) != dim:
        raise DiffsimError(f"needs one entry per axis ({dim}), got {len(entries)}", where=where)
    out = []
    for k, e in enumerate(entries):
        if isinstance(e, str):
            if e not in BOUNDARIES:
                raise DiffsimError(
                    f"axis {k}: unknown boundary {e!r}; choose closed, open or periodic", where=where
                )
            out.append("periodic" if e == "periodic" else (e, e))
        else:
            pair = list(e)
            if len(pair) != 2 or any(p not in SIDES for p in pair):
                raise DiffsimError(
                    f"axis {k}: a (lower, upper) pair of closed/open, got {e!r} (periodic applies "
                    "to both sides)",
                    where=where,
                )
            out.append((pair[0], pair[1]))
    return tuple(out)


def _vector(v, dim: int, where: str) -> np.ndarray:
    try:
        arr = np.asarray(v, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DiffsimError(f"must be {dim} numbers, got {v!r}", where=where) from None
    if arr.shape != (dim,) or not np.all(np.isfinite(arr)):
        raise DiffsimError(f"must be {dim} finite numbers, got {v!r}", where=where)
    return arr


# ----------------------------------------------------------------------------------------------------------
# Memory


def per_frame_values(
    resolution, n_scalars: int = 1, maccormack: bool = False, vorticity: bool = False, viscosity: bool = False
) -> int:
    """Real numbers one frame of one copy holds (state and scratch), for the memory estimate."""
    D = len(resolution)
    cells = int(np.prod(resolution, dtype=np.int64))
    faces = int(np.prod([k + 1 for k in resolution], dtype=np.int64))
    vel = faces * D
    values = vel + cells * n_scalars + cells  # velocity, scalars, pressure
    values += vel + cells  # velocity before projection, divergence
    if vorticity or viscosity:
        values += vel  # the advected velocity (otherwise the forces are added in the advection pass)
    if maccormack:
        values += 2 * vel + 2 * cells * n_scalars
    if vorticity:
        values += cells * (D + (1 if D == 2 else 3) + D)
    return values


def estimate_bytes(
    resolution,
    frames: int,
    batch: int = 1,
    n_scalars: int = 1,
    maccormack: bool = False,
    vorticity: bool = False,
    precision_bytes: int = 4,
    snapshot_frames: int = 0,
    viscosity: bool = False,
) -> int:
    """Bytes a rollout holds: `frames` frames of state and scratch with gradients, snapshot frames of state, and
    the pressure solver's work vectors."""
    per = per_frame_values(resolution, n_scalars, maccormack, vorticity, viscosity) * batch
    cells = int(np.prod([k + 2 for k in resolution], dtype=np.int64))
    D = len(resolution)
    faces = int(np.prod([k + 1 for k in resolution], dtype=np.int64))
    state = (faces * D + int(np.prod(resolution, dtype=np.int64)) * (n_scalars + 1)) * batch
    solver = 8 * cells * batch + 4 * cells + faces * D
    return precision_bytes * (2 * per * frames + state * snapshot_frames + solver)
