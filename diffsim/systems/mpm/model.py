"""MPM model: the background grid, the materials, the particles sampled in boxes, spheres and voxel masks.

Everything here is plain Python and numpy, checked before any field is allocated. Units: m, s, kg; in 2D a density
is a mass per area (kg/m^2, i.e. per metre of depth) and a modulus a force per length (Pa m = N/m), which is how
plane-strain quantities scale; the numbers are those of a 1 m thick slab.

The grid has `res` nodes per axis, spaced `dx`; node i sits at x = i dx. A particle's quadratic B-spline touches the
3^dim nodes from floor(x / dx - 0.5), so a particle must lie in [0.5 dx, (res - 1.5) dx) on every axis: that is the
grid's interior, and `finalize` counts the particles outside it.

Each sampling call adds a body: its particles start with the body's velocity (parameter ``bodies.velocity``,
one vector per body) plus their own (``initial.velocity``, zero unless `velocities` is edited), so a throw is fitted
through a few numbers, a velocity field through many.

Particles per cell (`ppc`): the number of particles sampled per grid cell (dx^dim) of a body. When `ppc` is a
perfect power k^dim (4 or 9 in 2D, 8 or 27 in 3D) the particles sit on a regular lattice of spacing dx / k, like
DiffTaichi's diffmpm (2 x 2 per cell); otherwise they are drawn uniformly at random (seeded). Each particle carries
the volume of its body divided by its particle count, so a body's mass is density x its exact volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...errors import DiffsimError

#: material kinds; the index is the code stored per material
MATERIAL_KINDS = ("fluid", "elastic", "sand")
FLUID, ELASTIC, SAND = range(3)

#: the constants of each kind that are parameters (``materials.<name>.<constant>``)
KIND_CONSTANTS = {
    "fluid": ("density", "bulk_modulus", "viscosity"),
    "elastic": ("density", "youngs_modulus", "poisson_ratio", "viscosity"),
    "sand": ("density", "youngs_modulus", "poisson_ratio", "friction_angle", "cohesion"),
}

#: physical unit of each constant (dim = spatial dimension)
UNITS = {
    "density": "kg/m^dim",
    "bulk_modulus": "Pa",
    "viscosity": "Pa s",
    "youngs_modulus": "Pa",
    "poisson_ratio": "1",
    "friction_angle": "deg",
    "cohesion": "Pa",
}


@dataclass
class Material:
    """A material, shared by the particles that name it.

    kind: "fluid" (weakly compressible, Tait equation of state p = K (J^-gamma - 1) / gamma, Newtonian viscosity),
        "elastic" (compressible neo-Hookean, Young's modulus E and Poisson ratio nu, optional viscosity) or
        "sand" (Drucker-Prager elastoplasticity of Klar et al. 2016 on the Hencky strain, friction angle in degrees,
        optional cohesion).
    density (kg/m^dim), bulk_modulus K (Pa), viscosity eta (Pa s), youngs_modulus E (Pa), poisson_ratio nu in
    (-1, 0.5), friction_angle phi (degrees, in (0, 90)), cohesion c >= 0 (Pa: the mean tensile stress sand can
    bear; 0 is Klar's cohesionless sand), eos_exponent gamma (fluid; a constant, not fitted).
    """

    name: str
    kind: str
    density: float = 1000.0
    youngs_modulus: float = 1e5
    poisson_ratio: float = 0.3
    bulk_modulus: float = 1e5
    viscosity: float = 0.0
    friction_angle: float = 30.0
    cohesion: float = 0.0
    eos_exponent: float = 7.0

    def lame(self) -> tuple[float, float]:
        """(mu, lambda) of an elastic or sand material (Pa)."""
        e, nu = self.youngs_modulus, self.poisson_ratio
        return e / (2 * (1 + nu)), e * nu / ((1 + nu) * (1 - 2 * nu))

    def wave_speed(self) -> float:
        """The fastest elastic wave at rest (m/s): sqrt((lambda + 2 mu) / rho) for a solid, sqrt(K / rho) for a
        fluid (the Tait equation's dp/drho at J = 1)."""
        if self.kind == "fluid":
            return math.sqrt(self.bulk_modulus / self.density)
        mu, lam = self.lame()
        return math.sqrt((lam + 2 * mu) / self.density)

    def check(self, where: str) -> None:
        if self.kind not in MATERIAL_KINDS:
            raise DiffsimError(
                f"unknown material kind {self.kind!r}; choose {', '.join(MATERIAL_KINDS)}",
                where=f"{where}.kind",
            )
        positive = ["density"] + {"fluid": ["bulk_modulus", "eos_exponent"]}.get(
            self.kind, ["youngs_modulus"]
        )
        for key in positive:
            val = getattr(self, key)
            if not (math.isfinite(val) and val > 0):
                raise DiffsimError(f"must be > 0, got {val:g}", where=f"{where}.{key}")
        if self.kind != "sand" and not (math.isfinite(self.viscosity) and self.viscosity >= 0):
            raise DiffsimError(f"must be >= 0, got {self.viscosity:g}", where=f"{where}.viscosity")
        if self.kind in ("elastic", "sand"):
            nu = self.poisson_ratio
            if not math.isfinite(nu) or nu >= 0.5:
                raise DiffsimError(
                    f"must be < 0.5, got {nu:g}: at 0.5 the material is incompressible and "
                    "lambda = E nu / ((1 + nu)(1 - 2 nu)) is infinite (explicit MPM cannot step it)",
                    where=f"{where}.poisson_ratio",
                )
            if nu <= -1:
                raise DiffsimError(f"must be > -1, got {nu:g}", where=f"{where}.poisson_ratio")
        if self.kind == "sand" and not (0 < self.friction_angle < 90):
            raise DiffsimError(
                f"must be in (0, 90) degrees, got {self.friction_angle:g}", where=f"{where}.friction_angle"
            )
        if self.kind == "sand" and not (math.isfinite(self.cohesion) and self.cohesion >= 0):
            raise DiffsimError(f"must be >= 0, got {self.cohesion:g}", where=f"{where}.cohesion")


@dataclass
class Body:
    """One sampled shape: its particles are [start, start + count); velocity is its initial velocity (m/s)."""

    name: str
    shape: str
    material: int
    start: int
    count: int
    volume: float
    velocity: np.ndarray


@dataclass
class MPMModel:
    """Grid, materials and particles of an MPM scene (2D or 3D).

    dim: 2 or 3. res: nodes per axis (an int for all axes, or one per axis). dx: node spacing (m).
    ppc: default particles per cell of the sampling methods.
    """

    dim: int = 2
    res: int | tuple = 64
    dx: float = 1.0 / 64
    ppc: int | None = None
    source: str = "model"
    materials: list = field(default_factory=list)
    bodies: list = field(default_factory=list)
    positions: list = field(default_factory=list)  # arrays (k, dim)
    velocities: list = field(
        default_factory=list
    )  # per-particle velocity added to the body's, arrays (k, dim)
    volumes: list = field(default_factory=list)
    material_ids: list = field(default_factory=list)
    actuator_ids: list = field(default_factory=list)
    actuator_directions: dict = field(default_factory=dict)  # actuator -> unit vector (material frame)

    def __post_init__(self):
        if self.dim not in (2, 3):
            raise DiffsimError(f"dim must be 2 or 3, got {self.dim}", where=f"{self.source}: dim")
        res = (self.res,) * self.dim if np.isscalar(self.res) else tuple(self.res)
        if len(res) != self.dim or any(int(r) != r or r < 6 for r in res):
            raise DiffsimError(
                f"must be {self.dim} integers >= 6 (nodes per axis), got {list(res)}",
                where=f"{self.source}: res",
            )
        self.res = tuple(int(r) for r in res)
        if not (math.isfinite(self.dx) and self.dx > 0):
            raise DiffsimError(f"must be > 0, got {self.dx}", where=f"{self.source}: dx")
        if self.ppc is None:
            self.ppc = 2**self.dim

    # -- materials ----------------------------------------------------------------------------------------------
    def add_material(self, name: str, kind: str, **constants) -> int:
        """Add a material; returns its index. Constants: see `Material`."""
        if any(m.name == name for m in self.materials):
            raise DiffsimError(f"duplicate material name {name!r}", where=f"{self.source}: materials")
        if not name or not all(c.isalnum() or c == "_" for c in name):
            raise DiffsimError(
                f"a material name must be letters, digits and underscores, got {name!r}",
                where=f"{self.source}: materials",
            )
        mat = Material(name, kind, **constants)
        mat.check(f"{self.source}: materials[{len(self.materials)}]")
        self.materials.append(mat)
        return len(self.materials) - 1

    def material_index(self, material: int | str) -> int:
        if isinstance(material, str):
            for i, m in enumerate(self.materials):
                if m.name == material:
                    return i
            names = ", ".join(m.name for m in self.materials) or "none"
            raise DiffsimError(f"no material named {material!r} (materials: {names})", where=self.source)
        if not 0 <= int(material) < len(self.materials):
            raise DiffsimError(
                f"material index {material} out of range (there are {len(self.materials)})", where=self.source
            )
        return int(material)

    # -- sampling -----------------------------------------------------------------------------------------------
    def add_box(
        self,
        lo,
        hi,
        material,
        ppc=None,
        velocity=None,
        actuator: int = -1,
        jitter: float = 0.0,
        seed: int = 0,
        name: str = "",
    ) -> range:
        """Fill the axis-aligned box [lo, hi] (m) with particles; returns their indices."""
        lo, hi = self._vec(lo, "lo"), self._vec(hi, "hi")
        if np.any(hi <= lo):
            raise DiffsimError(
                f"a box needs hi > lo on every axis, got lo {lo.tolist()}, hi {hi.tolist()}",
                where=f"{self.source}: bodies[{len(self.bodies)}]",
            )
        k, lattice = self._lattice(ppc)
        size = hi - lo
        rng = np.random.default_rng(seed)
        if lattice:
            # k particles per whole cell along each axis, spread evenly over the box (DiffTaichi's diffmpm sampling)
            counts = k * np.maximum(1, np.floor(size / self.dx + 1e-9).astype(int))
            spacing = size / counts
            grids = np.meshgrid(*[(np.arange(c) + 0.5) for c in counts], indexing="ij")
            pts = lo + np.stack([g.ravel() for g in grids], axis=1) * spacing
            if jitter:
                pts += (rng.random(pts.shape) - 0.5) * jitter * spacing
        else:
            count = max(1, round(self._ppc(ppc) * np.prod(size) / self.dx**self.dim))
            pts = lo + rng.random((count, self.dim)) * size
        return self._add_body(pts, float(np.prod(size)), "box", material, velocity, actuator, name)

    def add_sphere(
        self,
        center,
        radius: float,
        material,
        ppc=None,
        velocity=None,
        actuator: int = -1,
        jitter: float = 0.0,
        seed: int = 0,
        name: str = "",
    ) -> range:
        """Fill a disc (2D) or ball (3D) of `radius` (m) around `center`; returns the particle indices."""
        c = self._vec(center, "center")
        if not (math.isfinite(radius) and radius > 0):
            raise DiffsimError(
                f"must be > 0, got {radius}", where=f"{self.source}: bodies[{len(self.bodies)}].radius"
            )
        volume = math.pi * radius**2 if self.dim == 2 else 4.0 / 3.0 * math.pi * radius**3
        inside = lambda p: np.sum((p - c) ** 2, axis=1) <= radius**2  # noqa: E731
        pts = self._fill(c - radius, c + radius, inside, volume, ppc, jitter, seed)
        return self._add_body(pts, volume, "sphere", material, velocity, actuator, name)

    def add_voxels(
        self,
        mask,
        origin,
        voxel_size: float,
        material,
        ppc=None,
        velocity=None,
        actuator: int = -1,
        jitter: float = 0.0,
        seed: int = 0,
        name: str = "",
    ) -> range:
        """Fill the occupied voxels of a boolean `mask` (dim axes; voxel (i, j[, k]) covers
        origin + [i, i + 1) voxel_size ...); returns the particle indices."""
        m = np.asarray(mask, dtype=bool)
        where = f"{self.source}: bodies[{len(self.bodies)}]"
        if m.ndim != self.dim:
            raise DiffsimError(
                f"a voxel mask needs {self.dim} axes, got shape {m.shape}", where=f"{where}.mask"
            )
        if not m.any():
            raise DiffsimError("the voxel mask is empty", where=f"{where}.mask")
        if not (math.isfinite(voxel_size) and voxel_size > 0):
            raise DiffsimError(f"must be > 0, got {voxel_size}", where=f"{where}.voxel_size")
        o = self._vec(origin, "origin")
        volume = float(m.sum()) * voxel_size**self.dim
        k, lattice = self._lattice(ppc)
        rng = np.random.default_rng(seed)
        if lattice:
            # an equal lattice in every voxel, so each particle stands for the same volume
            per = max(1, round(voxel_size * k / self.dx))
            h = voxel_size / per
            sub = np.stack(
                [g.ravel() for g in np.meshgrid(*[(np.arange(per) + 0.5) * h] * self.dim, indexing="ij")],
                axis=1,
            )
            cells = np.argwhere(m) * voxel_size + o
            pts = (cells[:, None, :] + sub[None]).reshape(-1, self.dim)
            if jitter:
                pts += (rng.random(pts.shape) - 0.5) * jitter * h
        else:
            count = max(1, round(self._ppc(ppc) * volume / self.dx**self.dim))
            cells = np.argwhere(m)
            pick = cells[rng.integers(0, len(cells), size=count)]
            pts = o + (pick + rng.random((count, self.dim))) * voxel_size
        return self._add_body(pts, volume, "voxels", material, velocity, actuator, name)

    def add_particles(
        self, positions, volume, material, velocity=None, actuator: int = -1, name: str = ""
    ) -> range:
        """Explicit particles (n, dim), each of `volume` (m^dim; a number or one per particle), as one body."""
        pts = np.asarray(positions, dtype=np.float64).reshape(-1, self.dim)
        vol = np.broadcast_to(np.asarray(volume, dtype=np.float64), (len(pts),))
        if np.any(~(vol > 0)):
            raise DiffsimError(
                "particle volumes must be > 0", where=f"{self.source}: bodies[{len(self.bodies)}]"
            )
        return self._add_body(
            pts, float(vol.sum()), "particles", material, velocity, actuator, name, volumes=vol
        )

    def set_actuator_direction(self, actuator: int, direction) -> None:
        """The material direction d along which actuator `actuator` contracts or extends (default: the up axis)."""
        d = self._vec(direction, "direction")
        n = np.linalg.norm(d)
        if n == 0:
            raise DiffsimError("must not be zero", where=f"{self.source}: actuators[{actuator}].direction")
        self.actuator_directions[int(actuator)] = d / n

    # -- helpers ------------------------------------------------------------------------------------------------
    def _vec(self, v, key: str) -> np.ndarray:
        arr = np.asarray(v, dtype=np.float64).reshape(-1)
        if arr.shape != (self.dim,) or not np.all(np.isfinite(arr)):
            raise DiffsimError(
                f"must be {self.dim} finite numbers, got {np.ravel(v).tolist()}",
                where=f"{self.source}: bodies[{len(self.bodies)}].{key}",
            )
        return arr

    def _ppc(self, ppc) -> float:
        ppc = self.ppc if ppc is None else ppc
        if not (ppc > 0 and math.isfinite(ppc)):
            raise DiffsimError(
                f"must be > 0, got {ppc}", where=f"{self.source}: bodies[{len(self.bodies)}].ppc"
            )
        return float(ppc)

    def _lattice(self, ppc) -> tuple[int, bool]:
        p = self._ppc(ppc)
        k = round(p ** (1.0 / self.dim))
        return k, abs(k**self.dim - p) < 1e-9

    def _fill(self, lo, hi, inside, volume, ppc, jitter, seed) -> np.ndarray:
        """Particles inside a region given by its bounding box and an indicator function."""
        k, lattice = self._lattice(ppc)
        rng = np.random.default_rng(seed)
        if lattice:
            h = self.dx / k
            counts = np.maximum(1, np.ceil((hi - lo) / h).astype(int))
            start = (lo + hi) / 2 - counts * h / 2  # centred, so a sphere's lattice is symmetric
            grids = np.meshgrid(*[(np.arange(c) + 0.5) for c in counts], indexing="ij")
            pts = start + np.stack([g.ravel() for g in grids], axis=1) * h
            pts = pts[inside(pts)]
            if jitter:
                pts += (rng.random(pts.shape) - 0.5) * jitter * h
        else:
            count = max(1, round(self._ppc(ppc) * volume / self.dx**self.dim))
            out = []
            while sum(len(o) for o in out) < count:
                cand = lo + rng.random((2 * count, self.dim)) * (hi - lo)
                out.append(cand[inside(cand)])
            pts = np.concatenate(out)[:count]
        if len(pts) == 0:
            raise DiffsimError(
                "the shape is smaller than the particle spacing: no particle sampled",
                where=f"{self.source}: bodies[{len(self.bodies)}]",
            )
        return pts

    def _add_body(self, pts, volume, shape, material, velocity, actuator, name, volumes=None) -> range:
        mid = self.material_index(material)
        n = len(pts)
        v = np.zeros(self.dim) if velocity is None else self._vec(velocity, "velocity")
        if int(actuator) < -1:
            raise DiffsimError(
                f"must be >= -1, got {actuator}", where=f"{self.source}: bodies[{len(self.bodies)}].actuator"
            )
        if int(actuator) >= 0 and self.materials[mid].kind == "fluid":
            raise DiffsimError(
                "a fluid cannot be actuated (active stress needs a solid's deformation gradient)",
                where=f"{self.source}: bodies[{len(self.bodies)}].actuator",
            )
        start = self.n_particles
        self.positions.append(np.asarray(pts, dtype=np.float64))
        self.velocities.append(np.zeros((n, self.dim)))
        self.volumes.append(
            np.full(n, volume / n) if volumes is None else np.asarray(volumes, dtype=np.float64)
        )
        self.material_ids.append(np.full(n, mid, dtype=np.int64))
        self.actuator_ids.append(np.full(n, int(actuator), dtype=np.int64))
        self.bodies.append(Body(name or f"{shape}{len(self.bodies)}", shape, mid, start, n, float(volume), v))
        return range(start, start + n)

    # -- summary ------------------------------------------------------------------------------------------------
    @property
    def n_particles(self) -> int:
        return int(sum(len(p) for p in self.positions))

    @property
    def n_actuators(self) -> int:
        ids = [int(a.max()) for a in self.actuator_ids if len(a)]
        return max(ids, default=-1) + 1

    def interior(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) of the region where a particle's 3^dim stencil stays on the grid: [0.5 dx, (res - 1.5) dx)."""
        res = np.asarray(self.res, dtype=np.float64)
        return np.full(self.dim, 0.5 * self.dx), (res - 1.5) * self.dx

    def finalize(self) -> dict[str, np.ndarray]:
        """Check everything; numpy arrays of the particles and materials."""
        src = self.source
        if not self.materials:
            raise DiffsimError("no materials", where=f"{src}: materials")
        if self.n_particles == 0:
            raise DiffsimError("no particles: add a box, sphere or voxel body", where=f"{src}: bodies")
        x = np.concatenate(self.positions)
        v = np.concatenate(self.velocities)
        lo, hi = self.interior()
        outside = np.any((x < lo) | (x >= hi), axis=1)
        if outside.any():
            first = int(np.nonzero(outside)[0][0])
            body = next(i for i, b in enumerate(self.bodies) if b.start <= first < b.start + b.count)
            region = (
                f"[{lo[0]:g}, {hi[0]:g}) m on every axis"
                if np.all(hi == hi[0])
                else " x ".join(f"[{lo[0]:g}, {h:g})" for h in hi) + " m"
            )
            raise DiffsimError(
                f"{int(outside.sum())} of {len(x)} particles lie outside the grid's interior {region} (the 3^"
                f"{self.dim} B-spline stencil of each must fit on the {'x'.join(map(str, self.res))} grid of "
                f"dx = {self.dx:g} m); the first is particle {first} at {np.round(x[first], 6).tolist()}",
                where=f"{src}: bodies[{body}]",
            )
        if not np.all(np.isfinite(v)):
            raise DiffsimError("initial velocities must be finite", where=f"{src}: bodies")
        body = np.concatenate([np.full(b.count, k, dtype=np.int64) for k, b in enumerate(self.bodies)])
        n_act = self.n_actuators
        directions = np.zeros((max(n_act, 1), self.dim))
        directions[:, -1] = 1.0
        for a, d in self.actuator_directions.items():
            if not 0 <= a < max(n_act, 1):
                raise DiffsimError(
                    f"actuator {a} has a direction but no particles", where=f"{src}: actuators"
                )
            directions[a] = d
        if n_act:
            present = set(np.concatenate(self.actuator_ids).tolist())
            missing = [a for a in range(n_act) if a not in present]
            if missing:
                raise DiffsimError(
                    f"actuators must be numbered 0..{n_act - 1} without gaps; no particle has "
                    f"actuator {missing[0]}",
                    where=f"{src}: bodies",
                )
        return {
            "x": x,
            "v": v,
            "body": body,
            "body_velocity": np.stack([b.velocity for b in self.bodies]),
            "volume": np.concatenate(self.volumes),
            "material": np.concatenate(self.material_ids),
            "actuator": np.concatenate(self.actuator_ids),
            "actuator_direction": directions,
        }
