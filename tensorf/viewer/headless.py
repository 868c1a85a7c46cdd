"""A headless Chromium looking at a viewer page: the browser test, benchmarks/viewer_cpu.py and
the README's screenshot drive the page with it (playwright, with the system's Chromium; never
`playwright install`, which downloads a browser)."""

from __future__ import annotations

import shutil

# A machine with no network beyond localhost: without these Chromium keeps calling out.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic"]


def find_chromium() -> str | None:
    """Path of an installed Chromium or Chrome, or None (Debian: apt-get install chromium)."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def launch(playwright, executable: str):
    """A headless browser from a started playwright (sync API)."""
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
