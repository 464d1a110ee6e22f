"""Gradient health: how the state adjoint evolves through the backward pass, and two remedies for an exploding one.

The state adjoint at frame k is d(loss) / d(state at frame k): the `.grad` of the window's state fields once the
backward pass has gone back past frame k (loss terms at frame k and every later step included). Its norm against
time tells whether gradients through the rollout are usable: through a chaotic or unstable rollout it grows about
exponentially going back in time, and in f32 it overflows to Inf after a predictable horizon.

`Simulation.backward(health=True)` fills a `HealthReport` (`Simulation.health`):

- the adjoint norm per recorded frame and copy (over every state quantity of the copy), and for each recorded frame
  which quantities held NaN or Inf;
- parameter-gradient contributions: the parameter gradient accumulated so far, differenced between chunk
  boundaries (every checkpoint segment, or every eighth of the horizon with full storage);
- `verdict()`: stable, exploding or vanishing, from a least-squares fit of log(norm) against time.

When frames are recorded: per step, not per segment. Each step's adjoint kernel zeroes the adjoint of the frame it
reads (Taichi's reverse of a store), so once a segment's adjoint is done its window holds only frame 0's: a frame's
adjoint must be reduced between the moment it is complete (its loss terms and the later step added) and that step's
adjoint. One kernel launch reduces every state quantity of one frame (0.7 us on the walker, 2 us on cloth_throw, 2
CPU cores); on a small system that is still a sizeable fraction of a ~9 us step adjoint, so by default a frame is
recorded every ceil(256 / state scalars per frame) steps (`health_every`, see `auto_health_every`), plus the first
and last. With
`clip_adjoint` every frame is reduced anyway (the clip needs its norm) and recorded before scaling.

The reduction squares in f64 (f32 adjoints never overflow it); an f64 adjoint above ~1e154 reads as an infinite
norm while every entry is still finite (the report's `nonfinite` flags only real NaN or Inf entries).
"""

import csv
import math

import numpy as np
import taichi as ti

from .. import runtime
from .launch import FastKernel
from .state import nonfinite_element

#: the largest finite f32, where an f32 adjoint overflows
F32_MAX = 3.4028234663852886e38
#: on the CPU, the per-frame reduction (parallel over copies) runs serially below this many copies (a parallel
#: loop's dispatch costs 15-20 us)
SERIAL_COPIES_BELOW = 8
#: a verdict is "exploding" / "vanishing" when the fitted norm changes by more than this factor over the horizon
VERDICT_FACTOR = 100.0


def _acc_dtype():
    # squares are summed in f64 where the backend has it (an f32 adjoint of 1e20 squares to Inf in f32)
    return ti.f64 if runtime.current()["arch"] in ("cpu", "cuda") else runtime.real()


@ti.func
def _sumsq(v, vec: ti.template(), out: ti.template()):
    r = ti.cast(0.0, out.dtype)
    if ti.static(vec):
        for k in ti.static(range(v.n)):
            r += ti.cast(v[k], out.dtype) * ti.cast(v[k], out.dtype)
    else:
        r = ti.cast(v, out.dtype) * ti.cast(v, out.dtype)
    return r


def _frame_reducer(grads, serial: bool):
    """A kernel ``reduce(out, bad, frame, gframe)``: out[gframe, b] = sum of squares of every field of `grads` at
    window frame `frame`, copy b (a sum over the state quantities); bad[gframe, b] gets bit i set if grads[i] holds
    NaN or Inf there. One launch per frame for all quantities: per quantity a loop over copies (serial on the CPU
    when `serial`), the element axes nested inside with a local accumulator."""

    @ti.kernel
    def reduce(out: ti.template(), bad: ti.template(), frame: ti.i32, gframe: ti.i32):
        ti.loop_config(serialize=True)
        for b in range(out.shape[1]):
            out[gframe, b] = 0.0
            bad[gframe, b] = 0
        for gi in ti.static(range(len(grads))):
            g = ti.static(grads[gi])
            vec = ti.static(isinstance(g, ti.MatrixField))
            f64 = ti.static(g.dtype == ti.f64)
            nd = ti.static(len(g.shape))
            ti.loop_config(serialize=ti.static(serial))
            for b in range(g.shape[1]):
                acc = ti.cast(0.0, out.dtype)
                nb = 0
                if ti.static(nd == 2):
                    acc += _sumsq(g[frame, b], vec, out)
                    nb = ti.cast(nonfinite_element(g[frame, b], vec, f64), ti.i32)
                elif ti.static(nd == 3):
                    for i in range(g.shape[2]):
                        acc += _sumsq(g[frame, b, i], vec, out)
                        nb |= ti.cast(nonfinite_element(g[frame, b, i], vec, f64), ti.i32)
                elif ti.static(nd == 4):
                    for i, j in ti.ndrange(g.shape[2], g.shape[3]):
                        acc += _sumsq(g[frame, b, i, j], vec, out)
                        nb |= ti.cast(nonfinite_element(g[frame, b, i, j], vec, f64), ti.i32)
                else:
                    for i, j, k in ti.ndrange(g.shape[2], g.shape[3], g.shape[4]):
                        acc += _sumsq(g[frame, b, i, j, k], vec, out)
                        nb |= ti.cast(nonfinite_element(g[frame, b, i, j, k], vec, f64), ti.i32)
                out[gframe, b] += acc
                if nb:
                    bad[gframe, b] |= 1 << gi

    return reduce


@ti.kernel
def _clip_scale(out: ti.template(), bad: ti.template(), scale: ti.template(), frame: ti.i32, limit: float):
    """scale[b] = min(1, limit / norm of copy b at `frame`); 1 where the adjoint holds NaN or Inf (nothing to
    rescale), limit * 1e-155 where the f64 sum of squares overflowed (the norm is above 1e154)."""
    for b in range(scale.shape[0]):
        n2 = out[frame, b]
        s = ti.cast(1.0, out.dtype)
        lim = ti.cast(limit, out.dtype)
        if bad[frame, b] == 0:
            if nonfinite_element(n2, False, ti.static(out.dtype == ti.f64)):
                s = lim * 1e-155
            elif n2 > lim * lim:
                s = lim / ti.sqrt(n2)
        scale[b] = s


@ti.kernel
def _scale_frame(g: ti.template(), scale: ti.template(), frame: ti.i32):
    """g[frame, b, ...] *= scale[b]."""
    for idx in ti.grouped(ti.ndrange(*g.shape[1:])):
        i = ti.Vector([frame] + [idx[k] for k in ti.static(range(len(g.shape) - 1))])
        g[i] = g[i] * ti.cast(scale[idx[0]], g.dtype)


@ti.kernel
def _zero_frames(g: ti.template(), start: ti.i32, stop: ti.i32):
    """g[start:stop] = 0 (a store, so NaN left by an earlier pass is cleared too)."""
    for idx in ti.grouped(ti.ndrange((start, stop), *g.shape[1:])):
        if ti.static(isinstance(g, ti.MatrixField)):  # state quantities are scalars or vectors
            g[idx] = ti.Vector.zero(g.dtype, g.n)
        else:
            g[idx] = 0


def grads_checker(fields):
    """A kernel ``check(flag)`` that sets flag[None] = 1 if the gradient of any of `fields` (parameter fields) holds
    NaN or Inf: one launch for every parameter. Built once per system (a kernel per field cost a compile each:
    ~0.25 s per parameter on a first backward pass)."""

    size = sum(int(np.prod(f.shape)) * int(getattr(f, "n", 1) or 1) for f in fields)
    serial = runtime.serial_loops(size, 1 << 16)  # a parallel loop's dispatch costs 15-20 us per parameter

    @ti.kernel
    def check(flag: ti.template()):
        for gi in ti.static(range(len(fields))):
            g = ti.static(fields[gi].grad)
            ti.loop_config(serialize=ti.static(serial))
            for I in ti.grouped(ti.ndrange(*g.shape)):
                if nonfinite_element(
                    g[I], ti.static(isinstance(g, ti.MatrixField)), ti.static(g.dtype == ti.f64)
                ):
                    flag[None] = 1

    return check


class ParamDiffer:
    """Parameter-gradient contributions without copies to numpy: ``mark(slot)`` stores in out[slot, i] the squared
    norm of what parameter i's gradient gained since the previous mark (one kernel launch for every parameter; the
    previous gradients are kept in fields of their own). ``start()`` after the gradients are zeroed."""

    def __init__(self, fields, slots: int):
        self.fields = list(fields)
        fb = ti.FieldsBuilder()
        self.out = ti.field(_acc_dtype())
        fb.dense(ti.ij, (slots + 1, max(1, len(self.fields)))).place(self.out)
        self.prev = []
        for f in self.fields:
            if isinstance(f, ti.MatrixField):
                p = ti.Vector.field(f.n, f.dtype)
            else:
                p = ti.field(f.dtype)
            fb.dense(ti.ij if len(f.shape) == 2 else ti.axes(*range(len(f.shape))), f.shape).place(p)
            self.prev.append(p)
        self._tree = fb.finalize()
        fields_, prevs = self.fields, self.prev

        @ti.kernel
        def diff(out: ti.template(), slot: ti.i32):
            for pi in ti.static(range(len(fields_))):
                g = ti.static(fields_[pi].grad)
                pv = ti.static(prevs[pi])
                ti.loop_config(serialize=True)
                for _ in range(1):
                    out[slot, pi] = 0.0
                ti.loop_config(serialize=True)
                for I in ti.grouped(ti.ndrange(*g.shape)):
                    out[slot, pi] += _sumsq(g[I] - pv[I], ti.static(isinstance(g, ti.MatrixField)), out)
                    pv[I] = g[I]

        self._diff = FastKernel(diff, self.out, types="i")

    def start(self) -> None:
        self._diff(0)  # the gradients are zero: prev = 0

    def mark(self, slot: int) -> None:
        self._diff(slot + 1)

    def norms(self, count: int) -> np.ndarray:
        return np.sqrt(self.out.to_numpy()[1 : count + 1, : len(self.fields)].astype(np.float64))


def auto_health_every(scalars_per_frame: int) -> int:
    """Steps between recorded frames when `health_every` is not given: a step's adjoint costs roughly 130 ns per
    state scalar (the springs walker: 9 us for 72 scalars; cloth_throw: 240 us for 1,734; 2 CPU cores) and a
    recorded frame about 1 us (one launch) plus ~1 ns per scalar, so recording every ceil(256 / scalars) steps keeps
    the report within a few per cent of the pass (walker: every 4th step; cloth_throw: every step)."""
    return max(1, -(-256 // max(1, int(scalars_per_frame))))


class AdjointMonitor:
    """The per-frame buffers and launchers a `Simulation` uses for health records, clipping and truncation.

    One per simulation, built on first use: ``norm2[frame, copy]`` (sum of squares of the state adjoint),
    ``bad[frame, copy]`` (bit i set: state quantity i held NaN or Inf), ``scale[copy]`` (the clip factors)."""

    def __init__(self, state, state_specs, all_specs, steps: int, batch: int):
        self.state = state
        self.names = [s.name for s in state_specs]
        fb = ti.FieldsBuilder()
        self.norm2 = ti.field(_acc_dtype())
        self.bad = ti.field(ti.i32)
        self.scale = ti.field(_acc_dtype())
        fb.dense(ti.ij, (steps + 1, batch)).place(self.norm2, self.bad)
        fb.dense(ti.i, batch).place(self.scale)
        self._tree = fb.finalize()
        grads = [state.field(n).grad for n in self.names]
        self._reduce = FastKernel(
            _frame_reducer(grads, runtime.serial_loops(batch, SERIAL_COPIES_BELOW)),
            self.norm2,
            self.bad,
            types="ii",
        )
        self._clip = FastKernel(_clip_scale, self.norm2, self.bad, self.scale, types="if")
        self._scale = [FastKernel(_scale_frame, g, self.scale, types="i") for g in grads]
        self._zero = [
            FastKernel(_zero_frames, state.field(s.name).grad, types="ii")
            for s in all_specs
            if s.dtype != "i32"
        ]

    def record(self, frame: int, offset: int) -> None:
        """norm2 / bad of global frame frame + offset from window frame `frame`."""
        self._reduce(frame, frame + offset)

    def clip(self, frame: int, offset: int, limit: float) -> None:
        """Record window frame `frame` (global frame + offset), then rescale each copy's adjoint there to norm <=
        limit."""
        self._reduce(frame, frame + offset)
        self._clip(frame + offset, float(limit))
        for launch in self._scale:
            launch(frame)

    def zero(self, start: int, stop: int) -> None:
        """Zero every quantity's adjoint on window frames [start, stop)."""
        for launch in self._zero:
            launch(start, stop)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return self.norm2.to_numpy().astype(np.float64), self.bad.to_numpy()


class HealthReport:
    """The adjoint norm through one backward pass, and what it says.

    frames: the recorded frames (every `every`-th, the first and the last); times: their seconds (frame * dt);
    norm: adjoint norm per recorded frame over every copy and state quantity; norm_per_copy: ``[frame, copy]``;
    nonfinite: ``[frame, copy]`` bitmask of the quantities holding NaN or Inf; first_nonfinite: the first recorded
    frame met by the backward pass (so the latest) whose adjoint is not finite, or None; contributions:
    ``(from_frame, to_frame, {parameter: norm})`` for each chunk of the backward pass, the norm of what the steps
    from_frame .. to_frame - 1 (and frame 0's initial state, in the last chunk) added to the parameter's gradient.
    """

    def __init__(self, frames, norm2, bad, names, dt, precision, contributions, every=1):
        self.frames = np.asarray(frames)
        self.every = int(every)
        self.norm_per_copy = np.sqrt(norm2)
        self.norm = np.sqrt(norm2.sum(axis=1))
        self.nonfinite = bad
        self.names = list(names)
        self.dt = float(dt)
        self.precision = precision
        self.times = self.frames * self.dt
        self.contributions = contributions
        rows = np.nonzero(bad.any(axis=1))[0]
        self.first_nonfinite = int(self.frames[rows].max()) if rows.size else None

    # -- what the nonfinite frame holds --------------------------------------------------------------------------
    def bad_quantities(self, frame: int) -> list[str]:
        """The state quantities whose adjoint holds NaN or Inf at `frame` (a recorded frame)."""
        row = int(np.searchsorted(self.frames, frame))
        if row >= len(self.frames) or self.frames[row] != frame:
            return []
        bits = int(np.bitwise_or.reduce(self.nonfinite[row]))
        return [n for i, n in enumerate(self.names) if bits >> i & 1]

    # -- fit ---------------------------------------------------------------------------------------------------
    def growth_rate(self) -> float:
        """Fitted growth rate of ln(adjoint norm) per second going back in time (> 0: growing towards the start),
        from the finite, positive norms; NaN with fewer than 3 of them."""
        t, y = self._fit_points()
        if t.size < 3 or np.ptp(t) == 0:
            return math.nan
        slope = np.polyfit(t, y, 1)[0]
        return float(-slope)

    def _fit_points(self):
        ok = np.isfinite(self.norm) & (self.norm > 0)
        if self.first_nonfinite is not None:
            ok &= self.frames > self.first_nonfinite
        return self.times[ok], np.log(self.norm[ok])

    def overflow_horizon(self) -> float:
        """Seconds of backpropagation (counted back from the last frame) after which the fitted norm reaches the
        largest f32 (3.4e38); inf when it does not grow."""
        rate = self.growth_rate()
        t, y = self._fit_points()
        if not (rate > 0) or t.size == 0:
            return math.inf
        slope, icpt = np.polyfit(t, y, 1) if t.size >= 3 else (-rate, y[-1] + rate * t[-1])
        end = self.times[-1]
        at_end = slope * end + icpt  # fitted ln(norm) at the last frame
        return float((math.log(F32_MAX) - at_end) / rate)

    def verdict(self) -> str:
        """One line: stable, exploding (growth rate, f32 overflow horizon) or vanishing."""
        span = float(self.times[-1] - self.times[0]) if self.times.size > 1 else 0.0
        rate = self.growth_rate()
        last = float(self.times[-1])
        if self.first_nonfinite is not None:
            f = self.first_nonfinite
            what = ", ".join(self.bad_quantities(f)) or "state"
            txt = f"exploding: the adjoint of {what} is non-finite from frame {f} (t = {f * self.dt:.4g} s) back"
            if math.isfinite(rate):
                txt += f"; fitted growth {rate:.4g}/s (x{math.exp(min(rate, 700.0)):.3g} per second)"
            return txt
        if not math.isfinite(rate):
            return "stable: too few non-zero adjoint norms to fit a growth rate"
        change = rate * span
        if change > math.log(VERDICT_FACTOR):
            horizon = self.overflow_horizon()
            when = last - horizon
            return (
                f"exploding: adjoint norm grows {rate:.4g}/s going back in time (x{math.exp(min(rate, 700.0)):.3g} "
                f"per second, x{math.exp(min(change, 700.0)):.3g} over {span:.4g} s); f32 overflows (3.4e38) after "
                f"{horizon:.4g} s of backpropagation"
                + (f" (at t = {when:.4g} s)" if when >= 0 else f" (beyond this {span:.4g} s horizon)")
            )
        if change < -math.log(VERDICT_FACTOR):
            return (
                f"vanishing: adjoint norm decays {-rate:.4g}/s going back in time (x{math.exp(-change):.3g} smaller "
                f"over {span:.4g} s): early frames barely affect the gradient"
            )
        return (
            f"stable: adjoint norm changes {rate:+.4g}/s going back in time (x{math.exp(change):.3g} over "
            f"{span:.4g} s)"
        )

    # -- output ------------------------------------------------------------------------------------------------
    def csv(self, path) -> None:
        """One row per frame: frame, time_s, adjoint_norm, max_copy_norm, nonfinite (quantities, ';'-separated)."""
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["frame", "time_s", "adjoint_norm", "max_copy_norm", "nonfinite"])
            for r, f in enumerate(self.frames):
                w.writerow(
                    [
                        int(f),
                        f"{self.times[r]:.9g}",
                        f"{self.norm[r]:.9g}",
                        f"{self.norm_per_copy[r].max():.9g}",
                        ";".join(self.bad_quantities(f)),
                    ]
                )

    def contributions_csv(self, path) -> None:
        """One row per chunk and parameter: from_frame, to_frame, parameter, contribution norm."""
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["from_frame", "to_frame", "parameter", "grad_contribution_norm"])
            for a, b, d in self.contributions:
                for name, v in d.items():
                    w.writerow([a, b, name, f"{v:.9g}"])

    def plot(self, path, title: str | None = None):
        """Log-scale adjoint norm against time (s); the f32 limit and the first non-finite frame marked."""
        from ..viz._common import new_figure  # noqa: PLC0415
        from ..viz.plots import _save  # noqa: PLC0415

        fig = new_figure(720, 420)
        ax = fig.add_subplot()
        ok = np.isfinite(self.norm) & (self.norm > 0)
        ax.plot(self.times[ok], self.norm[ok], color="C0", label="adjoint norm")
        t, y = self._fit_points()
        rate = self.growth_rate()
        if math.isfinite(rate) and t.size >= 3:
            slope, icpt = np.polyfit(t, y, 1)
            fit = np.exp(np.clip(slope * self.times + icpt, -700, 700))
            ax.plot(self.times, fit, "--", color="C1", label=f"fit: {rate:.3g}/s going back")
        if self.first_nonfinite is not None:
            f = self.first_nonfinite
            ax.axvline(f * self.dt, color="C3", label=f"non-finite from frame {f}")
        if ok.any() and np.nanmax(self.norm[ok]) > 1e30:
            ax.axhline(F32_MAX, color="0.5", ls=":", label="f32 max")
        ax.set_yscale("log")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("|d loss / d state|")
        ax.set_title(title or "state adjoint norm (backward pass runs right to left)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        return _save(fig, path)

    def __repr__(self) -> str:
        return f"HealthReport({len(self.frames)} frames: {self.verdict()})"
