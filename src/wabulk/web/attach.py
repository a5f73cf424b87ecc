"""Sending a file: the attach menu item that matches the file's kind, the input THAT item created, the
caption in the preview, and the preview's send button.

2026: the menu (Document, Photos & videos, Camera, Audio, Contact, Poll, Event, New sticker) has no file
input until an item is chosen; the item then adds an ``input[type=file]`` and clicks it (a native file
chooser, which the DevTools protocol intercepts where available so nothing blocks; chromedriver's
``send_keys`` on the input works either way). A photo given to the "New sticker" input goes out as a
sticker, so the input is the one that appeared after clicking OUR item, never one found by its ``accept``
alone. Older builds keep the inputs inside the menu items (used as they are).
"""

from __future__ import annotations

import logging
import mimetypes
import time
from pathlib import Path
from typing import Any

from wabulk import errors
from wabulk.web import dom
from wabulk.web import errors as web_errors
from wabulk.web import selectors as S
from wabulk.web.states import STATE_SELECTORS

from . import chat, compose, scripts

log = logging.getLogger("wabulk.web.sender")

MEDIA, DOCUMENT = "media", "document"


def is_media(path: Path) -> bool:
    """Whether WhatsApp takes the file through "Photos & videos" (else: "Document")."""
    mime = mimetypes.guess_type(path.name)[0] or ""
    return mime.startswith(("image/", "video/"))


def kind_of(path: Path) -> str:
    """ "media" (photo or video) or "document": the menu item and the bubble the file must arrive as."""
    return MEDIA if is_media(path) else DOCUMENT


def _intercept_file_chooser(driver: Any) -> None:
    """Ask Chromium (DevTools) not to open a native file dialog when the page clicks a file input; a no-op
    where the driver has no DevTools access (a Grid), where headless shows no dialog anyway."""
    if getattr(driver, "_wabulk_chooser_intercepted", False) or not hasattr(driver, "execute_cdp_cmd"):
        return
    try:
        driver.execute_cdp_cmd("Page.setInterceptFileChooserDialog", {"enabled": True})
        driver._wabulk_chooser_intercepted = True
    except Exception as exc:  # noqa: BLE001 - older browsers: the input still takes send_keys
        if dom.is_dead_browser(exc):
            raise
        log.debug("file chooser interception unavailable: %s", exc)


def _inputs(driver: Any, op: str, **kw: Any) -> Any:
    return scripts.run(driver, "file_input", {"op": op, "inputs": scripts.cands(S.FILE_INPUT), **kw})


def file_input(browser: Any, kind: str) -> Any:
    """Open the attach menu and return the file input for ``kind`` (see the module doc)."""
    driver = browser.driver
    ours = _inputs(driver, "ours", kind=kind)
    if ours is not None:
        return ours  # the input our item created earlier on this page: the page reuses it
    item_sel = S.ATTACH_MEDIA_ITEM if kind == MEDIA else S.ATTACH_DOCUMENT_ITEM
    target = S.MEDIA_INPUT if kind == MEDIA else S.DOCUMENT_INPUT
    item = compose.first_visible(driver, item_sel)
    if item is None:
        browser.find(S.ATTACH_BUTTON, browser.timeouts.element).click()
        deadline = time.monotonic() + dom.MINI
        while item is None and time.monotonic() < deadline:
            time.sleep(0.05)
            item = compose.first_visible(driver, item_sel)
    if item is None:
        # A build whose menu items we do not know: its inputs, by their accept attribute.
        return browser.find(target, dom.MINI, visible=False)
    inner = _inputs(driver, "inside", root=item)
    if inner is not None:
        return inner  # older builds: the item holds its input
    token = f"{time.time_ns()}"
    _inputs(driver, "mark", token=token)
    _intercept_file_chooser(driver)
    item.click()
    deadline = time.monotonic() + dom.MINI
    while True:
        el = _inputs(driver, "new", token=token, kind=kind)
        if el is not None:
            return el
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    # The item reused an input it created before we looked (another program, a reload keeps none): by its
    # accept attribute, the current build's first.
    return browser.find(target, dom.MINI, visible=False)


def wait_preview(browser: Any) -> None:
    """Wait for the media preview (caption box or send button); raise AttachmentRejected for WhatsApp's
    rejection popup (too large, unsupported, empty), SelectorNotFound when neither shows."""
    deadline = time.monotonic() + browser.timeouts.element
    extra = (*STATE_SELECTORS, S.CAPTION_BOX, S.MEDIA_SEND)
    while True:
        p = browser.probe(extra)
        for d in p.get("dialogs") or ():
            err = chat.classify_dialog(str(d))
            if isinstance(err, errors.AttachmentRejected):
                chat.click_ok(browser.driver)
                raise err
        if chat.has(p, S.CAPTION_BOX) or chat.has(p, S.MEDIA_SEND):
            return
        if time.monotonic() >= deadline:
            path = browser.capture("no-preview")
            raise web_errors.SelectorNotFound(
                S.CAPTION_BOX.name, S.CAPTION_BOX.describe(), browser.timeouts.element, debug_path=path
            )
        time.sleep(0.1)


def prepare(browser: Any, path: Path, caption: str) -> Any:
    """Pick the file through the right menu item, wait for the preview and put the caption in; returns the
    preview's send button (not yet clicked)."""
    kind = kind_of(path)
    last: Exception | None = None
    for _ in range(3):  # the menu may need a second click
        try:
            el = file_input(browser, kind)
            break
        except web_errors.SelectorNotFound as exc:
            last = exc
            time.sleep(0.5)
    else:
        assert last is not None
        raise last
    el.send_keys(str(path))
    wait_preview(browser)
    if caption:
        compose.fill(browser, S.CAPTION_BOX, caption)
    return browser.find(S.MEDIA_SEND, browser.timeouts.element)
