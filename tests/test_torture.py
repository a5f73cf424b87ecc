"""The torture suite, small: every script under ``tests/torture`` at a size that fits ``make test`` (the full
sizes run with ``make torture``), plus bad-input fuzzing through ``wabulk enqueue`` and the security hygiene
checks (file modes, masking, formula neutralising, templates, no shell)."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.torture import common  # noqa: E402
from tests.torture.common import torture  # noqa: E402

CORPUS = ROOT / "tests" / "torture" / "corpus"
HAS_BROWSER = bool(shutil.which("chromedriver") or os.environ.get("WABULK_CHROMEDRIVER"))


# --- the torture scripts, small --------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_storm_fake_transport_loses_and_duplicates_nothing() -> None:
    # 300 messages: on an idle machine 100 drained before the tenth kill (the storm ends with the job).
    f = torture("kill_storm_fake", "--messages", "300", "--kills", "10", "--seed", "5")
    assert (f["kills"], f["lost"], f["duplicates"], f["stuck"], f["integrity"]) == (10, 0, 0, 0, "ok")
    assert f["delivered"] == 300


def test_kill_storm_cloud_api_sends_every_message_once() -> None:
    """Issue 19: wabulk run on a Cloud API session SIGKILLed again and again against the Graph simulator
    (webhooks keep coming): no recipient gets two accepted messages, none gets none (the full size,
    2,000 messages and 30 kills, runs in ``make torture``)."""
    f = torture("kill_storm_cloud", "--messages", "300", "--kills", "6", "--seed", "2")
    assert (f["kills"], f["duplicates"], f["lost"], f["not_sent_in_queue"], f["integrity"]) == (
        6,
        0,
        0,
        0,
        "ok",
    )
    assert f["sent_but_not_accepted"] == 0 and f["total"] >= 300


@pytest.mark.slow
def test_kill_storm_with_a_blind_page_fails_closed_and_resumes() -> None:
    """Issue 14: while the page cannot be read nothing is resent (the outcomes are reported unknown and the
    sessions pause themselves); once it can be read and a person resumes, every message ends sent once."""
    f = torture(
        "kill_storm_fake", "--messages", "120", "--kills", "9", "--seed", "4", "--blind-page",
        "--blind-seconds", "20",
    )  # fmt: skip
    assert (f["lost"], f["duplicates"], f["stuck"], f["failed"], f["integrity"]) == (0, 0, 0, 0, "ok")
    # The storm ends early when the job drains (fast fake workers): kills go on while the page is blind.
    assert f["delivered"] == 120 and f["kills"] >= 5
    assert f["extra"]["unknown_reported"] >= 1 and f["extra"]["sessions_paused"] >= 1


@pytest.mark.slow
def test_zombie_is_fenced_off_before_the_stamp_and_finishes_after_it() -> None:
    f = torture("zombie", "--rounds", "1", "--messages", "4")
    assert (f["lost"], f["duplicates"], f["extra"]["freezes"]) == (0, 0, 2)


@pytest.mark.slow
def test_importer_killed_mid_file_leaves_whole_jobs_only() -> None:
    f = torture("importer_kill", "--rows", "5000", "--kills", "2", "--seed", "3")
    assert f["lost"] == 0 and f["duplicates"] == 0 and f["integrity"] == "ok"


@pytest.mark.slow
def test_queue_stress_four_processes_no_duplicate_claims_no_locked_errors() -> None:
    f = torture("queue_stress", "--messages", "3000", "--procs", "4")
    assert (f["delivered"], f["duplicates"], f["lost"], f["extra"]["locked_errors"]) == (3000, 0, 0, 0)


@pytest.mark.slow
def test_faults_each_give_one_error_line_and_lose_nothing() -> None:
    f = torture("faults", timeout=400)
    assert f["extra"]["passed"] + f["extra"]["skipped"] == 7
    if os.geteuid() == 0 and HAS_BROWSER:
        assert f["extra"]["passed"] == 7


def test_the_oracle_counts_losses_duplicates_and_lies(tmp_path: Path) -> None:
    """The checks the scripts rely on can fail: a duplicate, a loss and a "sent" that never arrived."""
    db = tmp_path / "wabulk.db"
    common.enqueue_direct(db, 3)
    conn = sqlite3.connect(str(db))
    conn.execute("UPDATE messages SET status = 'sent'")
    conn.commit()
    conn.close()
    expected = {common.phone(i): common.body(i) for i in range(3)}
    arrived = [(common.phone(0), common.body(0)), (common.phone(0), common.body(0))]
    fig = common.check_outcome(common.Figures("t"), db, expected, arrived)
    assert (fig.duplicates, fig.lost, fig.ok) == (1, 2, False)
    assert any("marked sent but never arrived" in p for p in fig.extra["problems"])


# --- bad input through `wabulk enqueue` ---------------------------------------------------------------------


def _enqueue(path: Path, *extra: str, template: str = "Hi {name}") -> Any:
    from typer.testing import CliRunner

    from wabulk.cli import app

    return CliRunner().invoke(app, ["enqueue", str(path), "-m", template, "--country", "AU", *extra])


def _jobs(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(str(db))
    try:
        return int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])
    finally:
        conn.close()


def _assert_clean_rejection(res: Any, db: Path, jobs_before: int, name: str) -> None:
    out = res.output
    assert res.exit_code == 2, f"{name}: exit {res.exit_code}\n{out}"
    assert isinstance(res.exception, SystemExit), f"{name}: {res.exception!r}"
    assert "Traceback" not in out
    errors = [ln for ln in out.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, out
    # A pointer to the problem: the file (and a row/line/column) or the template.
    assert name in errors[0] or "template" in errors[0], errors[0]
    assert _jobs(db) == jobs_before, "a rejected file left a job behind"


REJECTED = sorted(p.name for p in CORPUS.iterdir() if p.name not in ("formula_cells.csv", "utf16_bom.csv"))


@pytest.mark.parametrize("name", REJECTED)
def test_nasty_corpus_files_exit_2_with_a_pointer(name: str, db_path: Path) -> None:
    before = _jobs(db_path)
    _assert_clean_rejection(_enqueue(CORPUS / name), db_path, before, name)


def test_formula_cells_are_queued_and_exported_neutralised(db_path: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from wabulk.cli import app

    res = _enqueue(CORPUS / "formula_cells.csv", "--json")
    assert res.exit_code == 0, res.output
    job = json.loads(res.output)["job_id"]
    out = tmp_path / "out.csv"
    res = CliRunner().invoke(app, ["export", str(job), "-o", str(out)])
    assert res.exit_code == 0, res.output
    names = [r["name"] for r in csv.DictReader(out.open(encoding="utf-8"))]
    assert len(names) == 3 and all(n.startswith("'") for n in names), names


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["huge_field", "huge_line", "100k_columns"])
def test_huge_inputs_exit_2_with_a_pointer(kind: str, tmp_path: Path, db_path: Path) -> None:
    path = tmp_path / f"{kind}.csv"
    if kind == "huge_field":
        path.write_text("name,phone\n" + "A" * 3_000_000 + ",+61491570156\n")
    elif kind == "huge_line":
        path.write_text("name,phone\n" + "x" * 9_000_000 + "\n")
    else:
        path.write_text(
            ",".join(f"c{i}" for i in range(100_000))
            + ",phone\n"
            + ",".join("x" for _ in range(100_000))
            + ",+61491570156\n"
        )
    _assert_clean_rejection(_enqueue(path), db_path, _jobs(db_path), path.name)


@pytest.mark.parametrize(
    "template",
    [
        "{0.__class__}",
        "{name.__class__.__mro__}",
        "{name!r}",
        "{name:>99}",
        "{name[0]}",
        "{__import__}",
        "{name.__globals__}",
        "{{}}{",
    ],
)
def test_template_tricks_are_refused(template: str, db_path: Path) -> None:
    before = _jobs(db_path)
    res = _enqueue(CORPUS.parent / "corpus" / "formula_cells.csv", template=template)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "<class" not in res.output
    assert _jobs(db_path) == before


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=0, max_size=3000))
def test_random_bytes_never_crash_the_importer(data: bytes, tmp_path: Path, db_path: Path) -> None:
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    before = _jobs(db_path)
    res = _enqueue(path)
    assert isinstance(res.exception, SystemExit) or res.exception is None, repr(res.exception)
    assert res.exit_code in (0, 2), res.output
    if res.exit_code == 2:
        _assert_clean_rejection(res, db_path, before, "fuzz.csv")


_CELL = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["=1+1", "@x", "+61491570156", "\x00", "\ufeff", '"', "\r\n", "{name}", "é".encode().decode()]
    ),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(st.lists(_CELL, min_size=1, max_size=4), max_size=8),
    template=st.text(max_size=40),
    encoding=st.sampled_from(["utf-8", "utf-16", "latin-1", "cp1252"]),
)
def test_random_csv_and_templates_never_crash(
    rows: list[list[str]], template: str, encoding: str, tmp_path: Path, db_path: Path
) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["name", "phone"])
    for r in rows:
        w.writerow(r)
    path = tmp_path / "fuzz.csv"
    path.write_bytes(buf.getvalue().encode(encoding, errors="replace"))
    before = _jobs(db_path)
    res = _enqueue(path, template=template or "x")
    assert isinstance(res.exception, SystemExit) or res.exception is None, repr(res.exception)
    assert res.exit_code in (0, 2), res.output
    assert "Traceback" not in res.output
    if res.exit_code == 2:
        assert _jobs(db_path) == before
        assert [ln for ln in res.output.splitlines() if ln.startswith("Error:")]


@settings(max_examples=200, deadline=None)
@given(template=st.text(alphabet=st.sampled_from(list("{}|!:.[]_0aname ")), max_size=30))
def test_templates_cannot_reach_python_objects(template: str) -> None:
    from wabulk.errors import TemplateError
    from wabulk.templates import Template

    try:
        text = Template.parse(template).render({"name": "Ana", "phone": "+61491570156"}, seed="1")
    except TemplateError:
        return
    assert "<" not in text and "class" not in text and "function" not in text


# --- security hygiene ----------------------------------------------------------------------------------


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_database_and_its_folder_are_private(db_path: Path) -> None:
    res = _enqueue(CORPUS / "formula_cells.csv")
    assert res.exit_code == 0, res.output
    assert _mode(db_path) == 0o600
    assert _mode(db_path.parent) == 0o700
    for side in db_path.parent.glob("wabulk.db-*"):
        assert _mode(side) & 0o077 == 0, side


def test_worker_logs_are_private_and_masked(tmp_path: Path) -> None:
    from wabulk.fakes import FakeTransport
    from wabulk.settings import Settings
    from wabulk.worker import build_config, run_worker

    home = tmp_path / "home"
    common.enqueue_direct(home / "wabulk.db", 3)
    settings_ = Settings.from_env().with_(db=home / "wabulk.db", home=home)
    code = run_worker(
        settings_, build_config(session="s", until_done=True, pace="off"), transport=FakeTransport()
    )
    assert code == 0
    logs = home / "logs"
    assert _mode(logs) == 0o700
    files = list(logs.iterdir())
    assert files and all(_mode(f) == 0o600 for f in files)
    text = "".join(f.read_text(encoding="utf-8") for f in files)
    assert "sent" in text
    for i in range(3):
        assert common.phone(i) not in text and common.phone(i)[1:] not in text
        assert common.body(i) not in text
    assert "•••" in text


def test_debug_captures_are_private_and_masked(tmp_path: Path) -> None:
    from wabulk.web import dom

    class Driver:
        page_source = "<div title='+61 491 570 156'>Olá Ana, your code is 4711</div>"

        def execute_script(self, *_: Any) -> None:
            return None

        def save_screenshot(self, path: str) -> bool:
            with open(path, "wb") as f:
                f.write(b"\x89PNG")
            return True

    debug = tmp_path / "home" / "debug"
    stem = dom.save_debug(Driver(), debug, "chat +61491570156")
    assert stem is not None and "491570156" not in Path(stem).name
    assert _mode(debug) == 0o700
    files = list(debug.iterdir())
    assert {f.suffix for f in files} == {".html", ".png"}
    assert all(_mode(f) == 0o600 for f in files), [(f.name, oct(_mode(f))) for f in files]
    html = next(f for f in files if f.suffix == ".html").read_text(encoding="utf-8")
    assert "491 570 156" not in html and "•••56" in html


def test_doctor_warns_about_wide_permissions(tmp_path: Path) -> None:
    from wabulk.doctor import check_files
    from wabulk.settings import Settings

    home = tmp_path / "home"
    common.enqueue_direct(home / "wabulk.db", 1)
    for d in ("sessions/s", "logs", "debug"):
        (home / d).mkdir(parents=True, exist_ok=True)
    (home / "logs" / "wabulk.log").write_text("{}\n")
    s = Settings.from_env().with_(db=home / "wabulk.db", home=home)
    os.chmod(home / "wabulk.db", 0o600)
    for d in ("sessions/s", "logs", "debug"):
        os.chmod(home / d, 0o700)
    os.chmod(home / "logs" / "wabulk.log", 0o600)
    assert all(
        c.level != "warn"
        for c in check_files(s, "s")
        if c.name in ("profile", "database", "logs", "debug captures")
    )
    os.chmod(home / "wabulk.db", 0o644)
    os.chmod(home / "sessions" / "s", 0o755)
    os.chmod(home / "logs" / "wabulk.log", 0o644)
    os.chmod(home / "debug", 0o755)
    warned = {c.name: c.detail for c in check_files(s, "s") if c.level == "warn"}
    assert {"profile", "database", "logs", "debug captures"} <= set(warned), warned
    assert "chmod" in warned["database"] and "644" in warned["database"]


def test_no_shell_is_ever_invoked() -> None:
    """No subprocess with shell=True, os.system or os.popen anywhere in wabulk (user data never meets a
    shell); the one subprocess call runs a fixed binary with an argument list."""
    src = ROOT / "src" / "wabulk"
    offenders = []
    for f in src.rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        for pattern in (
            r"shell\s*=\s*True",
            r"os\.system\(",
            r"os\.popen\(",
            r"os\.exec\w*\(",
            r"subprocess\.getoutput",
            r"subprocess\.getstatusoutput",
        ):
            offenders += [f"{f.name}: {m.group(0)}" for m in re.finditer(pattern, text)]
    assert not offenders, offenders


def test_log_formatter_masks_phone_fields_even_if_a_caller_forgets() -> None:
    from wabulk.logs import JsonFormatter

    rec = logging.LogRecord("wabulk.x", logging.INFO, __file__, 1, "m", None, None)
    rec.data = {"phone": "+61491570156", "body": "secret text", "nested": {"to": "+61491570157"}}
    line = JsonFormatter().format(rec)
    assert "491570156" not in line and "secret text" not in line and "491570157" not in line
    assert "491570156" in JsonFormatter(log_numbers=True).format(rec)


def test_profile_state_files_cut_short_by_a_kill_are_moved_aside(tmp_path: Path) -> None:
    """Found by the browser kill storm: a kill left "Local State" empty and chromedriver then refused the
    profile for good ("cannot parse internal JSON template"). Broken JSON state is moved aside; good files
    and everything else (the WhatsApp login) stay."""
    from wabulk.web.profile import repair_profile

    profile = tmp_path / "s"
    (profile / "Default").mkdir(parents=True)
    (profile / "Local State").write_text("")
    (profile / "Default" / "Preferences").write_text('{"ok": true}')
    (profile / "Default" / "Local Storage").mkdir()
    moved = repair_profile(profile)
    assert [p.name.split(".corrupt-")[0] for p in moved] == ["Local State"]
    assert not (profile / "Local State").exists()
    assert (profile / "Default" / "Preferences").read_text() == '{"ok": true}'
    (profile / "Default" / "Preferences").write_text('{"cut": ')
    assert [p.name.split(".corrupt-")[0] for p in repair_profile(profile)] == ["Preferences"]
    assert repair_profile(profile) == []
