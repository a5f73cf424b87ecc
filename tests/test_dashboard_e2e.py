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
from serve_helpers import Server, make_driver, seed_dashboard

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


def status_of(driver: Any, job: int) -> str:
    """The job's status as its row carries it (the page shows it in plain words)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        row = driver.find_element("css selector", f'tr[data-job-id="{job}"]')
        return str(row.get_attribute("data-status"))
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def texts(driver: Any, css: str) -> list[str]:
    """The text of every element ``css`` matches, read in one go (a poll may redraw them between reads)."""
    script = "return [...document.querySelectorAll(arguments[0])].map((e) => e.innerText.trim())"
    return list(driver.execute_script(script, css))


def screen(driver: Any, name: str) -> None:
    """Go to one of the dashboard's screens through its tab, as a user would."""
    click(driver, f'nav a[data-tab="{name}"]')
    wait_for(
        lambda: driver.find_element("css selector", f'[data-screen="{name}"]').is_displayed(),
        10,
        f"the {name} screen",
    )


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
        wait_for(lambda: "Live" in driver.find_element("id", "live").text, 15, "the page to connect")
        assert "token" not in driver.current_url  # the URL carried it once; the cookie carries it now
        driver.execute_script("window.__sameDocument = true")  # gone if the page ever reloads

        assert driver.find_element("id", "no-jobs").is_displayed()
        screen(driver, "new")
        driver.find_element("id", "file").send_keys(str(contacts))
        driver.find_element("id", "message").send_keys("Hi {name}, spring sale!")
        driver.find_element("css selector", "details.more summary").click()
        driver.find_element("id", "country").send_keys("AU")
        click(driver, "#preview-btn")
        summary = wait_for(
            lambda: driver.find_element("id", "preview-summary").text, 15, "the dry-run preview"
        )
        assert summary.startswith("6 messages will be queued")
        stats = driver.find_element("id", "preview-stats").text
        assert "6\nto send" in stats and "1\nleft out" in stats
        rejects = driver.find_elements("css selector", "#rejects tbody tr")
        cells = [[td.text for td in r.find_elements("tag name", "td")] for r in rejects]
        assert (
            len(cells) == 1 and cells[0][:3] == ["8", "phone", "12"] and cells[0][3]
        )  # row, column, value, why
        assert "Hi Ana 0, spring sale!" in driver.find_element("id", "preview-bodies").text
        assert e2e.status()["jobs"] == []  # the preview wrote nothing

        assert driver.find_element("id", "enqueue-btn").text == "Queue 6 messages"
        click(driver, "#enqueue-btn")
        # Queued: the page goes back to the jobs, where the new job is.
        wait_for(lambda: cell(driver, 1, "pending") == "6", 15, "the queued job on the page")
        assert "Job 1 queued: 6 messages." in driver.find_element("id", "queued-ok").text
        assert e2e.job(1)["name"] == "spring.csv"

        worker = e2e.run("s", "--min-delay", "1.5", "--max-delay", "2", until_done=False)
        # Live progress: the counts change on the page without a reload.
        wait_for(lambda: cell(driver, 1, "sent") not in ("", "0"), 60, "the first sent message on the page")
        assert driver.execute_script("return window.__sameDocument === true")

        click(driver, 'tr[data-job-id="1"] button[data-action="pause"]')
        wait_for(lambda: status_of(driver, 1) == "paused", 15, "the job to show paused")
        assert cell(driver, 1, "status") == "Paused"
        wait_for(lambda: "is now paused" in worker.output(), 15, "the worker to see the pause")
        paused_at = len(e2e.arrived())
        with pytest.raises(AssertionError, match="timed out"):
            e2e.wait_arrived(paused_at + 1, timeout=3)
        assert paused_at < 6

        click(driver, 'tr[data-job-id="1"] button[data-action="resume"]')
        wait_for(lambda: status_of(driver, 1) == "completed", 90, "the job to complete on the page")
        assert cell(driver, 1, "status") == "Done"
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
        bodies = texts(driver, "#messages tbody td.body")
        assert sorted(bodies) == sorted(f"Hi Ana {i}, spring sale!" for i in range(6))  # what each got

        click(driver, '#job-detail a[data-action="export"]')
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
        # The worker shows up with its session.
        screen(driver, "sessions")
        assert texts(driver, "#workers [data-worker] h3") == ["s"]
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


CSV_ONE = b"name,phone\nAnn,0491 570 156\n"


@pytest.fixture
def seeded(db_path: Path, tmp_path: Path) -> Iterator[tuple[Server, dict[str, int]]]:
    """A dashboard on a database with a few days of history (no worker runs: nothing changes under us)."""
    ids = seed_dashboard(db_path, tmp_path / "files", live_workers=False)
    server = Server(db_path)
    yield server, ids
    server.stop()


def open_dashboard(driver: Any, server: Server) -> None:
    driver.get(f"{server.base}/?token={server.token}")
    wait_for(lambda: "Live" in driver.find_element("id", "live").text, 15, "the page to connect")


def select(driver: Any, css: str, value: str) -> None:
    """Choose an option the way a user does (the page listens for 'change')."""
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("css selector", css)).select_by_value(value)


def test_column_mapping_step_shows_the_detected_columns_and_uses_the_chosen_ones(
    db_path: Path, tmp_path: Path, driver: Any
) -> None:
    # Two number columns and two name-like ones: wabulk picks "Mobile" and "Name"; this shop's
    # customers are reached on their office line and greeted by nickname.
    contacts = tmp_path / "shop.csv"
    contacts.write_text(
        "Name,Nickname,Mobile,Office phone\n"
        "Ann Lee,Annie,+61 491 570 156,+61 491 570 157\n"
        "Bob Day,Bobby,+61 491 570 158,+61 491 570 159\n"
        "Cy Moss,,+61 491 570 313,+61 491 570 110\n",
        encoding="utf-8",
    )
    picture = tmp_path / "menu.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    server = Server(db_path)
    try:
        open_dashboard(driver, server)
        screen(driver, "new")
        assert not driver.find_element("id", "mapping").is_displayed()  # nothing to map before a file
        driver.find_element("id", "file").send_keys(str(contacts))
        driver.find_element("id", "message").send_keys("Hi {name}, the new menu is attached.")
        driver.find_element("id", "attachment").send_keys(str(picture))
        click(driver, "#preview-btn")
        wait_for(lambda: driver.find_element("id", "mapping").is_displayed(), 15, "the column mapping")
        phone = driver.find_element("id", "phone-column")
        name = driver.find_element("id", "name-column")
        assert texts(driver, "#phone-column option") == [
            "Mobile (detected)",
            "Name",
            "Nickname",
            "Mobile",
            "Office phone",
        ]
        assert phone.get_attribute("value") == "" and texts(driver, "#name-column option")[0] == (
            "Name (detected)"
        )
        wait_for(lambda: "Hi Ann Lee," in driver.find_element("id", "preview-bodies").text, 15, "the preview")

        select(driver, "#name-column", "Nickname")  # previews again at once
        wait_for(
            lambda: "Hi Annie," in driver.find_element("id", "preview-bodies").text,
            15,
            "the nickname preview",
        )
        select(driver, "#phone-column", "Office phone")
        wait_for(
            lambda: "“Office phone”" in driver.find_element("id", "preview-summary").text,
            15,
            "the preview with the office numbers",
        )
        assert name.get_attribute("value") == "Nickname"  # the other choice is kept
        # Cy has no nickname: the preview says so before "Hi , …" goes out, and the fallback fixes it.
        notices = driver.find_element("id", "preview-notices").text
        assert (
            "1 message would have an empty {name} (row 4): give it a fallback, e.g. {name|there}." in notices
        )
        message = driver.find_element("id", "message")
        message.clear()
        message.send_keys("Hi {name|there}, the new menu is attached.")
        assert not driver.find_element("id", "enqueue-btn").is_enabled()  # changed: preview again
        click(driver, "#preview-btn")
        wait_for(
            lambda: (
                not driver.find_element("id", "preview-notices").text
                and driver.find_element("id", "enqueue-btn").is_enabled()
            ),
            15,
            "the preview without the empty name",
        )
        click(driver, "#enqueue-btn")
        wait_for(lambda: status_of(driver, 1) == "queued", 15, "the queued job")
    finally:
        server.stop()
    from wabulk.queue import Queue

    with Queue(db_path) as q:
        messages = list(q.iter_messages(1))
        job = q.get_job(1)
    assert [(m.phone, m.name, m.body) for m in messages] == [
        ("+61491570157", "Annie", "Hi Annie, the new menu is attached."),
        ("+61491570159", "Bobby", "Hi Bobby, the new menu is attached."),
        ("+61491570110", None, "Hi there, the new menu is attached."),
    ]
    # The attachment the browser uploaded is kept for the worker, byte for byte, under its own name.
    assert job.attachment is not None and Path(job.attachment).name == "menu.png"
    assert Path(job.attachment).read_bytes() == picture.read_bytes()


def test_a_stopped_job_shows_sent_against_cancelled_not_a_full_bar(
    seeded: tuple[Server, dict[str, int]], driver: Any
) -> None:
    server, ids = seeded
    open_dashboard(driver, server)
    job = ids["stopped"]
    # Newest first.
    assert [
        int(x)
        for x in driver.execute_script(
            "return [...document.querySelectorAll('#jobs tbody tr')].map((r) => r.dataset.jobId)"
        )
    ] == sorted(ids.values(), reverse=True)
    row = f'tr[data-job-id="{job}"]'
    assert cell(driver, job, "status") == "Stopped"
    assert texts(driver, f"{row} td.progress .caption") == ["45 of 120 sent · 3 failed · 72 cancelled"]
    assert (cell(driver, job, "cancelled"), cell(driver, job, "skipped")) == ("72", "0")
    widths = driver.execute_script(
        "const bar = document.querySelector(arguments[0] + ' .bar');"
        "const out = {bar: bar.getBoundingClientRect().width};"
        "for (const s of bar.querySelectorAll('[data-segment]'))"
        "  out[s.dataset.segment] = s.getBoundingClientRect().width;"
        "return out;",
        row,
    )
    assert set(widths) == {"bar", "sent", "failed", "cancelled"}
    assert widths["sent"] == pytest.approx(widths["bar"] * 45 / 120, abs=1.5)
    assert widths["cancelled"] == pytest.approx(widths["bar"] * 72 / 120, abs=1.5)
    assert "100" not in driver.find_element("css selector", f"{row} td.progress").text
    # A finished job's bar is all sent.
    done = f'tr[data-job-id="{ids["done"]}"]'
    assert texts(driver, f"{done} [data-segment]") == [""]
    assert texts(driver, f"{done} td.progress .caption") == ["40 of 40 sent"]

    # What users type is shown as text, never run; every field has a label; the token is not in the page.
    evil = "<img src=x onerror=window.__xss=1>"
    r = server.upload("/api/jobs", {"message": "Hi {name}", "country": "AU", "name": evil}, CSV_ONE)
    assert r.status == 200, r.text
    wait_for(lambda: cell(driver, r.json()["job_id"], "name").startswith(evil), 15, "the new job's row")
    assert driver.execute_script("return window.__xss") is None
    unlabelled = driver.execute_script(
        "return [...document.querySelectorAll('input, select, textarea')]"
        ".filter((e) => !e.labels.length).map((e) => e.id)"
    )
    assert unlabelled == []
    assert server.token not in driver.page_source


def test_messages_are_paged_with_a_total_and_show_their_text(
    seeded: tuple[Server, dict[str, int]], driver: Any
) -> None:
    server, ids = seeded
    open_dashboard(driver, server)
    job = ids["stopped"]
    click(driver, f'tr[data-job-id="{job}"] td.name')
    info = lambda: driver.find_element("id", "page-info").text  # noqa: E731
    wait_for(lambda: info() == "1–25 of 120 messages", 15, "the first page")
    first = texts(driver, "#messages tbody td.id")
    assert len(first) == 25
    assert (
        texts(driver, "#messages tbody td.body")[0].startswith("Hi ")
        and "Reply STOP" in (texts(driver, "#messages tbody td.body")[0])
    )
    assert not driver.find_element("id", "page-prev").is_enabled()
    click(driver, "#page-next")
    wait_for(lambda: info() == "26–50 of 120 messages", 15, "the second page")
    assert int(texts(driver, "#messages tbody td.id")[0]) == int(first[-1]) + 1
    for _ in range(3):
        click(driver, "#page-next")
    wait_for(lambda: info() == "101–120 of 120 messages", 15, "the last page (past the old 200-row cut)")
    assert not driver.find_element("id", "page-next").is_enabled()
    assert set(texts(driver, "#messages tbody td.status .pill")) == {"Cancelled"}

    select(driver, "#detail-filter", "failed")
    wait_for(lambda: len(texts(driver, "#messages tbody tr")) == 3, 15, "the failed messages")
    assert texts(driver, "#messages tbody td.status .reason") == ["not on WhatsApp"] * 3
    assert not driver.find_element("css selector", ".pager").is_displayed()  # one page: no pager

    # Sessions say which way they send: the browser (web) or Meta's Cloud API with its number.
    from wabulk.queue import Queue

    with Queue(os.environ["WABULK_DB"]) as q:
        q.set_session_provider(
            "meta", "cloud", {"phone_number_id": "106540352242922", "portfolio_id": "7766554433"}
        )
        # Another number of the same business portfolio: Meta's messaging limit is shared with it.
        q.set_session_provider("meta2", "cloud", {"phone_number_id": "2", "portfolio_id": "7766554433"})
    screen(driver, "sessions")
    wait_for(lambda: texts(driver, '#sessions [data-session="meta"] .badge'), 15, "the cloud session")
    assert texts(driver, '#sessions [data-session="meta"] .badge') == ["CLOUD"]
    card = texts(driver, '#sessions [data-session="meta"]')[0]
    assert "Cloud API number ID 106540352242922" in card
    assert "Business portfolio 7766554433, shared with meta2" in card
    assert texts(driver, '#sessions [data-session="shop"] .badge') == ["WEB"]
    assert texts(driver, '#sessions [data-session="shop"] .pill') == ["No worker running"]

    # Plain words elsewhere too: a notification reads "3 messages failed".
    screen(driver, "notifications")
    wait_for(lambda: texts(driver, "#notifications [data-kind] h3"), 15, "the notifications")
    assert texts(driver, '#notifications [data-kind="messages_failed"] h3') == ["Messages failed"]
    said = texts(driver, '#notifications [data-kind="messages_failed"] p')
    assert f"Job {job}: 3 messages failed" in said
    assert not any("T000" in t for t in texts(driver, "#notifications [data-kind] p"))  # no hook secret


def test_a_capped_session_and_its_waiting_job_say_when_they_send_again(
    seeded: tuple[Server, dict[str, int]], driver: Any, tmp_path: Path
) -> None:
    """A new number sent its 20 of warm-up day 1: its card says the cap is reached and when sending goes
    on, and the job pinned to it says it waits for that instead of showing an ETA."""
    from serve_helpers import contacts_csv
    from wabulk.importer import enqueue_file
    from wabulk.queue import Queue

    server, _ = seeded
    with Queue(os.environ["WABULK_DB"]) as q:
        src = contacts_csv(tmp_path / "new-number.csv", 25, start=400)
        job = enqueue_file(
            q, src, message="Hi {name}", country="US", name="new-number.csv", sessions=("newphone",)
        )
        assert job.job_id is not None
        worker = q.register_worker("newphone", pid=os.getpid(), host="shop-laptop")
        for _ in range(20):
            claim = q.claim(worker, "newphone", lease_seconds=60, job_ids=[job.job_id])
            assert claim is not None
            q.mark_send_started(claim)
            q.mark_sent(claim, tick="sent", session="newphone")
        q.unregister_worker(worker)
    open_dashboard(driver, server)
    wait_for(lambda: "daily cap reached" in cell(driver, job.job_id, "eta"), 15, "the capped job's row")
    assert cell(driver, job.job_id, "eta").startswith("daily cap reached — sends again ")
    assert "left" not in cell(driver, job.job_id, "eta")  # no ETA while it cannot send

    screen(driver, "sessions")
    card = '#sessions [data-session="newphone"]'
    wait_for(lambda: texts(driver, f"{card} .cap-reached"), 15, "the capped session's card")
    assert texts(driver, f"{card} .cap-reached")[0].startswith("Daily cap reached — sends again ")
    assert texts(driver, f"{card} .warmup") == [
        "Warm-up day 1: 20 a day, then up to 500 (a new number starts slowly)"
    ]
    assert "Sent today 20 of 20 · 0 left" in texts(driver, card)[0]
    # The seeded session (first send 3 days ago, 23 today) is further along its ramp and not capped.
    assert not texts(driver, '#sessions [data-session="shop"] .cap-reached')
    assert texts(driver, '#sessions [data-session="shop"] .warmup') == [
        "Warm-up day 4: 150 a day, then up to 500 (a new number starts slowly)"
    ]
