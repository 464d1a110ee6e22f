"""The scale tests need the optional extra diffsim[scale] (ray, cma): skipped without it, unless
DIFFSIM_REQUIRE_SCALE=1 (set by .ci/run), which turns a missing package into a failure."""

import importlib
import os
import shutil

import pytest


def require(module: str):
    """The module, or skip the test (fail under DIFFSIM_REQUIRE_SCALE=1) if it is not installed."""
    if os.environ.get("DIFFSIM_REQUIRE_SCALE") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"{module} is not installed (pip install 'diffsim[scale]')")


@pytest.fixture(autouse=True)
def _ray_files_apart(monkeypatch):
    """Ray's session files (sockets, logs) in a folder of these tests' own, not the machine's /tmp/ray (a short
    path: Unix socket paths are limited to about 107 characters)."""
    folder = f"/tmp/diffsim-sweep-ray-{os.getpid()}"
    monkeypatch.setenv("RAY_TMPDIR", folder)
    yield
    shutil.rmtree(folder, ignore_errors=True)  # each test's Ray instance has stopped by now
