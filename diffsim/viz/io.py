"""Writing images and animations atomically.

Every file the viz module writes goes through `atomic_path` (`diffsim.fileio`): the content is written to a temporary
file in the same folder and renamed over the target with `os.replace` only when writing succeeded, so an interrupted
render never leaves a truncated GIF or PNG behind (docs/design.md, "Outputs and errors").

Frames are RGB arrays of shape (H, W, 3), dtype uint8. `write_frames` dispatches on the file suffix:

- ``.gif``: Pillow, every frame quantised to a 256-colour palette, looping forever.
- ``.mp4``: ffmpeg (found with `shutil.which`), raw RGB frames piped to its stdin.
- ``.png``: a single still image (the last frame given).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from diffsim.errors import DiffsimError
from diffsim.fileio import PathLike, atomic_path  # noqa: F401 - atomic_path is part of this module's interface

#: Suffixes `write_frames` understands, mapped to the kind of file written.
ANIMATION_SUFFIXES = {".gif": "gif", ".mp4": "mp4", ".png": "png"}

_FFMPEG_MISSING = "writing .mp4 needs ffmpeg, which is missing (not found on PATH); write a .gif instead"


def animation_kind(path: PathLike) -> str:
    """Return "gif", "mp4" or "png" for an output path, or raise `DiffsimError` for any other suffix.

    For ".mp4" this also checks that ffmpeg is installed, so a long render fails before it starts rather than after.
    """
    suffix = Path(path).suffix.lower()
    kind = ANIMATION_SUFFIXES.get(suffix)
    if kind is None:
        known = ", ".join(sorted(ANIMATION_SUFFIXES))
        raise DiffsimError(
            f"unknown output suffix {suffix or '(none)'!r}; use one of {known}", where=str(path)
        )
    if kind == "mp4" and shutil.which("ffmpeg") is None:
        raise DiffsimError(_FFMPEG_MISSING, where=str(path))
    return kind


def check_still_suffix(path: PathLike, allowed: tuple[str, ...] = (".png",)) -> None:
    """Raise `DiffsimError` unless `path` ends with one of the `allowed` suffixes."""
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise DiffsimError(
            f"unknown output suffix {suffix or '(none)'!r}; use one of {', '.join(allowed)}", where=str(path)
        )


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"frame must have shape (H, W, 3) or (H, W, 4), got {frame.shape}")
    if frame.dtype != np.uint8:
        frame = (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.ascontiguousarray(frame[..., :3])


def write_png(frame: np.ndarray, path: PathLike) -> Path:
    """Write one RGB frame (H, W, 3|4), uint8 or float in [0, 1], to a PNG file atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(_as_rgb(frame)).save(tmp, format="PNG")
    return Path(path)


def write_gif(frames: Iterable[np.ndarray], path: PathLike, fps: float = 30.0) -> Path:
    """Write RGB frames to a looping GIF atomically; returns the path.

    GIF stores frame durations in hundredths of a second, so the rate is rounded to that; many viewers also slow
    frames shorter than 20 ms down, so fps above 50 plays slower than asked. Pillow merges consecutive identical
    frames into one with their durations added, so a still scene gives fewer frames than rendered.
    """
    from PIL import Image

    # Quantising as frames arrive keeps one byte per pixel in memory instead of three (Pillow needs them all at once).
    # Fast octree is about 8x faster than the default median cut and loses nothing visible on flat-shaded plots.
    images = [Image.fromarray(_as_rgb(f)).quantize(256, method=Image.Quantize.FASTOCTREE) for f in frames]
    if not images:
        raise DiffsimError("no frames to write", where=str(path))
    duration_ms = max(10, round(1000.0 / float(fps)))
    with atomic_path(path) as tmp:
        images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0
        )
    return Path(path)


def write_mp4(frames: Iterable[np.ndarray], path: PathLike, fps: float = 30.0) -> Path:
    """Stream RGB frames to ffmpeg, which encodes an H.264 (or its default) MP4 atomically; returns the path.

    Odd frame sizes are padded to even ones, which yuv420p requires.
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise DiffsimError(_FFMPEG_MISSING, where=str(path))
    iterator = iter(frames)
    try:
        first = _as_rgb(next(iterator))
    except StopIteration:
        raise DiffsimError("no frames to write", where=str(path)) from None
    height, width = first.shape[:2]
    with atomic_path(path) as tmp:
        cmd = [
            ffmpeg, "-y", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{float(fps):g}", "-i", "-",
            "-an", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p", str(tmp),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for frame in _chain_first(first, iterator):
                frame = _as_rgb(frame)
                if frame.shape[:2] != (height, width):
                    raise ValueError(f"frame size changed from {(height, width)} to {frame.shape[:2]}")
                proc.stdin.write(frame.tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg exited early; its stderr says why
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        stderr = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            tail = stderr.strip().splitlines()[-3:]
            raise DiffsimError(f"ffmpeg failed (exit {proc.returncode}): {' | '.join(tail)}", where=str(path))
    return Path(path)


def _chain_first(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def write_frames(frames: Iterable[np.ndarray], path: PathLike, fps: float = 30.0) -> Path:
    """Write frames to `path`, choosing the format from its suffix (see `animation_kind`).

    For ".png" only the last frame is written; callers that know this render just that frame.
    """
    kind = animation_kind(path)
    if kind == "gif":
        return write_gif(frames, path, fps)
    if kind == "mp4":
        return write_mp4(frames, path, fps)
    last = None
    for frame in frames:  # frames may be a generator: keep only the last one
        last = frame
    if last is None:
        raise DiffsimError("no frames to write", where=str(path))
    return write_png(last, path)


def progress_bar(total: int, enabled: bool, desc: str):
    """A tqdm bar on stderr when `enabled` and the render is long (more than 50 frames); otherwise a silent one."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not (enabled and total > 50), leave=False)
