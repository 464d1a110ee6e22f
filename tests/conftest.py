"""Shared test set-up.

`diffsim.init` resets Taichi, so each test module starts the backend it needs with the `backend` helper below; a
system built under one initialisation must not be used after another.
"""

import os

import pytest

import diffsim
from diffsim import runtime


def use(arch: str = "cpu", precision: str = "f64") -> None:
    """Initialise Taichi unless it already runs with these settings and has room for a module's fields: a test
    process runs many modules, and Taichi holds at most 512 groups of fields (runtime.FIELD_GROUP_LIMIT)."""
    cur = runtime._state
    if not (
        cur["initialized"]
        and cur["arch"] == arch
        and cur["precision"] == precision
        and not cur["debug"]
        and runtime.field_groups() < runtime.FIELD_GROUP_LIMIT // 2
    ):
        diffsim.init(arch=arch, precision=precision)


def vulkan_or_skip() -> None:
    if "vulkan" not in runtime.available_archs():
        if os.environ.get("DIFFSIM_REQUIRE_VULKAN") == "1":
            pytest.fail("DIFFSIM_REQUIRE_VULKAN=1 but the Vulkan backend is not available")
        pytest.skip("Vulkan backend not available (apt-get install mesa-vulkan-drivers)")


def other_backends() -> list[str]:
    """The backends compared against the CPU: ``DIFFSIM_BACKENDS`` (comma list), default "vulkan". The GPU check
    (benchmarks/gpu_check.sh) sets it to "cuda"."""
    return [a.strip() for a in os.environ.get("DIFFSIM_BACKENDS", "vulkan").split(",") if a.strip()]


def backend_or_skip(arch: str) -> None:
    """Skip when `arch` is missing, unless it is Vulkan and DIFFSIM_REQUIRE_VULKAN=1 (CI), or it was asked for
    explicitly through DIFFSIM_BACKENDS, in which case fail."""
    if arch == "vulkan":
        vulkan_or_skip()
        return
    if arch not in runtime.available_archs():
        if "DIFFSIM_BACKENDS" in os.environ:
            pytest.fail(f"DIFFSIM_BACKENDS asks for {arch!r}, which is not available here")
        pytest.skip(f"backend {arch} not available")
