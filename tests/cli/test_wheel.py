"""The built wheel outside the repository: build it, install it with its dependencies into a fresh virtual
environment (pip's cache makes that a copy), and from a folder outside the checkout run `diffsim demo`,
`diffsim run walker2d`, `diffsim view` and the README's Python snippet. Also the wheel's contents and metadata:
the shipped scenes and their data files inside the package, the Apache-2.0 license expression and file."""

from __future__ import annotations

import email
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.cli.conftest import HANG_TIMEOUT, ROOT, SCENES

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=HANG_TIMEOUT, env=env, check=False
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)], cwd=out)
    (path,) = out.glob("diffsim-*.whl")
    return path


def test_wheel_contents_and_metadata(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = email.message_from_string(
            z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        )
        license_text = z.read(next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))).decode()
    shipped = {p.name for p in SCENES.iterdir() if p.suffix in (".toml", ".npy")}
    assert shipped and {f"diffsim/scenes/{n}" for n in shipped} <= names
    assert meta["License-Expression"] == "Apache-2.0" and meta["License-File"] == "LICENSE"
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    requires = meta.get_all("Requires-Dist")
    for dep in ("taichi", "numpy", "scipy", "matplotlib", "tqdm", "pillow"):
        assert any(re.match(rf"{dep}\b", r) for r in requires), (dep, requires)
    assert any(r.startswith("plotly") and 'extra == "viewer"' in r for r in requires), requires


def test_wheel_works_outside_the_repository(wheel, tmp_path):
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(venv)], cwd=tmp_path)
    bin_ = venv / "bin"
    _run([str(bin_ / "python"), "-m", "pip", "install", "-q", f"{wheel}[viewer]"], cwd=tmp_path)
    _run([str(bin_ / "python"), "-m", "pip", "check"], cwd=tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DIFFSIM_SCENES", "VIRTUAL_ENV")}
    exe = str(bin_ / "diffsim")
    # the installed package, not the checkout, is what runs
    where = _run([str(bin_ / "python"), "-c", "import diffsim; print(diffsim.__file__)"], cwd=work, env=env)
    assert str(venv) in where.stdout and str(ROOT) not in where.stdout
    demo = _run([exe, "demo", "--iters", "3", "--out", "demo"], cwd=work, env=env)
    assert "demo: the walker's centre of mass moved" in demo.stdout
    assert (work / "demo" / "after.gif").is_file() and (work / "demo" / "view.html").is_file()
    _run([exe, "run", "walker2d", "--steps", "100", "--out", "X"], cwd=work, env=env)
    _run([exe, "view", "X", "--out", "X/view.html"], cwd=work, env=env)
    assert (work / "X" / "view.html").stat().st_size > 1_000_000  # plotly.js inside
    # the README's Python snippet, as printed there, with fewer iterations
    readme = (ROOT / "README.md").read_text()
    snippet = readme.split("The same from Python:\n\n```python\n", 1)[1].split("```", 1)[0]
    assert 'load_scene("scenes/springs_sysid.toml")' in snippet
    snippet = snippet.replace(
        'load_scene("scenes/springs_sysid.toml")', 'load_scene("scenes/springs_sysid.toml", iters=3)'
    )
    out = _run([str(bin_ / "python"), "-c", snippet], cwd=work, env=env)
    stiffness = json.loads(out.stdout.strip().splitlines()[-1])  # one per spring, N/m
    assert len(stiffness) > 0 and all(k > 0 for k in stiffness)
