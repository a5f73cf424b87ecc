"""Putting text into a box (the composer or a caption) exactly, and pressing send.

Text goes in with ``document.execCommand('insertText')`` per line and Shift+Enter between lines:
ChromeDriver's ``send_keys`` cannot type characters outside the BMP (emoji, flags), Enter would send each line
as its own message, and a multi-line insert loses its breaks in the 2026 composer. The box is read back and
compared with the body before anything is sent.
"""

from __future__ import annotations

from typing import Any

from wabulk import errors
from wabulk.web import dom
from wabulk.web import selectors as S

from . import scripts
from .bubbles import same_text


def read_box(driver: Any, box: Any) -> str:
    """What a box (contenteditable or <input>) holds now."""
    return str(scripts.run(driver, "read_box", box) or "")


def clear(driver: Any, box: Any) -> None:
    """Empty a contenteditable the way a user would."""
    scripts.run(driver, "clear_box", box)


def insert(driver: Any, box: Any, body: str) -> None:
    """Put ``body`` at the end of a contenteditable: insertText per line, Shift+Enter between lines."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for i, line in enumerate(lines):
        if i:
            ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        if line:
            scripts.run(driver, "insert_text", box, line)


def first_visible(driver: Any, selector: S.Selector) -> Any:
    """The first visible element of ``selector`` now (one round trip), or None."""
    return scripts.run(driver, "first_visible", scripts.cands(selector))


def box(browser: Any, selector: S.Selector) -> Any:
    """The visible element of ``selector``: one script round trip when it is there already (the usual case,
    right after the chat opened), else the waiting find (with its debug capture on a miss)."""
    el = first_visible(browser.driver, selector)
    return el if el is not None else browser.find(selector, browser.timeouts.element)


def fill(browser: Any, selector: S.Selector, body: str) -> Any:
    """Insert ``body`` into the box found by ``selector`` and check it reads back exactly (one retry).
    Returns the box; raises TransientSendError (nothing sent, the box emptied) when it never holds it."""
    driver = browser.driver
    el = box(browser, selector)
    seen = ""
    for _ in range(2):
        clear(driver, el)
        insert(driver, el, body)
        seen = read_box(driver, el)
        if same_text(seen, body):
            return el
        el = box(browser, selector)
    clear(driver, el)
    raise errors.TransientSendError(
        f"the {selector.name.replace('_', ' ')} did not hold the exact text (expected {len(body)} "
        f"characters, found {len(seen)})",
        error_class="text_mismatch",
    )


def press_enter(el: Any) -> None:
    """Enter in a box: sends what it holds."""
    from selenium.webdriver.common.keys import Keys

    el.send_keys(Keys.ENTER)


def press_again(browser: Any, el: Any, body: str) -> bool:
    """When Enter did nothing (the box still holds exactly ``body``: "typed but not sent"), press send
    once more (the button, else Enter). Returns whether it pressed."""
    try:
        still = read_box(browser.driver, el)
    except Exception:  # noqa: BLE001 - box replaced: the page moved on
        still = ""
    if not same_text(still, body):
        return False
    hit = dom.resolve(browser.driver, S.SEND_BUTTON)
    if hit is not None:
        hit[1].click()
    else:
        press_enter(el)
    return True
