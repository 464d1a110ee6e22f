"""Headless chromium for the viewer's browser tests: screenshots, the DOM after the page ran, console errors.

Debian's chromium, run with the flags below (no sandbox as root, software WebGL through SwiftShader, no network
services, a fresh profile each time). `--virtual-time-budget` lets the page's timers run before the screenshot or
the DOM dump. The viewer page reports what it shows in ``<body data-frame data-centroid data-projected>``
(diffsim/viz/viewer.py). Where chromium is missing the tests skip, unless DIFFSIM_REQUIRE_VIEWER=1 (CI) makes
that a failure.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
]
WINDOW = (1000, 700)
#: a hang detector (chromium at high load), not a speed check
TIMEOUT = 600

#: put first in the page's <head>: console.error and uncaught errors are logged with a mark the test looks for
#: (chromium logs every console message at the same level)
_ERROR_HOOK = """<script>
(function () {
  var error = console.error.bind(console);
  console.error = function () { console.log('[console.error] ' + Array.from(arguments).join(' ')); error.apply(null, arguments); };
  window.addEventListener('error', function (e) { console.log('[console.error] uncaught: ' + e.message); });
})();
</script>"""


def require_chromium() -> str:
    if CHROMIUM is None:
        if os.environ.get("DIFFSIM_REQUIRE_VIEWER") == "1":
            pytest.fail("DIFFSIM_REQUIRE_VIEWER=1 but chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium not installed (apt-get install chromium): the viewer's browser tests need it")
    return CHROMIUM


def require_plotly() -> None:
    try:
        import plotly  # noqa: F401, PLC0415
    except ImportError:
        if os.environ.get("DIFFSIM_REQUIRE_VIEWER") == "1":
            pytest.fail(
                "DIFFSIM_REQUIRE_VIEWER=1 but plotly is not installed (pip install 'diffsim[viewer]')"
            )
        pytest.skip("the viewer needs plotly (pip install 'diffsim[viewer]')")


def hooked_copy(page: Path, folder: Path) -> Path:
    """A copy of the page with the console-error hook first in its <head>."""
    text = page.read_text(encoding="utf-8")
    out = folder / f"hooked_{page.name}"
    out.write_text(text.replace("<head>", "<head>" + _ERROR_HOOK, 1), encoding="utf-8")
    return out


def run(page: Path, fragment: str, action: list[str]) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="diffsim-chromium-") as profile:
        cmd = [
            require_chromium(),
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            "--virtual-time-budget=8000",
            *action,
            page.resolve().as_uri() + (f"#{fragment}" if fragment else ""),
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def console_errors(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if "CONSOLE" in line and ("[console.error]" in line or "Uncaught" in line)
    ]


def page_state(page: Path, fragment: str) -> tuple[dict, list[str]]:
    """The page's <body data-*> after it ran (frame, centroid and projected as parsed JSON) and its console errors."""
    proc = run(page, fragment, ["--dump-dom"])
    body = re.search(r"<body([^>]*)>", proc.stdout)
    assert body, f"no <body> in chromium's DOM dump: {proc.stderr[-2000:]}"
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', body.group(1)))
    state = {
        k: json.loads(html.unescape(v)) if v.strip()[:1] in "[{" else html.unescape(v)
        for k, v in attrs.items()
    }
    return state, console_errors(proc.stderr)


def screenshot(page: Path, fragment: str, path: Path) -> tuple[np.ndarray, list[str]]:
    """The page's pixels (H, W, 3) uint8, in CSS pixels (the window size), and its console errors."""
    from PIL import Image  # noqa: PLC0415

    proc = run(page, fragment, [f"--screenshot={path}"])
    assert path.is_file(), f"chromium wrote no screenshot: {proc.stderr[-2000:]}"
    image = np.asarray(Image.open(path).convert("RGB"))
    assert image.shape[:2] == (WINDOW[1], WINDOW[0])
    return image, console_errors(proc.stderr)
