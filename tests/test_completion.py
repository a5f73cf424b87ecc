"""Shell completion (Typer's): `wabulk --install-completion`/`--show-completion`, and completing words."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

WABULK = str(Path(sys.executable).with_name("wabulk"))


def complete(words: str, cword: int) -> list[str]:
    env = {**os.environ, "_WABULK_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    r = subprocess.run([WABULK], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_commands_and_options_complete() -> None:
    assert complete("wabulk se", 1) == ["serve"]
    assert "--json" in complete("wabulk status --j", 2)


def test_the_completion_script_is_offered() -> None:
    r = subprocess.run([WABULK, "--show-completion", "bash"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "_WABULK_COMPLETE=complete_bash" in r.stdout
