"""The provider layer (issue 18): sessions are accounts with a provider, ``open_sender`` finds a provider by
name and imports it lazily, and nothing outside ``wabulk/web`` loads selenium."""

from __future__ import annotations

import ast
import io
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from wabulk import errors, exitcodes, sender
from wabulk import session as sessions
from wabulk.fakes import FakeTransport
from wabulk.models import SENT, NewJob, NewMessage
from wabulk.queue import Queue
from wabulk.settings import Settings
from wabulk.worker import build_config, run_worker


def test_a_session_never_recorded_is_a_web_session(db_path: Path) -> None:
    with Queue(db_path) as q:
        assert sessions.get(q, "main") == sessions.Session("main", "web", {})


def test_a_recorded_provider_and_its_settings_are_read_back(db_path: Path) -> None:
    with Queue(db_path) as q:
        sessions.record(q, sessions.Session("shop", "cloud", {"phone_number_id": "1234567890"}))
        q.pause_session("shop", "a human paused it")  # the account's other facts live in the same row
    with Queue(db_path) as q:
        assert sessions.get(q, "shop") == sessions.Session("shop", "cloud", {"phone_number_id": "1234567890"})
        assert q.session_pause("shop") is not None
        assert sessions.all_sessions(q) == [sessions.get(q, "shop")]


def test_sessions_that_existed_before_m009_are_web_sessions(db_path: Path) -> None:
    with Queue(db_path) as q:
        q.pause_session("old", "paused before the migration")
    # Undo m009 the way a database of the previous version looks: no provider columns, no record of it.
    conn = sqlite3.connect(db_path)
    conn.executescript(
        "ALTER TABLE sessions DROP COLUMN provider; ALTER TABLE sessions DROP COLUMN provider_settings;"
        "DELETE FROM _sqlite_migrations WHERE name = 'm009_session_provider';"
    )
    conn.close()
    with Queue(db_path) as q:
        assert sessions.get(q, "old") == sessions.Session("old", "web", {})
        assert q.session_pause("old") is not None


def test_open_sender_builds_the_web_provider_without_starting_a_browser(isolated_home: Path) -> None:
    settings = Settings.from_env()
    provider = sender.open_sender("web", settings, sessions.Session("main"))
    assert provider.kind == "web" and provider.capabilities.interactive_login
    assert provider.capabilities.receipts == sender.RECEIPTS_POLLED
    assert isinstance(provider, sender.Provider)
    provider.close()  # never started: nothing to release


def test_an_unknown_provider_is_one_clear_error(isolated_home: Path) -> None:
    with pytest.raises(errors.ConfigError, match="unknown provider 'carrier-pigeon' for session 'main'"):
        sender.open_sender("carrier-pigeon", Settings.from_env(), sessions.Session("main", "carrier-pigeon"))


def test_a_missing_optional_dependency_is_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    (tmp_path / "needs_a_package.py").write_text(
        textwrap.dedent(
            """
            import some_package_that_is_not_installed  # noqa: F401

            def open_provider(settings, session):
                raise AssertionError("never reached")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sender.PROVIDERS, "needy", "needs_a_package:open_provider")
    with pytest.raises(errors.ConfigError) as info:
        sender.open_sender("needy", Settings.from_env(), sessions.Session("main", "needy"))
    message = str(info.value)
    assert "'some_package_that_is_not_installed'" in message and "\n" not in message
    assert info.value.__suppress_context__  # the CLI prints one line, no ImportError chained under it


def test_run_reaches_the_session_s_provider_through_open_sender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    """``wabulk run`` builds no provider itself: it opens the one the session records."""
    fake = FakeTransport()
    opened: list[sessions.Session] = []

    def open_fake(settings: Settings, session: sessions.Session) -> FakeTransport:
        opened.append(session)
        return fake

    module = type(sys)("fake_provider_for_test")
    module.open_provider = open_fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_provider_for_test", module)
    monkeypatch.setitem(sender.PROVIDERS, "fake", "fake_provider_for_test:open_provider")
    settings = Settings.from_env()
    with Queue(settings.db) as q:
        sessions.record(q, sessions.Session("main", "fake", {"line": "A"}))
        job = q.enqueue(
            NewJob(name="promo", template="Hi"),
            [NewMessage(phone=f"+1415555{i:04d}", body="Hi") for i in range(2)],
        ).job_id
    cfg = build_config(session="main", until_done=True, pace="off")
    code = run_worker(settings, cfg, console=Console(file=io.StringIO(), force_terminal=False))
    assert code == exitcodes.OK
    assert opened == [sessions.Session("main", "fake", {"line": "A"})]
    assert len(fake.deliveries) == 2 and fake.closed  # opened by run, so closed by run
    with Queue(settings.db) as q:
        assert q.counts(job)[SENT] == 2


def test_errors_say_their_scope_instead_of_their_class() -> None:
    assert errors.NotOnWhatsApp("x").scope == errors.SCOPE_RECIPIENT
    assert errors.AttachmentRejected("x").scope == errors.SCOPE_JOB
    for account in (errors.NotLoggedIn("x"), errors.Offline("x"), errors.ConfirmTimeout("x")):
        assert account.scope == errors.SCOPE_ACCOUNT and not account.restart_provider
    for down in (errors.ProviderCrashed("x"), errors.ProviderDown("x")):
        assert down.restart_provider and down.scope == errors.SCOPE_ACCOUNT
    assert errors.ProviderCrashed("x").transient
    assert errors.TransientSendError("x", scope=errors.SCOPE_ACCOUNT).scope == errors.SCOPE_ACCOUNT


def test_nothing_outside_web_loads_selenium() -> None:
    code = (
        "import sys, wabulk.worker, wabulk.worker.loop, wabulk.worker.runner, wabulk.worker.fleet,"
        " wabulk.sender, wabulk.session, wabulk.queue, wabulk.receipts, wabulk.serve.api, wabulk.cli,"
        " wabulk.fakes;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'selenium'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Printed by a subprocess: the provider libraries and the provider modules that talk to a service it loaded.
_PROVIDER_MODULES = (
    "wabulk.web",
    "wabulk.cloud.client",
    "wabulk.cloud.provider",
    "wabulk.cloud.runner",
    "wabulk.cloud.wire",
)
_LOADED = (
    "import sys\n"
    "libs = {m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('selenium', 'httpx')}\n"
    f"ours = {{m for m in sys.modules if m.startswith({_PROVIDER_MODULES!r})}}\n"
    "print(sorted(libs | ours))\n"
)


def test_the_core_loads_no_provider_code() -> None:
    """The worker, the provider interface, sessions and the queue reach a provider only through
    ``open_sender``: importing them loads neither selenium nor httpx nor a provider's package."""
    code = "import wabulk.worker, wabulk.sender, wabulk.session, wabulk.queue\n" + _LOADED
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_status_through_typer_loads_no_provider_code(db_path: Path) -> None:
    """``wabulk status`` (the Typer command, not the cron fast path) over a web and a Cloud API session
    starts no provider: no selenium, no httpx, no browser or Graph client module."""
    with Queue(db_path) as q:
        sessions.record(q, sessions.Session("biz", sessions.CLOUD, {"phone_number_id": "123"}))
        q.enqueue(NewJob(name="promo", template="Hi"), [NewMessage(phone="+14155550100", body="Hi")])
    code = (
        "import contextlib, io, sys\n"
        "from wabulk.cli import app\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    try: app(['--db', {str(db_path)!r}, 'status'])\n"
        "    except SystemExit as e: assert e.code == 0, e.code\n"
        "sys.stdout.flush()\n" + _LOADED
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_browser_only_errors_live_in_web_and_keep_their_core_category() -> None:
    """``wabulk.errors`` keeps the categories the worker and CLI decide by; the page's own errors live in
    ``wabulk.web.errors`` and still say scope, retry and exit code through those categories."""
    from wabulk.web import errors as web_errors

    web_only = {
        n for n, v in vars(web_errors).items() if isinstance(v, type) and v.__module__ == web_errors.__name__
    }
    assert {
        "SelectorNotFound",
        "UnsupportedBrowser",
        "PageError",
        "TakeoverFailed",
        "BrowserError",
        "BrowserCrashed",
    } <= web_only
    assert not web_only & set(vars(errors))
    missing = web_errors.SelectorNotFound("send_button", ("x",), 2.0)
    assert isinstance(missing, errors.TransientSendError) and missing.scope == errors.SCOPE_ACCOUNT
    assert web_errors.UnsupportedBrowser("x").exit_code == exitcodes.ATTENTION
    assert isinstance(web_errors.UnsupportedBrowser("x"), errors.ConfigError)
    assert web_errors.PageError("x").restart_provider
    takeover = web_errors.TakeoverFailed("x")
    assert isinstance(takeover, errors.SessionError) and not takeover.restart_provider
    # The browser's connection errors are the core "provider down / crashed" categories; their stored
    # error classes (in databases and exports) did not change with the move.
    crashed = web_errors.BrowserCrashed("x")
    assert isinstance(crashed, errors.ProviderCrashed) and crashed.error_class == "browser_crashed"
    assert crashed.restart_provider and crashed.transient and crashed.scope == errors.SCOPE_ACCOUNT
    assert isinstance(web_errors.PageError("x"), errors.ProviderDown)
    assert isinstance(web_errors.BrowserError("x"), errors.ProviderDown)
    assert (takeover.error_class, missing.error_class) == ("takeover", "selector_missing")


def _imports_web_errors(tree: ast.AST, package: str) -> bool:
    """Whether ``tree`` (a module of ``package``) imports ``wabulk.web.errors``, absolutely or relatively."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(alias.name.startswith("wabulk.web.errors") for alias in node.names):
                return True
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if module == "wabulk.web.errors" or module.startswith("wabulk.web.errors."):
                return True
            if module == "wabulk.web" and any(alias.name == "errors" for alias in node.names):
                return True
    return False


def test_nothing_outside_web_imports_the_web_errors() -> None:
    """The worker, CLI and other providers decide by ``scope`` / ``restart_provider`` and the core
    categories, never by a browser class: no module outside ``wabulk/web`` imports ``wabulk.web.errors``."""
    root = Path(sender.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent)
        if rel.parts[:2] == ("wabulk", "web"):
            continue
        parts = rel.with_suffix("").parts
        package = ".".join(parts[:-1])  # a module's package; for __init__.py, the package itself
        if _imports_web_errors(ast.parse(path.read_text(encoding="utf-8")), package):
            offenders.append(str(rel))
    assert offenders == []
    assert _imports_web_errors(ast.parse("from .web.errors import PageError"), "wabulk.worker") is False
    assert _imports_web_errors(ast.parse("from ..web.errors import PageError"), "wabulk.worker")
    assert _imports_web_errors(ast.parse("from .web import errors"), "wabulk")


def _imports_other_web_modules(tree: ast.AST) -> bool:
    """Whether ``tree`` (a test module) imports a ``wabulk.web`` module other than its errors."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        if any(n.startswith("wabulk.web.") and not n.startswith("wabulk.web.errors") for n in names):
            return True
    return False


def test_only_tests_of_the_web_provider_raise_its_errors() -> None:
    """The fake provider and the tests of the worker, queue and CLI raise the core categories (a crash is
    ``ProviderCrashed``, a dead connection ``ProviderDown``): a test module that imports
    ``wabulk.web.errors`` tests the web provider itself, so it imports the web modules too."""
    offenders = []
    for path in sorted(Path(__file__).parent.rglob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if _imports_web_errors(tree, "tests") and not _imports_other_web_modules(tree):
            offenders.append(path.name)
    assert offenders == []


def test_the_evidence_of_a_stamp_is_stored_as_the_provider_gave_it(db_path: Path) -> None:
    with Queue(db_path) as q:
        q.enqueue(NewJob(name="promo", template="Hi"), [NewMessage(phone="+14155550100", body="Hi")])
        worker = q.register_worker("main", pid=1, host="h")
        claim = q.claim(worker, "main", lease_seconds=60)
        assert claim is not None
        q.mark_send_started(claim, '{"token": "corr-42"}')  # e.g. an HTTP API's correlation token
        q.release(claim, reason="test", delay=0.0)
        again = q.claim(worker, "main", lease_seconds=60)
        assert again is not None and again.needs_verification
        assert again.send_evidence == '{"token": "corr-42"}'


def test_serve_and_status_reach_no_provider_code() -> None:
    """``serve`` never sends: it reads receipts and status through modules that load no provider."""
    code = (
        "import sys, wabulk.serve.api, wabulk.report, wabulk.receipts, wabulk.notify.service;"
        "print(sorted(m for m in sys.modules if m.startswith(('wabulk.web', 'wabulk.cloud', 'wabulk.sender',"
        " 'wabulk.worker', 'selenium'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("new_device", [True, False])
def test_login_reports_and_the_app_records_a_new_device_link(
    new_device: bool, monkeypatch: pytest.MonkeyPatch, db_path: Path
) -> None:
    from typer.testing import CliRunner

    from wabulk.cli import app
    from wabulk.web import login

    def fake_login(settings: Settings, session: str, **_: object) -> login.LoginResult:
        return login.LoginResult(already_logged_in=not new_device)

    monkeypatch.setattr(login, "login", fake_login)
    result = CliRunner().invoke(app, ["login", "--session", "shop"])
    assert result.exit_code == 0, result.output
    with Queue(db_path) as q:
        assert (q.linked_at("shop") is not None) == new_device
