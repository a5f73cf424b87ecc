"""The dashboard of `wabulk serve` in headless Chromium, with a real `wabulk run` worker on the simulator:
upload → preview (rejected rows shown) → queue → the page shows progress live → pause/resume → export."""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e_helpers import E2E, SIM_E2E, simulator_running, wait_for
from serve_helpers import Server, make_driver

CHROMIUM = os.environ.get("WABULK_CHROME_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("WABULK_CHROMEDRIVER", "/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)), reason="needs Chromium and chromedriver"
    ),
]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with simulator_running(tmp_path_factory, "sim-dash", SIM_E2E) as s:
        yield s


@pytest.fixture
def e2e(sim: Any, tmp_path: Path) -> Iterator[E2E]:
    sim.configure(**SIM_E2E)
    env = E2E(sim=sim, home=tmp_path / "home", base=300, template_home=tmp_path / "linked")
    yield env
    env.cleanup()


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    d = tmp_path / "downloads"
    d.mkdir()
    return d


@pytest.fixture
def driver(downloads: Path) -> Iterator[Any]:
    d = make_driver(downloads)
    yield d
    d.quit()


def cell(driver: Any, job: int, name: str) -> str:
    """The text of one cell of a job's row ('' while the row is being redrawn)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(driver.find_element("css selector", f'tr[data-job-id="{job}"] td.{name}').text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def click(driver: Any, css: str) -> None:
    """Click an element that the page may redraw under us (each poll replaces the rows)."""
    from selenium.common.exceptions import StaleElementReferenceException

    def attempt() -> bool:
        try:
            el = driver.find_element("css selector", css)
            if not el.is_enabled():
                return False
            driver.execute_script("arguments[0].click()", el)
            return True
        except StaleElementReferenceException:
            return False

    wait_for(attempt, 10, f"to click {css}")


def test_upload_preview_queue_watch_pause_resume_export(e2e: E2E, driver: Any, downloads: Path) -> None:
    e2e.link("s")
    server = Server(e2e.db)
    try:
        contacts = e2e.home / "spring.csv"
        phones = [e2e.phone(i) for i in range(6)]
        with contacts.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["name", "phone"])
            for i, p in enumerate(phones):
                w.writerow([f"Ana {i}", p])
            w.writerow(["Dud", "12"])
        driver.get(f"{server.base}/?token={server.token}")
        wait_for(lambda: "live" in driver.find_element("id", "live").text, 15, "the page to connect")
        assert "token" not in driver.current_url  # the URL carried it once; the cookie carries it now
        driver.execute_script("window.__sameDocument = true")  # gone if the page ever reloads

        driver.find_element("id", "file").send_keys(str(contacts))
        driver.find_element("id", "message").send_keys("Hi {name}, spring sale!")
        driver.find_element("id", "country").send_keys("AU")
        click(driver, "#preview-btn")
        summary = wait_for(
            lambda: driver.find_element("id", "preview-summary").text, 15, "the dry-run preview"
        )
        assert summary.startswith("6 message(s) would be queued · 1 rejected")
        rejects = driver.find_elements("css selector", "#rejects tbody tr")
        cells = [[td.text for td in r.find_elements("tag name", "td")] for r in rejects]
        assert (
            len(cells) == 1 and cells[0][:3] == ["8", "phone", "12"] and cells[0][3]
        )  # row, column, value, why
        assert "Hi Ana 0, spring sale!" in driver.find_element("id", "preview-bodies").text
        assert e2e.status()["jobs"] == []  # the preview wrote nothing

        click(driver, "#enqueue-btn")
        wait_for(lambda: cell(driver, 1, "pending") == "6", 15, "the queued job on the page")
        assert e2e.job(1)["name"] == "spring.csv"

        worker = e2e.run("s", "--min-delay", "1.5", "--max-delay", "2", until_done=False)
        # Live progress: the counts change on the page without a reload.
        wait_for(lambda: cell(driver, 1, "sent") not in ("", "0"), 60, "the first sent message on the page")
        assert driver.execute_script("return window.__sameDocument === true")

        click(driver, 'tr[data-job-id="1"] button[data-action="pause"]')
        wait_for(lambda: cell(driver, 1, "status").startswith("paused"), 15, "the job to show paused")
        wait_for(lambda: "is now paused" in worker.output(), 15, "the worker to see the pause")
        paused_at = len(e2e.arrived())
        with pytest.raises(AssertionError, match="timed out"):
            e2e.wait_arrived(paused_at + 1, timeout=3)
        assert paused_at < 6

        click(driver, 'tr[data-job-id="1"] button[data-action="resume"]')
        wait_for(lambda: cell(driver, 1, "status") == "completed", 90, "the job to complete on the page")
        assert cell(driver, 1, "sent") == "6"
        assert driver.execute_script("return window.__sameDocument === true")
        e2e.assert_exactly_once({p.lstrip("+"): f"Hi Ana {i}, spring sale!" for i, p in enumerate(phones)})

        # The job's messages, with their status.
        click(driver, 'tr[data-job-id="1"] td.sent')
        wait_for(
            lambda: len(driver.find_elements("css selector", '#messages tbody tr[data-status="sent"]')) == 6,
            15,
            "the job's messages",
        )
        # The worker shows up with its session.
        assert "s" in driver.find_element("id", "workers").text

        click(driver, 'tr[data-job-id="1"] a[data-action="export"]')
        exported = wait_for(
            # Chrome writes job-1.csv.crdownload and renames it when complete.
            lambda: list(downloads.glob("job-1.csv")),
            15,
            "the export",
        )
        with exported[0].open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert sorted(r["phone"].lstrip("'") for r in rows) == sorted(phones)
        assert {r["status"] for r in rows} == {"sent"}
        worker.proc.terminate()
        worker.wait(20)

        # The API reference renders from /openapi.json with the page's cookie, no CDN needed.
        driver.get(f"{server.base}/api")
        wait_for(
            lambda: driver.find_elements("css selector", '[data-endpoint="POST /api/jobs/{job_id}/pause"]'),
            15,
            "the API reference",
        )
        assert driver.find_elements("css selector", '[data-endpoint="POST /api/jobs"]')
    finally:
        server.stop()
