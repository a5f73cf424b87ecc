"""Smoke tests of the simulator's page in real headless Chromium (no wabulk sending code involved)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wabulk.web.simulator import Simulator

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# The smoke tests of the early-2026 page (a raw headless Chromium, which the 2026-09 default era refuses);
# the 2026-09 page has its own tests below, in a browser with a Chrome user agent.
FAST = {
    "boot_ms": 100,
    "lookup_ms": 300,
    "sent_ms": 50,
    "delivered_ms": 100,
    "qr_rotate_ms": 60000,
    "ui_era": "2026",
}

if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip("chromium/chromedriver not installed", allow_module_level=True)


def make_driver(profile: Path | None = None, user_agent: str | None = None) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--window-size=1280,900",
    ):
        opts.add_argument(arg)
    if profile is not None:
        opts.add_argument(f"--user-data-dir={profile}")
    if user_agent is not None:
        opts.add_argument(f"--user-agent={user_agent}")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    # One browser for the module: every test's Simulator has its own port, hence its own origin and
    # localStorage, so each test starts logged out.
    d = make_driver()
    yield d
    d.quit()


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    s = Simulator(log_path=tmp_path / "messages.jsonl", **FAST)
    s.start()
    yield s
    s.stop()


def wait_for(driver: Any, css: str, timeout: float = 10) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, css))
    )


def wait_until(fn: Callable[[], Any], driver: Any, timeout: float = 10) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda _d: fn())


def login(driver: Any, sim: Simulator, path: str = "/") -> None:
    driver.get(sim.url + path)
    canvas = wait_for(driver, 'div[data-ref] > canvas[aria-label="Scan this QR code to link a device!"]')
    ref = canvas.find_element("xpath", "..").get_attribute("data-ref")
    assert ref.endswith(",WEB") and ref.count(",") == 4
    assert sim.scan() == 1
    wait_for(driver, '#side #pane-side div[aria-label="Chat list"][role="grid"]')


def compose(driver: Any) -> Any:
    return wait_for(driver, '#main footer div[contenteditable="true"][role="textbox"][data-tab="10"]')


def test_qr_scan_then_deep_link_prefills_without_sending(driver: Any, sim: Simulator) -> None:
    login(driver, sim, "/send?phone=%2B5511999998888&text=Ol%C3%A1%0Asegunda%20linha")
    box = compose(driver)
    assert box.get_attribute("data-lexical-editor") == "true"
    assert box.text == "Olá\nsegunda linha"
    assert driver.switch_to.active_element == box
    title = wait_for(driver, "#main header span[dir='auto'][title]").get_attribute("title")
    assert title.strip("\u202a\u202c").replace(" ", "").replace("-", "") == "+5511999998888"
    wait_for(driver, 'button[aria-label="Send"] > span[data-icon="wds-ic-send-filled"]')
    assert sim.messages() == []  # a deep link never sends by itself


def test_send_button_delivers_exact_text_and_history_survives_reload(driver: Any, sim: Simulator) -> None:
    from selenium.webdriver.common.keys import Keys

    login(driver, sim, "/send?phone=15551230000")
    box = compose(driver)
    wait_for(driver, 'button[aria-label="Voice message"] > span[data-icon="ptt"]')
    driver.execute_script(
        "arguments[0].focus(); document.execCommand('insertText', false, arguments[1]);", box, "Oi 👍🏽 🇧🇷"
    )
    box.send_keys(Keys.SHIFT, Keys.ENTER)
    box.send_keys("second line")
    driver.find_element("css selector", 'button[aria-label="Send"]').click()
    expected = "Oi 👍🏽 🇧🇷\nsecond line"
    msgs = wait_until(lambda: sim.messages(), driver)
    assert [m["text"] for m in msgs] == [expected]
    assert msgs[0]["phone"] == "15551230000"
    assert box.text == ""  # the box is cleared

    bubble_text = wait_for(
        driver, '#main [data-id] div.copyable-text[data-pre-plain-text$="] Me: "] span.selectable-text'
    )
    assert bubble_text.text == expected
    wait_for(driver, '#main [data-testid="msg-meta"] span[aria-label=" Delivered "]')

    # after a reload the chat still shows the message, with its ticks, from the server's history
    driver.get(sim.url + "/send?phone=15551230000")
    bubble = wait_for(driver, "#main [data-id] span.selectable-text")
    assert bubble.text == expected
    wait_for(driver, '#main [data-testid="msg-meta"] span[aria-label=" Delivered "]')


def test_synthetic_paste_and_enter_send_one_message(driver: Any, sim: Simulator) -> None:
    from selenium.webdriver.common.keys import Keys

    sim.configure(ui_era="2025")
    login(driver, sim, "/send?phone=15551230000")
    box = compose(driver)
    assert box.get_attribute("aria-label") == "Type a message"
    text = 'שלום עולם\n"quotes" & # % +\nمرحبا'
    driver.execute_script(
        "const dt = new DataTransfer(); dt.setData('text/plain', arguments[1]); arguments[0].focus();"
        "arguments[0].dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true,"
        " cancelable: true}));",
        box,
        text,
    )
    assert box.text == text
    box.send_keys(Keys.ENTER)
    msgs = wait_until(lambda: sim.messages(), driver)
    assert [m["text"] for m in msgs] == [text]
    row = wait_for(driver, "#main div.message-out")  # the 2025 page still has message-out
    assert row.find_element("xpath", "..").get_attribute("data-id").startswith("true_15551230000@c.us_")


@pytest.mark.parametrize(
    ("era", "text"),
    [
        ("2023", "Phone number shared via url is invalid."),
        ("2026", "The number +1 555-000-0000 isn't on WhatsApp."),
    ],
)
def test_invalid_number_popup_per_era(driver: Any, sim: Simulator, era: str, text: str) -> None:
    sim.configure(ui_era=era, invalid_numbers=["15550000000"])
    login(driver, sim, "/send?phone=15550000000&text=hello")
    starting = wait_for(
        driver, 'div[role="dialog"] > div[data-animate-modal-popup="true"][aria-label="Starting chat"]'
    )
    assert "Cancel" in starting.text
    popup = wait_for(driver, f'div[role="dialog"] div[data-animate-modal-popup="true"][aria-label="{text}"]')
    assert text in popup.text
    ok = next(b for b in popup.find_elements("css selector", "button, [role='button']") if b.text == "OK")
    ok.click()
    assert driver.find_elements("css selector", "#main") == []
    assert driver.find_elements("css selector", "div[role='dialog']") == []


def test_profile_keeps_login_across_browser_restarts(tmp_path: Path, sim: Simulator) -> None:
    profile = tmp_path / "profile"
    first = make_driver(profile)
    try:
        login(first, sim)
    finally:
        first.quit()
    second = make_driver(profile)
    try:
        second.get(sim.url + "/")
        wait_for(second, "#side")
        assert second.find_elements("css selector", "div[data-ref]") == []
        assert len(sim.devices()) == 1
    finally:
        second.quit()


def test_attachment_with_caption_and_oversize_rejection(driver: Any, sim: Simulator, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 2000)
    sim.configure(max_media_bytes=1000)
    login(driver, sim, "/send?phone=15551230000&text=see%20this%20%F0%9F%93%B7")

    def pick(path: Path) -> None:
        wait_for(driver, 'button[aria-label="Attach"] > span[data-icon="plus-rounded"]').click()
        wait_for(
            driver,
            'button[role="menuitem"][aria-label="Photos & videos"] input[type="file"][accept="image/*"]',
        ).send_keys(str(path))

    pick(photo)
    popup = wait_for(driver, 'div[role="dialog"] div[data-animate-modal-popup="true"]')
    assert popup.get_attribute("aria-label") == "1 image you tried adding is larger than the 1000 B limit."
    popup.find_element("css selector", "button").click()

    sim.configure(max_media_bytes=16 * 1024 * 1024)
    pick(photo)
    caption = wait_for(driver, 'div[role="dialog"] div[contenteditable="true"][aria-label="Add a caption…"]')
    assert caption.text == "see this 📷"
    send = 'div[role="dialog"] div[role="button"][aria-label="Send"] > span[data-icon="send"]'
    wait_for(driver, send).click()
    (msg,) = wait_until(lambda: sim.messages(), driver)
    assert msg["attachment"] == {"name": "photo.png", "size": photo.stat().st_size, "type": "image/png"}
    assert msg["caption"] == msg["text"] == "see this 📷"
    assert compose(driver).text == ""


# --- era 2026-09 ------------------------------------------------------------------------------------------
# The 2026-09 page refuses a HeadlessChrome User-Agent, so these tests drive a second browser launched the
# way the real page needs it: --user-agent=<this Chromium's own UA with HeadlessChrome/ replaced by Chrome/>.
NEW = {**FAST, "ui_era": "2026-09"}


@pytest.fixture(scope="module")
def chrome_ua(driver: Any) -> str:
    ua = driver.execute_script("return navigator.userAgent")
    assert "HeadlessChrome/" in ua  # what headless Chromium announces by default
    return ua.replace("HeadlessChrome/", "Chrome/")


@pytest.fixture(scope="module")
def chrome(chrome_ua: str) -> Iterator[Any]:
    d = make_driver(user_agent=chrome_ua)
    yield d
    d.quit()


@pytest.fixture
def sim26(tmp_path: Path) -> Iterator[Simulator]:
    s = Simulator(log_path=tmp_path / "messages.jsonl", **NEW)
    s.start()
    yield s
    s.stop()


UNSUPPORTED = 'div[data-screen="unsupported-browser"]'


def refused(driver: Any) -> str:
    """Wait for the unsupported-browser panel; check the app is not there; return the panel's text."""
    panel = wait_for(driver, f"#app > {UNSUPPORTED}")
    assert driver.find_elements("css selector", "#app > *") == [panel]
    assert driver.find_elements("css selector", "canvas, div[data-ref], #side, progress") == []
    return panel.text


def test_2026_09_refuses_headless_chromium_but_not_the_same_browser_with_a_chrome_ua(
    driver: Any, chrome: Any, sim26: Simulator
) -> None:
    driver.get(sim26.url + "/send?phone=15551230000&text=hi")
    text = refused(driver)
    assert "WhatsApp works with Google Chrome 100+" in text
    assert "To use WhatsApp, update Chrome or use Mozilla Firefox, Safari, Microsoft Edge or Opera." in text
    assert sim26.pages() == []  # the refused page never talks to the server as a page
    assert "HeadlessChrome/" in sim26.refusals()[0]["user_agent"]
    assert sim26.scan() == 0

    login(chrome, sim26)  # the QR, then the app
    assert chrome.find_elements("css selector", UNSUPPORTED) == []

    # the older eras never refuse (refuse_headless defaults to the era's behaviour)
    sim26.configure(ui_era="2026")
    driver.get(sim26.url + "/")
    wait_for(driver, 'div[data-ref] > canvas[aria-label="Scan this QR code to link a device!"]')


def test_2026_09_checks_the_user_agent_both_in_http_and_in_the_page(
    driver: Any, chrome_ua: str, sim26: Simulator
) -> None:
    # a UA faked only in the HTTP header: the server serves the app, the app itself refuses
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"User-Agent": chrome_ua}})
    try:
        driver.get(sim26.url + "/")
        refused(driver)
        assert driver.find_element("css selector", "html").get_attribute("data-sim-refusal") == "page"
        assert sim26.refusals() == []
    finally:
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
    # a UA faked only in the page's JS: the server refuses the page request
    script = driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {"source": f"Object.defineProperty(navigator, 'userAgent', {{get: () => {chrome_ua!r}}});"},
    )
    try:
        driver.get(sim26.url + "/?again")
        refused(driver)
        assert driver.find_element("css selector", "html").get_attribute("data-sim-refusal") == "http"
    finally:
        driver.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
        )
    # and switched off, the headless browser gets the QR
    sim26.configure(refuse_headless=False)
    driver.get(sim26.url + "/")
    wait_for(driver, "div[data-ref] > canvas")


def send_text(driver: Any, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    box = compose(driver)
    driver.execute_script(
        "arguments[0].focus(); document.execCommand('insertText', false, arguments[1]);", box, text
    )
    box.send_keys(Keys.ENTER)


# The start-of-chat notice is a row too (the first, once the chat's history shows; whatsapp-web-dom.md
# section 5), but not a message.
NOTICE = "#main div[role='row'][data-sim='e2e']"


def rows(driver: Any) -> list[Any]:
    """The chat's message rows, in page order (the start-of-chat notice left out)."""
    return driver.find_elements("css selector", "#main div[role='row']:not([data-sim='e2e'])")


def assert_notice_first(driver: Any) -> None:
    """The start-of-chat notice is the chat's first row, with neither author label, time nor tick."""
    wait_for(driver, NOTICE)  # the history (and with it the notice) may come a moment after our bubble
    first = driver.find_element("css selector", "#main div[role='row']")
    assert first.get_attribute("data-sim") == "e2e"
    assert first.text.startswith("Messages and calls are end-to-end encrypted.")
    assert (
        first.find_elements(
            "css selector", "span[aria-label], [data-testid='msg-meta'], [data-pre-plain-text]"
        )
        == []
    )


def test_2026_09_bubbles_ids_labels_tails_text_span_and_meta(chrome: Any, sim26: Simulator) -> None:
    sim26.configure(delivered_ms=None)  # stay on the single tick
    login(chrome, sim26, "/send?phone=14155550123")
    send_text(chrome, "first 👋")
    send_text(chrome, "second\nline")
    wait_until(lambda: len(sim26.messages()) == 2, chrome)
    sim26.incoming("14155550123", "a reply")
    wait_until(lambda: len(rows(chrome)) == 3, chrome)
    send_text(chrome, "third")
    wait_until(lambda: len(sim26.messages()) == 3 and len(rows(chrome)) == 4, chrome)
    msgs = sim26.messages()
    assert [m["kind"] for m in msgs] == ["text", "text", "text"]
    assert_notice_first(chrome)

    # rows: div[role=row] > div[data-id=<bare id>] with the log's ids, in order, incoming in between
    ids = [
        r.find_element("css selector", ":scope > div[data-id]").get_attribute("data-id") for r in rows(chrome)
    ]
    assert [ids[0], ids[1], ids[3]] == [m["id"] for m in msgs]
    assert ids[2] == sim26.state.snapshot()["incoming"][0]["id"]
    assert all("_" not in i and "@" not in i for i in ids)
    assert (
        chrome.find_elements(
            "css selector", "#main .message-out, #main .message-in, #main [role='row'] .selectable-text"
        )
        == []
    )

    # author labels on every bubble; the tail only on the first of each series
    labels = [
        r.find_element("css selector", "span[aria-label$=':']").get_attribute("aria-label")
        for r in rows(chrome)
    ]
    assert labels == ["You:", "You:", "+1 415-555-0123:", "You:"]
    tails = [
        [t.get_attribute("data-icon") for t in r.find_elements("css selector", "span[data-icon^='tail-']")]
        for r in rows(chrome)
    ]
    assert tails == [["tail-out"], [], ["tail-in"], ["tail-out"]]

    # the text span holds the exact text; its container also holds msg-meta, so its text is not the message
    second = rows(chrome)[1]
    span = second.find_element("css selector", "span[data-testid~='selectable-text'][dir='auto']")
    assert span.get_attribute("data-testid") == "selectable-text copyable-text"
    assert span.text == "second\nline"
    container = second.find_element("css selector", "div.copyable-text[data-pre-plain-text]")
    assert container.get_attribute("data-pre-plain-text").endswith("] Me: ")
    assert __import__("re").fullmatch(
        r"\[\d\d:\d\d, \d{1,2}/\d{1,2}/\d{4}\] Me: ", container.get_attribute("data-pre-plain-text")
    )
    meta = container.find_element("css selector", "div[data-testid='msg-meta']")
    inner = chrome.execute_script("return arguments[0].innerText", container)
    assert inner != "second\nline" and inner.startswith("second\nline") and meta.text in inner
    assert __import__("re").fullmatch(r"\d\d:\d\d", meta.text.strip())

    # single tick: aria-label " Sent ", drawn as wds-ic-delivered; no data-icon on ticks
    tick = wait_for(chrome, "#main [data-testid='msg-meta'] span[aria-label=' Sent '] > svg > title")
    assert tick.get_attribute("textContent") == "wds-ic-delivered"
    assert rows(chrome)[2].find_elements("css selector", "[data-testid='msg-meta'] span[aria-label]") == []
    incoming = rows(chrome)[2].find_element("css selector", "div.copyable-text[data-pre-plain-text]")
    assert incoming.get_attribute("data-pre-plain-text").endswith("] +1 415-555-0123: ")

    # delivered and read are both wds-ic-read: only the aria-label tells them apart
    sim26.configure(delivered_ms=0, read_ms=None)
    title = wait_for(chrome, "#main span[aria-label=' Delivered '] > svg > title")
    assert title.get_attribute("textContent") == "wds-ic-read"

    # header: the visible number, no title attribute anywhere
    header = chrome.find_element("css selector", "#main header[data-testid='conversation-header']")
    name = header.find_element(
        "css selector",
        ":scope > div[role='button'] > span[dir='auto'][data-testid='conversation-info-header-chat-title']",
    )
    assert name.text == "+1 415-555-0123"
    assert header.find_elements("css selector", "[title]") == [] and header.get_dom_attribute("title") is None


def test_2026_09_rows_without_ids_and_failed_sends(chrome: Any, sim26: Simulator) -> None:
    sim26.configure(bubble_ids=False, fail_sends=["15550001111"])
    login(chrome, sim26, "/send?phone=15550001111")
    send_text(chrome, "doomed")
    fail = wait_for(chrome, "#main [data-testid='msg-meta'] span[data-icon='message-fail'] > svg > title")
    assert fail.get_attribute("textContent") == "message-fail"
    assert chrome.find_elements("css selector", "#main [data-testid='msg-meta'] span[aria-label]") == []
    assert chrome.find_elements("css selector", "#main [data-id]") == []
    assert_notice_first(chrome)
    assert len(rows(chrome)) == 1 and rows(chrome)[0].find_element("css selector", "span[aria-label='You:']")
    assert sim26.messages() == []  # WhatsApp never took it
    assert [m["text"] for m in sim26.failed()] == ["doomed"]
    # after a reload the failed bubble is still there, still failed
    chrome.get(sim26.url + "/send?phone=15550001111")
    wait_for(chrome, "#main span[data-icon='message-fail']")


BLOCK_BAR = "#main footer div[data-testid='block-message']"


def test_restricted_account_replaces_the_composer_until_lifted(chrome: Any, sim26: Simulator) -> None:
    login(chrome, sim26, "/send?phone=15551230000&text=kept")
    compose(chrome)
    sim26.configure(restricted=True)
    bar = wait_for(chrome, BLOCK_BAR)
    assert bar.find_element("css selector", "[data-testid~='reachout-timelock-compose-bar']")
    assert "Your account on linked devices is restricted. You can't start new chats right now." in bar.text
    assert chrome.find_elements("css selector", "#main footer [contenteditable='true']") == []
    assert chrome.find_elements("css selector", "#main footer button[aria-label='Attach']") == []

    sim26.configure(restricted=False)
    box = compose(chrome)
    assert chrome.find_elements("css selector", BLOCK_BAR) == []
    assert box.text == "kept"
    box.send_keys("\n")
    assert [m["text"] for m in wait_until(lambda: sim26.messages(), chrome)] == ["kept"]


def test_whats_new_modal_swallows_typing_and_clicks_until_continue(chrome: Any, sim26: Simulator) -> None:
    from selenium.common.exceptions import ElementClickInterceptedException, WebDriverException
    from selenium.webdriver.common.keys import Keys

    sim26.configure(whats_new=True)
    login(chrome, sim26, "/send?phone=15551230000&text=draft")
    modal = wait_for(
        chrome, "span.overlay-layer > div[role='dialog'] [aria-label=\"What's new on WhatsApp Web\"]"
    )
    assert "What's new on WhatsApp Web" in modal.text
    box = compose(chrome)  # the chat opened behind the modal
    send = wait_for(chrome, "#main footer button[aria-label='Send']")
    with pytest.raises(ElementClickInterceptedException):
        send.click()
    with pytest.raises(ElementClickInterceptedException):
        box.click()
    try:
        box.send_keys(" more", Keys.ENTER)
    except WebDriverException:
        pass  # not interactable: blocked all the same
    # what a tool does by script (focus + insertText) does not reach the composer either
    chrome.execute_script("arguments[0].focus(); document.execCommand('insertText', false, 'x');", box)
    assert box.text == "draft"
    assert sim26.messages() == []

    continue_ = next(b for b in modal.find_elements("css selector", "button") if b.text == "Continue")
    continue_.click()
    assert chrome.find_elements("css selector", "div[role='dialog']") == []
    box.send_keys(" more", Keys.ENTER)
    assert [m["text"] for m in wait_until(lambda: sim26.messages(), chrome)] == ["draft more"]
    # it comes back on the next page load while the knob is on
    chrome.get(sim26.url + "/")
    wait_for(chrome, '[aria-label="What\'s new on WhatsApp Web"]')


@pytest.mark.parametrize(
    ("kind", "screen", "title"),
    [
        ("database", "database-error", "A database error occurred"),
        ("storage_full", "storage-full", "Your browser storage is full"),
    ],
)
def test_page_error_screens_replace_the_app(
    chrome: Any, sim26: Simulator, kind: str, screen: str, title: str
) -> None:
    login(chrome, sim26)
    sim26.configure(page_error=kind)
    panel = wait_for(chrome, f"#app div[data-screen='{screen}']")
    assert title in panel.text
    assert chrome.find_elements("css selector", "#side, #main") == []
    sim26.configure(page_error=None)  # the screen stays until the page reloads
    chrome.get(sim26.url + "/")
    wait_for(chrome, "#side")
    sim26.configure(page_error=kind)  # and a load while it is set shows it at once after the startup screen
    chrome.get(sim26.url + "/")
    wait_for(chrome, f"#app div[data-screen='{screen}']")


def test_2026_09_expired_qr_reloads_when_its_container_is_clicked(chrome: Any, sim26: Simulator) -> None:
    sim26.configure(qr_rotate_ms=200, qr_max_rotations=0)
    chrome.get(sim26.url + "/")
    box = wait_for(chrome, "div[data-ref].expired", timeout=10)
    assert "Select to reload QR code" in box.text
    assert box.find_elements("css selector", "button") == []  # no separate refresh button in this era
    wait_until(lambda: [p["screen"] for p in sim26.pages()] == ["qr_expired"], chrome)
    assert sim26.scan() == 0  # an expired QR cannot be scanned
    old = box.get_attribute("data-ref")
    sim26.configure(qr_rotate_ms=60000)
    box.click()
    wait_until(
        lambda: box.get_attribute("data-ref") != old and "expired" not in box.get_attribute("class"), chrome
    )
    # Scan the code on screen (the page reports its screen to the simulator only at its next poll).
    assert sim26.scan(box.get_attribute("data-ref")) == 1
    wait_for(chrome, "#side")


def choose(driver: Any, item: str) -> Any:
    """Open the Attach menu, choose ``item``; return the file input that choice added."""
    before = driver.find_elements("css selector", "input[type='file']")
    wait_for(driver, "#main footer button[aria-label='Attach']").click()
    wait_for(driver, f"div[role='menu'] [role='menuitem'][aria-label='{item}']").click()
    added = wait_until(
        lambda: [i for i in driver.find_elements("css selector", "input[type='file']") if i not in before],
        driver,
    )
    assert len(added) == 1
    return added[0]


def test_2026_09_attach_menu_adds_file_inputs_only_when_an_item_is_chosen(
    chrome: Any, sim26: Simulator, tmp_path: Path
) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 2000)
    login(chrome, sim26, "/send?phone=15551230000&text=see%20this%20%F0%9F%93%B7")
    wait_for(chrome, "#main footer button[aria-label='Attach'] > span[data-icon='plus-rounded']").click()
    menu = wait_for(chrome, "div[role='menu']")
    items = [i.get_attribute("aria-label") for i in menu.find_elements("css selector", "[role='menuitem']")]
    assert items == [
        "Document",
        "Photos & videos",
        "Camera",
        "Audio",
        "Contact",
        "Poll",
        "Event",
        "New sticker",
    ]
    assert chrome.find_elements("css selector", "input[type='file']") == []  # none until an item is chosen
    chrome.find_element("css selector", "#main footer button[aria-label='Attach']").click()  # close it again

    media = choose(chrome, "Photos & videos")
    assert media.get_attribute("accept") == "image/*,video/*,image/webp"
    media.send_keys(str(photo))
    preview = wait_for(chrome, "div[role='dialog'][data-testid='media-preview']")
    caption = preview.find_element(
        "css selector",
        "div[contenteditable='true'][role='textbox'][data-tab='undefined'][aria-label='Add a caption']",
    )
    assert caption.text == "see this 📷"
    preview.find_element(
        "css selector",
        "div[role='button'][aria-label='Send 1 selected'] > span[data-icon='wds-ic-send-filled']",
    ).click()
    (msg,) = wait_until(lambda: sim26.messages(), chrome)
    assert (msg["kind"], msg["caption"]) == ("image", "see this 📷")
    bubble = wait_for(chrome, "#main [role='row'] [data-testid='image-msg']")
    row = bubble.find_element("xpath", "ancestor::div[@role='row']")
    assert row.find_element("css selector", "span[data-testid~='selectable-text']").text == "see this 📷"
    assert len(chrome.find_elements("css selector", "input[type='file']")) == 1  # the input stays

    # any video type is accepted in this era (the 2025 page took only mp4/3gpp/quicktime)
    clip = tmp_path / "clip.webm"
    clip.write_bytes(b"\x1aE\xdf\xa3" + b"\0" * 500)
    media.send_keys(str(clip))
    preview = wait_for(chrome, "div[role='dialog'][data-testid='media-preview']")
    preview.find_element("css selector", "div[role='button'][aria-label='Send 1 selected']").click()
    wait_until(lambda: len(sim26.messages()) == 2, chrome)
    assert (sim26.messages()[1]["kind"], sim26.messages()[1]["caption"]) == ("video", "")
    wait_for(chrome, "#main [role='row'] [data-testid='video-msg']")

    doc = choose(chrome, "Document")
    assert doc.get_attribute("accept") == "*"
    doc.send_keys(str(photo))
    wait_for(chrome, "div[role='dialog'] div[role='button'][aria-label='Send 1 selected']").click()
    wait_until(lambda: len(sim26.messages()) == 3, chrome)
    assert sim26.messages()[2]["kind"] == "document"
    wait_for(chrome, "#main [role='row'] [data-testid='document-msg']")


def test_2026_09_new_sticker_input_sends_a_sticker_without_caption(
    chrome: Any, sim26: Simulator, tmp_path: Path
) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 2000)
    login(chrome, sim26, "/send?phone=15551230000&text=my%20caption")
    sticker = choose(chrome, "New sticker")
    # the trap: its accept also starts with image/*, like the photo input's
    assert sticker.get_attribute("accept") == "image/*"
    sticker.send_keys(str(photo))
    (msg,) = wait_until(lambda: sim26.messages(), chrome)
    assert msg["kind"] == "sticker" and not msg["caption"]
    assert msg["attachment"]["name"] == "photo.png"
    wait_for(chrome, "#main [role='row'] [data-testid='sticker-msg']")
    assert chrome.find_elements("css selector", "div[role='dialog']") == []  # no preview
    assert compose(chrome).text == "my caption"  # the text was not used

    audio = choose(chrome, "Audio")
    assert audio.get_attribute("accept") == "audio/*"
    song = tmp_path / "song.mp3"
    song.write_bytes(b"ID3" + b"\0" * 500)
    audio.send_keys(str(song))
    preview = wait_for(chrome, "div[role='dialog'][data-testid='media-preview']")
    assert preview.find_elements("css selector", "[contenteditable='true']") == []  # no caption for audio
    preview.find_element("css selector", "div[role='button'][aria-label='Send 1 selected']").click()
    wait_until(lambda: len(sim26.messages()) == 2, chrome)
    assert sim26.messages()[1]["kind"] == "audio"
    wait_for(chrome, "#main [role='row'] [data-testid='audio-msg']")


def test_2026_09_service_worker_keeps_refusing_until_its_profile_data_is_deleted(
    tmp_path: Path, chrome_ua: str, sim26: Simulator
) -> None:
    sim26.configure(sw_caches_refusal=True)
    profile = tmp_path / "profile"
    headless = make_driver(profile)
    try:
        headless.get(sim26.url + "/")
        refused(headless)
        # wait until the page's service worker is active (it caches the refusal while installing)
        wait_until(
            lambda: headless.execute_async_script(
                "const done = arguments[0]; navigator.serviceWorker.getRegistration('/')"
                ".then(r => done(!!(r && r.active)), () => done(false));"
            ),
            headless,
        )
    finally:
        headless.quit()

    fixed = make_driver(profile, user_agent=chrome_ua)  # the right UA now, same profile
    try:
        fixed.get(sim26.url + "/")
        refused(fixed)
        assert (
            fixed.find_element("css selector", "html").get_attribute("data-sim-refusal") == "service-worker"
        )
        # the worker answers navigations itself: the server never saw this browser's page request
        assert all("HeadlessChrome" in r["user_agent"] for r in sim26.refusals())
    finally:
        fixed.quit()

    sw_dir = profile / "Default" / "Service Worker"
    assert sw_dir.is_dir()
    shutil.rmtree(sw_dir)
    cleared = make_driver(profile, user_agent=chrome_ua)
    try:
        cleared.get(sim26.url + "/")
        wait_for(cleared, "div[data-ref] > canvas")
    finally:
        cleared.quit()


def test_foreign_singleton_lock_fixture_really_stops_chromium(tmp_path: Path) -> None:
    from selenium.common.exceptions import WebDriverException

    from wabulk.web.simulator.profile_fixtures import SINGLETON_NAMES, plant_foreign_singleton_lock

    profile = tmp_path / "profile"
    lock = plant_foreign_singleton_lock(profile, host="otherhost", pid=12345)
    assert os.readlink(lock) == "otherhost-12345"
    assert all((profile / n).is_symlink() for n in SINGLETON_NAMES)
    with pytest.raises(WebDriverException):
        make_driver(profile).quit()  # Chromium: "in use by another Chromium process ... on another computer"
    for name in SINGLETON_NAMES:
        (profile / name).unlink()
    make_driver(profile).quit()


def test_2026_09_file_inputs_always_puts_all_four_inputs_in_the_footer(chrome: Any, sim26: Simulator) -> None:
    sim26.configure(file_inputs_always=True)
    login(chrome, sim26, "/send?phone=15551230000")
    compose(chrome)
    accepts = [
        i.get_attribute("accept")
        for i in chrome.find_elements("css selector", "#main footer input[type=file]")
    ]
    assert sorted(accepts) == sorted(["*", "image/*,video/*,image/webp", "audio/*", "image/*"])
    assert chrome.find_elements("css selector", "div[role='menu']") == []
