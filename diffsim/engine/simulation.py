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

The backward pass can record the state adjoint's norm (`health=True`, `engine/health.py`), and has two remedies for
an exploding adjoint, both policies and batches alike: truncated backpropagation (`truncate=W`, one sweep per loss
frame) and per-frame adjoint clipping (`clip_adjoint=C`). A non-finite gradient raises `SimulationError` naming the
frame where the adjoint left the finite range (docs/concepts.md, "Gradient health and long horizons").
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
#: with full storage, the health report's parameter contributions are read this many times per backward pass
CONTRIBUTION_CHUNKS = 8

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
        truncate: int | None = None,
        clip_adjoint: float | None = None,
        health: bool = False,
        health_every: int | None = None,
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
        self.truncate = truncate
        self.clip_adjoint = clip_adjoint
        self.record_health = bool(health)
        self.health_every = health_every
        self._param_differ = None
        self.health = None
        self._monitor = None
        self._tcarry = None
        self._passed = None
        #: trajectory outputs and their cotangents (`engine/cotangents.TrajectoryOutputs` attaches itself), or None
        self.outputs = None

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
        """Seed the state adjoint of window frame f (global fg): the loss terms' adjoints and any cotangents."""
        for _launch, grad, row, coef in reversed(self._schedule.get(fg, ())):
            grad(f, row, coef)
        if self.outputs is not None:
            self.outputs.seed(f, fg)

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
            if self.outputs is not None:
                self.outputs.record(a, b)
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
            stops.update(
                fg - a for fg in frames[bisect.bisect_right(frames, a) : bisect.bisect_right(frames, b)]
            )
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
        hint = self.system.instability_hint()
        where = f"copy {copies[0]}, element {elems[0] // (spec.dim or 1)}" if len(copies) else ""
        return "; ".join(x for x in (size, where, hint) if x)

    # -- backward -----------------------------------------------------------------------------------------------
    def backward(
        self, health: bool | None = None, truncate: int | None = None, clip_adjoint: float | None = None
    ) -> None:
        """Accumulate d(total loss)/d(parameter) into every parameter's gradient (zeroed first); parameters built
        without one (the system's requires_grad) are skipped.

        health: record a `HealthReport` in `self.health` (default: the `health` given to the constructor); the
            adjoint norm of every `health_every`-th frame (the constructor's; None: every ceil(256 / state scalars
            per frame) steps, a few per cent of the pass; every frame with clip_adjoint) and of the first and last.
        truncate: truncated backpropagation, W steps (default: the constructor's `truncate`; None: exact).
        clip_adjoint: rescale each copy's state adjoint to norm <= C at every frame (default: the constructor's).
        See docs/concepts.md, "Gradient health and long horizons", for what the remedies compute.

        With `check_finite` (the default), a non-finite parameter gradient raises `SimulationError` naming the first
        frame of the backward pass (the latest frame) whose state adjoint left the finite range."""
        if self.loss is None and self.outputs is None:
            raise DiffsimError("backward() needs a loss; pass loss= to Simulation or call set_loss()")
        health = self.record_health if health is None else bool(health)
        truncate = self.truncate if truncate is None else truncate
        clip = self.clip_adjoint if clip_adjoint is None else clip_adjoint
        if truncate is not None:
            truncate = int(truncate)
            if self.outputs is not None:
                raise DiffsimError("trajectory cotangents need the exact reverse pass", where="truncate")
            if truncate < 1:
                raise DiffsimError(f"must be >= 1 steps, got {truncate}", where="truncate")
            if health:
                raise DiffsimError(
                    "the health report follows one adjoint through the rollout; truncated backpropagation runs one "
                    "per loss frame: record health without truncate",
                    where="truncate",
                )
        if clip is not None and not (float(clip) > 0 and np.isfinite(float(clip))):
            raise DiffsimError(f"must be a finite number > 0, got {clip}", where="clip_adjoint")
        if not self._forward_done:
            self.forward()
        self.health = None
        stride = self._health_stride() if clip is None else 1
        chunks = self._backward_pass(health, truncate, clip, stride)
        if health:
            # the report is read from the fields when first asked for (`health`): copying them out costs more than
            # the recording on a small system, and an optimizer only looks at the last one
            self._health_pending = (chunks, stride)
        if self.check_finite:
            self._check_grad_finite(truncate, clip)

    @property
    def health(self):
        """The `HealthReport` of the last backward pass run with health=True (None if the last pass ran without)."""
        if self._health is None and self._health_pending is not None:
            self._health = self._health_report(*self._health_pending)
            self._health_pending = None
        return self._health

    @health.setter
    def health(self, report) -> None:
        self._health = report
        self._health_pending = None

    def _chunk_steps(self) -> int:
        """Steps per chunk of the health report's parameter contributions: a checkpoint segment, or an eighth of
        the horizon with full storage (each chunk boundary costs one kernel launch over every parameter)."""
        return self.K if self.storage == "checkpointed" else max(1, -(-self.steps // CONTRIBUTION_CHUNKS))

    def _health_stride(self) -> int:
        if self.health_every is not None:
            if int(self.health_every) < 1:
                raise DiffsimError(f"must be >= 1, got {self.health_every}", where="health_every")
            return int(self.health_every)
        from .health import auto_health_every  # noqa: PLC0415

        return auto_health_every(sum(spec.elements_per_frame(self.batch) for spec in self._state_specs))

    def _backward_pass(self, health: bool, truncate: int | None, clip: float | None, stride: int = 1):
        sys = self.system
        sys.params.zero_grad()
        for leaf, w in self.loss.terms() if self.loss is not None else ():
            leaf.zero_grad()
            if self.outputs is None:
                leaf.reset(w)
            else:
                self.outputs.seed_loss(leaf, w)
        mon = self._adjoint_monitor() if (health or clip is not None or truncate is not None) else None
        if truncate is not None:
            self._backward_truncated(truncate, clip, mon)
            return None
        s = self.state
        chunks = _ParamChunks(self, health)
        last = len(self.segments) - 1
        stale = self._window_stale()
        every = self._chunk_steps()
        for j in reversed(range(len(self.segments))):
            a, b = self.segments[j]
            n = b - a
            # Recompute the segment's frames from its snapshot (the window still holds the last segment).
            if j != last or stale:
                self._load_segment_start(j)
                self._run_steps(a, b, loss=False)
            s.zero_grad()
            if j != last:
                for spec in self._state_specs:
                    self._copy(self.carry.field(spec.name), 0, s.field(spec.name).grad, n)
            for k in reversed(range(n)):
                self._eval_loss_grad(k + 1, a + k + 1)
                if clip is not None:
                    mon.clip(k + 1, a, clip)
                elif health and ((a + k + 1) % stride == 0 or a + k + 1 == self.steps):
                    mon.record(k + 1, a)
                self._step_grad(k, a + k)
                if health and (a + k) % every == 0 and a + k > 0:
                    chunks.mark(a + k)
            if j == 0:
                self._eval_loss_grad(0, 0)
                if clip is not None:
                    mon.clip(0, 0, clip)
                elif health:
                    mon.record(0, 0)
                sys.initialize_grad(s)
                chunks.mark(0)
            else:
                for spec in self._state_specs:
                    self._copy(s.field(spec.name).grad, 0, self.carry.field(spec.name), 0)
        return chunks

    def _window_stale(self) -> bool:
        """Whether the window no longer holds the last segment: a backward pass with several segments ends with
        the first one there, and a second pass without a forward in between must recompute the last one. (Each
        forward makes a new `loss_value` array; a pass remembers the one it ran after.)"""
        stale = len(self.segments) > 1 and self._passed is self.loss_value
        self._passed = self.loss_value
        return stale

    def _backward_truncated(self, W: int, clip: float | None, mon) -> None:
        """Truncated backpropagation: for each loss frame t, the adjoint of its terms is carried back through the
        W steps t-1 .. t-W only (the state at frame t - W is held constant; when t <= W the sweep reaches frame 0
        and the initial state's parameters get their share). One sweep per loss frame; with checkpointed storage,
        each sweep still under way at a segment's first frame is carried into the previous segment."""
        sys, s = self.system, self.state
        last = len(self.segments) - 1
        stale = self._window_stale()
        pending: dict[int, int] = {}  # loss frame -> slot of its carried adjoint (in the buffer being read)
        side = 0
        for j in reversed(range(len(self.segments))):
            a, b = self.segments[j]
            n = b - a
            if j != last or stale:
                self._load_segment_start(j)
                self._run_steps(a, b, loss=False)
            sweeps = sorted(pending, reverse=True)
            lo_i = bisect.bisect_right(self._loss_frames, a if j else -1)
            hi_i = bisect.bisect_right(self._loss_frames, b)
            sweeps += sorted(self._loss_frames[lo_i:hi_i], reverse=True)
            new_pending: dict[int, int] = {}
            for t in sweeps:
                stop = max(t - W, 0)  # global frame where this sweep ends
                top = n if t > b else t - a
                bottom = max(stop - a, 0)
                mon.zero(bottom, top + 1)
                if t > b:
                    src = self._truncation_carry(side, W)
                    for spec in self._state_specs:
                        self._copy(src.field(spec.name), pending[t], s.field(spec.name).grad, n)
                else:
                    self._eval_loss_grad(top, t)
                for k in reversed(range(bottom, top)):
                    if clip is not None:
                        mon.clip(k + 1, a, clip)
                    self._step_grad(k, a + k)
                if stop < a:  # the sweep goes on in the previous segment
                    slot = new_pending[t] = len(new_pending)
                    dst = self._truncation_carry(1 - side, W)
                    for spec in self._state_specs:
                        self._copy(s.field(spec.name).grad, 0, dst.field(spec.name), slot)
                elif stop == 0:  # reached the initial state
                    if clip is not None:
                        mon.clip(0, 0, clip)
                    sys.initialize_grad(s)
            pending = new_pending
            side = 1 - side

    def _truncation_carry(self, side: int, W: int) -> State:
        """Two buffers (read by one segment, written for the previous one) of the adjoints that truncated sweeps
        carry across a segment boundary: as many frames as loss frames t with a < t < a + W at any boundary a."""
        key = W
        if self._tcarry is None or self._tcarry[0] != key:
            need = 1
            frames = np.asarray(self._loss_frames)
            for a, _b in self.segments[1:]:
                need = max(need, int(np.count_nonzero((frames > a) & (frames < a + max(W, 1)))))
            self._tcarry = (
                key,
                [State(self._state_specs, frames=need, batch=self.batch, needs_grad=False) for _ in range(2)],
            )
        return self._tcarry[1][side]

    def _adjoint_monitor(self):
        if self._monitor is None:
            from .health import AdjointMonitor  # noqa: PLC0415

            self._monitor = AdjointMonitor(
                self.state, self._state_specs, self.state.specs, self.steps, self.batch
            )
        return self._monitor

    def _health_report(self, chunks, stride: int):
        from .health import HealthReport  # noqa: PLC0415

        norm2, bad = self._monitor.arrays()
        frames = np.arange(self.steps + 1)
        frames = frames[(frames % stride == 0) | (frames == self.steps)]
        return HealthReport(
            frames,
            norm2[frames],
            bad[frames],
            [s.name for s in self._state_specs],
            dt=getattr(self.system, "dt", 1.0),
            precision=runtime.current()["precision"],
            contributions=chunks.table() if chunks is not None else [],
            every=stride,
        )

    def _check_grad_finite(self, truncate, clip) -> None:
        params = self.system.params.with_grad()
        if not params:
            return
        # one kernel for every parameter, kept on the system: its simulations share the compiled kernel
        cached = getattr(self.system, "_grads_check", None)
        if cached is None:
            from .health import grads_checker  # noqa: PLC0415

            flag = ti.field(ti.i32, shape=())
            cached = self.system._grads_check = (
                FastKernel(grads_checker([p.field for p in params]), flag, types=""),
                flag,
            )
        check, flag = cached
        flag[None] = 0
        check()
        if not flag[None]:
            return
        bad = [p.name for p in params if not np.all(np.isfinite(p.grad()))]
        report = self.health
        if truncate is None and (report is None or report.every != 1):
            # locate it: one more backward pass with the report on (each step's adjoint zeroes the adjoint of the
            # frame it read, so the window no longer holds them)
            chunks = self._backward_pass(True, None, clip)
            report = self.health = self._health_report(chunks, 1)
        dt = getattr(self.system, "dt", None)
        f64 = runtime.current()["precision"] == "f64"
        remedy = (
            "remedies: "
            + ("" if f64 else "precision f64 (diffsim.init(precision='f64'), --precision f64), ")
            + "a shorter horizon, truncated backpropagation (truncate=W), clip_adjoint=C, or more damping; "
            "check_finite=False returns the gradient anyway"
        )
        if report is not None and report.first_nonfinite is not None:
            f = report.first_nonfinite
            when = f", t = {f * dt:.4g} s" if dt else ""
            rate = report.growth_rate()
            growth = f"; fitted adjoint growth {rate:.4g}/s going back" if np.isfinite(rate) else ""
            raise SimulationError(
                f"adjoint of {', '.join(report.bad_quantities(f))}",
                f,
                f"the first frame where the gradient left the finite range, going back from frame {self.steps}"
                f"{when}{growth}; non-finite gradient of {', '.join(bad)}; {remedy}",
            )
        if truncate is not None:
            where = (
                f"of {', '.join(bad)} with truncate={truncate} (a pass without truncation and health=True locates "
                f"where the adjoint leaves the finite range); {remedy}"
            )
        else:
            where = f"of {', '.join(bad)}; the state adjoint stayed finite, the parameter gradient overflowed; {remedy}"
        raise SimulationError("gradient", self.steps, where)

    def value_and_grad(self, names=None, health: bool | None = None) -> tuple[float, dict[str, np.ndarray]]:
        """Forward, backward; the total loss and d loss / d value for the named parameters (by default every one
        that has a gradient: see the system's requires_grad). health: as for `backward` (the report lands in
        `self.health`). A non-finite gradient raises `SimulationError` unless the simulation was built with
        check_finite=False."""
        params = self.system.params.with_grad(names)
        value = self.forward()
        self.backward(health=health)
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


class _ParamChunks:
    """Parameter-gradient contributions for the health report: the gradient accumulated so far, read at chunk
    boundaries of the backward pass (`health.ParamDiffer`, one kernel launch per boundary) and differenced."""

    def __init__(self, sim, enabled: bool):
        self.enabled = enabled
        self.frames = [sim.steps]
        if not enabled:
            return
        self.params = sim.system.params.with_grad()
        slots = sim.steps // sim._chunk_steps() + 2
        differ = sim._param_differ
        if differ is None or differ[0] < slots:
            from .health import ParamDiffer  # noqa: PLC0415

            differ = sim._param_differ = (slots, ParamDiffer([p.field for p in self.params], slots))
        self.differ = differ[1]
        self.differ.start()

    def mark(self, frame: int) -> None:
        if self.enabled:
            self.differ.mark(len(self.frames) - 1)
            self.frames.append(frame)

    def table(self) -> list:
        if not self.enabled:
            return []
        norms = self.differ.norms(len(self.frames) - 1)
        return [
            (lo, hi, {p.name: float(norms[i, pi]) for pi, p in enumerate(self.params)})
            for i, (hi, lo) in enumerate(zip(self.frames, self.frames[1:], strict=False))
        ]
