"""The viewer page in a real headless browser (Debian's chromium), one scene of each system.

For each: `diffsim run` a short rollout, `diffsim view` it, then open the page at two frames. At each, the page has
no console error, its canvas is not blank, and the pixels around the object's centroid (computed here from the
trajectory file, projected with the camera the page reports in its DOM) have the object's colour; the two
projected positions differ (the object moved on screen). Clicking the slider half-way shows the middle frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffsim.scene.trajectory import load_trajectory
from diffsim.viz.viewer import frame_indices, project
from tests.cli.conftest import diffsim
from tests.viz import browser

pytestmark = pytest.mark.slow


def _blue(px: np.ndarray) -> np.ndarray:
    """The viewer's rollout blue (#1f5fbf, MPM's first material #1f77b4), shaded: blue well above red."""
    px = px.astype(int)
    return (px[..., 2] - px[..., 0] > 60) & (px[..., 2] > 90)


def _smoke(px: np.ndarray) -> np.ndarray:
    """Smoke points: grey, darker than the light blue-grey background of the 3D scene (~ (229, 236, 246))."""
    px = px.astype(int)
    return (px.sum(axis=-1) < 3 * 205) & (np.abs(px[..., 2] - px[..., 0]) < 30)


#: scene, --set overrides, the two frames shown (indices into the page's frames), the object's colour
CASES = {
    "springs": ("cube3d", ["sim.steps=300"], (0, -1), _blue),
    "rigid": ("rigid_sysid", ["sim.steps=500"], (0, -1), _blue),
    "cloth": ("cloth_drape", ["sim.steps=600"], (0, -1), _blue),
    "mpm": ("mpm_throw3d", ["sim.steps=200"], (0, -1), _blue),
    "smoke": ("smoke_plume3d", ["sim.steps=20"], (5, -1), _smoke),
}


def _page(tmp_path: Path, scene: str, sets: list[str]) -> Path:
    run = tmp_path / "run"
    args = ["run", scene, "--out", str(run)] + [a for s in sets for a in ("--set", s)]
    proc = diffsim(*args)
    assert proc.returncode == 0, proc.stderr
    page = tmp_path / "view.html"
    proc = diffsim("view", str(run), "--out", str(page))
    assert proc.returncode == 0, proc.stderr
    return page


def _centroids(run: Path, system: str, frames: np.ndarray) -> np.ndarray:
    """The centroid (m) of the first object the page draws, from the trajectory file, at the given rollout frames:
    the mean position of the masses, particles, cloth vertices or (one) rigid body; for smoke the mean of the
    centres of the cells the page shows (density above 5% of the rollout's peak; cells of 1 unit)."""
    data = load_trajectory(run / "trajectory.npz")
    if system != "smoke":
        return data["x"][frames].mean(axis=1)
    rho = data["scalars"][..., 0]
    out = []
    for f in frames:
        cells = np.argwhere(rho[f] > 0.05 * rho.max())
        out.append((cells + 0.5).mean(axis=0))
    return np.asarray(out)


@pytest.mark.parametrize("system", list(CASES))
def test_viewer_page_in_chromium(tmp_path, system):
    browser.require_plotly()
    browser.require_chromium()
    scene, sets, shown, is_object = CASES[system]
    page = browser.hooked_copy(_page(tmp_path, scene, sets), tmp_path)
    state, errors = browser.page_state(page, "")
    assert errors == [], errors
    count, camera = int(state["frames"]), state["camera"]
    run = tmp_path / "run"
    steps = len(load_trajectory(run / "trajectory.npz")["time"])
    indices = frame_indices(steps)
    assert len(indices) == count
    pages = [f % count for f in shown]
    centroids = _centroids(run, system, indices[pages])
    positions = []
    for k, (frame, centroid) in enumerate(zip(pages, centroids, strict=True)):
        x, y = (int(round(v)) for v in project(camera, centroid))
        image, errors = browser.screenshot(page, f"frame={frame}", tmp_path / f"shot{k}.png")
        assert errors == [], errors
        assert image.std() > 10, "blank page"
        assert 0 <= x < image.shape[1] and 0 <= y < image.shape[0], (x, y)
        window = image[max(0, y - 12) : y + 13, max(0, x - 12) : x + 13]
        hits = is_object(window).mean()
        assert hits > 0.15, (
            f"{system}, frame {frame}: {hits:.0%} of the pixels around {(x, y)} are the object's"
        )
        # no object pixel in the title bar: the colour test does not pass everywhere
        assert is_object(image[:40, 400:700]).mean() == 0
        positions.append((x, y))
    moved = np.hypot(positions[1][0] - positions[0][0], positions[1][1] - positions[0][1])
    assert moved > 8, f"{system}: the object moved {moved:.1f} px on screen between the two frames"
    # the slider: a click half-way along it shows the middle frame
    state, errors = browser.page_state(page, "slider=0.5")
    assert errors == [], errors
    assert abs(int(state["frame"]) - (count - 1) / 2) <= 1, (state["frame"], count)
