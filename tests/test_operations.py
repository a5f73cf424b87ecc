"""docs/operations.md's cron/timer wrapper: every non-zero exit alerts, under cron's bare environment."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
SCRIPT = ROOT / "scripts" / "wabulk-cron"
OPERATIONS = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")


def cron(tmp_path: Path, *command: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the wrapper as cron does: an almost empty environment, PATH=/usr/bin:/bin."""
    alerts = tmp_path / "alerts.txt"
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "WABULK_ENV_FILE": str(tmp_path / "env"),
        "WABULK_ALERT_CMD": f'{{ echo "SUBJECT $WABULK_ALERT_SUBJECT"; cat; }} >> {alerts}',
    }
    p = subprocess.run(
        [str(SCRIPT), "status", *command], env={**base, **(env or {})}, capture_output=True, text=True
    )
    return p.returncode, alerts.read_text() if alerts.exists() else "", p.stdout + p.stderr


def fake(tmp_path: Path, code: int, output: str = "") -> str:
    p = tmp_path / f"fake{code}"
    p.write_text(f"#!/bin/sh\necho '{output}'\nexit {code}\n")
    p.chmod(0o755)
    return str(p)


def test_success_is_silent(tmp_path: Path) -> None:
    assert cron(tmp_path, fake(tmp_path, 0, "all well")) == (0, "", "")


@pytest.mark.parametrize(
    "code,meaning", [(4, "a person must act"), (1, "error"), (2, "bad usage"), (3, "finished, some")]
)
def test_every_non_zero_exit_alerts_with_the_output(tmp_path: Path, code: int, meaning: str) -> None:
    rc, alert, printed = cron(tmp_path, fake(tmp_path, code, "database is malformed"))
    assert rc == 0 and printed == ""  # delivered: cron has nothing more to mail
    assert "SUBJECT wabulk status on " in alert and f"exit {code} ({meaning}" in alert
    assert "database is malformed" in alert


def test_a_command_cron_cannot_find_alerts_too(tmp_path: Path) -> None:
    # The old cron line's bare `wabulk` under cron's PATH: exit 127, which `[ $? -ne 4 ] || mail` ignored.
    rc, alert, _ = cron(tmp_path, "wabulk-not-on-this-path", "status", "--check")
    assert "exit 127 (command not found)" in alert


def test_a_failed_alert_falls_back_to_crons_mail(tmp_path: Path) -> None:
    rc, alert, printed = cron(tmp_path, fake(tmp_path, 4, "job 3 waits"), env={"WABULK_ALERT_CMD": "exit 7"})
    assert rc == 4
    assert "could not be sent (exit 7)" in printed and "job 3 waits" in printed


def test_settings_come_from_the_env_file(tmp_path: Path) -> None:
    (tmp_path / "env").write_text(f"WABULK_ALERT_CMD='cat > {tmp_path}/from-env.txt'\n")
    env = {"WABULK_ALERT_CMD": ""}
    cron(tmp_path, fake(tmp_path, 1, "boom"), env=env)
    assert "boom" in (tmp_path / "from-env.txt").read_text()


def test_a_real_status_check_needing_attention_alerts(tmp_path: Path) -> None:
    from wabulk.models import NewJob, NewMessage
    from wabulk.queue import Queue

    db = tmp_path / "wabulk.db"
    q = Queue(db)
    q.enqueue(NewJob(name="spring", template="Hi"), [NewMessage(phone="+61491570156", body="Hi")])
    q.close()
    wabulk = str(Path(sys.executable).parent / "wabulk")
    rc, alert, _ = cron(tmp_path, wabulk, "status", "--check", env={"WABULK_DB": str(db)})
    assert rc == 0
    assert "exit 4 (a person must act)" in alert and "spring" in alert


def test_the_documented_lines_use_absolute_paths_and_the_attention_code() -> None:
    cron_lines = [
        line
        for line in OPERATIONS.splitlines()
        if re.match(r"^[*0-9/,-]+\s+\S+\s+\S+\s+\S+\s+\S+\s+wabulk\s", line)
    ]
    assert len(cron_lines) == 2
    for line in cron_lines:
        assert "/usr/local/lib/wabulk/wabulk-cron " in line
        assert re.search(r"(?<![/\w])wabulk (status|backup)", line.split("wabulk-cron", 1)[1]) is None
    assert (
        "ExecStart=/usr/local/lib/wabulk/wabulk-cron status /usr/local/bin/wabulk status --check"
        in OPERATIONS
    )
    assert "RestartPreventExitStatus=4" in OPERATIONS and "RestartPreventExitStatus=1" not in OPERATIONS
    assert "install -d -o wabulk -g wabulk -m 0700 /var/backups/wabulk" in OPERATIONS
    assert os.access(SCRIPT, os.X_OK)
