"""A fast path for launching the per-step kernels.

Calling a Taichi kernel from Python costs far more than running a small one: for every call Taichi walks the
template arguments (here a whole `State` object) to find the compiled instance. For the walker that was about 100
microseconds per step, more than the physics. The step loop launches the same kernel instance thousands of times
with only scalar arguments changing, so we look the instance up once (on the first call) and then launch it
directly.

This uses Taichi 1.7's kernel internals (`Kernel.ensure_compiled`, `compiled_kernels`, the launch context); the
version is pinned to 1.7.x in pyproject.toml. If they differ, `FastKernel` falls back to the ordinary call, which is
correct, only slower. ``DIFFSIM_SLOW_LAUNCH=1`` forces the ordinary call; the tests compare both paths.
"""

from __future__ import annotations

import os

from taichi.lang import impl


def _disabled() -> bool:
    return os.environ.get("DIFFSIM_SLOW_LAUNCH", "") not in ("", "0")


class FastKernel:
    """``FastKernel(obj.kernel, s, types="ii")(f, fg)`` launches ``obj.kernel(s, f, fg)``; ``grad=True`` launches
    its adjoint. `types` gives the scalar arguments after the templates: "i" for integers, "f" for floats. The
    kernel must return nothing.
    """

    def __init__(self, bound_kernel, *templates, types: str = "ii", grad: bool = False):
        self.bound = bound_kernel
        self.templates = templates
        self.types = types
        self.grad = grad
        self._ready = False
        self._fast = False

    def _prepare(self, args) -> None:
        self._ready = True
        if _disabled():
            return
        try:
            owner = getattr(self.bound, "_kernel_owner", None)  # None for a module-level kernel
            kernel = self.bound._adjoint if self.grad else self.bound._primal
            lead = () if owner is None else (owner,)
            key = kernel.ensure_compiled(*lead, *self.templates, *args)
            self._t_kernel = kernel.compiled_kernels[key]
            self._prog = impl.get_runtime().prog
            self._data = self._prog.compile_kernel(
                self._prog.config(), self._prog.get_device_caps(), self._t_kernel
            )
            self._setters = [("set_arg_int" if t == "i" else "set_arg_float") for t in self.types]
            # one launch context, reused: making one per launch cost ~2 us of the ~9 us a launch took
            self._ctx = self._t_kernel.make_launch_context()
            self._last = None
            self._fast = True
        except Exception:  # pragma: no cover - only when Taichi's internals differ
            self._fast = False

    def __call__(self, *args) -> None:
        if not self._ready:
            self._prepare(args)
        if not self._fast:
            if self.grad:
                self.bound.grad(*self.templates, *args)
            else:
                self.bound(*self.templates, *args)
            return
        ctx = self._ctx
        if args != self._last:  # the launch context keeps its arguments between launches
            for i, (setter, v) in enumerate(zip(self._setters, args, strict=True)):
                getattr(ctx, setter)((i,), v)
            self._last = args
        self._prog.launch_kernel(self._data, ctx)
