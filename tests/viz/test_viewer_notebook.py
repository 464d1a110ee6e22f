"""The notebook path: a notebook calling `diffsim.viz.show` is executed (nbclient, a real IPython kernel) and its
output must hold the viewer: plotly's figure with its animation frames and the page's own script, inline."""

from __future__ import annotations

import os

import numpy as np
import pytest

from diffsim.scene.registry import Drawing
from diffsim.scene.trajectory import save_trajectory


def _require(module: str, why: str):
    try:
        return pytest.importorskip(module, reason=why)
    except pytest.skip.Exception:
        if os.environ.get("DIFFSIM_REQUIRE_VIEWER") == "1":
            pytest.fail(f"DIFFSIM_REQUIRE_VIEWER=1 but {module} is not installed ({why})")
        raise


def test_show_in_an_executed_notebook(tmp_path):
    _require("plotly", "the viewer needs plotly (pip install 'diffsim[viewer]')")
    nbformat = _require("nbformat", "the notebook test needs nbclient (test extra)")
    nbclient = _require("nbclient", "the notebook test needs nbclient (test extra)")
    _require("ipykernel", "the notebook test needs ipykernel (test extra)")
    t = np.arange(6) * 0.01
    x = np.zeros((6, 1, 3, 3))
    x[..., 2] = (1 - 0.5 * 9.81 * t**2)[:, None, None]  # three masses in free fall, z up
    drawing = Drawing(quantity="x", dim=3, up_axis=2, edges=np.array([[0, 1], [1, 2]]), ground=0.0)
    path = save_trajectory(tmp_path / "trajectory.npz", {"x": x}, drawing, dt=0.01, batch=1, system="springs")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(f"import diffsim.viz\ndiffsim.viz.show({str(path)!r});")]
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["display_data"], outputs
    html = outputs[0].data["text/html"]
    assert "Plotly.newPlot" in html and "plotly.js v" in html  # the figure and the library, inline
    assert "Plotly.addFrames" in html or '"frames"' in html
    assert "URLSearchParams(location.hash" in html  # the page's own script
