"""A small declarative schema for scene files: strict validation, errors that name file, key path and value.

A system declares the keys it reads as a tree of `Table`, `TableArray` (TOML ``[[springs]]``) and `Field`::

    SPRINGS = Table({
        "sim": Table({
            "dt": Field("float", 1e-3, unit="s", min=0, min_exclusive=True, doc="Time step."),
            "steps": Field("int", 500, min=1, doc="Frames per rollout."),
        }),
        "springs": TableArray(Table({
            "ends": Field("int_list", length=2, min=0, doc="Indices of the two masses."),
            "stiffness": Field("float", 1e4, unit="N/m", min=0, min_exclusive=True),
        }), min_len=1),
    })

    data = validate(load_toml("scenes/walker2d.toml"), SPRINGS, source="scenes/walker2d.toml")

`validate` returns a new dict with defaults filled in, ints widened to float where a float is expected and
paths resolved against the scene file's folder. Errors are `DiffsimError`s whose text reads like
``scenes/walker2d.toml: springs[3].stiffness: must be > 0, got -5``. The module does not import Taichi.

A table whose keys depend on one of its own values (a controller's ``kind``, an optimizer's ``name``) is a
`Variants` node: the tag key picks one of several `Table`s, and a key that belongs to another choice is
reported as such (``controller.hidden: unknown key 'hidden' for kind = 'periodic' (it belongs to kind = 'mlp')``).
"""

from __future__ import annotations

import copy
import difflib
import math
import numbers
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from diffsim.errors import DiffsimError

__all__ = [
    "REQUIRED",
    "Field",
    "Table",
    "TableArray",
    "Variants",
    "validate",
    "load_toml",
    "describe",
    "markdown_reference",
    "format_key_path",
    "format_value",
    "format_path",
    "range_text",
]


class _Required:
    """Sentinel default: the key must be given."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "REQUIRED"

    def __reduce__(self):
        return (_Required, ())


REQUIRED: Any = _Required()

FIELD_TYPES = ("float", "int", "bool", "str", "vector", "int_list", "list", "path", "any")
_NUMERIC_TYPES = ("float", "int", "vector", "int_list")  # types that take min / max (element-wise for lists)
_CHOICE_TYPES = ("float", "int", "str")
_LENGTH_TYPES = ("vector", "int_list", "list")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


# ----------------------------------------------------------------------------------------------------------
# Formatting: values as the user wrote them (TOML spelling), key paths as `springs[3].stiffness`


def format_value(value: Any, max_items: int = 8) -> str:
    """A value as written in TOML, long lists shortened: `true`, `-5`, `1.5`, `'adam'`, `[1, 2]`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        shown = ", ".join(format_value(v, max_items) for v in value[:max_items])
        if len(value) > max_items:
            shown += f", ... ({len(value)} items)"
        return f"[{shown}]"
    if isinstance(value, int) and len(str(value)) > 24:
        digits = str(value)
        return f"{digits[:8]}... ({len(digits.lstrip('-'))} digits)"
    return str(value)


def format_path(path: str) -> str:
    """A file path for a one-line message: as it is, or quoted (repr) when it holds a newline or another
    unprintable character."""
    return path if path.isprintable() else repr(path)


def _format_bound(x: float) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


def _key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _join(path: str, name: str) -> str:
    return f"{path}.{_key(name)}" if path else _key(name)


def format_key_path(parts: list[str | int]) -> str:
    """``["springs", 3, "stiffness"]`` -> ``springs[3].stiffness``."""
    path = ""
    for p in parts:
        path = f"{path}[{p}]" if isinstance(p, int) else _join(path, p)
    return path


# ----------------------------------------------------------------------------------------------------------
# Schema nodes


@dataclass(frozen=True)
class Field:
    """One leaf key.

    type: one of "float", "int", "bool", "str", "vector" (list of floats), "int_list", "list" (list of
        `item`), "path" (a file path, resolved against the scene file's folder and checked to exist), "any"
        (a free-form value, copied as it is; use sparingly).
    default: the value used when the key is absent; `REQUIRED` (the default) makes the key mandatory, None
        leaves it unset (the validated dict then holds None).
    unit, doc: for the reference docs (`describe`, `markdown_reference`).
    min, max, min_exclusive, max_exclusive: range of a number, or of each element of a vector / int_list.
    choices: allowed values of a str, int or float.
    length: exact number of elements of a vector, int_list or list (None: any length).
    item: the Field of each element of a "list".
    """

    type: str
    default: Any = REQUIRED
    doc: str = ""
    unit: str = ""
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    choices: tuple | list | None = None
    length: int | None = None
    item: Field | None = None

    def __post_init__(self):
        t = self.type
        if t not in FIELD_TYPES:
            raise ValueError(f"Field type must be one of {', '.join(FIELD_TYPES)}, got {t!r}")
        if (t == "list") != (self.item is not None):
            raise ValueError("Field type 'list' needs item=Field(...), and only 'list' takes item")
        if self.item is not None and not isinstance(self.item, Field):
            raise TypeError(f"Field item must be a Field, got {type(self.item).__name__}")
        if (self.min is not None or self.max is not None) and t not in _NUMERIC_TYPES:
            raise ValueError(f"min/max apply to {', '.join(_NUMERIC_TYPES)}, not {t!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"Field min {self.min} > max {self.max}")
        if self.choices is not None:
            if t not in _CHOICE_TYPES:
                raise ValueError(f"choices apply to {', '.join(_CHOICE_TYPES)}, not {t!r}")
            if not self.choices:
                raise ValueError("choices must not be empty")
            object.__setattr__(self, "choices", tuple(self.choices))
        if self.length is not None and t not in _LENGTH_TYPES:
            raise ValueError(f"length applies to {', '.join(_LENGTH_TYPES)}, not {t!r}")
        if self.default is not REQUIRED and self.default is not None:
            # A bad default is a bug in the schema, caught when the system module is imported.
            ctx = _Context(source="<default>", base_dir="", resolve_paths=False)
            try:
                default = _check_field(self, self.default, "", ctx)
            except DiffsimError as e:
                raise ValueError(f"Field default {self.default!r} is invalid: {e.reason}") from None
            object.__setattr__(self, "default", default)


@dataclass(frozen=True)
class Table:
    """A TOML table: named Fields, sub-Tables and TableArrays.

    required: when absent, a required table is an error; an optional one gets its defaults if none of its
        keys is required, and is left out of the result otherwise.
    extra: accept keys not in `fields` (copied as they are) instead of rejecting them.
    """

    fields: dict[str, Node]
    doc: str = ""
    required: bool = False
    extra: bool = False

    def __post_init__(self):
        for name, node in self.fields.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"Table keys must be non-empty strings, got {name!r}")
            if not isinstance(node, (Field, Table, TableArray, Variants)):
                raise TypeError(
                    f"Table key {name!r}: expected Field, Table, TableArray or Variants, got {type(node).__name__}"
                )


@dataclass(frozen=True)
class TableArray:
    """A TOML array of tables (``[[springs]]``); each entry is validated against `table`."""

    table: Table
    doc: str = ""
    min_len: int = 0

    def __post_init__(self):
        if not isinstance(self.table, Table):
            raise TypeError(f"TableArray needs a Table, got {type(self.table).__name__}")


@dataclass(frozen=True)
class Variants:
    """A table whose keys depend on its tag key: ``[controller] kind = "mlp"`` takes the keys of ``variants["mlp"]``.

    variants: tag value -> the Table of the other keys for that choice.
    tag: the name of the key that chooses ("kind").
    default: the tag value used when the tag key is absent; None makes the tag key mandatory.
    required: when the table is absent, a required one is an error; an optional one is filled from its
        default variant when that has no required keys, and left out of the result otherwise.
    tag_doc: the description of the tag key, for the reference docs.
    The validated table holds the tag first, then the chosen variant's keys.
    """

    variants: dict[str, Table]
    tag: str = "kind"
    default: str | None = None
    doc: str = ""
    required: bool = False
    tag_doc: str = ""

    def __post_init__(self):
        if not self.variants:
            raise ValueError("Variants needs at least one variant")
        for name, table in self.variants.items():
            if not isinstance(table, Table):
                raise TypeError(f"Variants {name!r}: expected a Table, got {type(table).__name__}")
            if self.tag in table.fields:
                raise ValueError(f"Variants {name!r}: the tag key {self.tag!r} must not be one of its fields")
        if self.default is not None and self.default not in self.variants:
            raise ValueError(f"Variants default {self.default!r} is not one of {list(self.variants)}")

    def tag_field(self) -> Field:
        """The tag key as a Field (for messages and docs)."""
        return Field(
            "str",
            REQUIRED if self.default is None else self.default,
            choices=tuple(self.variants),
            doc=self.tag_doc,
        )


Node = Field | Table | TableArray | Variants


# ----------------------------------------------------------------------------------------------------------
# Validation


@dataclass
class _Context:
    source: str
    base_dir: str
    resolve_paths: bool = True

    def error(self, path: str, message: str) -> DiffsimError:
        return DiffsimError(message, where=f"{self.source}: {path}" if path else self.source)


def validate(data: dict, schema: Table, source: str = "<scene>", base_dir: str | None = None) -> dict:
    """Check `data` against `schema` and return a new dict with defaults filled in; `data` is not modified.

    source names the file in error messages. base_dir is the folder "path" fields are resolved against; by
    default the folder of `source` (the current directory when `source` is not a file name, like ``<scene>``).
    Raises DiffsimError at the first problem, e.g. ``scene.toml: springs[3].stiffness: must be > 0, got -5``.
    """
    source = os.fspath(source)
    if base_dir is None:
        base_dir = "" if source.startswith("<") else os.path.dirname(source)
    ctx = _Context(source=source, base_dir=base_dir)
    return _check_table(schema, data, "", ctx)


def _check_node(node: Node, value: Any, path: str, ctx: _Context) -> Any:
    if isinstance(node, Field):
        return _check_field(node, value, path, ctx)
    if isinstance(node, Table):
        return _check_table(node, value, path, ctx)
    if isinstance(node, Variants):
        return _check_variants(node, value, path, ctx)
    return _check_array(node, value, path, ctx)


def _check_table(table: Table, data: Any, path: str, ctx: _Context) -> dict:
    if not isinstance(data, dict):
        raise ctx.error(path, f"must be a table, got {format_value(data)}")
    if not table.extra:
        for key in data:
            if key not in table.fields:
                raise ctx.error(path, _unknown_key_message(str(key), list(table.fields)))
    out: dict = {}
    for name, node in table.fields.items():
        sub = _join(path, name)
        if name in data:
            out[name] = _check_node(node, data[name], sub, ctx)
            continue
        if isinstance(node, Field):
            if node.default is REQUIRED:
                raise ctx.error(sub, "missing required key")
            out[name] = None if node.default is None else _check_field(node, node.default, sub, ctx)
        elif isinstance(node, Table):
            if node.required:
                raise ctx.error(sub, f"missing required key (table [{sub}])")
            if _defaultable(node):
                out[name] = _check_table(node, {}, sub, ctx)
        elif isinstance(node, Variants):
            if node.required:
                raise ctx.error(sub, f"missing required key (table [{sub}])")
            if node.default is not None and _defaultable(node.variants[node.default]):
                out[name] = _check_variants(node, {}, sub, ctx)
        else:
            if node.min_len > 0:
                entry = "entry" if node.min_len == 1 else "entries"
                raise ctx.error(sub, f"missing required key (at least {node.min_len} [[{sub}]] {entry})")
            out[name] = []
    for key, value in data.items():
        if key not in table.fields:  # only reached with extra=True
            out[key] = copy.deepcopy(value)
    return out


def _check_variants(node: Variants, data: Any, path: str, ctx: _Context) -> dict:
    if not isinstance(data, dict):
        raise ctx.error(path, f"must be a table, got {format_value(data)}")
    tag_path = _join(path, node.tag)
    if node.tag in data:
        choice = _check_field(node.tag_field(), data[node.tag], tag_path, ctx)
    elif node.default is not None:
        choice = node.default
    else:
        raise ctx.error(tag_path, f"missing required key (one of {_choices_text(node.tag_field())})")
    table = node.variants[choice]
    if not table.extra:
        for key in data:
            if key == node.tag or key in table.fields:
                continue
            owners = [v for v, t in node.variants.items() if key in t.fields]
            if owners:
                shown = " or ".join(f"{node.tag} = {v!r}" for v in owners)
                raise ctx.error(
                    path, f"unknown key {key!r} for {node.tag} = {choice!r} (it belongs to {shown})"
                )
            raise ctx.error(path, _unknown_key_message(str(key), [node.tag, *table.fields]))
    rest = {k: v for k, v in data.items() if k != node.tag}
    return {node.tag: choice, **_check_table(table, rest, path, ctx)}


def _unknown_key_message(key: str, valid: list[str]) -> str:
    lowered = {v.lower(): v for v in valid}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r} (did you mean {lowered[close[0]]!r}?)"
    if valid:
        return f"unknown key {key!r} (valid keys: {', '.join(valid)})"
    return f"unknown key {key!r} (this table takes no keys)"


def _entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def _defaultable(table: Table) -> bool:
    """Whether an absent table can be filled from defaults alone."""
    for node in table.fields.values():
        if isinstance(node, Field) and node.default is REQUIRED:
            return False
        if isinstance(node, Table) and node.required:
            return False
        if isinstance(node, TableArray) and node.min_len > 0:
            return False
        if isinstance(node, Variants) and node.required:
            return False
    return True


def _check_array(node: TableArray, value: Any, path: str, ctx: _Context) -> list:
    if not isinstance(value, (list, tuple)):
        raise ctx.error(path, f"must be an array of tables ([[{path}]]), got {format_value(value)}")
    if len(value) < node.min_len:
        raise ctx.error(path, f"must have at least {_entries(node.min_len)}, got {len(value)}")
    return [_check_table(node.table, entry, f"{path}[{i}]", ctx) for i, entry in enumerate(value)]


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_field(f: Field, v: Any, path: str, ctx: _Context) -> Any:
    t = f.type
    if t == "any":
        return copy.deepcopy(v)
    if t == "float":
        x = _check_float(f, v, path, ctx)
        _check_choices(f, x, v, path, ctx)
        return x
    if t == "int":
        n = _check_int(f, v, path, ctx)
        _check_choices(f, n, v, path, ctx)
        return n
    if t == "bool":
        if not isinstance(v, bool):
            raise ctx.error(path, f"must be true or false, got {format_value(v)}")
        return v
    if t == "str":
        if not isinstance(v, str):
            raise ctx.error(path, f"must be a string, got {format_value(v)}")
        _check_choices(f, v, v, path, ctx)
        return v
    if t == "path":
        return _check_path(v, path, ctx)
    # The list types: vector, int_list, list.
    what = {"vector": "numbers", "int_list": "integers", "list": "items"}[t]
    if not isinstance(v, (list, tuple)):
        raise ctx.error(path, f"must be a list of {what}, got {format_value(v)}")
    if f.length is not None and len(v) != f.length:
        raise ctx.error(path, f"must be a list of {f.length} {what}, got {format_value(v)}")
    if t == "vector":
        return [_check_float(f, x, f"{path}[{i}]", ctx) for i, x in enumerate(v)]
    if t == "int_list":
        return [_check_int(f, x, f"{path}[{i}]", ctx) for i, x in enumerate(v)]
    return [_check_field(f.item, x, f"{path}[{i}]", ctx) for i, x in enumerate(v)]


def _check_float(f: Field, v: Any, path: str, ctx: _Context) -> float:
    if not _is_number(v):
        raise ctx.error(path, f"must be a number, got {format_value(v)}")
    try:
        x = float(v)
    except OverflowError:  # an integer past a float's range
        raise ctx.error(path, f"must be finite, got {format_value(v)}") from None
    if not math.isfinite(x):
        raise ctx.error(path, f"must be finite, got {format_value(v)}")
    _check_range(f, x, v, path, ctx)
    return x


def _check_int(f: Field, v: Any, path: str, ctx: _Context) -> int:
    if not _is_int(v):
        raise ctx.error(path, f"must be an integer, got {format_value(v)}")
    n = int(v)
    if not -(2**63) <= n < 2**63:  # TOML integers are 64-bit; Python's are unbounded
        raise ctx.error(path, f"must be a 64-bit integer (|value| < 2^63), got {format_value(v)}")
    _check_range(f, n, v, path, ctx)
    return n


def range_text(f: Field) -> str:
    """The allowed range in words: ``> 0``, ``[0, 1]``, ``(0, 1]``, or "" when unbounded."""
    lo, hi = f.min, f.max
    if lo is not None and hi is not None:
        return (
            ("(" if f.min_exclusive else "[")
            + f"{_format_bound(lo)}, {_format_bound(hi)}"
            + (")" if f.max_exclusive else "]")
        )
    if lo is not None:
        return f"{'>' if f.min_exclusive else '>='} {_format_bound(lo)}"
    if hi is not None:
        return f"{'<' if f.max_exclusive else '<='} {_format_bound(hi)}"
    return ""


def _check_range(f: Field, x: float, given: Any, path: str, ctx: _Context) -> None:
    lo, hi = f.min, f.max
    too_low = lo is not None and (x <= lo if f.min_exclusive else x < lo)
    too_high = hi is not None and (x >= hi if f.max_exclusive else x > hi)
    if too_low or too_high:
        inside = "in " if lo is not None and hi is not None else ""
        raise ctx.error(path, f"must be {inside}{range_text(f)}, got {format_value(given)}")


def _choices_text(f: Field) -> str:
    return ", ".join(format_value(c) for c in f.choices)


def _check_choices(f: Field, x: Any, given: Any, path: str, ctx: _Context) -> None:
    if f.choices is None or x in f.choices:
        return
    message = f"must be one of {_choices_text(f)}, got {format_value(given)}"
    if isinstance(x, str):
        close = difflib.get_close_matches(x, [c for c in f.choices if isinstance(c, str)], n=1, cutoff=0.6)
        if close:
            message += f" (did you mean {close[0]!r}?)"
    raise ctx.error(path, message)


def _check_path(v: Any, path: str, ctx: _Context) -> str:
    if not isinstance(v, str) or not v:
        raise ctx.error(path, f"must be a file path (a non-empty string), got {format_value(v)}")
    if not ctx.resolve_paths:
        return v
    resolved = os.path.normpath(os.path.join(ctx.base_dir, os.path.expanduser(v)))
    if not os.path.exists(resolved):
        raise ctx.error(path, f"file not found: {format_path(resolved)}")
    return resolved


# ----------------------------------------------------------------------------------------------------------
# Reading TOML


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def load_toml(path: str | os.PathLike) -> dict:
    """Read a TOML file; a missing file or a syntax error raises DiffsimError naming the file (and line)."""
    name = os.fspath(path)
    shown = format_path(name)
    if "\x00" in name:  # open() raises ValueError
        raise DiffsimError("not a file name: it holds a NUL character", where=shown)
    try:
        with open(name, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise DiffsimError("file not found", where=shown) from None
    except IsADirectoryError:
        raise DiffsimError("is a directory, expected a TOML file", where=shown) from None
    except UnicodeDecodeError as e:
        raise DiffsimError(f"not valid UTF-8 text (byte {e.start})", where=shown) from None
    except RecursionError:  # tomllib recurses once per level of nested arrays and inline tables
        raise DiffsimError("invalid TOML: arrays or inline tables nested too deeply", where=shown) from None
    except tomllib.TOMLDecodeError as e:
        message = str(e)
        m = _TOML_POSITION.search(message)
        if m:
            reason = message[: m.start()]
            raise DiffsimError(
                f"invalid TOML at line {m.group(1)}, column {m.group(2)}: {reason}", where=shown
            ) from None
        raise DiffsimError(f"invalid TOML: {message}", where=shown) from None
    except OSError as e:  # not a directory, name too long, permission denied, ...
        raise DiffsimError(f"cannot read the file: {e.strerror or e}", where=shown) from None


# ----------------------------------------------------------------------------------------------------------
# Reference docs


def _type_text(f: Field) -> str:
    n = f"[{f.length}]" if f.length is not None else ""
    if f.type == "vector":
        return f"vector{n}"
    if f.type == "int_list":
        return f"int list{n}"
    if f.type == "list":
        return f"list{n} of {_type_text(f.item)}"
    return f.type


def _default_text(f: Field) -> str:
    if f.default is REQUIRED:
        return "required"
    if f.default is None:
        return "unset"
    return format_value(f.default, max_items=16)


def _field_range(f: Field) -> str:
    if f.choices is not None:
        return f"one of {_choices_text(f)}"
    if f.type == "list" and f.item is not None:
        return _field_range(f.item)
    return range_text(f)


def _entry(key: str, node: Node) -> dict:
    if isinstance(node, Field):
        return {
            "key": key,
            "type": _type_text(node),
            "default": _default_text(node),
            "unit": node.unit,
            "doc": node.doc,
            "range": _field_range(node),
            "required": node.default is REQUIRED,
        }
    if isinstance(node, Table):
        default = "required" if node.required else ("defaults" if _defaultable(node) else "absent")
        return {
            "key": key,
            "type": "table",
            "default": default,
            "unit": "",
            "doc": node.doc,
            "range": "",
            "required": node.required,
        }
    if isinstance(node, Variants):
        if node.required:
            default = "required"
        elif node.default is not None and _defaultable(node.variants[node.default]):
            default = "defaults"
        else:
            default = "absent"
        return {
            "key": key,
            "type": "table",
            "default": default,
            "unit": "",
            "doc": node.doc,
            "range": f"keys depend on {node.tag}",
            "required": node.required,
        }
    rng = f"at least {_entries(node.min_len)}" if node.min_len else ""
    return {
        "key": key,
        "type": "array of tables",
        "default": "required" if node.min_len else "[]",
        "unit": "",
        "doc": node.doc,
        "range": rng,
        "required": node.min_len > 0,
    }


def describe(schema: Table, prefix: str = "") -> list[dict]:
    """Every key of `schema`, depth first, as dicts with key, type, default, unit, doc, range (and required).

    Keys are full paths (``sim.dt``); keys of an array of tables appear as ``springs[].stiffness``. Sub-tables
    and arrays have their own entry (type "table" / "array of tables") before their keys. `default` is
    display text: "required", "unset" (None) or the value in TOML spelling. The keys of a `Variants` table
    follow its tag key, once per choice, with a "variant" entry (``kind = 'mlp'``) in their dicts.
    """
    rows: list[dict] = []
    for name, node in schema.fields.items():
        key = _join(prefix, name)
        rows.append(_entry(key, node))
        if isinstance(node, Table):
            rows.extend(describe(node, key))
        elif isinstance(node, TableArray):
            rows.extend(describe(node.table, key + "[]"))
        elif isinstance(node, Variants):
            rows.append(_entry(_join(key, node.tag), node.tag_field()))
            for choice, table in node.variants.items():
                for row in describe(table, key):
                    rows.append({**row, "variant": f"{node.tag} = {choice!r}"})
    return rows


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _sentences(*parts: str) -> str:
    return " ".join(_md(p) for p in parts if p)


def markdown_reference(schema: Table, title: str) -> str:
    """A Markdown reference of `schema`: one table of keys per TOML (sub)table, headed by its TOML header."""
    lines = [f"# {title}", ""]
    if schema.doc:
        lines += [schema.doc.strip(), ""]

    def section(
        table: Table,
        header: str | None,
        path: str,
        doc: str,
        level: int = 2,
        tag: tuple[str, Field] | None = None,
    ) -> None:
        leaves = [(n, f) for n, f in table.fields.items() if isinstance(f, Field)]
        if tag is not None:
            leaves.insert(0, tag)
        if header is not None and (leaves or doc or table.extra):
            lines.extend([f"{'#' * level} {header}", ""])
            if doc:
                lines.extend([doc, ""])
        if leaves:
            lines.append("| Key | Type | Default | Unit | Range | Description |")
            lines.append("|---|---|---|---|---|---|")
            for name, f in leaves:
                e = _entry(name, f)
                default = e["default"] if e["default"] in ("required", "unset") else f"`{_md(e['default'])}`"
                rng = f"`{_md(e['range'])}`" if e["range"] else ""
                unit, doc = _md(e["unit"]), _md(e["doc"])
                lines.append(f"| `{_key(name)}` | {e['type']} | {default} | {unit} | {rng} | {doc} |")
            lines.append("")
        if table.extra:
            lines.extend(["Other keys are accepted as they are.", ""])
        for name, node in table.fields.items():
            sub = _join(path, name)
            if isinstance(node, Table):
                note = "Required." if node.required else ("" if _defaultable(node) else "Optional.")
                section(node, f"`[{sub}]`", sub, _sentences(node.doc, note), level)
            elif isinstance(node, TableArray):
                note = f"At least {_entries(node.min_len)}." if node.min_len else "Any number of entries."
                section(node.table, f"`[[{sub}]]`", sub, _sentences(node.doc or node.table.doc, note), level)
            elif isinstance(node, Variants):
                entry = _entry(sub, node)
                note = {"required": "Required.", "absent": "Optional."}.get(entry["default"], "")
                choices = ", ".join(f"`{node.tag} = {format_value(c)}`" for c in node.variants)
                intro = _sentences(node.doc, note, f"The other keys depend on `{node.tag}`: {choices}.")
                section(Table({}), f"`[{sub}]`", sub, intro, level, tag=(node.tag, node.tag_field()))
                for choice, variant in node.variants.items():
                    head = f"`[{sub}]` with `{node.tag} = {format_value(choice)}`"
                    vdoc = _sentences(variant.doc) or ("No other keys." if not variant.fields else "")
                    section(variant, head, sub, vdoc, level + 1)

    section(schema, None, "", "")
    return "\n".join(lines).rstrip() + "\n"
