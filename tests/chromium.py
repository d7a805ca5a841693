"""Headless Chromium (Debian's package) renders a page and reports which images loaded."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium installed (Debian: apt-get install -y chromium); cannot render the page",
)

# Marks every image once the page has loaded; --dump-dom prints the DOM after the load event.
_CHECK = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const ok = (img) => img.complete && img.naturalWidth > 0;
  images.forEach((img) => img.setAttribute("data-loaded", ok(img) ? "yes" : "no"));
  document.body.setAttribute("data-images", images.length);
  document.body.setAttribute("data-loaded", images.filter(ok).length);
});
</script>"""


def render_in_chromium(page: Path, tmp_path: Path) -> tuple[int, int, list[str]]:
    """(images, images loaded, alt texts of those that did not) of `page` as Chromium shows it."""
    probe = tmp_path / f"{page.stem}.check.html"  # images are embedded: the copy renders the same
    probe.write_text(
        page.read_text(encoding="utf-8").replace("</body>", _CHECK + "</body>"), encoding="utf-8"
    )
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # tests may run as root in containers
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probe.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = proc.stdout
    assert "<body" in dom, f"chromium printed no page: {proc.stderr[-2000:]}"
    body = re.search(r'<body[^>]*data-images="(\d+)"[^>]*data-loaded="(\d+)"', dom)
    assert body, "the check script did not run"
    broken = re.findall(r'<img[^>]*alt="([^"]*)"[^>]*data-loaded="no"', dom)
    return int(body.group(1)), int(body.group(2)), broken
