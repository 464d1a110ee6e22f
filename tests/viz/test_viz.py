"""Tests for diffsim.viz: files are valid images of the right size and frame count, errors are DiffsimErrors, and
writes are atomic. GGUI tests run under Vulkan when it is available (required when DIFFSIM_REQUIRE_VULKAN=1)."""

from __future__ import annotations

import itertools
import os
import stat
import sys
import textwrap
import warnings

import numpy as np
import pytest
from PIL import Image

from diffsim.errors import DiffsimError
from diffsim.viz import (
    Camera,
    animate_2d,
    animate_grid,
    atomic_path,
    ggui_available,
    grid_image,
    plot_loss,
    plot_param_paths,
    plot_trajectories,
    render3d,
    render_3d,
)
from diffsim.viz import io as viz_io
from diffsim.viz.plots import loss_values

SIZE_2D = (200, 160)
SIZE_3D = (160, 120)


def frames_of(path) -> list[np.ndarray]:
    """Every frame of an image file as (H, W, 3) int arrays."""
    with Image.open(path) as im:
        out = []
        for k in range(getattr(im, "n_frames", 1)):
            im.seek(k)
            out.append(np.asarray(im.convert("RGB"), dtype=np.int32))
    return out


def leftovers(folder) -> list[str]:
    """Hidden temporary files that atomic_path would have left behind."""
    return [name for name in os.listdir(folder) if name.startswith(".")]


def swinging_chain(num_frames: int = 6, n: int = 4) -> np.ndarray:
    """(T, n, 2) positions of a chain swinging left and right, so every frame differs."""
    t = np.linspace(0.0, 1.0, num_frames)[:, None]
    x = 0.25 * np.arange(n)[None, :] + 0.2 * np.sin(1.5 * np.pi * t)
    y = 1.0 - 0.1 * np.arange(n)[None, :] + 0.0 * t
    return np.stack([x, y], axis=-1)


CHAIN_SPRINGS = np.array([[0, 1], [1, 2], [2, 3]])


# --------------------------------------------------------------------------------------------------------- atomic io


def test_atomic_path_renames_on_success_with_normal_permissions(tmp_path):
    target = tmp_path / "sub" / "out.txt"  # parent folder is created
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".txt" and tmp != target
        tmp.write_text("done")
        assert not target.exists()  # nothing at the target until the body succeeds
    assert target.read_text() == "done"
    assert leftovers(target.parent) == []
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0o600


def test_atomic_path_failure_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half written")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_gif_writer_failure_mid_stream_leaves_nothing(tmp_path):
    def frames():
        yield np.zeros((8, 8, 3), np.uint8)
        raise RuntimeError("simulation blew up")

    with pytest.raises(RuntimeError):
        viz_io.write_gif(frames(), tmp_path / "a.gif")
    assert os.listdir(tmp_path) == []


def test_progress_bar_only_for_long_renders():
    assert viz_io.progress_bar(51, True, "x").disable is False
    assert viz_io.progress_bar(50, True, "x").disable is True
    assert viz_io.progress_bar(500, False, "x").disable is True


# ------------------------------------------------------------------------------------------------------------- plots


def test_plot_loss_writes_valid_png(tmp_path):
    path = tmp_path / "loss.png"
    assert plot_loss([1.0 / (i + 1) for i in range(20)], path) == path
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.verify()
    plot_loss(
        [{"loss": 2.0, "grad_norm": 1.0}, {"loss": -1.0}, {"loss": float("nan")}], tmp_path / "mixed.svg"
    )
    assert (tmp_path / "mixed.svg").read_text().lstrip().startswith("<?xml")
    assert leftovers(tmp_path) == []


def test_loss_values_and_errors(tmp_path):
    np.testing.assert_array_equal(loss_values([1, {"loss": 2.5}]), [1.0, 2.5])
    with pytest.raises(DiffsimError, match=r"history\[1\]"):
        loss_values([{"loss": 1.0}, {"error": 3.0}])
    with pytest.raises(DiffsimError, match="empty"):
        plot_loss([], tmp_path / "loss.png")
    with pytest.raises(DiffsimError, match="suffix"):
        plot_loss([1.0], tmp_path / "loss.txt")
    assert os.listdir(tmp_path) == []


def test_plot_trajectories_target_shapes(tmp_path):
    traj = np.random.default_rng(0).normal(size=(12, 5, 3))
    for k, target in enumerate([np.zeros(3), np.zeros((2, 3)), np.zeros((5, 3)), np.zeros((12, 2, 3)), None]):
        path = tmp_path / f"traj{k}.png"
        plot_trajectories(traj, target, points=[1, 3], path=path, dt=0.01)
        with Image.open(path) as im:
            im.verify()
    with pytest.raises(DiffsimError, match="target"):
        plot_trajectories(traj, np.zeros((4, 3)), points=[1, 3], path=tmp_path / "bad.png")
    with pytest.raises(DiffsimError, match="points"):
        plot_trajectories(traj, points=[7], path=tmp_path / "bad.png")
    with pytest.raises(DiffsimError, match="traj"):
        plot_trajectories(np.zeros((3, 2, 4)), path=tmp_path / "bad.png")


def test_plot_param_paths(tmp_path):
    history = {
        "stiffness": [1000.0 + 10 * i for i in range(8)],
        "weights": [np.full((3, 4), 0.1 * i) for i in range(8)],  # 12 components, only 6 drawn
        "gravity": [np.array([0.0, -9.8 + 0.01 * i]) for i in range(8)],
        "damping": [0.1] * 8,
    }
    path = tmp_path / "params.png"
    plot_param_paths(history, path)
    with Image.open(path) as im:
        assert im.size[0] > im.size[1]  # 3 columns, 2 rows
    with pytest.raises(DiffsimError, match="size"):
        plot_param_paths({"w": [np.zeros(2), np.zeros(3)]}, tmp_path / "bad.png")
    with pytest.raises(DiffsimError, match="empty"):
        plot_param_paths({}, tmp_path / "bad.png")


# ----------------------------------------------------------------------------------------------------- 2D animation


def test_animate_2d_gif_frames_size_and_motion(tmp_path):
    path = tmp_path / "chain.gif"
    animate_2d(
        swinging_chain(6), path, springs=CHAIN_SPRINGS, fps=20, ground_y=0.5, title="chain", size=SIZE_2D
    )
    frames = frames_of(path)
    assert len(frames) == 6
    assert frames[0].shape == (SIZE_2D[1], SIZE_2D[0], 3)
    assert all(np.abs(a - b).sum() > 0 for a, b in itertools.pairwise(frames))
    with Image.open(path) as im:
        assert im.info["duration"] == 50 and im.info.get("loop") == 0
    assert leftovers(tmp_path) == []


def test_animate_2d_stride_and_png_is_last_frame(tmp_path):
    pos = swinging_chain(7)
    animate_2d(pos, tmp_path / "s.gif", springs=CHAIN_SPRINGS, stride=3, size=SIZE_2D, radii=0.03)
    gif = frames_of(tmp_path / "s.gif")
    assert len(gif) == 3  # frames 0, 3, 6
    animate_2d(pos, tmp_path / "s.png", springs=CHAIN_SPRINGS, size=SIZE_2D, radii=0.03)
    (png,) = frames_of(tmp_path / "s.png")

    # The PNG is frame 6 (the last): equal to the GIF's last frame up to palette quantisation, unlike its first.
    def changed(a, b):
        return int(np.sum(np.abs(a - b).max(axis=2) > 60))

    assert changed(png, gif[-1]) < 20
    assert changed(png, gif[0]) > 200


def test_animate_2d_layout_x_right_y_up(tmp_path):
    """One big red particle moves right, then up: its pixel centroid must follow (no flipped axes)."""
    pos = np.array([[[0.0, 0.0]], [[1.0, 0.0]], [[1.0, 1.0]]])
    animate_2d(
        pos, tmp_path / "p.gif", radii=0.15, colors="red", size=(200, 200), bounds=(-0.5, 1.5, -0.5, 1.5)
    )
    centroids = []
    for frame in frames_of(tmp_path / "p.gif"):
        rows, cols = np.nonzero((frame[..., 0] > 200) & (frame[..., 1] < 60) & (frame[..., 2] < 60))
        centroids.append((cols.mean(), rows.mean()))
    assert centroids[1][0] > centroids[0][0] + 30  # moved right
    assert centroids[2][1] < centroids[1][1] - 30  # moved up = smaller row index


def test_animate_2d_actions_colour_springs(tmp_path):
    pos = swinging_chain(2)
    reds, blues = [], []
    for sign in (1.0, -1.0):
        path = tmp_path / f"a{sign:+.0f}.png"
        actions = np.full((2, 3), sign)
        animate_2d(
            pos, path, springs=CHAIN_SPRINGS, actuated=[True, False, True], actions=actions, size=SIZE_2D
        )
        (img,) = frames_of(path)
        reds.append(int(np.sum(img[..., 0] > img[..., 2] + 80)))
        blues.append(int(np.sum(img[..., 2] > img[..., 0] + 80)))
    assert reds[0] > reds[1] + 20  # +1 is red
    assert blues[1] > blues[0] + 20  # -1 is blue (particles are blue too, hence the comparison)


def test_animate_2d_errors(tmp_path):
    pos = swinging_chain(3)
    with pytest.raises(DiffsimError, match="suffix"):
        animate_2d(pos, tmp_path / "a.jpg")
    with pytest.raises(DiffsimError, match="springs"):
        animate_2d(pos, tmp_path / "a.gif", springs=[[0, 9]])
    with pytest.raises(DiffsimError, match="positions"):
        animate_2d(np.zeros((3, 4, 3)), tmp_path / "a.gif")
    with pytest.raises(DiffsimError, match="actions"):
        animate_2d(pos, tmp_path / "a.gif", springs=CHAIN_SPRINGS, actions=np.zeros((2, 3)))
    with pytest.raises(DiffsimError, match="colors"):
        animate_2d(pos, tmp_path / "a.gif", colors=["red", "blue"])
    with pytest.raises(DiffsimError, match="frame 1, particle 2"):
        bad = pos.copy()
        bad[1, 2, 0] = np.nan
        animate_2d(bad, tmp_path / "a.gif")
    assert os.listdir(tmp_path) == []


def test_mp4_without_ffmpeg_names_path_and_suggests_gif(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DiffsimError) as info:
        animate_2d(swinging_chain(3), tmp_path / "movie.mp4")
    message = str(info.value)
    assert "movie.mp4" in message and "ffmpeg" in message and ".gif" in message


def _fake_ffmpeg(folder, exit_code: int = 0):
    """An `ffmpeg` on PATH that records how many bytes of raw video it was fed (or fails)."""
    folder.mkdir()
    script = folder / "ffmpeg"
    script.write_text(
        textwrap.dedent(f"""\
            #!{sys.executable}
            import sys
            data = sys.stdin.buffer.read()
            if {exit_code}:
                sys.stderr.write("Unknown encoder\\n")
                sys.exit({exit_code})
            size = sys.argv[sys.argv.index("-s") + 1]
            open(sys.argv[-1], "w").write(f"{{len(data)}} {{size}} {{sys.argv[sys.argv.index('-r') + 1]}}")
            """)
    )
    script.chmod(0o755)


def test_mp4_streams_raw_frames_to_ffmpeg(tmp_path, monkeypatch):
    _fake_ffmpeg(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    out = tmp_path / "out"
    out.mkdir()
    animate_2d(swinging_chain(5), out / "movie.mp4", springs=CHAIN_SPRINGS, size=SIZE_2D, fps=25)
    nbytes, size, rate = (out / "movie.mp4").read_text().split()
    assert (
        int(nbytes) == 5 * SIZE_2D[0] * SIZE_2D[1] * 3
        and size == f"{SIZE_2D[0]}x{SIZE_2D[1]}"
        and rate == "25"
    )
    assert leftovers(out) == []


def test_mp4_ffmpeg_failure_is_reported_and_cleaned_up(tmp_path, monkeypatch):
    _fake_ffmpeg(tmp_path / "bin", exit_code=1)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DiffsimError, match="Unknown encoder"):
        animate_2d(swinging_chain(3), out / "movie.mp4", size=SIZE_2D)
    assert os.listdir(out) == []


def test_grid_image_and_animation(tmp_path):
    frames = np.random.default_rng(1).random((4, 16, 24))
    grid_image(frames[0], tmp_path / "g.png", title="density")
    (img,) = frames_of(tmp_path / "g.png")
    assert img.shape[1] > img.shape[0]  # wider than tall, like the 16 x 24 grid
    animate_grid(frames, tmp_path / "g.gif", fps=10)
    gif = frames_of(tmp_path / "g.gif")
    assert len(gif) == 4 and np.abs(gif[0] - gif[1]).sum() > 0
    with pytest.raises(DiffsimError, match="suffix"):
        grid_image(frames[0], tmp_path / "g.gif")
    with pytest.raises(DiffsimError, match="animate_grid"):
        grid_image(frames, tmp_path / "g2.png")


# ------------------------------------------------------------------------------------------------------------ 3D


def cloth(num_frames: int = 4, n: int = 5):
    """A small square cloth (n x n vertices) sagging over time: positions (T, n*n, 3), edges, faces."""
    u, v = np.meshgrid(np.linspace(-0.5, 0.5, n), np.linspace(-0.5, 0.5, n), indexing="ij")
    sag = (0.25 - u**2) * (0.25 - v**2) * 4
    pos = np.stack([np.stack([u, 1.0 - 0.4 * t * sag, v], -1).reshape(-1, 3) for t in range(num_frames)])
    idx = np.arange(n * n).reshape(n, n)
    edges = np.concatenate(
        [
            np.stack([idx[:-1].ravel(), idx[1:].ravel()], 1),
            np.stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()], 1),
        ]
    )
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])
    return pos, edges, faces


def check_3d_outputs(tmp_path, renderer: str) -> None:
    pos, edges, faces = cloth(4)
    gif = tmp_path / f"cloth_{renderer}.gif"
    assert (
        render_3d(pos, gif, edges=edges, faces=faces, ground_y=0.0, size=SIZE_3D, renderer=renderer)
        == renderer
    )
    frames = frames_of(gif)
    assert len(frames) == 4 and frames[0].shape == (SIZE_3D[1], SIZE_3D[0], 3)
    assert np.abs(frames[0] - frames[-1]).sum() > 0
    assert frames[0].std() > 5  # not a blank image
    png = tmp_path / f"cloth_{renderer}.png"
    render_3d(pos, png, edges=edges, faces=faces, size=SIZE_3D, renderer=renderer, stride=2)
    (still,) = frames_of(png)
    assert still.shape == (SIZE_3D[1], SIZE_3D[0], 3)
    assert leftovers(tmp_path) == []


def check_3d_orientation(tmp_path, renderer: str) -> None:
    """A lone sphere moves right (+x) then up (+y) seen from the front (+z): pixels follow, image not flipped."""
    pos = np.array([[[-0.5, -0.5, 0.0]], [[0.5, -0.5, 0.0]], [[0.5, 0.5, 0.0]]])
    camera = Camera(position=(0.0, 0.0, 4.0), lookat=(0.0, 0.0, 0.0))
    path = tmp_path / f"orient_{renderer}.gif"
    render_3d(pos, path, camera=camera, renderer=renderer, size=(200, 200), radius=0.15)
    centroids = []
    for frame in frames_of(path):
        rows, cols = np.nonzero(frame[..., 2] > frame[..., 0] + 40)  # the sphere's blue
        centroids.append((cols.mean(), rows.mean()))
    assert centroids[1][0] > centroids[0][0] + 30  # right
    assert centroids[2][1] < centroids[1][1] - 30  # up


def test_render_3d_matplotlib(tmp_path):
    check_3d_outputs(tmp_path, "matplotlib")


def test_render_3d_matplotlib_orientation(tmp_path):
    check_3d_orientation(tmp_path, "matplotlib")


def test_render_3d_errors(tmp_path):
    pos, edges, _faces = cloth(2)
    with pytest.raises(DiffsimError, match="suffix"):
        render_3d(pos, tmp_path / "c.bmp", renderer="matplotlib")
    with pytest.raises(DiffsimError, match="renderer"):
        render_3d(pos, tmp_path / "c.png", renderer="opengl")
    with pytest.raises(DiffsimError, match="faces"):
        render_3d(pos, tmp_path / "c.png", faces=edges, renderer="matplotlib")
    with pytest.raises(DiffsimError, match="camera"):
        render_3d(pos, tmp_path / "c.png", camera={"position": (0, 0, 1)}, renderer="matplotlib")
    assert os.listdir(tmp_path) == []


def test_auto_falls_back_to_matplotlib_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(render3d, "_ggui_status", lambda: (False, "no Vulkan in this test"))
    monkeypatch.setattr(render3d, "_announced", set())
    pos, edges, _ = cloth(2)
    with pytest.warns(RuntimeWarning, match="no Vulkan in this test"):
        assert render_3d(pos, tmp_path / "a.png", edges=edges, size=SIZE_3D) == "matplotlib"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second render must not warn again
        assert render_3d(pos, tmp_path / "b.png", size=SIZE_3D) == "matplotlib"
    with pytest.raises(DiffsimError, match="no Vulkan in this test"):
        render_3d(pos, tmp_path / "c.png", renderer="ggui")


def test_auto_falls_back_when_ggui_fails_mid_render(tmp_path, monkeypatch):
    class BrokenScene(render3d._MatplotlibScene):
        def __init__(self, *args):
            super().__init__(*args, np.zeros(3), np.ones(3))

        def render(self, t):
            raise RuntimeError("device lost")

    monkeypatch.setattr(render3d, "_ggui_status", lambda: (True, ""))
    monkeypatch.setattr(render3d, "_GguiScene", BrokenScene)
    monkeypatch.setattr(render3d, "_announced", set())
    pos, _, _ = cloth(2)
    with pytest.warns(RuntimeWarning, match="device lost"):
        assert render_3d(pos, tmp_path / "a.gif", size=SIZE_3D) == "matplotlib"
    assert len(frames_of(tmp_path / "a.gif")) == 2
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------------ 3D, GGUI


def _require_vulkan() -> None:
    from diffsim import runtime

    if "vulkan" not in runtime.available_archs():
        if os.environ.get("DIFFSIM_REQUIRE_VULKAN") == "1":
            pytest.fail(
                "DIFFSIM_REQUIRE_VULKAN=1 but the Vulkan backend is unavailable (install mesa-vulkan-drivers)"
            )
        pytest.skip("Vulkan backend unavailable")


@pytest.fixture(params=["vulkan", "cpu"])
def taichi_arch(request):
    """Taichi initialised on the given backend; the previous backend is restored afterwards."""
    from diffsim import runtime

    _require_vulkan()  # GGUI draws through Vulkan whatever the compute backend
    previous = runtime.current()
    runtime.init(arch=request.param)
    yield request.param
    runtime.init(arch=previous["arch"], precision=previous["precision"], debug=previous["debug"])


@pytest.mark.vulkan
def test_ggui_renders_offscreen(tmp_path, taichi_arch):
    cwd = os.getcwd()
    os.chdir(tmp_path)  # GGUI's imgui.ini lands in the working directory; it must be cleaned up
    try:
        assert ggui_available()
        check_3d_outputs(tmp_path, "ggui")
        check_3d_orientation(tmp_path, "ggui")
    finally:
        os.chdir(cwd)
    assert "imgui.ini" not in os.listdir(tmp_path)


@pytest.mark.vulkan
def test_ggui_is_chosen_by_auto_under_vulkan(tmp_path, taichi_arch):
    pos, edges, faces = cloth(2)
    assert render_3d(pos, tmp_path / "a.png", edges=edges, faces=faces, size=SIZE_3D) == "ggui"
