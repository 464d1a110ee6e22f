"""Forward rollouts and reverse-mode gradients through them, with two storage policies.

full
    The window holds all T + 1 frames. Forward runs `step(0..T-1)`, backward runs the adjoint kernels in reverse.
    Memory O(T).
checkpointed (checkpoint_every=K)
    The window holds K + 1 frames; forward keeps a snapshot of the state every K steps. Backward walks the segments
    in reverse: restore the snapshot into frame 0, re-run the segment, seed its last frame with the adjoint carried
    from the later segment, run the adjoints back to frame 0, carry frame 0's adjoint on. Memory O(T/K + K) frames,
    one extra forward in compute. Gradients equal the full policy's to rounding.

Losses are sums of per-frame terms (see `diffsim.optim.losses`), evaluated right after the frame is written, so both
policies treat them the same way.

After each window the forward pass checks the state (`Simulation._check`): a NaN or Inf anywhere, or a state quantity
whose magnitude passes DIVERGENCE_FACTOR x max(1, its largest magnitude at frame 0), raises SimulationError with the
frame, quantity, copy, element and the system's `instability_hint`.
"""

from __future__ import annotations

import bisect

import numpy as np
import taichi as ti

from .. import runtime
from ..errors import DiffsimError, SimulationError
from .launch import FastKernel
from .memory import check_memory
from .state import FieldSpec, State, copy_frame, max_abs_frame, nonfinite_kernel, state_nbytes
from .system import System

STORAGE = ("full", "checkpointed")

#: The divergence bound of a state quantity is DIVERGENCE_FACTOR x max(1, its largest component magnitude at frame 0,
#: in SI units), for every copy alike. A rollout that passes it has exploded even when it stays finite (an unstable
#: step in f64 reaches 1e86 m before it overflows). The shipped scenes stay below 1e3 x that scale in their normal
#: runs (positions, velocities, deformation gradients, smoke densities; measured with `diffsim run` on every scene in
#: scenes/), so 1e8 leaves five orders of magnitude. `Simulation.divergence_factor = None` turns the bound off
#: (NaN and Inf are still caught); `check_finite=False` turns every check off.
DIVERGENCE_FACTOR = 1e8


class Simulation:
    """Runs `system` for `steps` steps and differentiates `loss` through the rollout.

    Allocation happens here, once per (system, horizon); forward and backward reuse the same fields, so nothing is
    recompiled between optimizer iterations.
    """

    #: see DIVERGENCE_FACTOR; None: only NaN and Inf are errors
    divergence_factor: float | None = DIVERGENCE_FACTOR

    def __init__(
        self,
        system: System,
        steps: int,
        loss=None,
        storage: str = "full",
        checkpoint_every: int | None = None,
        check_finite: bool = True,
    ):
        system.check_alive()
        system.params.check_requires_grad()
        if int(steps) < 1:
            raise DiffsimError(f"must be >= 1, got {steps}", where="steps")
        if checkpoint_every is not None and storage == "full":
            storage = "checkpointed"
        if storage not in STORAGE:
            raise DiffsimError(
                f"unknown storage policy {storage!r}; choose full or checkpointed", where="storage"
            )
        self.system = system
        self.steps = int(steps)
        self.batch = system.batch
        self.storage = storage
        if storage == "checkpointed":
            k = int(checkpoint_every or max(1, int(round(np.sqrt(self.steps)))))
            if k < 1:
                raise DiffsimError(f"must be >= 1, got {checkpoint_every}", where="checkpoint_every")
            self.K = min(k, self.steps)
        else:
            self.K = self.steps
        self.segments = [(a, min(a + self.K, self.steps)) for a in range(0, self.steps, self.K)]
        self.check_finite = check_finite
        specs = system.field_specs()
        self._state_specs = [s for s in specs if s.kind == "state"]
        self._check_memory(specs)
        self.state = State(specs, frames=self.K + 1, batch=self.batch)
        if storage == "checkpointed":
            self.snapshots = State(
                self._state_specs, frames=len(self.segments) + 1, batch=self.batch, needs_grad=False
            )
            self.carry = State(self._state_specs, frames=1, batch=self.batch, needs_grad=False)
        self._step, self._step_grad = system.step_launchers(self.state)
        self._steps = system.multi_step_launcher(self.state)
        self._copies = {}
        self._checks = {}
        self._bad = ti.field(runtime.index_type(), shape=())
        self._frame0_max = ti.field(runtime.real(), shape=(max(1, len(self._state_specs)),))
        self._frame0_launch = {}
        self.loss = None
        self.set_loss(loss)
        self.loss_value = None
        self._forward_done = False

    def _check_memory(self, specs) -> None:
        """Refuse, with the estimate, a rollout whose buffers would not fit in memory (before allocating them)."""
        need = state_nbytes(specs, self.K + 1, self.batch)
        if self.storage == "checkpointed":
            need += state_nbytes(self._state_specs, len(self.segments) + 2, self.batch, needs_grad=False)
        check_memory(
            need,
            f"a rollout of {self.steps} steps keeping {self.K + 1} frames ({self.storage} storage, batch "
            f"{self.batch}) of {self.system.kind}",
            "steps",
            "use checkpointed storage (checkpoint_every: fewer frames kept), fewer steps, a smaller batch or model",
        )

    # -- loss ---------------------------------------------------------------------------------------------------
    def set_loss(self, loss) -> None:
        """Attach a loss (or None). Binding checks its targets against this system and horizon."""
        self.loss = loss
        self._schedule: dict[int, list] = {}
        self._loss_frames: list[int] = []
        if loss is None:
            return
        for leaf, _weight in loss.terms():
            leaf.bind(self.system, self.steps)
            x = self.state.field(leaf.quantity)
            launch = FastKernel(leaf.eval, x, types="iif")
            grad = FastKernel(leaf.eval, x, types="iif", grad=True)
            for fg, row, coef in leaf.schedule(self.steps):
                if not 0 <= fg <= self.steps:
                    raise DiffsimError(f"loss frame {fg} outside the rollout [0, {self.steps}]", where="loss")
                self._schedule.setdefault(fg, []).append((launch, grad, row, float(coef)))
        self._loss_frames = sorted(self._schedule)

    def _eval_loss(self, f: int, fg: int) -> None:
        for launch, _grad, row, coef in self._schedule.get(fg, ()):
            launch(f, row, coef)

    def _eval_loss_grad(self, f: int, fg: int) -> None:
        for _launch, grad, row, coef in reversed(self._schedule.get(fg, ())):
            grad(f, row, coef)

    # -- forward ------------------------------------------------------------------------------------------------
    def forward(self) -> float:
        """Run the rollout (and the loss, if any). Returns the total loss (summed over copies), or 0.0."""
        self.system.check_alive()
        s = self.state
        if self.loss is not None:
            for leaf, _w in self.loss.terms():
                leaf.reset()
        # The full policy is the checkpointed one with a single segment and no snapshots.
        for j, (a, b) in enumerate(self.segments):
            self._load_segment_start(j)
            if j == 0:
                self._set_limits()
                self._eval_loss(0, 0)
            self._run_steps(a, b, loss=True)
            self._check(0, b - a + 1, a)
            if self.storage == "checkpointed":
                for spec in self._state_specs:
                    self._copy(s.field(spec.name), b - a, self.snapshots.field(spec.name), j + 1)
        self._forward_done = True
        if self.loss is None:
            self.loss_value = np.zeros(self.batch)
            return 0.0
        per_copy = np.zeros(self.batch)
        for leaf, w in self.loss.terms():
            per_copy += w * leaf.value.to_numpy().astype(np.float64)
        self.loss_value = per_copy
        total = float(per_copy.sum())
        if self.check_finite and not np.isfinite(total):
            raise SimulationError("loss", self.steps, "the state stayed finite; the loss itself overflowed")
        return total

    def run(self) -> None:
        """Forward without caring about the loss."""
        self.forward()

    def _run_steps(self, a: int, b: int, loss: bool) -> None:
        """Steps a .. b - 1 (window frames 0 .. b - a), evaluating the loss after every frame that has terms when
        `loss`. With the system's multi-step launcher, the steps between two such frames are one launch."""
        n = b - a
        if self._steps is None:
            for k in range(n):
                self._step(k, a + k)
                if loss:
                    self._eval_loss(k + 1, a + k + 1)
            return
        stops = {n}
        if loss:  # the frames in (a, b] with loss terms, found by bisection in the sorted schedule
            frames = self._loss_frames
            stops.update(fg - a for fg in frames[bisect.bisect_right(frames, a) : bisect.bisect_right(frames, b)])
        k = 0
        for stop in sorted(stops):
            self._steps(k, a + k, stop - k)
            k = stop
            if loss:
                self._eval_loss(k, a + k)

    def _copy(self, src, src_frame: int, dst, dst_frame: int) -> None:
        """dst[dst_frame] = src[src_frame], launched through the fast path (one launcher per field pair)."""
        key = (id(src), id(dst))
        launch = self._copies.get(key)
        if launch is None:
            launch = self._copies[key] = FastKernel(copy_frame, src, dst, types="ii")
        launch(src_frame, dst_frame)

    def _load_segment_start(self, j: int) -> None:
        s = self.state
        if j == 0:
            self.system.initialize(s)
            if self.storage == "checkpointed":
                for spec in self._state_specs:
                    self._copy(s.field(spec.name), 0, self.snapshots.field(spec.name), 0)
        else:
            for spec in self._state_specs:
                self._copy(self.snapshots.field(spec.name), j, s.field(spec.name), 0)

    def _set_limits(self) -> None:
        """Store each state quantity's largest magnitude at frame 0 of the rollout on the device (slot per quantity),
        where the check kernels read their divergence bound (see DIVERGENCE_FACTOR): no transfer to Python."""
        if not self.check_finite or self.divergence_factor is None:
            return
        for slot, spec in enumerate(self._state_specs):
            if spec.dtype == "i32":
                continue
            launch = self._frame0_launch.get(spec.name)
            if launch is None:
                field = self.state.field(spec.name)
                launch = self._frame0_launch[spec.name] = FastKernel(
                    max_abs_frame, field, self._frame0_max, types="ii"
                )
            launch(slot, 0)

    def _limit(self, spec: FieldSpec) -> float:
        """The divergence bound of a state quantity in this rollout (for messages)."""
        slot = self._state_specs.index(spec)
        return float(self.divergence_factor * max(1.0, float(self._frame0_max[slot])))

    def _check(self, start: int, stop: int, frame_offset: int) -> None:
        """Raise SimulationError if frames [start, stop) of the window hold NaN or Inf, or a state quantity past its
        divergence bound (`_set_limits`).

        The state quantities are scanned first (cheap); only if one holds NaN or Inf are all quantities scanned, so
        the error names the earliest one (a force or an action often goes bad one frame before the positions)."""
        if not self.check_finite:
            return
        bad = self._first_bad(self._state_specs, start, stop, bounded=self.divergence_factor is not None)
        if bad is None:
            return
        frame, spec = bad
        arr = self.state.field(spec.name).to_numpy()[frame]
        if np.all(np.isfinite(arr)):
            detail = self._locate(spec, frame, self._limit(spec))
            raise SimulationError(spec.name, frame + frame_offset, detail, reason="diverging")
        every = [s for s in self.state.specs if s.dtype != "i32"]
        frame, spec = self._first_bad(every, start, frame + 1, bounded=False)
        raise SimulationError(spec.name, frame + frame_offset, self._locate(spec, frame))

    def _first_bad(self, specs, start: int, stop: int, bounded: bool):
        """(first frame, spec) among `specs` in [start, stop) with NaN, Inf or, when `bounded`, a state quantity past
        its divergence bound; or None."""
        worst = None
        state = {spec.name: slot for slot, spec in enumerate(self._state_specs)}
        for spec in specs:
            if spec.dtype == "i32":
                continue
            field = self.state.field(spec.name)
            launch = self._checks.get(spec.name)
            if launch is None:
                launch = self._checks[spec.name] = FastKernel(
                    nonfinite_kernel(field), field, self._bad, self._frame0_max, types="iiif"
                )
            self._bad[None] = 2**30
            slot = state.get(spec.name)
            factor = self.divergence_factor if bounded and slot is not None else 0.0
            launch(start, stop, slot or 0, float(factor))
            frame = int(self._bad[None])
            if frame < 2**30 and (worst is None or frame < worst[0]):
                worst = (frame, spec)
        return worst

    def _locate(self, spec: FieldSpec, frame: int, limit: float | None = None) -> str:
        """Where frame `frame` of `spec` is bad (non-finite, or past `limit` when given) and the system's hint."""
        arr = self.state.field(spec.name).to_numpy()[frame]
        flat = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(-1, 1)
        size = ""
        if limit is None:
            copies, elems = np.nonzero(~np.isfinite(flat))
        else:
            mag = np.abs(flat.astype(np.float64))
            copy, elem = np.unravel_index(int(np.argmax(mag)), mag.shape)
            copies, elems = np.array([copy]), np.array([elem])
            size = (
                f"|{spec.name}| = {mag[copy, elem]:.3g} > {limit:.3g}, {self.divergence_factor:g} x max(1, "
                f"|{spec.name}| at frame 0)"
            )
        hint = getattr(self.system, "instability_hint", lambda: "")()
        where = f"copy {copies[0]}, element {elems[0] // (spec.dim or 1)}" if len(copies) else ""
        return "; ".join(x for x in (size, where, hint) if x)

    # -- backward -----------------------------------------------------------------------------------------------
    def backward(self) -> None:
        """Accumulate d(total loss)/d(parameter) into every parameter's gradient (zeroed first); parameters built
        without one (the system's requires_grad) are skipped."""
        if self.loss is None:
            raise DiffsimError("backward() needs a loss; pass loss= to Simulation or call set_loss()")
        if not self._forward_done:
            self.forward()
        sys, s = self.system, self.state
        sys.params.zero_grad()
        for leaf, w in self.loss.terms():
            leaf.zero_grad()
            leaf.reset(w)
        last = len(self.segments) - 1
        for j in reversed(range(len(self.segments))):
            a, b = self.segments[j]
            n = b - a
            # Recompute the segment's frames from its snapshot (the window still holds the last segment).
            if j != last:
                self._load_segment_start(j)
                self._run_steps(a, b, loss=False)
            s.zero_grad()
            if j != last:
                for spec in self._state_specs:
                    self._copy(self.carry.field(spec.name), 0, s.field(spec.name).grad, n)
            for k in reversed(range(n)):
                self._eval_loss_grad(k + 1, a + k + 1)
                self._step_grad(k, a + k)
            if j == 0:
                self._eval_loss_grad(0, 0)
                sys.initialize_grad(s)
            else:
                for spec in self._state_specs:
                    self._copy(s.field(spec.name).grad, 0, self.carry.field(spec.name), 0)

    def value_and_grad(self, names=None) -> tuple[float, dict[str, np.ndarray]]:
        """Forward, backward; the total loss and d loss / d value for the named parameters (by default every one
        that has a gradient: see the system's requires_grad)."""
        params = self.system.params.with_grad(names)
        value = self.forward()
        self.backward()
        return value, {p.name: p.grad() for p in params}

    # -- results ------------------------------------------------------------------------------------------------
    def trajectory(self, names: list[str] | None = None, every: int = 1) -> dict[str, np.ndarray]:
        """State quantities over frames, ``[frame, batch, ...]`` (full storage: every frame; checkpointed: the
        snapshot frames only, with `every` = K)."""
        if not self._forward_done:
            raise DiffsimError("no rollout yet: call forward() or run() first")
        src = self.state if self.storage == "full" else self.snapshots
        names = names or [s.name for s in self._state_specs]
        out = {}
        for name in names:
            arr = src.field(name).to_numpy()
            out[name] = arr[::every] if self.storage == "full" else arr
        return out

    def memory_bytes(self) -> dict[str, int]:
        """Bytes held by state and gradient buffers, counted from the field sizes."""
        out = {"window": self.state.nbytes()}
        if self.storage == "checkpointed":
            out["snapshots"] = self.snapshots.nbytes(with_grad=False)
            out["carry"] = self.carry.nbytes(with_grad=False)
        out["total"] = sum(out.values())
        return out

    @property
    def frames_per_window(self) -> int:
        return self.K + 1

    def __repr__(self) -> str:
        return (
            f"Simulation({self.system.kind}, steps={self.steps}, batch={self.batch}, storage={self.storage}"
            + (f", K={self.K}" if self.storage == "checkpointed" else "")
            + ")"
        )

