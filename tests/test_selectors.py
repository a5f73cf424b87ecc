"""Selectors as data, and the fallback finder, with a fake driver (no browser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from wabulk.web import dom
from wabulk.web import errors as web_errors
from wabulk.web import selectors as S


class FakeElement:
    def __init__(self, name: str, displayed: bool = True) -> None:
        self.name = name
        self.displayed = displayed

    def is_displayed(self) -> bool:
        return self.displayed


class FakeDriver:
    """find_elements answers from a table; everything else records or returns canned values."""

    def __init__(
        self, table: dict[tuple[str, str], list[Any]] | None = None, page_source: str = "<html></html>"
    ) -> None:
        self.table = table or {}
        self.page_source = page_source
        self.queries: list[tuple[str, str]] = []
        self.raise_for: dict[str, BaseException] = {}

    def find_elements(self, by: str, expr: str) -> list[Any]:
        self.queries.append((by, expr))
        if expr in self.raise_for:
            raise self.raise_for[expr]
        kind = {"css selector": "css", "xpath": "xpath"}[by]  # the table is keyed like Selector.resolved
        return self.table.get((kind, expr), [])

    def execute_script(self, script: str, *args: Any) -> Any:
        return None

    def save_screenshot(self, path: str) -> bool:
        Path(path).write_bytes(b"\x89PNG fake")
        return True


def test_every_selector_has_a_unique_name_and_valid_candidates() -> None:
    names = [s.name for s in S.ALL]
    assert len(names) == len(set(names))
    for sel in S.ALL:
        assert sel.candidates, sel.name
        for kind, expr in sel.resolved:
            assert kind in ("css", "xpath") and expr.strip(), sel.name
        assert len(sel.describe()) == len(sel.candidates)
    assert S.BY_NAME["compose_box"] is S.COMPOSE_BOX


def test_unknown_candidate_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown candidate kind"):
        _ = S.Selector("x", (("jquery", "$x"),)).resolved


def test_candidates_are_ordered_newest_first() -> None:
    # 2026 Lexical composer before the 2022-23 title before the data-testid era
    compose = [e for _, e in S.COMPOSE_BOX.resolved]
    assert "data-lexical-editor" in compose[0]
    assert compose.index(next(c for c in compose if "title='Type a message'" in c)) < compose.index(
        "div[data-testid='conversation-compose-box-input']"
    )
    # progress bar moved from div[2] to div[3] on 2025-03-21
    loading = [e for _, e in S.LOADING.resolved]
    assert "div[3]/progress" in loading[0] and "div[2]/progress" in loading[1]
    attach = [e for _, e in S.ATTACH_BUTTON.resolved]
    order = [
        next(i for i, c in enumerate(attach) if key in c)
        for key in ("Attach", "plus-rounded", "'plus'", "attach-menu-plus", "clip")
    ]
    assert order == sorted(order)
    media = [e for _, e in S.MEDIA_INPUT.resolved]  # 2026-09, then 2026, then 2020-25
    assert media[0].endswith("[accept='image/*,video/*,image/webp']") and media[1].endswith(
        "[accept='image/*']"
    )


def test_texts_cover_old_and_new_wordings() -> None:
    assert dom.match_text("The number +1 555-010-0999 isn't on WhatsApp.", "invalid_number")
    assert dom.match_text("The number +1 555 isn\u2019t on WhatsApp.", "invalid_number")
    assert dom.match_text("Phone number shared via url is invalid.", "invalid_number")
    assert dom.match_text("WhatsApp is open in another window. Click \u201cUse Here\u201d", "takeover_window")
    assert dom.match_text("WhatsApp is open on another computer or browser. Click", "takeover_computer")
    assert dom.match_text("Computer not connected", "offline")
    assert dom.match_text("1 image you tried adding is larger than the 16 MB limit.", "file_rejected")
    assert dom.match_text("1 file you tried adding is not supported.", "file_rejected")
    assert dom.match_text("Starting chat", "starting_chat")
    assert dom.match_text("Your account has been temporarily banned", "blocked")
    assert dom.match_text("Hello there", "invalid_number") is None


def test_find_returns_the_first_matching_candidate_in_order() -> None:
    second = S.COMPOSE_BOX.resolved[1]
    fourth = S.COMPOSE_BOX.resolved[3]
    el2, el4 = FakeElement("second"), FakeElement("fourth")
    drv = FakeDriver({second: [el2], fourth: [el4]})
    assert dom.find(drv, S.COMPOSE_BOX, timeout=0) is el2
    assert dom.resolve(drv, S.COMPOSE_BOX) == (1, el2)


def test_find_skips_hidden_elements_unless_asked() -> None:
    first = S.MEDIA_INPUT.resolved[0]
    hidden = FakeElement("input", displayed=False)
    drv = FakeDriver({first: [hidden]})
    assert dom.resolve(drv, S.MEDIA_INPUT) is None
    assert dom.find(drv, S.MEDIA_INPUT, timeout=0, visible=False) is hidden


def test_a_candidate_the_browser_rejects_is_skipped() -> None:
    first, second = S.QR_CODE.resolved[0], S.QR_CODE.resolved[1]
    el = FakeElement("qr")
    drv = FakeDriver({second: [el]})
    drv.raise_for[first[1]] = ValueError("invalid selector: :has() not supported")
    assert dom.resolve(drv, S.QR_CODE) == (1, el)


def test_find_waits_until_the_element_appears() -> None:
    first = S.SEND_BUTTON.resolved[0]
    el = FakeElement("send")
    drv = FakeDriver()
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s
        if now[0] >= 0.35:
            drv.table[first] = [el]

    assert dom.find(drv, S.SEND_BUTTON, timeout=1.0, clock=lambda: now[0], sleep=sleep) is el
    assert now[0] < 1.0


def test_missing_element_names_selector_and_every_candidate_and_saves_masked_capture(tmp_path: Path) -> None:
    source = '<div data-id="true_14155550123@c.us_ABC"><span title="+1 415-555-0123">x</span></div>'
    drv = FakeDriver(page_source=source)
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    with pytest.raises(web_errors.SelectorNotFound) as info:
        dom.find(
            drv,
            S.SEND_BUTTON,
            timeout=dom.MINI,
            debug_dir=tmp_path / "debug",
            label="send-to-+14155550123",
            clock=lambda: now[0],
            sleep=sleep,
        )
    exc = info.value
    assert exc.name == "send_button"
    assert exc.tried == S.SEND_BUTTON.describe()
    assert exc.timeout == dom.MINI
    assert exc.transient and exc.error_class == "selector_missing"
    text = str(exc)
    assert "'send_button'" in text and "button[aria-label='Send']" in text and "wds-ic-send-filled" in text
    files = sorted(p.name for p in (tmp_path / "debug").iterdir())
    assert len(files) == 2 and files[0].endswith(".html") and files[1].endswith(".png")
    assert all("4155550123" not in f and "5550123" not in f for f in files)
    html = (tmp_path / "debug" / files[0]).read_text()
    assert "4155550123" not in html and "555-0123" not in html
    assert "•••23" in html
    assert exc.debug_path and exc.debug_path in text


def test_every_candidate_was_tried_before_giving_up() -> None:
    drv = FakeDriver()
    with pytest.raises(web_errors.SelectorNotFound):
        dom.find(drv, S.ATTACH_BUTTON, timeout=0)
    tried = [expr for _, expr in drv.queries]
    assert tried == [expr for _, expr in S.ATTACH_BUTTON.resolved]
    assert drv.queries[0][0] == "css selector"


def test_xpath_candidates_are_queried_as_xpath() -> None:
    drv = FakeDriver()
    assert dom.resolve(drv, S.DIALOG_OK) is None
    kinds = [by for by, _ in drv.queries]
    assert kinds[:2] == ["xpath", "xpath"] and kinds[2] == "css selector"


def test_timeout_tiers_are_named_and_ordered() -> None:
    assert 0 < dom.MINI < dom.SMALL < dom.LARGE < dom.EXTREME
    t = dom.Timeouts()
    assert t.boot == dom.EXTREME and t.element == dom.SMALL and t.confirm == dom.LARGE


def test_mask_numbers_hides_phone_like_runs_only() -> None:
    assert dom.mask_numbers("call +44 20 7946 0958 now") == "call •••58 now"
    assert dom.mask_numbers("true_972501234567@c.us") == "true_•••67@c.us"
    assert dom.mask_numbers("at 12:30, 3/4/2026") == "at 12:30, 3/4/2026"
    assert dom.safe_name("send +14155550123 / x") == "send-x-x"


# --- selectors as data, for real: every selector the code uses is in ALL, and only those ----------------

SRC = Path(__file__).resolve().parent.parent / "src" / "wabulk"


def _selector_uses() -> dict[str, set[str]]:
    """Selector name → the modules that reference it (``S.NAME`` on the selectors module, or a name
    imported from it), outside selectors.py and the simulator."""
    import ast

    used: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "web/selectors.py" or rel.startswith("web/simulator/"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases: set[str] = set()
        direct: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for a in node.names:
                    if a.name == "selectors":
                        aliases.add(a.asname or a.name)
                    elif (node.module or "").endswith("selectors"):
                        direct.add(a.asname or a.name)
        for node in ast.walk(tree):
            name = None
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                name = node.attr
            elif isinstance(node, ast.Name) and node.id in direct:
                name = node.id
            value = getattr(S, name, None) if name else None
            if isinstance(value, S.Selector):
                used.setdefault(value.name, set()).add(rel)
    return used


def test_every_selector_the_code_uses_is_in_all_and_every_one_in_all_is_used() -> None:
    used = _selector_uses()
    in_all = {s.name for s in S.ALL}
    assert set(used) - in_all == set(), "used but not in selectors.ALL (doctor would not check them)"
    # doctor only checks; a selector nothing else uses is dead weight in the report
    only_doctor = {n for n, mods in used.items() if mods == {"doctor.py"}}
    assert in_all - set(used) == set() and only_doctor == set()
    # and every Selector defined in the module is listed
    defined = {v.name for v in vars(S).values() if isinstance(v, S.Selector)}
    assert defined == in_all


def test_page_scripts_carry_no_selector_of_their_own() -> None:
    import re

    from wabulk.web import scripts

    names = scripts.names()
    assert {"bubbles", "probe", "chat_identity", "lib_matches"} <= set(names)
    literal = re.compile(r"""(['"])((?:(?!\1).)*)\1""")
    selectorish = re.compile(
        r"\[(data-|aria-|role|title|dir)|#main|#pane-side|#side|selectable|copyable|tail-|msg-"
    )
    query = re.compile(r"""(querySelector(All)?|closest|matches)\(\s*['"]""")
    for name in names:
        text = (SRC / "web" / "js" / f"{name}.js").read_text(encoding="utf-8")
        code = "\n".join(line.split("//")[0] for line in text.splitlines())  # comments may name them
        assert not query.search(code), f"{name}.js queries a literal selector"
        bad = [m.group(2) for m in literal.finditer(code) if selectorish.search(m.group(2))]
        assert bad == [], f"{name}.js carries selectors: {bad}"


def test_no_selector_literals_in_python_outside_selectors_py() -> None:
    import re

    pattern = re.compile(r"""['"][^'"]*(\[data-|\[aria-|span\.selectable|#main|#pane-side)""")
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "web/selectors.py" or rel.startswith("web/simulator/"):
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{rel}:{i}: {line.strip()}")
    assert offenders == []


def test_scripts_load_with_their_libraries() -> None:
    from wabulk.web import scripts

    bubbles = scripts.script("bubbles")
    assert "function matches(" in bubbles and "function textOf(" in bubbles
    assert "function textOf(" not in scripts.script("probe")
