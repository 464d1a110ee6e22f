"""The kernels that launch a system's step written as ``_step_body(s, f, fg)`` (a ``ti.func`` with f and fg as
templates, passed by reference: a copied argument would be a statement outside every loop, which Taichi's reverse
mode does not allow): one step (`_step`), or n steps in one launch (`_steps`, see `System.multi_step_launcher`). A system
that writes its own `_step` kernel overrides them. (No ``from __future__ import annotations`` in this module:
Taichi reads a kernel's annotations as objects.)"""

import taichi as ti


class StepKernels:
    @ti.kernel
    def _step(self, s: ti.template(), f: ti.i32, fg: ti.i32):
        self._step_body(s, f, fg)

    @ti.kernel
    def _steps(self, s: ti.template(), f: ti.i32, fg: ti.i32, n: ti.i32):
        ti.loop_config(serialize=True)  # the step's own loops are nested in this one: serial too
        for k in range(n):
            self._step_body(s, f + k, fg + k)
