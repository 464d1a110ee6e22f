"""A small TOML writer for the data scene files hold: tables, arrays of tables, numbers, strings, booleans, lists.

The standard library reads TOML but does not write it. `dumps` covers what `Scene.resolved` contains and nothing
more: nested dicts become ``[tables]``, lists of dicts ``[[arrays of tables]]``, None values are left out (TOML has
no null; an absent key reads back as its default), numpy scalars and arrays are converted. Floats are written with
`repr`, which reads back to the same bits; lists of lists are written one row per line.

    >>> print(dumps({"sim": {"dt": 0.004, "steps": 680}, "springs": [{"a": 0, "b": 1}]}), end="")
    [sim]
    dt = 0.004
    steps = 680
    <BLANKLINE>
    [[springs]]
    a = 0
    b = 1
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

import numpy as np

__all__ = ["dumps", "format_key", "format_scalar"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def format_key(key: str) -> str:
    """A key, bare when it can be (``steps``), quoted otherwise (``"springs.stiffness"``)."""
    key = str(key)
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _plain(value: Any) -> Any:
    """numpy scalars and arrays -> Python numbers and lists; tuples -> lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    return value


def format_scalar(value: Any) -> str:
    """One value in TOML spelling: ``true``, ``3``, ``0.004``, ``inf``, ``"adam"``."""
    value = _plain(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return repr(x)
    if isinstance(value, str):
        return _string(value)
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a TOML value")


def _inline(value: Any, indent: str = "") -> str:
    value = _plain(value)
    if isinstance(value, dict):
        items = ", ".join(f"{format_key(k)} = {_inline(v)}" for k, v in value.items() if v is not None)
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, list):
        items = [_plain(v) for v in value]
        if items and all(isinstance(v, list) for v in items):
            inner = indent + "  "
            rows = "".join(f"{inner}{_inline(v, inner)},\n" for v in items)
            return "[\n" + rows + indent + "]"
        return "[" + ", ".join(_inline(v, indent) for v in items) + "]"
    return format_scalar(value)


def _is_table_array(value: Any) -> bool:
    value = _plain(value)
    return isinstance(value, list) and len(value) > 0 and all(isinstance(v, dict) for v in value)


def _emit(table: dict, path: list[str], lines: list[str]) -> None:
    tables, arrays = [], []
    for key, value in table.items():
        value = _plain(value)
        if value is None:
            continue
        if isinstance(value, dict):
            tables.append((key, value))
        elif _is_table_array(value):
            arrays.append((key, value))
        else:
            lines.append(f"{format_key(key)} = {_inline(value)}")
    for key, value in tables:
        header = ".".join(format_key(p) for p in [*path, key])
        if lines:
            lines.append("")
        lines.append(f"[{header}]")
        _emit(value, [*path, key], lines)
    for key, entries in arrays:
        header = ".".join(format_key(p) for p in [*path, key])
        for entry in entries:
            if lines:
                lines.append("")
            lines.append(f"[[{header}]]")
            _emit(entry, [*path, key], lines)


def dumps(data: dict, header: str = "") -> str:
    """`data` as TOML text. `header` (lines of text) is written first as ``#`` comments."""
    lines: list[str] = [f"# {line}".rstrip() for line in header.splitlines()]
    if lines:
        lines.append("")
    body: list[str] = []
    _emit(data, [], body)
    return "\n".join(lines + body) + "\n"
