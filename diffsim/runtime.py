"""Backend selection: the only place that calls `ti.init`.

`init()` may be called again to switch backend or precision. Re-initialising resets Taichi: every field and every
compiled kernel is dropped, so systems and simulations built before must be built again (they check this and raise a
clear error instead of crashing).
"""

from __future__ import annotations

import os
import random

import numpy as np
import taichi as ti

from .errors import DiffsimError

ARCHS = ("cpu", "gpu", "cuda", "vulkan", "metal")
PRECISIONS = ("f32", "f64")

# Reverse mode through loops with loop-carried locals needs Taichi's autodiff stack; the adaptive size crashed the
# CPU backend in a probe (docs/design.md, "Backends and precision"), so it is fixed here. 512 covers the deepest
# serial loop we compile.
AD_STACK_SIZE = 512

#: Taichi's LLVM backends (CPU, CUDA) keep the fields of a process in at most 512 SNode trees (kMaxNumSnodeTreesLlvm;
#: each field allocated on its own after the first kernel launch takes one) and crash with a segmentation fault past
#: that. diffsim refuses to allocate within FIELD_GROUP_MARGIN of it, with an error that says how to free them.
FIELD_GROUP_LIMIT = 512
FIELD_GROUP_MARGIN = 16

_state = {"initialized": False, "arch": None, "precision": None, "debug": False, "generation": 0}


def _ti_arch(name: str):
    return {"cpu": ti.cpu, "cuda": ti.cuda, "vulkan": ti.vulkan, "metal": ti.metal}[name]


def available_archs() -> list[str]:
    """Names of the backends that work on this machine (probed once per process, in a subprocess-free way)."""
    if "_available" in _state:
        return list(_state["_available"])
    found = ["cpu"]
    try:
        from taichi._lib import core as _core  # noqa: PLC0415

        # Probe the machine before asking Taichi: its CUDA probe prints a warning when there is no driver.
        present = {"cuda": _cuda_present, "vulkan": _vulkan_device_present, "metal": _is_macos}
        compiled = {"cuda": "with_cuda", "vulkan": "with_vulkan", "metal": "with_metal"}
        for name in ("cuda", "vulkan", "metal"):
            if present[name]() and getattr(_core, compiled[name], lambda: False)():
                found.append(name)
    except Exception:  # pragma: no cover - depends on the Taichi build
        pass
    _state["_available"] = found
    return list(found)


def _is_macos() -> bool:
    import sys

    return sys.platform == "darwin"


def _cuda_present() -> bool:
    import ctypes.util

    return ctypes.util.find_library("cuda") is not None or os.path.exists("/dev/nvidiactl")


def _vulkan_device_present() -> bool:
    dirs = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"]
    env = os.environ.get("VK_ICD_FILENAMES") or os.environ.get("VK_DRIVER_FILES")
    if env:
        return True
    return any(os.path.isdir(d) and any(f.endswith(".json") for f in os.listdir(d)) for d in dirs)


def init(
    arch: str | None = None,
    precision: str | None = None,
    debug: bool = False,
    seed: int | None = None,
    quiet: bool = True,
) -> None:
    """Start (or restart) Taichi on a backend.

    arch: "cpu" (x64), "gpu" (cuda, then vulkan, then metal), "cuda", "vulkan" or "metal"; default from
        ``DIFFSIM_ARCH``, else "cpu".
    precision: "f32" (default, fast) or "f64" (for gradient checks); default from ``DIFFSIM_PRECISION``.
    debug: Taichi's debug mode (bounds checks); slow.
    seed: seeds Python's, numpy's and Taichi's random generators.
    """
    arch = (arch or os.environ.get("DIFFSIM_ARCH") or "cpu").lower()
    precision = (precision or os.environ.get("DIFFSIM_PRECISION") or "f32").lower()
    if arch not in ARCHS:
        raise DiffsimError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}", where="arch")
    if precision not in PRECISIONS:
        raise DiffsimError(f"unknown precision {precision!r}; choose f32 or f64", where="precision")
    available = available_archs()
    if arch == "gpu":
        gpus = [a for a in ("cuda", "vulkan", "metal") if a in available]
        if not gpus:
            raise DiffsimError(f"no GPU backend available; available: {', '.join(available)}", where="arch")
        arch = gpus[0]
    elif arch not in available:
        raise DiffsimError(
            f"backend {arch!r} is not available here; available: {', '.join(available)}", where="arch"
        )
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
    dtype = ti.f64 if precision == "f64" else ti.f32
    kwargs = dict(
        arch=_ti_arch(arch),
        default_fp=dtype,
        debug=debug,
        ad_stack_size=AD_STACK_SIZE,
        log_level=ti.WARN if quiet else ti.INFO,
        offline_cache=True,
        # f64 is for gradient checks: exact IEEE arithmetic matters more than speed there (with fast math,
        # Vulkan's f64 division was off by ~1e-7 relative).
        fast_math=precision != "f64",
    )
    if seed is not None:
        kwargs["random_seed"] = int(seed)
    if _state["initialized"]:
        ti.reset()
    ti.init(**kwargs)
    actual = str(ti.lang.impl.current_cfg().arch).split(".")[-1]
    if actual != {"cpu": "x64"}.get(arch, arch) and not (arch == "cpu" and actual in ("x64", "arm64")):
        raise DiffsimError(f"backend {arch!r} failed to start (Taichi fell back to {actual})", where="arch")
    _state.update(initialized=True, arch=arch, precision=precision, debug=debug)
    _state["generation"] += 1


def ensure_init() -> None:
    """Initialise with the defaults if nobody has yet."""
    if not _state["initialized"]:
        init()


def current() -> dict:
    """The active backend, precision and debug flag."""
    ensure_init()
    return {k: _state[k] for k in ("arch", "precision", "debug")}


def generation() -> int:
    """Counts `init()` calls; objects built under an older generation hold dead fields."""
    return _state["generation"]


def field_groups() -> int:
    """How many SNode trees (groups of fields) Taichi holds in this process; 0 before `init`."""
    if not _state["initialized"]:
        return 0
    return int(ti.lang.impl.get_runtime().prog.get_snode_tree_size())


def check_field_capacity(needed: int, what: str) -> None:
    """Raise DiffsimError if allocating `needed` more groups of fields (for `what`) would come near Taichi's limit,
    past which it crashes instead of raising."""
    if _state["arch"] not in ("cpu", "cuda"):  # the limit is the LLVM backends' (Vulkan and Metal have none)
        return
    held = field_groups()
    if held + needed > FIELD_GROUP_LIMIT - FIELD_GROUP_MARGIN:
        raise DiffsimError(
            f"this process already holds {held} groups of Taichi fields, near Taichi's limit of "
            f"{FIELD_GROUP_LIMIT} (past it Taichi crashes): call diffsim.init() to free them all (systems and "
            "simulations built before must then be built again), or build fewer systems per process",
            where=what,
        )


def serial_loops(elements: int, cpu_below: int) -> bool:
    """Whether a loop over `elements` items (copies x items) should run serially (``ti.loop_config(serialize=...)``).

    On the CPU backend, below `cpu_below`: waking the worker threads for a parallel loop costs tens of microseconds,
    more than a small loop's work, and the adjoint of a serial loop adds its contributions without atomics (each
    caller's threshold is measured; see docs/performance.md). Never on a GPU backend (CUDA, Vulkan, Metal): there a
    serial loop runs on a single GPU thread."""
    ensure_init()
    return _state["arch"] == "cpu" and int(elements) < int(cpu_below)


def real():
    """The Taichi float type of the active precision."""
    ensure_init()
    return ti.f64 if _state["precision"] == "f64" else ti.f32


def np_real():
    ensure_init()
    return np.float64 if _state["precision"] == "f64" else np.float32


def index_type():
    """Integer type for index fields. i32, except i64 on Vulkan in f64: there Taichi 1.7 packs i32 and f64 fields
    into one buffer such that writing an i32 corrupts the low half of a neighbouring f64 (reproduced with a 0-D i32
    field next to an f64 field)."""
    ensure_init()
    return ti.i64 if (_state["arch"] == "vulkan" and _state["precision"] == "f64") else ti.i32


def np_index():
    return np.int64 if index_type() == ti.i64 else np.int32
