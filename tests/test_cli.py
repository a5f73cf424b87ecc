"""The CLI contract: output, exit codes and one-line errors, through Typer's runner."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wabulk import exitcodes
from wabulk.cli import app
from wabulk.clidocs import command_paths, render

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def write_contacts(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["Name", "Phone", "City"])
        for name, phone in rows:
            w.writerow([name, phone, "Leeds"])
    return path


GOOD = [("Ann", "0491 570 156"), ("Bob", "+61 491 570 157"), ("Cy", "0061-491-570-158")]


@pytest.fixture
def contacts(tmp_path: Path) -> Path:
    return write_contacts(tmp_path / "contacts.csv", [*GOOD, ("Dud", "12"), ("Ann again", "0491570156")])


def enqueue_json(contacts: Path, *extra: str) -> dict:
    code, out, err = invoke(
        "enqueue", str(contacts), "--message", "Hi {name} from {city}", "--country", "AU", "--json", *extra
    )
    assert code == 0, err
    return json.loads(out)


def test_every_command_has_help_with_an_example() -> None:
    for path in command_paths():
        code, out, _ = invoke(*path, "--help")
        assert code == 0
        assert "Usage:" in out
        if path and path != ["optout"]:
            assert "Example:" in out, f"wabulk {' '.join(path)} has no Example in its help"


def test_docs_cli_md_matches_the_code() -> None:
    committed = (Path(__file__).parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/cli.md is stale: run `make docs`"


def test_version() -> None:
    code, out, _ = invoke("--version")
    assert code == 0 and out.startswith("wabulk ")


def test_enqueue_json_counts_and_status(contacts: Path) -> None:
    result = enqueue_json(contacts)
    assert result["enqueued"] == 3
    assert result["invalid"] == 1
    assert result["duplicates"] == 1
    assert result["opted_out"] == 0
    job_id = result["job_id"]

    code, out, _ = invoke("status", "--json")
    assert code == 0
    data = json.loads(out)
    (job,) = data["jobs"]
    assert job["id"] == job_id
    assert job["status"] == "queued"
    assert (job["total"], job["pending"], job["sent"]) == (3, 3, 0)


def test_enqueue_reports_bad_rows_on_stderr(contacts: Path, tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.csv"
    code, out, err = invoke(
        "enqueue", str(contacts), "-m", "Hi {name}", "--country", "AU", "--rejects", str(rejects)
    )
    assert code == 0
    assert "3 message(s) queued" in out
    assert "row 5" in err  # header is row 1, "Dud" is row 5
    assert "12" in rejects.read_text(encoding="utf-8")


def test_enqueue_dry_run_writes_nothing(contacts: Path, db_path: Path) -> None:
    code, out, _ = invoke(
        "enqueue", str(contacts), "-m", "Hi {name} from {city}", "--country", "AU", "--dry-run"
    )
    assert code == 0
    assert "Hi Ann from Leeds" in out
    assert "nothing was written" in out
    assert not db_path.exists()


def test_enqueue_unknown_placeholder_is_bad_input_and_writes_nothing(contacts: Path, db_path: Path) -> None:
    code, _, err = invoke("enqueue", str(contacts), "-m", "Hi {nickname}", "--country", "AU")
    assert code == exitcodes.BAD_INPUT
    assert err.startswith("Error: ")
    assert "nickname" in err and "city" in err  # names the bad placeholder and the columns that exist
    assert len(err.strip().splitlines()) == 1
    code, out, _ = invoke("status", "--json")
    assert code != 0 or json.loads(out)["jobs"] == []


def test_enqueue_missing_file_is_one_line_error(tmp_path: Path) -> None:
    code, _, err = invoke("enqueue", str(tmp_path / "nope.csv"), "-m", "Hi")
    assert code == exitcodes.BAD_INPUT
    assert err.startswith("Error: ") and "nope.csv" in err
    assert "Traceback" not in err


def test_enqueue_needs_exactly_one_message_source(contacts: Path) -> None:
    result = runner.invoke(app, ["enqueue", str(contacts)])
    assert result.exit_code == exitcodes.BAD_INPUT
    assert "--message" in result.stderr


def test_pause_resume_stop(contacts: Path) -> None:
    job_id = str(enqueue_json(contacts)["job_id"])
    assert invoke("pause", job_id)[:2] == (0, f"Job {job_id} is paused.\n")
    code, out, _ = invoke("resume", job_id)
    assert code == 0 and "paused" not in out
    code, out, _ = invoke("stop", job_id)
    assert code == 0 and "3 message(s) cancelled" in out
    code, _, err = invoke("resume", job_id)
    assert code == exitcodes.BAD_INPUT and err.startswith("Error: ")
    data = json.loads(invoke("status", job_id, "--json")[1])
    assert data["jobs"][0]["cancelled"] == 3


def test_wrong_job_id_is_a_clear_error(contacts: Path) -> None:
    enqueue_json(contacts)
    for cmd in (["pause", "99"], ["resume", "99"], ["stop", "99"], ["status", "99"], ["export", "99"]):
        code, _, err = invoke(*cmd)
        assert code == exitcodes.BAD_INPUT, cmd
        assert err.startswith("Error: ") and "99" in err, cmd


def test_status_without_database_says_so() -> None:
    code, _, err = invoke("status")
    assert code == exitcodes.ERROR
    assert err.startswith("Error: ") and "wabulk.db" in err


def test_corrupt_database_is_a_one_line_error(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    db_path.write_bytes(b"this is not sqlite at all" * 100)
    code, _, err = invoke("status")
    assert code == exitcodes.ERROR
    assert err.startswith("Error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_status_check_flags_pending_work_without_a_worker(contacts: Path) -> None:
    job_id = enqueue_json(contacts)["job_id"]
    code, out, _ = invoke("status", "--check")
    assert code == exitcodes.ATTENTION
    assert "no live worker" in out
    invoke("stop", str(job_id))
    assert invoke("status", "--check")[0] == 0


def test_retry_failed_argument_rules() -> None:
    result = runner.invoke(app, ["retry-failed"])
    assert result.exit_code == exitcodes.BAD_INPUT
    result = runner.invoke(app, ["retry-failed", "1", "--all"])
    assert result.exit_code == exitcodes.BAD_INPUT


def test_export_neutralises_formulas(tmp_path: Path) -> None:
    contacts = write_contacts(
        tmp_path / "c.csv", [('=HYPERLINK("x")', "0491 570 156"), ("Bob", "0491570157")]
    )
    job_id = str(enqueue_json(contacts)["job_id"])
    out_file = tmp_path / "report.csv"
    code, out, _ = invoke("export", job_id, "--out", str(out_file))
    assert code == 0 and "2 row(s)" in out
    rows = list(csv.DictReader(io.StringIO(out_file.read_text(encoding="utf-8"))))
    assert len(rows) == 2
    names = {r["name"] for r in rows}
    assert '\'=HYPERLINK("x")' in names
    assert all(not r["name"].startswith("=") for r in rows)
    assert {r["status"] for r in rows} == {"pending"}


def test_optout_add_list_remove_and_enqueue_skips(contacts: Path) -> None:
    code, out, _ = invoke("optout", "add", "0491 570 157", "--country", "AU", "--reason", "asked")
    assert code == 0 and "1 number(s) added" in out
    code, out, _ = invoke("optout", "list", "--json")
    assert json.loads(out)[0]["phone"] == "+61491570157"
    result = enqueue_json(contacts)
    assert result["opted_out"] == 1 and result["enqueued"] == 2
    code, out, _ = invoke("optout", "remove", "+61491570157")
    assert code == 0 and "1 number(s) removed" in out


def test_dry_run_counts_opted_out_numbers_as_the_real_run_does(contacts: Path) -> None:
    invoke("optout", "add", "0491 570 157", "--country", "AU")
    dry = enqueue_json(contacts, "--dry-run")
    real = enqueue_json(contacts)
    counts = ("enqueued", "opted_out", "duplicates", "invalid")
    assert [dry[k] for k in counts] == [real[k] for k in counts] == [2, 1, 1, 1]


def test_optout_add_rejects_invalid_number() -> None:
    result = runner.invoke(app, ["optout", "add", "12", "--country", "AU"])
    assert result.exit_code == exitcodes.BAD_INPUT
    assert "'12'" in result.stderr


def _unknown_outcome(db_path: Path, contacts: Path) -> tuple[int, int]:
    """A job whose first message was pressed and could not be read (failed, unknown_outcome)."""
    from wabulk.models import UNKNOWN_OUTCOME, ChatSnapshot
    from wabulk.queue import Queue

    job_id = enqueue_json(contacts)["job_id"]
    with Queue(db_path) as q:
        c = q.claim("w", "main", lease_seconds=60)
        assert c is not None
        q.mark_send_started(c, ChatSnapshot(readable=False).to_evidence())
        q.mark_failed(c, error="outcome unknown: the chat could not be read", error_class=UNKNOWN_OUTCOME)
        q.record_unknown("main", threshold=1)  # the session paused itself
    return job_id, c.message_id


def test_unknown_outcomes_show_in_status_check_and_resolve_decides(contacts: Path, db_path: Path) -> None:
    job_id, mid = _unknown_outcome(db_path, contacts)
    code, out, _ = invoke("status", "--json")
    data = json.loads(out)
    assert data["jobs"][0]["unknown"] == 1
    assert [s["paused"] for s in data["sessions"] if s["session"] == "main"][0]
    code, out, _ = invoke("status", "--check")
    assert code == exitcodes.ATTENTION
    assert "outcome is unknown" in out and "session 'main' is paused" in out
    code, out, _ = invoke("resolve", str(mid), "--sent")
    assert code == 0 and f"Message {mid} is sent." in out
    code, out, _ = invoke("resume", "--session", "main")
    assert code == 0 and "resumed" in out
    code, out, _ = invoke("status", "--json")
    assert json.loads(out)["jobs"][0]["unknown"] == 0
    code, out, _ = invoke("export", str(job_id))
    assert code == 0


def test_resolve_argument_rules(contacts: Path, db_path: Path) -> None:
    _, mid = _unknown_outcome(db_path, contacts)
    code, _, err = invoke("resolve", str(mid))
    assert code == exitcodes.BAD_INPUT and "exactly one" in err
    code, out, _ = invoke("resolve", str(mid), "--resend-unverified")
    assert code == 0 and "sent again" in out
    code, out, _ = invoke("resolve", str(mid), "--sent")  # pending now: a person may still settle it
    assert code == 0 and "is sent" in out
    code, _, err = invoke("resolve", str(mid), "--sent")  # sent is final
    assert code == exitcodes.BAD_INPUT and err.startswith("Error: ")
    code, _, err = invoke("resume")
    assert code == exitcodes.BAD_INPUT


# --- the first hour: help, --db, durations, the demo's hints ---------------------------------------------


def test_dash_h_is_help_everywhere() -> None:
    for path in (["-h"], ["status", "-h"], ["optout", "list", "-h"]):
        code, out, _ = invoke(*path)
        assert code == 0 and "Usage:" in out, path


def test_db_may_come_after_the_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "elsewhere.db"
    code, _, _ = invoke("--db", str(db), "optout", "add", "+61491570156")
    assert code == 0
    for args in (["optout", "list", "--json", "--db", str(db)], ["optout", "list", f"--db={db}", "--json"]):
        res = subprocess.run(
            [sys.executable, "-m", "wabulk", *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)[0]["phone"] == "+61491570156"


def test_prune_takes_the_same_durations_as_everything_else(contacts: Path) -> None:
    enqueue_json(contacts)
    for value in ("30d", "12h", "30"):
        code, out, err = invoke("prune", "--older-than", value)
        assert code == 0 and "pruned" in out, (value, err)
    code, _, err = invoke("prune", "--older-than", "soon")
    assert code == exitcodes.BAD_INPUT and "is not a duration (e.g. 90s, 10m, 24h, 7d" in err


def test_the_demos_closing_hints_name_a_command_a_fresh_shell_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from wabulk.cli import _self_command

    monkeypatch.setattr(sys, "argv", [".venv/bin/wabulk", "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # a fresh shell without the venv activated
    assert _self_command() == ".venv/bin/wabulk"


def test_export_has_the_message_text_and_a_raw_mode_for_scripts(contacts: Path) -> None:
    job = enqueue_json(contacts)["job_id"]
    code, out, _ = invoke("export", str(job))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and rows[0]["message"] == "Hi Ann from Leeds" and rows[0]["phone"] == "'+61491570156"
    code, out, _ = invoke("export", str(job), "--raw")
    assert code == 0 and next(csv.DictReader(io.StringIO(out)))["phone"] == "+61491570156"


def test_a_mistyped_db_folder_is_not_created(contacts: Path, tmp_path: Path) -> None:
    db = tmp_path / "typo-folder" / "wabulk.db"
    code, _, err = invoke("--db", str(db), "enqueue", str(contacts), "-m", "Hi", "--country", "AU")
    assert code == exitcodes.BAD_INPUT and "typo-folder does not exist" in err
    assert not db.parent.exists()


def test_a_read_only_database_can_be_read_but_not_changed(
    contacts: Path, db_path: Path, tmp_path: Path
) -> None:
    """A backup copy the user cannot write, made read-only in a way that holds under root too (tests run
    as root, which ignores permissions): the immutable attribute (chattr +i) on the file and its folder."""
    import shutil
    import sqlite3
    import subprocess

    job_id = str(enqueue_json(contacts)["job_id"])
    copy = tmp_path / "backup" / "wabulk.db"
    copy.parent.mkdir()
    with sqlite3.connect(db_path) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    targets = [str(copy), str(copy.parent)]
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", *targets], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root on a file system with attributes)")
    try:
        code, out, err = invoke("--db", str(copy), "status", "--json")
        assert code == 0, err
        assert json.loads(out)["jobs"][0]["pending"] == 3
        code, out, _ = invoke("--db", str(copy), "status")
        assert code == 0 and "pending" in out
        code, out, _ = invoke("--db", str(copy), "export", job_id)
        assert code == 0 and "+61491570156" in out
        code, _, err = invoke("--db", str(copy), "stop", job_id)
        assert code == exitcodes.ERROR
        assert err.startswith("Error: ") and "read-only" in err and len(err.strip().splitlines()) == 1
    finally:
        subprocess.run([chattr, "-i", *targets], check=True)
    assert invoke("--db", str(copy), "status", "--json")[0] == 0
    assert json.loads(invoke("--db", str(copy), "status", "--json")[1])["jobs"][0]["status"] == "queued"


@pytest.mark.parametrize("width", [80, 60])
def test_status_fits_a_narrow_terminal_keeping_id_name_and_status(
    contacts: Path, monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    names = ["Spring promotion for loyal customers", "Black Friday VIP early access", "Reminders"]
    for name in names:
        enqueue_json(contacts, "--name", name)
    invoke("stop", "2")
    invoke("pause", "3")
    monkeypatch.setenv("COLUMNS", str(width))
    code, out, _ = invoke("status")
    assert code == 0
    lines = out.splitlines()
    assert all(len(line) <= width for line in lines)
    header = next(line for line in lines if line.lstrip().startswith("id"))
    assert header.split()[:3] == ["id", "name", "status"]
    assert "…" not in out  # no column squeezed to an ellipsis
    for job_id, first_word, state in [
        (1, "Spring", "queued"),
        (2, "Black", "stopped"),
        (3, "Reminders", "paused"),
    ]:
        row = next(line for line in lines if line.split()[:1] == [str(job_id)])
        assert first_word in row and state in row
