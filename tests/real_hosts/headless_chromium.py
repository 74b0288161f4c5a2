"""Headless Chromium for the UI tests: Playwright's Python client driving the system's chromium (Debian's
package; Playwright never downloads a browser here).

CHROMIUM   the browser (default: chromium / chromium-browser on PATH)
"""
from __future__ import annotations

import contextlib
import os
import shutil

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def browser_skip_reason() -> str | None:
    if not chromium_path():
        return "chromium is not installed"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (Python client) is not installed"
    return None


@contextlib.contextmanager
def open_page(url: str, width: int, height: int, stacks=False):
    """A page at url, once its DOM has loaded. What goes wrong on it is collected: page.errors (console
    errors; uncaught exceptions as "pageerror: ...", with their JS stack when stacks is true),
    page.failed (responses of status 400 and up, failed requests)."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.errors, page.failed = [], []
            page.on("console", lambda msg: msg.type == "error" and page.errors.append(msg.text))
            page.on("pageerror", lambda e: page.errors.append(f"pageerror: {e}" + (f"\n{e.stack}" if stacks else "")))
            page.on("response", lambda r: r.status >= 400 and page.failed.append(f"{r.status} {r.url}"))
            page.on("requestfailed", lambda r: page.failed.append(f"failed {r.url} {r.failure}"))
            page.goto(url, wait_until="domcontentloaded", timeout=120_000)
            yield page
        finally:
            browser.close()
