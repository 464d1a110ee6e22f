"""Named, differentiable parameters: the quantities users fit.

A `Parameter` owns a Taichi field, with a gradient unless it was built with ``requires_grad=False`` (see
`ParameterSet`: a system built with ``requires_grad=[names]`` gives gradients to those parameters only, and its
adjoint kernels skip the arithmetic of the others). Its value has a user-facing shape (`shape`, e.g. ``()`` for a
scalar, ``(n_springs,)`` for a per-spring array, ``(n, dim)`` for initial positions). A parameter is either shared by
all batch copies or has one value per copy (`per_batch=True`); kernels read it with ``p.field[p.bi(b), ...]``, which
is index 0 for a shared parameter and `b` for a per-copy one.

Optimizers work on an unconstrained vector `u`. The transform maps it to the value:
- ``None``: value = u (bounds, if any, are enforced by projection or by L-BFGS-B);
- ``"log"``: value = exp(u), for quantities that must stay positive (stiffness, mass);
- ``"sigmoid"``: value = lo + (hi - lo) * sigmoid(u), for a quantity in an open range (friction in (0, 2)).
"""

import fnmatch
import json
import math
from collections.abc import Iterable, Iterator

import numpy as np
import taichi as ti

from .. import runtime
from ..errors import DiffsimError
from .fill import filler

TRANSFORMS = (None, "log", "sigmoid")


@ti.data_oriented
class Parameter:
    """One named parameter.

    name: stable dotted name (``springs.stiffness``).
    shape: the value's shape for one copy; a trailing ``vector_dim`` axis is stored as a Taichi vector.
    value: initial value, broadcast to the shape (and to the batch when `per_batch`).
    bounds: (lo, hi), either may be None.
    transform: None, "log" or "sigmoid" (see module docstring).
    """

    def __init__(
        self,
        name: str,
        shape: tuple[int, ...],
        value,
        *,
        batch: int = 1,
        per_batch: bool = False,
        bounds: tuple[float | None, float | None] | None = None,
        transform: str | None = None,
        vector_dim: int | None = None,
        unit: str = "",
        doc: str = "",
        requires_grad: bool = True,
    ):
        runtime.ensure_init()
        if transform not in TRANSFORMS:
            raise DiffsimError(f"unknown transform {transform!r}; choose none, log or sigmoid", where=name)
        self.name = name
        self.shape = tuple(int(s) for s in shape)
        self.per_batch = bool(per_batch)
        self.batch = int(batch)
        self.copies = self.batch if self.per_batch else 1
        self.bstride = 1 if self.per_batch else 0
        self.bounds = _normalize_bounds(bounds)
        self.transform = transform
        self.vector_dim = vector_dim
        self.unit = unit
        self.doc = doc
        self.requires_grad = bool(requires_grad)
        if transform == "sigmoid" and (self.bounds[0] is None or self.bounds[1] is None):
            raise DiffsimError("a sigmoid transform needs finite bounds (lo, hi)", where=name)
        dtype = runtime.real()
        runtime.check_field_capacity(1, name)
        if vector_dim is not None:
            if not self.shape or self.shape[-1] != vector_dim:
                raise ValueError(
                    f"{name}: vector_dim {vector_dim} must be the last axis of shape {self.shape}"
                )
            self.field = ti.Vector.field(
                vector_dim, dtype, shape=(self.copies, *self.shape[:-1]), needs_grad=self.requires_grad
            )
        else:
            self.field = ti.field(dtype, shape=(self.copies, *self.shape), needs_grad=self.requires_grad)
        self._zeroer = None  # launcher of field.grad.fill(0), made on first use
        self.set(value)

    # -- kernel access -------------------------------------------------------------------------------------------
    @ti.func
    def bi(self, b):
        """Index of copy `b` in the field: `b` for per-copy parameters, 0 for shared ones."""
        return b * self.bstride

    # -- numpy access --------------------------------------------------------------------------------------------
    @property
    def full_shape(self) -> tuple[int, ...]:
        return (self.copies, *self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.full_shape))

    def numpy(self) -> np.ndarray:
        """The value: shape `shape`, or (batch, *shape) when per-copy."""
        arr = self.field.to_numpy().astype(np.float64).reshape(self.full_shape)
        return arr if self.per_batch else arr[0]

    def grad(self) -> np.ndarray:
        """d loss / d value, same layout as `numpy()`."""
        self.check_grad()
        arr = self.field.grad.to_numpy().astype(np.float64).reshape(self.full_shape)
        return arr if self.per_batch else arr[0]

    def set(self, value) -> None:
        arr = np.asarray(value, dtype=np.float64)
        per_copy_given = self.per_batch and arr.shape == self.full_shape
        try:
            arr = arr if per_copy_given else np.broadcast_to(arr, self.shape)
        except ValueError:
            raise DiffsimError(
                f"value of shape {arr.shape} does not fit the parameter's shape {self.shape}", where=self.name
            ) from None
        arr = np.broadcast_to(arr, self.full_shape)
        if not np.all(np.isfinite(arr)):
            raise DiffsimError("value must be finite", where=self.name)
        lo, hi = self.bounds
        if lo is not None and np.any(arr < lo) or hi is not None and np.any(arr > hi):
            raise DiffsimError(
                f"value outside bounds [{_fmt(lo, '-inf')}, {_fmt(hi, 'inf')}]: got min {arr.min():g}, "
                f"max {arr.max():g}",
                where=self.name,
            )
        if self.transform == "log" and np.any(arr <= 0):
            raise DiffsimError(f"must be > 0 (log transform), got {arr.min():g}", where=self.name)
        self.field.from_numpy(np.ascontiguousarray(arr, dtype=runtime.np_real()))

    def check_grad(self) -> None:
        """Raise if this parameter has no gradient (built with requires_grad=False)."""
        if not self.requires_grad:
            raise DiffsimError(
                "this parameter was built without a gradient: the system's requires_grad does not name it; "
                "build the system with it in requires_grad (or with requires_grad=None: every parameter)",
                where=self.name,
            )

    def zero_grad(self) -> None:
        if not self.requires_grad:
            return
        if self._zeroer is None:
            self._zeroer = filler(self.field.grad)
        self._zeroer(0.0)

    # -- unconstrained coordinates --------------------------------------------------------------------------------
    def to_unconstrained(self, value: np.ndarray) -> np.ndarray:
        v = np.asarray(value, dtype=np.float64)
        if self.transform == "log":
            return np.log(v)
        if self.transform == "sigmoid":
            lo, hi = self.bounds
            p = np.clip((v - lo) / (hi - lo), 1e-12, 1 - 1e-12)
            return np.log(p) - np.log1p(-p)
        return v.copy()

    def from_unconstrained(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        if self.transform == "log":
            return np.exp(u)
        if self.transform == "sigmoid":
            lo, hi = self.bounds
            return lo + (hi - lo) / (1.0 + np.exp(-u))
        lo, hi = self.bounds
        return np.clip(u, -np.inf if lo is None else lo, np.inf if hi is None else hi)

    def dvalue_du(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        if self.transform == "log":
            return np.exp(u)
        if self.transform == "sigmoid":
            lo, hi = self.bounds
            s = 1.0 / (1.0 + np.exp(-u))
            return (hi - lo) * s * (1 - s)
        return np.ones_like(u)

    def unconstrained_bounds(self) -> tuple[float | None, float | None]:
        lo, hi = self.bounds
        if self.transform == "log":
            return (math.log(lo) if lo else None, math.log(hi) if hi else None)
        if self.transform == "sigmoid":
            return (None, None)
        return (lo, hi)

    def describe(self) -> dict:
        value = self.numpy()
        return {
            "name": self.name,
            "shape": list(value.shape),
            "value": value.tolist(),
            "bounds": list(self.bounds),
            "transform": self.transform,
            "per_batch": self.per_batch,
            "unit": self.unit,
            "doc": self.doc,
        }

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, shape={self.shape}, per_batch={self.per_batch})"


def _normalize_bounds(bounds) -> tuple[float | None, float | None]:
    if bounds is None:
        return (None, None)
    lo, hi = bounds
    lo = None if lo is None or (isinstance(lo, float) and math.isinf(lo) and lo < 0) else float(lo)
    hi = None if hi is None or (isinstance(hi, float) and math.isinf(hi) and hi > 0) else float(hi)
    if lo is not None and hi is not None and lo >= hi:
        raise DiffsimError(f"bounds must have lo < hi, got ({lo:g}, {hi:g})")
    return (lo, hi)


def _fmt(x, open_end: str) -> str:
    """A bound as text: `open_end` ("-inf" or "inf") when there is none."""
    return open_end if x is None else f"{x:g}"


class ParameterSet:
    """An ordered collection of parameters, with the flat unconstrained view optimizers use.

    requires_grad: names (or fnmatch patterns, as a scene's task.fit: ``"controller.*"``) of the parameters that
    get a gradient, or None (default) for all. Whoever creates a parameter for this set asks `wants_grad(name)`;
    `check_requires_grad` (called when a `Simulation` is made) refuses an entry that matches no parameter."""

    def __init__(self, params: Iterable[Parameter] = (), requires_grad: Iterable[str] | None = None):
        if isinstance(requires_grad, str):
            requires_grad = [requires_grad]
        self.requires_grad = None if requires_grad is None else frozenset(requires_grad)
        self._params: dict[str, Parameter] = {}
        for p in params:
            self.add(p)

    def wants_grad(self, name: str) -> bool:
        return self.requires_grad is None or any(fnmatch.fnmatchcase(name, pat) for pat in self.requires_grad)

    def check_requires_grad(self) -> None:
        if self.requires_grad is None:
            return
        unknown = sorted(
            pat for pat in self.requires_grad if not any(fnmatch.fnmatchcase(n, pat) for n in self._params)
        )
        if unknown:
            raise DiffsimError(
                f"names no parameter: {unknown}; available: {', '.join(self._params)}", where="requires_grad"
            )

    def with_grad(self, names: Iterable[str] | None = None) -> list[Parameter]:
        """The named parameters (by default: every one that has a gradient); raises if a named one has none."""
        if names is None:
            return [p for p in self if p.requires_grad]
        out = self.select(names)
        for p in out:
            p.check_grad()
        return out

    def add(self, p: Parameter) -> Parameter:
        if p.name in self._params:
            raise ValueError(f"duplicate parameter name {p.name!r}")
        if p.requires_grad and not self.wants_grad(p.name):
            # made without asking wants_grad (a user's controller): it keeps its gradient storage, but it is left
            # out as requires_grad says, so that nothing reads or fits it by default
            p.requires_grad = False
        self._params[p.name] = p
        return p

    def __getitem__(self, name: str) -> Parameter:
        try:
            return self._params[name]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(name, list(self._params), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DiffsimError(
                f"no parameter named {name!r}{hint}; available: {', '.join(self._params)}", where="params"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self._params

    def __iter__(self) -> Iterator[Parameter]:
        return iter(self._params.values())

    def __len__(self) -> int:
        return len(self._params)

    def names(self) -> list[str]:
        return list(self._params)

    def select(self, names: Iterable[str] | None) -> list[Parameter]:
        return list(self) if names is None else [self[n] for n in names]

    def zero_grad(self) -> None:
        for p in self:
            p.zero_grad()

    # -- flat views --------------------------------------------------------------------------------------------
    def get_flat(self, names) -> np.ndarray:
        ps = self.select(names)
        return np.concatenate([p.to_unconstrained(p.numpy()).ravel() for p in ps]) if ps else np.zeros(0)

    def set_flat(self, names, u: np.ndarray) -> None:
        offset = 0
        for p in self.select(names):
            n = p.size
            chunk = np.asarray(u[offset : offset + n]).reshape(p.full_shape if p.per_batch else p.shape)
            p.set(p.from_unconstrained(chunk))
            offset += n

    def grad_flat(self, names) -> np.ndarray:
        """Gradient with respect to the unconstrained coordinates (chain rule through each transform)."""
        out = []
        for p in self.select(names):
            u = p.to_unconstrained(p.numpy())
            out.append((p.grad() * p.dvalue_du(u)).ravel())
        return np.concatenate(out) if out else np.zeros(0)

    def flat_bounds(self, names) -> list[tuple[float | None, float | None]]:
        out = []
        for p in self.select(names):
            out.extend([p.unconstrained_bounds()] * p.size)
        return out

    # -- persistence -------------------------------------------------------------------------------------------
    def to_dict(self, names=None) -> dict[str, list]:
        return {p.name: p.numpy().tolist() for p in self.select(names)}

    def load_dict(self, values: dict, source: str = "<params>") -> None:
        for name, value in values.items():
            if name not in self._params:
                raise DiffsimError(f"unknown parameter {name!r}", where=source)
            try:
                arr = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                raise DiffsimError(
                    f"{name}: must be a finite number or a (nested) list of them, got {value!r}", where=source
                ) from None
            try:
                self._params[name].set(arr)
            except DiffsimError as e:
                raise DiffsimError(f"{name}: {e.reason}", where=source) from None

    def save(self, path: str, names=None) -> None:
        """Write name -> value as JSON, atomically."""
        from diffsim.fileio import write_text_atomic  # noqa: PLC0415

        write_text_atomic(path, json.dumps(self.to_dict(names), indent=1))

    def load(self, path: str) -> None:
        try:
            with open(path) as fh:
                values = json.load(fh)
        except FileNotFoundError:
            raise DiffsimError("file not found", where=path) from None
        except json.JSONDecodeError as e:
            raise DiffsimError(f"not valid JSON: {e}", where=path) from None
        except (OSError, UnicodeDecodeError) as e:
            raise DiffsimError(f"cannot read: {e}", where=path) from None
        if isinstance(values, dict) and "params" in values and isinstance(values["params"], dict):
            values = values["params"]  # a result.json from `diffsim optimize`
        if not isinstance(values, dict):
            kinds = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
            got = kinds.get(type(values), "a number")
            raise DiffsimError(
                f"must hold a JSON object {{name: value, ...}} (or a result.json), got {got}", where=path
            )
        self.load_dict(values, source=path)
