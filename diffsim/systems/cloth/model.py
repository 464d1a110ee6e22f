"""Cloth model: a triangle mesh, its material and its boundary conditions, built in plain Python and checked
before any field is allocated.

Two ways to get a mesh:

- `ClothModel.grid(size, resolution)`: a rectangle of resolution[0] x resolution[1] vertices, cells split into two
  triangles with alternating diagonals (no preferred shear direction); vertex (i, j) has index j * nx + i.
- `ClothModel.from_obj(path)`: the vertices (``v``) and faces (``f``, polygons split into fans) of an OBJ file.

`finalize()` checks the mesh (no face, a zero-area triangle, an edge shared by more than two triangles, a vertex
whose triangles do not form one fan, a vertex no triangle uses, pins or handles naming missing vertices: each a
`DiffsimError` naming the item and the file, with the OBJ line) and derives what the kernels need: the rest shape of
every triangle (inverse edge matrix, area), lumped vertex areas, and the bending hinges (two triangles sharing an
edge: rest dihedral angle and weight).

Units: positions in m, velocities in m/s, area density in kg/m^2, stretch modulus (Young's modulus times
thickness, the 2D modulus of the sheet) in N/m, bending stiffness in N m, damping coefficients in N s/m (stretch)
and N m s (bending), loads in N.
"""

from __future__ import annotations

import math
import os
import stat
from dataclasses import dataclass, field

import numpy as np

from ...errors import DiffsimError

#: the largest OBJ file read (bytes)
MAX_OBJ_BYTES = 256 * 2**20


def rotation_matrix(rotvec) -> np.ndarray:
    """Rotation matrix of a rotation vector (axis times angle in radians), by Rodrigues' formula."""
    r = np.asarray(rotvec, dtype=np.float64).reshape(3)
    angle = float(np.linalg.norm(r))
    if angle < 1e-15:
        return np.eye(3)
    k = r / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * kx + (1 - math.cos(angle)) * kx @ kx


#: atan(z) = z P(z^2) on [-1, 1], max error 9e-10 rad: the kernels' arctangent (see `system._atan2`)
ATAN_COEFFS = (
    0.99999998056148331,
    -0.33333180381041494,
    0.19996436860733022,
    -0.14247222936456866,
    0.10878010681386194,
    -0.082137629233744278,
    0.05502811168452313,
    -0.028490779799398437,
    0.0095673396522177705,
    -0.0015093026077765174,
)


def atan2(y, x):
    """numpy twin of the kernels' polynomial atan2, so that rest angles and energies match the simulation's to
    rounding (the library atan2 differs from it by up to 9e-10 rad)."""
    y, x = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    swap = np.abs(y) > np.abs(x)
    den = np.where(swap, y, x)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(swap, x, y) / np.where(den >= 0, den + 1e-30, den - 1e-30)
    t = z * z
    p = np.zeros_like(t)
    for c in ATAN_COEFFS[::-1]:
        p = p * t + c
    r = z * p
    half = np.where(y >= 0, 0.5 * math.pi, -0.5 * math.pi)
    return np.where(swap, half - r, np.where(x >= 0, r, r + 2.0 * half))


def _cot(v, u, w):
    """Cotangent of the angle at v of the triangle (v, u, w), rows of points (n, 3)."""
    e1, e2 = u - v, w - v
    return np.einsum("nd,nd->n", e1, e2) / np.linalg.norm(np.cross(e1, e2), axis=1)


def quadratic_bending_weights(x_rest: np.ndarray, hinges: np.ndarray, area_sum: np.ndarray) -> np.ndarray:
    """Weights k (h, 4) of the quadratic bending model (Bergou et al. 2006) for the hinges (p, q, a, b): the
    energy of a hinge is k_b |sum_i k_i x_i|^2 / 2, with k = sqrt(3 / (A1 + A2)) K and the cotangent weights

        K_p = -(cot q1 + cot q2),  K_q = -(cot p1 + cot p2),  K_a = cot p1 + cot q1,  K_b = cot p2 + cot q2

    (cot p1: the cotangent of the rest angle at p in the triangle (p, q, a); p2, q2 in (p, q, b)). sum K = 0 and,
    on a flat hinge, sum K_i x_i = 0: rigid motions cost nothing. |K_a| = |e| / h_a (h_a: a's distance to the
    edge), so bending one wing by a small angle theta gives k_b w theta^2 / 2 with w = 3 |e|^2 / (A1 + A2), the
    dihedral model's energy, to O(theta^2) relative (exactly k_b w 4 sin^2(theta / 2) / 2)."""
    p, q, a, b = (x_rest[hinges[:, k]] for k in range(4))
    cp1, cq1 = _cot(p, q, a), _cot(q, p, a)
    cp2, cq2 = _cot(p, q, b), _cot(q, p, b)
    k = np.stack([-(cq1 + cq2), -(cp1 + cp2), cp1 + cq1, cp2 + cq2], axis=1)
    return k * np.sqrt(3.0 / area_sum)[:, None]


def dihedral_angles(x: np.ndarray, hinges: np.ndarray) -> np.ndarray:
    """Signed dihedral angle of each hinge (p, q, a, b): 0 for a flat pair, in (-pi, pi].

    With e = q - p, n1 = (a - p) x (a - q), n2 = (b - q) x (b - p):  theta = atan2((n1 x n2) . e / |e|, n1 . n2).
    The kernels use the same formula and arctangent, so rest angles computed here match the simulated ones.
    """
    p, q, a, b = (x[..., hinges[:, k], :] for k in range(4))
    e = q - p
    n1 = np.cross(a - p, a - q)
    n2 = np.cross(b - q, b - p)
    sin = np.einsum("...d,...d->...", np.cross(n1, n2), e) / np.linalg.norm(e, axis=-1)
    cos = np.einsum("...d,...d->...", n1, n2)
    return atan2(sin, cos)


@dataclass
class ClothModel:
    """Topology, rest shape, material and boundary conditions of one cloth.

    vertices: (n, 3) rest positions (m); the rest shape defines zero strain and the rest bending angles.
    faces: (m, 3) vertex indices of the triangles.
    positions, velocities: initial state (default: the rest positions, at rest).
    pins: vertices held fixed. handles: vertices that follow the controller (kinematic handles, in this order).
    loads: constant external force per vertex (N), e.g. a weight hung on the strip's end; {vertex: (fx, fy, fz)}.

    Material (scalars, all fitted as parameters by the system):
    density: area density rho (kg/m^2); vertex masses are rho times the lumped vertex area.
    stretch_modulus: Y = E h (N/m); or give youngs_modulus E (Pa) and thickness h (m).
    poisson_ratio: nu (in-plane); Lame constants of the sheet (plane stress) mu = Y / (2 (1 + nu)),
        lambda = Y nu / (1 - nu^2).
    bending_stiffness: k_b (N m); default the plate's flexural rigidity E h^3 / (12 (1 - nu^2)) when E and h are
        given, else 1e-4.
    stretch_damping: c_s (N s/m), viscous in the Green strain rate. bending_damping: c_b (N m s), on the rate of
        change of each dihedral angle. mass_damping: c_m (1/s), a drag -c_m m v on every vertex (ambient damping).
    """

    vertices: np.ndarray
    faces: np.ndarray
    positions: np.ndarray | None = None
    velocities: np.ndarray | None = None
    pins: list = field(default_factory=list)
    handles: list = field(default_factory=list)
    loads: dict = field(default_factory=dict)
    density: float = 0.2
    stretch_modulus: float | None = None
    youngs_modulus: float | None = None
    thickness: float | None = None
    poisson_ratio: float = 0.3
    bending_stiffness: float | None = None
    stretch_damping: float = 0.0
    bending_damping: float = 0.0
    mass_damping: float = 0.0
    source: str = "cloth"
    face_lines: list | None = None  # OBJ line of each face, for messages
    vertex_lines: list | None = None
    grid_shape: tuple | None = None  # (nx, ny) for grids

    # -- builders -------------------------------------------------------------------------------------------------
    @classmethod
    def grid(
        cls,
        size=(1.0, 1.0),
        resolution=(17, 17),
        center=(0.0, 0.0, 0.0),
        rotation=(0.0, 0.0, 0.0),
        velocity=(0.0, 0.0, 0.0),
        source: str = "grid",
        **material,
    ) -> ClothModel:
        """A size[0] x size[1] (m) rectangle of resolution[0] x resolution[1] vertices.

        Before `rotation` (a rotation vector, radians) the sheet lies in the x-y plane (horizontal; z is up) with
        vertex (i, j) at x = i size[0] / (nx - 1), y = j size[1] / (ny - 1), index j * nx + i; then it is rotated
        about its centre and its centre is put at `center`. All vertices start with `velocity`.
        """
        size = tuple(float(s) for s in np.ravel(size))
        res = tuple(int(r) for r in np.ravel(resolution))
        if len(size) != 2 or not all(s > 0 and math.isfinite(s) for s in size):
            raise DiffsimError(f"must be two lengths > 0, got {list(size)}", where=f"{source}: size")
        if len(res) != 2 or min(res) < 2:
            raise DiffsimError(
                f"must be two vertex counts >= 2, got {list(res)}", where=f"{source}: resolution"
            )
        nx, ny = res
        xs, ys = np.linspace(0.0, size[0], nx), np.linspace(0.0, size[1], ny)
        local = np.zeros((ny, nx, 3))
        local[..., 0], local[..., 1] = np.meshgrid(xs, ys)
        local = local.reshape(-1, 3) - np.array([size[0] / 2, size[1] / 2, 0.0])
        verts = local @ rotation_matrix(rotation).T + np.asarray(center, dtype=np.float64).reshape(3)
        faces = []
        for j in range(ny - 1):
            for i in range(nx - 1):
                a, b, c, d = j * nx + i, j * nx + i + 1, (j + 1) * nx + i, (j + 1) * nx + i + 1
                if (i + j) % 2 == 0:
                    faces += [(a, b, d), (a, d, c)]
                else:
                    faces += [(a, b, c), (b, d, c)]
        vel = np.broadcast_to(np.asarray(velocity, dtype=np.float64).reshape(3), verts.shape).copy()
        return cls(
            vertices=verts,
            faces=np.asarray(faces, dtype=np.int64),
            velocities=vel,
            source=source,
            grid_shape=(nx, ny),
            **material,
        )

    @classmethod
    def from_obj(
        cls, path: str | os.PathLike, scale: float = 1.0, center=None, rotation=(0.0, 0.0, 0.0), **material
    ) -> ClothModel:
        """The mesh of an OBJ file: ``v x y z`` vertices and ``f i j k ...`` faces (1-based, ``i/t/n`` forms and
        negative indices accepted; polygons are split into fans). Other statements are ignored. The mesh is
        scaled, rotated (rotation vector) and, if `center` is given, moved so its bounding-box centre is there."""
        path = os.fspath(path)
        try:
            info = os.stat(path)
            if not stat.S_ISREG(info.st_mode):  # /dev/zero, a FIFO, a folder: would never end or not parse
                raise DiffsimError("not a regular file (an OBJ mesh file is needed)", where=path)
            if info.st_size > MAX_OBJ_BYTES:
                raise DiffsimError(
                    f"{info.st_size / 2**20:.0f} MiB is larger than the {MAX_OBJ_BYTES // 2**20} MiB an OBJ mesh "
                    "may have (a cloth of millions of triangles would not fit a rollout in memory)",
                    where=path,
                )
            with open(path) as fh:
                lines = fh.read().splitlines()
        except FileNotFoundError:
            raise DiffsimError("file not found", where=path) from None
        except (OSError, UnicodeDecodeError) as e:
            raise DiffsimError(f"cannot read: {e}", where=path) from None
        verts, vlines, faces, flines = [], [], [], []
        for lineno, line in enumerate(lines, start=1):
            parts = line.split("#", 1)[0].split()
            if not parts:
                continue
            if parts[0] == "v":
                try:
                    xyz = [float(t) for t in parts[1:4]]
                except ValueError:
                    xyz = []
                if len(xyz) != 3 or not all(math.isfinite(c) for c in xyz):
                    raise DiffsimError(
                        f"a vertex needs three finite coordinates, got {line.strip()!r}",
                        where=f"{path}: line {lineno}",
                    )
                verts.append(xyz)
                vlines.append(lineno)
            elif parts[0] == "f":
                idx = []
                for tok in parts[1:]:
                    try:
                        k = int(tok.split("/")[0])
                    except ValueError:
                        raise DiffsimError(
                            f"bad vertex reference {tok!r} in {line.strip()!r}",
                            where=f"{path}: line {lineno}",
                        ) from None
                    if k == 0:
                        raise DiffsimError(
                            "OBJ vertex indices start at 1, got 0", where=f"{path}: line {lineno}"
                        )
                    idx.append(
                        k - 1 if k > 0 else len(verts) + k
                    )  # negative: relative to the vertices so far
                if len(idx) < 3:
                    raise DiffsimError(
                        f"a face needs at least 3 vertices, got {len(idx)}", where=f"{path}: line {lineno}"
                    )
                for k in range(1, len(idx) - 1):
                    faces.append((idx[0], idx[k], idx[k + 1]))
                    flines.append(lineno)
        if not verts:
            raise DiffsimError("no vertices ('v x y z' lines)", where=path)
        v = np.asarray(verts, dtype=np.float64) * float(scale)
        v = v @ rotation_matrix(rotation).T
        if center is not None:
            v += np.asarray(center, dtype=np.float64).reshape(3) - 0.5 * (v.min(axis=0) + v.max(axis=0))
        return cls(
            vertices=v,
            faces=np.asarray(faces, dtype=np.int64).reshape(-1, 3),
            source=path,
            face_lines=flines,
            vertex_lines=vlines,
            **material,
        )

    # -- boundary conditions --------------------------------------------------------------------------------------
    def grid_index(self, i: int, j: int) -> int:
        """Index of grid vertex (i, j) (i along the first side, j along the second)."""
        if self.grid_shape is None:
            raise DiffsimError("not a grid mesh", where=self.source)
        nx, ny = self.grid_shape
        if not (0 <= i < nx and 0 <= j < ny):
            raise DiffsimError(f"grid vertex ({i}, {j}) outside the {nx} x {ny} grid", where=self.source)
        return j * nx + i

    def pin(self, *vertices: int) -> ClothModel:
        self.pins.extend(int(v) for v in vertices)
        return self

    def add_handles(self, *vertices: int) -> ClothModel:
        self.handles.extend(int(v) for v in vertices)
        return self

    @property
    def n_vertices(self) -> int:
        return len(np.asarray(self.vertices).reshape(-1, 3))

    @property
    def n_faces(self) -> int:
        return len(np.asarray(self.faces).reshape(-1, 3))

    # -- material -------------------------------------------------------------------------------------------------
    def material(self) -> dict[str, float]:
        """The material constants in state units: stretch_modulus (N/m), poisson_ratio, bending_stiffness (N m),
        density (kg/m^2), damping coefficients. Raises on missing or impossible values."""
        src = self.source
        nu = float(self.poisson_ratio)
        if not (-1.0 < nu < 1.0):
            raise DiffsimError(f"must be in (-1, 1) for a sheet, got {nu:g}", where=f"{src}: poisson_ratio")
        given_e = self.youngs_modulus is not None or self.thickness is not None
        if self.stretch_modulus is not None and given_e:
            raise DiffsimError(
                "give either stretch_modulus (N/m) or youngs_modulus (Pa) and thickness (m), not both",
                where=f"{src}: stretch_modulus",
            )
        if given_e:
            for key in ("youngs_modulus", "thickness"):
                val = getattr(self, key)
                if val is None:
                    other = "thickness" if key == "thickness" else "youngs_modulus"
                    raise DiffsimError(
                        f"missing: youngs_modulus needs a thickness and the other way round "
                        f"(or give stretch_modulus in N/m instead of both); {other} is set",
                        where=f"{src}: {key}",
                    )
                if not (val > 0 and math.isfinite(val)):
                    raise DiffsimError(f"must be > 0, got {val:g}", where=f"{src}: {key}")
            modulus = float(self.youngs_modulus) * float(self.thickness)
        else:
            modulus = 1000.0 if self.stretch_modulus is None else float(self.stretch_modulus)
        bending = self.bending_stiffness
        if bending is None:
            bending = (
                float(self.youngs_modulus) * float(self.thickness) ** 3 / (12 * (1 - nu**2))
                if given_e
                else 1e-4
            )
        out = {
            "stretch_modulus": modulus,
            "poisson_ratio": nu,
            "bending_stiffness": float(bending),
            "density": float(self.density),
            "stretch_damping": float(self.stretch_damping),
            "bending_damping": float(self.bending_damping),
            "mass_damping": float(self.mass_damping),
        }
        positive = ("stretch_modulus", "bending_stiffness", "density")
        for key, val in out.items():
            if not math.isfinite(val):
                raise DiffsimError(f"must be finite, got {val:g}", where=f"{src}: {key}")
            if key in positive and not val > 0:
                raise DiffsimError(f"must be > 0, got {val:g}", where=f"{src}: {key}")
            if key.endswith("damping") and val < 0:
                raise DiffsimError(f"must be >= 0, got {val:g}", where=f"{src}: {key}")
        return out

    # -- checks and derived arrays ----------------------------------------------------------------------------------
    def _face_where(self, t: int) -> str:
        if self.face_lines is not None:
            return f"{self.source}: line {self.face_lines[t]} (face {t + 1})"
        return f"{self.source}: faces[{t}]"

    def _vertex_where(self, i: int) -> str:
        if self.vertex_lines is not None:
            return f"{self.source}: line {self.vertex_lines[i]} (vertex {i + 1})"
        return f"{self.source}: vertices[{i}]"

    def _vertex_name(self, i: int) -> str:
        return f"vertex {i + 1}" if self.vertex_lines is not None else f"vertex {i}"

    def finalize(self) -> dict[str, np.ndarray]:
        """Check everything and return the arrays the system needs (see the module docstring)."""
        src = self.source
        x_rest = np.asarray(self.vertices, dtype=np.float64)
        if x_rest.ndim != 2 or x_rest.shape[1] != 3:
            raise DiffsimError(
                f"vertices must have shape (n, 3), got {x_rest.shape}", where=f"{src}: vertices"
            )
        n = len(x_rest)
        if n == 0:
            raise DiffsimError("the mesh has no vertices", where=src)
        bad = np.nonzero(~np.isfinite(x_rest).all(axis=1))[0]
        if len(bad):
            raise DiffsimError("must be finite", where=self._vertex_where(int(bad[0])))
        faces = (
            np.asarray(self.faces, dtype=np.int64).reshape(-1, 3)
            if np.size(self.faces)
            else np.zeros((0, 3), np.int64)
        )
        if len(faces) == 0:
            raise DiffsimError("the mesh has no faces: a cloth needs at least one triangle", where=src)
        for t, tri in enumerate(faces):
            for k in tri:
                if not 0 <= k < n:
                    shown = k + 1 if self.vertex_lines is not None else k
                    raise DiffsimError(
                        f"names vertex {shown}, but the mesh has {n} vertices", where=self._face_where(t)
                    )
            if len(set(tri.tolist())) < 3:
                raise DiffsimError(
                    f"degenerate triangle: a vertex is repeated ({self._tri_names(tri)})",
                    where=self._face_where(t),
                )
        e1 = x_rest[faces[:, 1]] - x_rest[faces[:, 0]]
        e2 = x_rest[faces[:, 2]] - x_rest[faces[:, 0]]
        cross = np.cross(e1, e2)
        area = 0.5 * np.linalg.norm(cross, axis=1)
        scale = float(np.max(np.ptp(x_rest, axis=0))) if n > 1 else 1.0
        tiny = 1e-12 * max(scale, 1e-300) ** 2
        for t in np.nonzero(area <= tiny)[0]:
            raise DiffsimError(
                f"degenerate triangle (zero area): {self._tri_names(faces[t])} are collinear or coincide",
                where=self._face_where(int(t)),
            )
        used = np.zeros(n, dtype=bool)
        used[faces.ravel()] = True
        if not used.all():
            i = int(np.nonzero(~used)[0][0])
            raise DiffsimError(
                f"unreferenced vertex: no triangle uses {self._vertex_name(i)} "
                f"({int((~used).sum())} unused in all)",
                where=self._vertex_where(i),
            )
        hinges, hinge_faces = self._hinges(faces)
        self._check_vertex_fans(faces, n)
        pins = self._indices("pins", self.pins, n)
        handles = self._indices("handles", self.handles, n)
        both = sorted(set(pins) & set(handles))
        if both:
            raise DiffsimError(
                f"{self._vertex_name(both[0])} is both pinned and a handle", where=f"{src}: handles"
            )
        if len(set(handles)) != len(handles):
            dup = next(h for h in handles if handles.count(h) > 1)
            raise DiffsimError(f"{self._vertex_name(dup)} is listed twice", where=f"{src}: handles")
        loads = np.zeros((n, 3))
        for key, force in dict(self.loads).items():
            (i,) = self._indices("loads", [key], n)
            f = np.asarray(force, dtype=np.float64).reshape(-1)
            if f.shape != (3,) or not np.all(np.isfinite(f)):
                raise DiffsimError(
                    f"must be three finite force components (N), got {force}", where=f"{src}: loads[{key}]"
                )
            loads[i] += f
        x0 = x_rest.copy() if self.positions is None else np.asarray(self.positions, dtype=np.float64)
        v0 = np.zeros((n, 3)) if self.velocities is None else np.asarray(self.velocities, dtype=np.float64)
        for name, arr in (("positions", x0), ("velocities", v0)):
            if arr.shape != (n, 3):
                raise DiffsimError(f"must have shape ({n}, 3), got {arr.shape}", where=f"{src}: {name}")
            if not np.all(np.isfinite(arr)):
                raise DiffsimError("must be finite", where=f"{src}: {name}")

        # Rest shape of each triangle in its own plane: Dm = [[|e1|, e2.u], [0, e2.w]] (columns: the two edges
        # in an orthonormal frame u, w of the triangle), kept as its inverse.
        len1 = np.linalg.norm(e1, axis=1)
        u = e1 / len1[:, None]
        w = np.cross(cross / np.linalg.norm(cross, axis=1)[:, None], u)
        dm = np.zeros((len(faces), 2, 2))
        dm[:, 0, 0] = len1
        dm[:, 0, 1] = np.einsum("td,td->t", e2, u)
        dm[:, 1, 1] = np.einsum("td,td->t", e2, w)
        dm_inv = np.linalg.inv(dm)
        vertex_area = np.zeros(n)
        np.add.at(vertex_area, faces.ravel(), np.repeat(area / 3.0, 3))
        # Hinge weight 3 |e|^2 / (A1 + A2) of the discrete-shell bending energy (Grinspun et al. 2003).
        if len(hinges):
            edge_len = np.linalg.norm(x_rest[hinges[:, 1]] - x_rest[hinges[:, 0]], axis=1)
            hinge_weight = 3.0 * edge_len**2 / (area[hinge_faces[:, 0]] + area[hinge_faces[:, 1]])
            rest_angle = dihedral_angles(x_rest, hinges)
            hinge_k = quadratic_bending_weights(
                x_rest, hinges, area[hinge_faces[:, 0]] + area[hinge_faces[:, 1]]
            )
        else:
            hinge_weight = np.zeros(0)
            rest_angle = np.zeros(0)
            hinge_k = np.zeros((0, 4))
        kind = np.zeros(n, dtype=np.int64)  # 0 free, 1 pinned, 2 handle
        kind[pins] = 1
        handle_index = -np.ones(n, dtype=np.int64)
        for h, i in enumerate(handles):
            kind[i] = 2
            handle_index[i] = h
        return {
            "x_rest": x_rest,
            "x": x0,
            "v": v0,
            "faces": faces,
            "area": area,
            "dm_inv": dm_inv,
            "vertex_area": vertex_area,
            "hinges": hinges,
            "hinge_weight": hinge_weight,
            "rest_angle": rest_angle,
            "hinge_k": hinge_k,
            "kind": kind,
            "handle_index": handle_index,
            "handles": np.asarray(handles, dtype=np.int64),
            "pins": np.asarray(pins, dtype=np.int64),
            "loads": loads,
            "material": self.material(),
            "edges": self._edges(faces),
        }

    def _tri_names(self, tri) -> str:
        return "vertices " + ", ".join(str(int(k) + (1 if self.vertex_lines is not None else 0)) for k in tri)

    def _indices(self, key: str, values, n: int) -> list[int]:
        out = []
        for k, v in enumerate(values):
            try:
                i = int(v)
            except (TypeError, ValueError):
                raise DiffsimError(
                    f"must be a vertex index, got {v!r}", where=f"{self.source}: {key}[{k}]"
                ) from None
            if i != v or not 0 <= i < n:
                hi = f"1..{n}" if self.vertex_lines is not None else f"0..{n - 1}"
                raise DiffsimError(
                    f"names vertex {v}, which does not exist (the mesh has {n} vertices, {hi})",
                    where=f"{self.source}: {key}[{k}]",
                )
            out.append(i)
        return out

    @staticmethod
    def _edges(faces: np.ndarray) -> np.ndarray:
        e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
        return np.unique(e, axis=0)

    def _hinges(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hinges (h, 4): p, q, a, b with edge p-q and opposite vertices a, b; their two faces (h, 2)).
        Raises on an edge shared by more than two triangles."""
        owners: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for t, (i, j, k) in enumerate(faces.tolist()):
            for p, q, opp in ((i, j, k), (j, k, i), (k, i, j)):
                owners.setdefault((min(p, q), max(p, q)), []).append((t, opp))
        hinges, hinge_faces = [], []
        for (p, q), own in owners.items():
            if len(own) > 2:
                names = ", ".join(str(t + 1 if self.face_lines is not None else t) for t, _ in own)
                first = own[2][0]
                raise DiffsimError(
                    f"non-manifold edge: the edge between {self._vertex_name(p)} and "
                    f"{self._vertex_name(q)} is shared by {len(own)} triangles (faces {names}); "
                    "a cloth edge may border at most two",
                    where=self._face_where(first),
                )
            if len(own) == 2:
                (t1, a), (t2, b) = own
                hinges.append((p, q, a, b))
                hinge_faces.append((t1, t2))
        return (
            np.asarray(hinges, dtype=np.int64).reshape(-1, 4),
            np.asarray(hinge_faces, dtype=np.int64).reshape(-1, 2),
        )

    def _check_vertex_fans(self, faces: np.ndarray, n: int) -> None:
        """Each vertex's triangles must form one fan (connected through edges at the vertex): two sheets that
        touch at a single vertex make a non-manifold vertex."""
        around: list[list[int]] = [[] for _ in range(n)]
        for t, tri in enumerate(faces.tolist()):
            for k in tri:
                around[k].append(t)
        for v in range(n):
            ts = around[v]
            if len(ts) < 2:
                continue
            parent = {t: t for t in ts}
            by_edge: dict[int, int] = {}
            for t in ts:
                for k in faces[t].tolist():
                    if k == v:
                        continue
                    if k in by_edge:
                        parent[_find(parent, t)] = _find(parent, by_edge[k])
                    else:
                        by_edge[k] = t
            roots = {_find(parent, t) for t in ts}
            if len(roots) > 1:
                where = self._vertex_where(v)
                raise DiffsimError(
                    f"non-manifold vertex: the triangles around {self._vertex_name(v)} form "
                    f"{len(roots)} separate fans (sheets touching at one point)",
                    where=where,
                )


def _find(parent: dict, t: int) -> int:
    """Union-find root of t, with path halving."""
    while parent[t] != t:
        parent[t] = parent[parent[t]]
        t = parent[t]
    return t
