"""Mass-spring model: particles and springs, built in plain Python and checked before any field is allocated."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import DiffsimError


@dataclass
class SpringModel:
    """Topology and initial values of a mass-spring body (2D or 3D).

    Units: positions in m, velocities in m/s, masses in kg, stiffness in N/m, damping in N s/m.
    `actuator[s]` is the controller output driving spring s (-1: passive); its rest length is
    ``rest_length * (1 + actuation * act)``.
    """

    dim: int = 2
    positions: list = field(default_factory=list)
    velocities: list = field(default_factory=list)
    masses: list = field(default_factory=list)
    pinned: list = field(default_factory=list)
    springs: list = field(default_factory=list)  # (a, b)
    stiffness: list = field(default_factory=list)
    damping: list = field(default_factory=list)
    rest_length: list = field(default_factory=list)
    actuator: list = field(default_factory=list)
    actuation: list = field(default_factory=list)
    source: str = "model"

    def add_particle(self, position, velocity=None, mass: float = 1.0, pinned: bool = False) -> int:
        self.positions.append([float(c) for c in position])
        self.velocities.append([0.0] * self.dim if velocity is None else [float(c) for c in velocity])
        self.masses.append(float(mass))
        self.pinned.append(bool(pinned))
        return len(self.positions) - 1

    def add_spring(
        self,
        a: int,
        b: int,
        stiffness: float,
        damping: float = 0.0,
        rest_length: float | None = None,
        actuator: int = -1,
        actuation: float = 0.0,
    ) -> int:
        self.springs.append((int(a), int(b)))
        self.stiffness.append(float(stiffness))
        self.damping.append(float(damping))
        self.rest_length.append(np.nan if rest_length is None else float(rest_length))
        self.actuator.append(int(actuator))
        self.actuation.append(float(actuation))
        return len(self.springs) - 1

    @property
    def n_particles(self) -> int:
        return len(self.positions)

    @property
    def n_springs(self) -> int:
        return len(self.springs)

    @property
    def n_actuators(self) -> int:
        return max(self.actuator, default=-1) + 1

    def finalize(self) -> dict[str, np.ndarray]:
        """Check everything and return numpy arrays; rest lengths left unset take the initial distance."""
        src = self.source
        if self.dim not in (2, 3):
            raise DiffsimError(f"dim must be 2 or 3, got {self.dim}", where=f"{src}: dim")
        n = self.n_particles
        if n == 0:
            raise DiffsimError("the body has no particles", where=f"{src}: particles")
        x = np.asarray(self.positions, dtype=np.float64)
        v = np.asarray(self.velocities, dtype=np.float64)
        for name, arr in (("position", x), ("velocity", v)):
            if arr.shape != (n, self.dim):
                bad = next(i for i, p in enumerate(getattr(self, name + "s")) if len(p) != self.dim)
                raise DiffsimError(
                    f"must have {self.dim} components, got {getattr(self, name + 's')[bad]}",
                    where=f"{src}: particles[{bad}].{name}",
                )
            if not np.all(np.isfinite(arr)):
                bad = int(np.nonzero(~np.isfinite(arr).all(axis=1))[0][0])
                raise DiffsimError("must be finite", where=f"{src}: particles[{bad}].{name}")
        m = np.asarray(self.masses)
        for i, mi in enumerate(m):
            if not (mi > 0 and np.isfinite(mi)):
                raise DiffsimError(f"must be > 0, got {mi:g}", where=f"{src}: particles[{i}].mass")
        springs = np.asarray(self.springs, dtype=np.int64).reshape(-1, 2)
        for s, (a, b) in enumerate(springs):
            for end, idx in (("a", a), ("b", b)):
                if not 0 <= idx < n:
                    raise DiffsimError(
                        f"names particle {idx}, but there are only {n} particles (0..{n - 1})",
                        where=f"{src}: springs[{s}].{end}",
                    )
            if a == b:
                raise DiffsimError(f"connects particle {a} to itself", where=f"{src}: springs[{s}]")
        rest = np.asarray(self.rest_length, dtype=np.float64)
        if len(springs):
            dist = np.linalg.norm(x[springs[:, 1]] - x[springs[:, 0]], axis=1)
            rest = np.where(np.isnan(rest), dist, rest)
        checks = (
            ("stiffness", self.stiffness, lambda k: k > 0, "must be > 0"),
            ("damping", self.damping, lambda c: c >= 0, "must be >= 0"),
            ("rest_length", rest, lambda r: r > 0, "must be > 0 (two particles at the same place?)"),
        )
        for key, values, ok, msg in checks:
            for s, val in enumerate(values):
                if not (np.isfinite(val) and ok(val)):
                    raise DiffsimError(f"{msg}, got {val:g}", where=f"{src}: springs[{s}].{key}")
        return {
            "x": x,
            "v": v,
            "mass": m,
            "pinned": np.asarray(self.pinned, dtype=np.int32),
            "springs": springs.astype(np.int32),
            "stiffness": np.asarray(self.stiffness, dtype=np.float64),
            "damping": np.asarray(self.damping, dtype=np.float64),
            "rest_length": rest,
            "actuator": np.asarray(self.actuator, dtype=np.int32).reshape(-1),
            "actuation": np.asarray(self.actuation, dtype=np.float64),
        }
