"""Command-line overrides of scene keys: ``--set springs[3].stiffness=2e4 --set task.optimizer.name=adam``.

`parse_set` turns the strings into (key path, value) pairs; `apply_overrides` writes them into a copy of the
scene data. Validation runs afterwards (`schema.validate`), so a misspelt key is reported there, with a
suggestion.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

from diffsim.errors import DiffsimError
from diffsim.scene.schema import format_key_path, format_value

__all__ = ["parse_set", "parse_key_path", "parse_value", "apply_overrides"]


_SEGMENT = re.compile(r"([A-Za-z0-9_-]+)((?:\[[^\]]*\])*)")
_INDEX = re.compile(r"\[([^\]]*)\]")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|nan)")


def parse_key_path(name: str) -> list[str | int]:
    """``springs[3].stiffness`` -> ``["springs", 3, "stiffness"]``. Raises ValueError with the reason."""
    if not name:
        raise ValueError("empty NAME (expected NAME=VALUE)")
    parts: list[str | int] = []
    for segment in name.split("."):
        m = _SEGMENT.fullmatch(segment)
        if not m:
            raise ValueError(f"bad key {segment!r} in {name!r} (expected names like springs[3].stiffness)")
        parts.append(m.group(1))
        for index in _INDEX.findall(m.group(2)):
            if not re.fullmatch(r"[0-9]+", index):
                raise ValueError(f"bad index [{index}] in {name!r}, expected a non-negative integer")
            parts.append(int(index))
    return parts


def parse_value(text: str) -> Any:
    """A --set VALUE: int, float, true/false, a comma list of numbers, or a string (quoted or bare).

    A comma list (optionally in brackets: ``[1, 2, 3]``) gives ints when every element is an integer and
    floats otherwise; validation widens ints to floats for vector keys, so ``gravity=0,-10`` (a vector) and
    ``ends=0,1`` (an int_list) both work. A bracketed list of other words gives strings:
    ``[springs.stiffness, 'springs.damping']``; without brackets ``a,b`` stays one string.
    """
    s = text.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    if s in ("true", "false"):
        return s == "true"
    number = _number(s)
    if number is not None:
        return number
    body = s[1:-1].strip() if s.startswith("[") and s.endswith("]") else None
    if body == "":
        return []
    if body is not None or "," in s:
        items = [_number(p.strip()) for p in (body if body is not None else s).split(",")]
        if all(x is not None for x in items):
            if all(isinstance(x, int) for x in items):
                return items
            return [float(x) for x in items]
        if body is not None:  # [a, b]: a list of strings (parameter names for task.fit, sim.per_batch)
            return [_unquote(p.strip()) for p in body.split(",")]
    return s


def _unquote(s: str) -> str:
    return s[1:-1] if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"" else s


def _number(s: str) -> int | float | None:
    if _INT.fullmatch(s):
        return int(s)
    if _FLOAT.fullmatch(s):
        return float(s)
    return None


def parse_set(items: Iterable[str]) -> list[tuple[list[str | int], Any]]:
    """Parse ``NAME=VALUE`` strings (from repeated ``--set``) into (key path, value) pairs.

    Raises DiffsimError(where="--set") naming the malformed item.
    """
    if isinstance(items, str):
        raise TypeError("parse_set takes a list of NAME=VALUE strings, not one string")
    out = []
    for item in items:
        if "=" not in item:
            raise DiffsimError(f"malformed override {item!r} (expected NAME=VALUE)", where="--set")
        name, value = item.split("=", 1)
        try:
            path = parse_key_path(name.strip())
        except ValueError as e:
            raise DiffsimError(f"malformed override {item!r}: {e}", where="--set") from None
        out.append((path, parse_value(value)))
    return out


def apply_overrides(
    data: dict, overrides: Iterable[tuple[list[str | int], Any]], source: str = "<scene>"
) -> dict:
    """Return a copy of `data` with each (key path, value) set; `data` is not modified.

    Missing intermediate tables are created. Indexing past the end of an array, indexing something that is not
    an array, or descending into something that is not a table raises DiffsimError naming the key (and the
    length).
    """
    out = _copy_tree(data)
    for path, value in overrides:
        _set(out, list(path), _copy_tree(value), source)
    return out


def _copy_tree(value: Any) -> Any:
    """A deep copy of nested dicts and lists that, unlike copy.deepcopy, never keeps two references shared."""
    if isinstance(value, dict):
        return {k: _copy_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_copy_tree(v) for v in value]
    return copy.copy(value)


def _kind(node: Any) -> str:
    if isinstance(node, list):
        return f"an array with {len(node)} entries"
    if isinstance(node, dict):
        return "a table"
    return f"the value {format_value(node)}"


def _set(root: dict, path: list[str | int], value: Any, source: str) -> None:
    if not path:
        raise DiffsimError("empty key path", where="--set")
    shown = f"--set {format_key_path(path)}={format_value(value)}"
    node: Any = root
    for i, step in enumerate(path):
        here = format_key_path(path[:i])
        last = i == len(path) - 1
        where = f"{source}: {here}" if here else source
        if isinstance(step, int):
            if not isinstance(node, list):
                raise DiffsimError(
                    f"cannot index [{step}]: this is {_kind(node)}, not an array ({shown})", where=where
                )
            if not 0 <= step < len(node):
                raise DiffsimError(
                    f"index {step} out of range for '{here}' with {len(node)} entries ({shown})", where=where
                )
        else:
            if not isinstance(node, dict):
                raise DiffsimError(
                    f"cannot set key {step!r}: this is {_kind(node)}, not a table ({shown})", where=where
                )
            if not last and step not in node:
                if isinstance(path[i + 1], int):
                    sub = format_key_path(path[: i + 1])
                    raise DiffsimError(
                        f"index {path[i + 1]} out of range: '{sub}' is absent (0 entries) ({shown})",
                        where=f"{source}: {sub}",
                    )
                node[step] = {}
        if last:
            node[step] = value
        else:
            node = node[step]
