"""Regenerate the dashboard screenshots in docs/screenshots/: ``make screenshots`` (not in ``make test``).

Seeds a throwaway database the way a few days of use would (:func:`serve_helpers.seed_dashboard`), starts
``wabulk serve`` on it and photographs each screen in headless Chromium at a laptop (1366×900) and a phone
(390×844) size, the whole page from the top.

    .venv/bin/python -m tests.screenshots [OUT_DIR]
"""

from __future__ import annotations

import base64
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from serve_helpers import Server, contacts_csv, make_driver, seed_dashboard  # noqa: E402

SIZES = {"desktop": (1366, 900), "phone": (390, 844)}


def _wait(predicate: Any, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError("the page did not get there")


def _shoot(driver: Any, path: Path) -> None:
    """The whole page (at least one screen high), as the browser draws it."""
    time.sleep(0.3)  # let the last poll's redraw settle (a picture, not an assertion)
    width, height, full = driver.execute_script(
        "return [innerWidth, innerHeight, document.documentElement.scrollHeight]"
    )
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": max(height, full), "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    print(f"wrote {path}")


def _screens(driver: Any, base: str, token: str, stopped: int, upload: Path, prefix: Path) -> None:
    """Each screen of the dashboard, photographed to ``<prefix>-<screen>.png``."""
    driver.get(f"{base}/?token={token}")
    _wait(lambda: "Live" in driver.find_element("id", "live").text)
    _shoot(driver, Path(f"{prefix}-jobs.png"))

    driver.execute_script(
        "document.querySelector(arguments[0]).click()",
        f'tr[data-job-id="{stopped}"] td.name',
    )
    _wait(lambda: driver.find_element("id", "page-info").text)
    _shoot(driver, Path(f"{prefix}-job-messages.png"))

    driver.get(f"{base}/#new")
    _wait(lambda: driver.find_element("id", "message").is_displayed())
    driver.find_element("id", "file").send_keys(str(upload))
    driver.find_element("id", "message").send_keys(
        "Hi {name|there}, a reminder: your {city} store opens at 9 on Saturday."
    )
    driver.find_element("css selector", "details.more summary").click()
    driver.find_element("id", "country").send_keys("US")
    driver.find_element("id", "preview-btn").click()
    _wait(lambda: driver.find_element("id", "preview-summary").text)
    _shoot(driver, Path(f"{prefix}-new-job.png"))

    driver.get(f"{base}/#sessions")
    _wait(lambda: driver.find_elements("css selector", "#sessions [data-session]"))
    _shoot(driver, Path(f"{prefix}-sessions.png"))

    driver.get(f"{base}/#notifications")
    _wait(lambda: driver.find_elements("css selector", "#notifications [data-kind]"))
    _shoot(driver, Path(f"{prefix}-notifications.png"))


def _heartbeat(db: Path) -> None:
    """The seeded workers stay alive (a heartbeat within 30 s) while the pictures are taken."""
    from wabulk.queue import Queue

    with Queue(db) as q:
        for w in q.workers():
            q.heartbeat(w.id, w.state)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wabulk-shots-") as tmp:
        home = Path(tmp)
        os.environ["WABULK_HOME"] = str(home)
        os.environ["WABULK_DB"] = str(home / "wabulk.db")
        ids = seed_dashboard(home / "wabulk.db", home / "files")
        upload = contacts_csv(home / "january-reminders.csv", 12, start=420)
        # Two bad rows, so the preview shows what it leaves out and why.
        with upload.open("a", encoding="utf-8") as fh:
            fh.write("Dud Number,555-12,Boston\nNo Phone,,Denver\n")
        server = Server(home / "wabulk.db")
        try:
            for size, (width, height) in SIZES.items():
                _heartbeat(home / "wabulk.db")
                driver = make_driver(width=width)
                try:
                    driver.execute_cdp_cmd(
                        "Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": size == "phone"},
                    )
                    _screens(driver, server.base, server.token, ids["stopped"], upload, out / size)
                finally:
                    driver.quit()
        finally:
            server.stop()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "docs" / "screenshots")
