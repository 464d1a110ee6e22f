"""Property-based fuzzing of the scene loader and of --set (issue 19), without starting Taichi.

Each example takes a shipped scene (scenes/*.toml) and mutates it: a value at a random key path replaced by a
nasty one (NaN, inf, 1e308, 2**70, a string, a table, a long list, ...), a key deleted, an unknown key added, a
type changed; or it applies random --set overrides. The property: the loader returns a scene, or raises
`DiffsimError` whose message is one line and names the scene file (or ``--set``). Any other exception is an internal
error; a hang shows as a missed deadline; a non-finite or out-of-range number put into a numeric key whose schema
bounds it must be refused (silently accepted nonsense).

The default profile (in `make test`) runs a couple of hundred examples per test; the tests marked slow run
thousands.
"""

from __future__ import annotations

import copy
import math
import reprlib
import sys
from pathlib import Path
from typing import Any

import pytest
import taichi as ti
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from diffsim import runtime
from diffsim.errors import DiffsimError
from diffsim.scene.overrides import parse_set
from diffsim.scene.scene import Scene, load_scene, scene_schema
from diffsim.scene.schema import Field, Table, TableArray, Variants, format_key_path
from diffsim.scene.toml_writer import dumps

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SCENES_DIR = Path(__file__).resolve().parents[2] / "scenes"
SCENES = {p.name: tomllib.loads(p.read_text()) for p in sorted(SCENES_DIR.glob("*.toml"))}

FAST = settings(
    max_examples=200,
    deadline=10_000,  # ms: a hang detector, not a timing test
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
SLOW = settings(FAST, max_examples=1500)

NASTY = [
    -1,
    -1.0,
    0,
    0.0,
    -0.0,
    1e-320,
    math.nan,
    math.inf,
    -math.inf,
    1e308,
    -1e308,
    2**63,
    -(2**63) - 1,
    2**70,
    -(2**70),
    10**400,
    True,
    False,
    "",
    "x",
    "nan",
    "inf",
    "../../../../nonexistent",
    "\n",
    "\x00",
    [],
    [[]],
    [[[1]]],
    [math.nan, 1.0],
    [1, 2],
    [1.5, "a"],
    {},
    {"a": 1},
    {"kind": "nonsense"},
    [{}],
    [{"a": 1}],
    [0.0] * 10_000,
    list(range(5000)),
    "x" * 100_000,
]


def nested(depth: int, inner: Any = 1, table: bool = False) -> Any:
    for _ in range(depth):
        inner = {"a": inner} if table else [inner]
    return inner


# (depth, table): nested deeper than the recursion limit, built afresh for each example (copy.deepcopy would
# itself recurse too deep); they found the loader's RecursionError (see the regressions below)
NESTED = [(100, False), (5000, False), (5000, True)]


#: floats without subnormals: once Taichi has started in a process it runs with flush-to-zero, and Python then parses
#: "2.2e-311" as 0.0, so a subnormal value would not survive the scene's text round trip in a test process that
#: compiled kernels before (measured: float("2.225073858507e-311") is 0.0 after diffsim.init(arch="cpu"))
FLOATS = st.floats(allow_subnormal=False)


def nasty_values() -> st.SearchStrategy:
    return st.one_of(
        st.sampled_from(NASTY).map(copy.deepcopy),  # a fresh copy: later mutations may change it in place
        st.sampled_from(NESTED).map(lambda n: nested(n[0], table=n[1])),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False),
        st.text(max_size=20),
        st.lists(st.one_of(st.integers(-3, 3), FLOATS, st.text(max_size=3)), max_size=6),
    )


# ----------------------------------------------------------------------------------------------------------
# Key paths and the schema


def all_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path of a TOML tree (tables, array entries and leaves) down to 8 levels, the root excluded."""
    out = []
    if len(prefix) >= 8:
        return out
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((*prefix, k))
            out += all_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append((*prefix, i))
            out += all_paths(v, (*prefix, i))
    return out


def get(data: Any, path: tuple) -> Any:
    for p in path:
        data = data[p]
    return data


def field_at(data: dict, path: tuple) -> Field | None:
    """The schema Field a key path of the (unmutated) scene names, or None (a table, an unknown or free-form key)."""
    try:
        schema = scene_schema(data["scene"]["system"])
    except (DiffsimError, KeyError, TypeError):
        return None
    node: Any = schema
    here: Any = data
    for part in path:
        if isinstance(node, Field):
            # an element of a vector or int_list: the same bounds apply element-wise
            return node if isinstance(part, int) and node.type in ("vector", "int_list") else None
        if isinstance(node, TableArray):
            if not isinstance(part, int):
                return None
            node = node.table
        elif isinstance(node, Variants):
            if part == node.tag:
                return node.tag_field()
            choice = here.get(node.tag, node.default) if isinstance(here, dict) else None
            table = node.variants.get(choice)
            node = table.fields.get(part) if table is not None else None
        elif isinstance(node, Table):
            node = node.fields.get(part)
        if node is None:
            return None
        try:
            here = here[part]
        except (KeyError, IndexError, TypeError):
            here = None
    if isinstance(node, Field) and node.type in ("vector", "int_list") and path and isinstance(path[-1], int):
        return node
    return node if isinstance(node, Field) else None


def must_refuse(f: Field | None, value: Any, element: bool) -> str | None:
    """Why a number-bounded field must refuse `value`, where that is decidable; None otherwise."""
    if f is None or f.type == "any":
        return None
    numeric = f.type in ("float", "int") or (element and f.type in ("vector", "int_list"))
    if not numeric:
        return None
    if isinstance(value, bool) or isinstance(value, (str, dict, list)):
        return f"a {type(value).__name__} in a number field"
    if isinstance(value, float) and not math.isfinite(value):
        return "a non-finite number"
    if f.type in ("int", "int_list") and isinstance(value, float):
        return "a float in an integer field"
    if f.type in ("int", "int_list") and not -(2**63) <= value < 2**63:
        return "an integer past 64 bits"
    if isinstance(value, int) and abs(value) > sys.float_info.max:
        return "an integer past a float's range"
    if isinstance(value, (int, float)):
        lo, hi = f.min, f.max
        if lo is not None and (value <= lo if f.min_exclusive else value < lo):
            return f"below the minimum {lo}"
        if hi is not None and (value >= hi if f.max_exclusive else value > hi):
            return f"above the maximum {hi}"
    return None


# ----------------------------------------------------------------------------------------------------------
# Mutations


class Mutation(tuple):
    """(scene file name, mutated data, description, reason the load must fail or None), shown by its description:
    hypothesis's printer recurses into a 5000-deep value and fails before it reports the example."""

    def __new__(cls, name: str, data: dict, what: str, must_fail: str | None):
        return super().__new__(cls, (name, data, what, must_fail))

    def __repr__(self) -> str:
        return f"Mutation({self[0]!r}: {self[2]}; must fail: {self[3]})"

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))


_BAD_NUMBERS = [math.nan, math.inf, -math.inf, -1, -1.0, 0, 0.0, -1e308, 2**70, -(2**70)]


@st.composite
def mutated_scenes(draw) -> Mutation:
    name = draw(st.sampled_from(sorted(SCENES)))
    original = SCENES[name]
    data = copy.deepcopy(original)
    if draw(st.integers(0, 3)) == 0:  # a quarter of the examples: one schema-checked number made nonsense
        leaves = [
            p for p in all_paths(data) if isinstance(get(data, p), (int, float)) and field_at(original, p)
        ]
        path = draw(st.sampled_from(leaves))
        value = draw(st.sampled_from(_BAD_NUMBERS))
        get(data, path[:-1])[path[-1]] = value
        why = must_refuse(field_at(original, path), value, isinstance(path[-1], int))
        return Mutation(
            name,
            data,
            f"set {format_key_path(list(path))} = {value!r}",
            why and f"{format_key_path(list(path))}: {why}",
        )
    n = draw(st.sampled_from([1, 1, 2, 3]))
    must_fail = None
    done = []
    for _ in range(n):
        paths = all_paths(data)
        op = draw(st.sampled_from(["replace", "replace", "number", "delete", "unknown", "retype"]))
        if op == "unknown":
            tables = [()] + [p for p in paths if isinstance(get(data, p), dict)]
            at = draw(st.sampled_from(tables))
            key = draw(st.sampled_from(["zzz_unknown", "Dt", "stiffnes", "", "a.b", "kind"]))
            get(data, at)[key] = draw(nasty_values())
            done.append(f"add {format_key_path([*at, key]) or '<root>'}")
            continue
        if not paths:
            continue
        if op == "number":  # a leaf number made non-finite, negative or zero: where the schema can tell
            paths = [p for p in paths if isinstance(get(data, p), (int, float))] or paths
        path = draw(st.sampled_from(paths))
        parent = get(data, path[:-1])
        if op == "delete":
            del parent[path[-1]]
            done.append(f"delete {format_key_path(list(path))}")
            continue
        old = parent[path[-1]]
        if op == "retype":
            value = draw(st.sampled_from([reprlib.repr(old), [old], {"v": old}, "", 0]))
        elif op == "number":
            value = draw(st.sampled_from(_BAD_NUMBERS))
        else:
            value = draw(nasty_values())
        parent[path[-1]] = value
        done.append(f"set {format_key_path(list(path))} = {reprlib.repr(value)}")
        if n == 1:  # one change to the shipped scene: its schema decides (later changes could undo it)
            why = must_refuse(field_at(original, path), value, isinstance(path[-1], int))
            if why:
                must_fail = f"{format_key_path(list(path))}: {why}"
    return Mutation(name, data, "; ".join(done), must_fail)


def check_load(name: str, data: dict, overrides=(), must_fail: str | None = None, extra_where=()) -> None:
    source = str(SCENES_DIR / name)
    try:
        Scene.from_dict(data, source, overrides, base_dir=str(SCENES_DIR))
    except DiffsimError as e:
        text = str(e)
        assert "\n" not in text and "\r" not in text, f"the error is not one line: {text!r}"
        assert source in text or any(w in text for w in extra_where), (
            f"the error does not name {source}: {text}"
        )
        return
    assert must_fail is None, f"accepted nonsense: {must_fail}"


# ----------------------------------------------------------------------------------------------------------
# The Taichi-free property: nothing here may start Taichi


@pytest.fixture(autouse=True, scope="module")
def no_taichi():
    calls = []
    was = runtime._state["initialized"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ti, "init", lambda *a, **k: calls.append((a, k)))
        yield
    assert not calls, "the loader started Taichi"
    assert runtime._state["initialized"] == was


# ----------------------------------------------------------------------------------------------------------
# Mutated scenes


def _mutated(case):
    name, data, what, must_fail = case
    check_load(name, data, must_fail=must_fail)


@FAST
@given(mutated_scenes())
def test_mutated_scene_loads_or_fails_cleanly(case):
    _mutated(case)


@pytest.mark.slow
@SLOW
@given(mutated_scenes())
def test_mutated_scene_loads_or_fails_cleanly_slow(case):
    _mutated(case)


@pytest.mark.parametrize("name", sorted(SCENES))
def test_shipped_scenes_load(name):
    """The fuzz starts from scenes that load."""
    check_load(name, copy.deepcopy(SCENES[name]))


@pytest.mark.parametrize(
    "path, value",
    [
        (("sim", "dt"), math.nan),
        (("sim", "dt"), math.inf),
        (("sim", "dt"), -1e-3),
        (("sim", "dt"), 0.0),
        (("sim", "steps"), 0),
        (("sim", "steps"), 2**70),
        (("sim", "steps"), 1.5),
        (("sim", "batch"), -1),
        (("sim", "gravity"), [0.0, math.nan]),
    ],
)
def test_decidable_nonsense_is_refused(path, value):
    data = copy.deepcopy(SCENES["walker2d.toml"])
    get(data, path[:-1])[path[-1]] = value
    why = must_refuse(field_at(SCENES["walker2d.toml"], path), value, False)
    if path == ("sim", "gravity"):
        why = "a NaN component"
    assert why is not None
    with pytest.raises(DiffsimError, match="walker2d.toml: sim"):
        Scene.from_dict(data, str(SCENES_DIR / "walker2d.toml"), base_dir=str(SCENES_DIR))


# ----------------------------------------------------------------------------------------------------------
# --set overrides

_SEGMENT = st.from_regex(r"[A-Za-z0-9_-]{1,8}(\[[0-9]{1,2}\])?", fullmatch=True)
_VALUE_TEXT = st.one_of(
    st.sampled_from(
        [
            "nan",
            "inf",
            "-inf",
            "-1",
            "0",
            "1e308",
            "-1e308",
            "1e400",
            str(2**70),
            "true",
            "false",
            "[]",
            "[1,2]",
            "[1.5, nan]",
            "[a, 'b']",
            "'quoted'",
            '"',
            "1,2,3",
            "a,b",
            "",
            "=",
            "[",
            "]",
            ",",
        ]
    ),
    st.text(max_size=15),
)


@st.composite
def set_items(draw) -> tuple[str, list[str]]:
    name = draw(st.sampled_from(sorted(SCENES)))
    scene_paths = [
        format_key_path(list(p)) for p in all_paths(SCENES[name]) if all(isinstance(k, str) and k for k in p)
    ]
    keys = st.one_of(
        st.sampled_from(scene_paths or ["sim.dt"]),
        st.lists(_SEGMENT, min_size=1, max_size=4).map(".".join),
        st.sampled_from(["sim.dt", "sim.steps", "springs.stiffness", "gravity", "scene.system", "task.fit"]),
        st.text(max_size=12),
    )
    items = draw(st.lists(st.tuples(keys, _VALUE_TEXT).map("=".join), min_size=1, max_size=3))
    return name, items


def _overrides(case):
    name, items = case
    try:
        pairs = parse_set(items)
    except DiffsimError as e:
        assert "\n" not in str(e) and str(e).startswith("--set"), str(e)
        return
    must_fail = None
    if len(pairs) == 1:
        path, value = pairs[0]
        why = must_refuse(
            field_at(SCENES[name], tuple(path)), value, bool(path) and isinstance(path[-1], int)
        )
        if why:
            must_fail = f"--set {items[0]}: {why}"
    check_load(name, copy.deepcopy(SCENES[name]), items, must_fail=must_fail, extra_where=("--set",))


@FAST
@given(set_items())
@example(("walker2d.toml", ["sim.dt=nan"]))
@example(("walker2d.toml", ["sim.steps=0"]))
@example(("walker2d.toml", ["sim.dt=1e400"]))
def test_set_overrides_load_or_fail_cleanly(case):
    _overrides(case)


@pytest.mark.slow
@SLOW
@given(set_items())
def test_set_overrides_load_or_fail_cleanly_slow(case):
    _overrides(case)


@FAST
@given(st.lists(st.text(max_size=30), max_size=4))
def test_parse_set_raw_text(items):
    """Any strings: parse_set returns (key path, value) pairs or raises a one-line DiffsimError at --set."""
    try:
        pairs = parse_set(items)
    except DiffsimError as e:
        assert "\n" not in str(e) and str(e).startswith("--set"), str(e)
        return
    assert len(pairs) == len(items)
    for path, _ in pairs:
        assert path and all(isinstance(p, (str, int)) for p in path)


# ----------------------------------------------------------------------------------------------------------
# The command line's task flags (load_scene's keywords, typed as argparse gives them) and a file on disk

_ARG_INT = st.one_of(st.sampled_from([0, -1, 1, 2**31, 2**63, 2**70]), st.integers())
_ARG_FLOAT = st.one_of(st.sampled_from([0.0, -1.0, math.nan, math.inf, -math.inf, 1e308]), FLOATS)


@st.composite
def flag_sets(draw) -> tuple[str, dict, str | None]:
    name = draw(st.sampled_from(sorted(SCENES)))
    flags: dict = {}
    must_fail = None
    for key, values in [
        ("steps", _ARG_INT),
        ("iters", _ARG_INT),
        ("checkpoint_every", _ARG_INT),
        ("lr", _ARG_FLOAT),
        ("tol", _ARG_FLOAT),
        ("optimizer", st.sampled_from(["adam", "sgd", "lbfgs"])),
        (
            "fit",
            st.lists(st.sampled_from(["*", "springs.stiffness", "nope", "", "controller.*"]), min_size=1),
        ),
        (
            "target",
            st.sampled_from(
                ["nonexistent.npz", str(SCENES_DIR), str(SCENES_DIR / "smoke_target2d_target.npy")]
            ),
        ),
    ]:
        if draw(st.booleans()):
            flags[key] = draw(values)
    for key in ("steps", "checkpoint_every"):  # both > 0 ints in [sim]
        if key in flags and not 1 <= flags[key] < 2**63:
            must_fail = f"--{key} {flags[key]}"
    if flags.get("target") == "nonexistent.npz":
        must_fail = "a target file that does not exist"
    return name, flags, must_fail


def _flags(case, tmp_path_factory):
    name, flags, must_fail = case
    source = str(SCENES_DIR / name)
    try:
        scene = load_scene(source, **flags)
    except DiffsimError as e:
        text = str(e)
        assert "\n" not in text and source in text, text
        return
    assert must_fail is None, f"accepted nonsense: {must_fail}"
    # what the loader accepted writes back and loads again
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_text(scene.to_toml())
    assert load_scene(path).data == scene.data


@FAST
@given(case=flag_sets())
def test_command_line_flags_load_or_fail_cleanly(case, tmp_path_factory):
    _flags(case, tmp_path_factory)


@pytest.mark.slow
@SLOW
@given(case=flag_sets())
def test_command_line_flags_load_or_fail_cleanly_slow(case, tmp_path_factory):
    _flags(case, tmp_path_factory)


@FAST
@given(case=mutated_scenes())
def test_mutated_scene_file_on_disk(case, tmp_path_factory):
    """The same mutations written as TOML (where TOML can hold them) and read by load_scene from the file."""
    name, data, _, must_fail = case
    try:
        text = dumps(data)
        tomllib.loads(text)
    except (TypeError, ValueError, tomllib.TOMLDecodeError, RecursionError):
        return  # not expressible in TOML (or not by this writer): the in-process test covers it
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_text(text)
    try:
        load_scene(path)
    except DiffsimError as e:
        assert "\n" not in str(e) and str(path) in str(e), str(e)
        return
    assert must_fail is None, f"accepted nonsense: {must_fail}"


@pytest.mark.slow
@SLOW
@given(case=mutated_scenes())
def test_mutated_scene_file_on_disk_slow(case, tmp_path_factory):
    test_mutated_scene_file_on_disk.hypothesis.inner_test(case, tmp_path_factory)


@st.composite
def mangled_texts(draw) -> tuple[str, bytes]:
    """A shipped scene file's bytes with a few spans deleted, duplicated or replaced by TOML-ish noise."""
    name = draw(st.sampled_from(sorted(SCENES)))
    text = (SCENES_DIR / name).read_bytes()
    noise = st.one_of(
        st.sampled_from(
            [b"[", b"]", b"{", b"}", b"=", b'"', b"'''", b"\n", b"[[", b"\x00", b"\xff", b"nan", b"."]
        ),
        st.binary(max_size=8),
        st.integers(1, 3000).map(lambda n: b"x = " + b"[" * n + b"]" * n + b"\n"),
    )
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 40)))
        text = text[:i] + draw(st.one_of(noise, st.just(b""), st.just(text[i:j] * 2))) + text[j:]
    return name, text


def _mangled(case, tmp_path_factory):
    name, text = case
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(text)
    try:
        load_scene(path)
    except DiffsimError as e:
        assert "\n" not in str(e) and str(path) in str(e), str(e)


@FAST
@given(case=mangled_texts())
def test_mangled_scene_text(case, tmp_path_factory):
    """Any bytes in a scene file: load_scene returns a scene or a one-line DiffsimError naming the file."""
    _mangled(case, tmp_path_factory)


@pytest.mark.slow
@SLOW
@given(case=mangled_texts())
def test_mangled_scene_text_slow(case, tmp_path_factory):
    _mangled(case, tmp_path_factory)


# ----------------------------------------------------------------------------------------------------------
# Regressions: the internal errors the fuzz found (RecursionError, NotADirectoryError, OSError)


@pytest.mark.parametrize(
    "value",
    [nested(100), nested(5000), nested(5000, table=True)],
    ids=["list-100", "list-5000", "table-5000"],
)
def test_regression_deeply_nested_data(value):
    """RecursionError out of the loader's recursive passes (copying, validating, formatting the value)."""
    data = copy.deepcopy(SCENES["walker2d.toml"])
    data["sim"]["gravity"] = value
    source = str(SCENES_DIR / "walker2d.toml")
    with pytest.raises(DiffsimError, match=r"walker2d\.toml: sim\.gravity.*nested more than 64 levels deep"):
        Scene.from_dict(data, source, base_dir=str(SCENES_DIR))
    pairs = [(["sim", "gravity"], value)]
    with pytest.raises(DiffsimError, match=r"^--set sim\.gravity.*nested more than 64 levels deep"):
        Scene.from_dict(SCENES["walker2d.toml"], source, pairs, base_dir=str(SCENES_DIR))


@pytest.mark.parametrize("depth", [70, 450, 600, 5000])
@pytest.mark.parametrize("spelling", ["array", "inline table"])
def test_regression_deeply_nested_toml(tmp_path, depth, spelling):
    """RecursionError out of tomllib (deeper than ~450 levels) or out of the loader (65 to ~450)."""
    text = (SCENES_DIR / "walker2d.toml").read_text()
    value = "[" * depth + "1" + "]" * depth if spelling == "array" else "{a=" * depth + "1" + "}" * depth
    path = tmp_path / "deep.toml"
    path.write_text(text.replace("[sim]", f"[sim]\ngravity = {value}", 1))
    with pytest.raises(DiffsimError, match=r"deep\.toml: .*nested (more than 64 levels deep|too deeply)"):
        load_scene(path)


def test_regression_unreadable_paths(tmp_path):
    """NotADirectoryError and OSError (file name too long) escaped find_scene and load_toml."""
    with pytest.raises(DiffsimError, match=r"walker2d\.toml/x\.toml: cannot read the file: Not a directory"):
        load_scene(SCENES_DIR / "walker2d.toml" / "x.toml")
    for name in (str(tmp_path / ("a" * 300 + ".toml")), "a" * 300):
        with pytest.raises(DiffsimError, match=r"a{300}(\.toml)?: cannot read the file: File name too long"):
            load_scene(name)
    with pytest.raises(DiffsimError, match=r"^'x\\x00y\.toml': not a file name: it holds a NUL character$"):
        load_scene("x\x00y.toml")


_PATH_PARTS = st.one_of(
    st.sampled_from(["walker2d", "walker2d.toml", "scenes", "..", ".", "", "~", "a" * 300, "x.toml", "\x00"]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
)


@FAST
@given(parts=st.lists(_PATH_PARTS, min_size=1, max_size=4), absolute=st.booleans())
@example(parts=["\x00"], absolute=False)  # regression: ValueError (embedded null byte) out of open()
@example(parts=["walker2d.toml", "x.toml"], absolute=True)  # regression: NotADirectoryError
@example(parts=["a" * 300], absolute=False)  # regression: OSError (file name too long) out of Path.exists
def test_scene_argument(parts, absolute):
    """The SCENE argument: any name or path gives a scene or a one-line DiffsimError naming it."""
    name = "/".join(parts)
    if absolute:
        name = str(SCENES_DIR / name)
    try:
        load_scene(name)
    except DiffsimError as e:
        assert "\n" not in str(e), str(e)


def test_regression_path_with_newline():
    """A target path with a newline made the error two lines (found by the slow profile)."""
    data = copy.deepcopy(SCENES["smoke_target2d.toml"])
    data["task"]["loss"]["target"] = "no\nsuch.npy"
    source = str(SCENES_DIR / "smoke_target2d.toml")
    with pytest.raises(DiffsimError, match=r"task\.loss\.target: file not found: '.*no\\nsuch\.npy'$") as e:
        Scene.from_dict(data, source, base_dir=str(SCENES_DIR))
    assert "\n" not in str(e.value)
