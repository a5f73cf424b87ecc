"""Every WhatsApp Web selector and on-page text wabulk relies on, as data (no behaviour here).

Each :class:`Selector` lists its candidates **newest page version first** (2026 → 2025 → 2023 and older),
so the first match is the most likely one and the older ones are fallbacks for pages that lag behind. Sources
and dates are in ``docs``/the DOM reference (``whatsapp-web-dom.md``): stable anchors (``#main``, ``#side``,
``[data-icon]``, ``aria-label``/``role``, ``data-ref``) are preferred over hashed classes, ``data-testid``
and absolute XPaths, which WhatsApp has broken again and again.

A candidate is a CSS selector string, or a ``(kind, expression)`` tuple where kind is ``"css"`` or
``"xpath"``. ``where`` says on which screen the element exists, so ``doctor`` only checks what it can see.
"""

from __future__ import annotations

from dataclasses import dataclass

Candidate = str | tuple[str, str]

# Screens an element lives on (``Selector.where``).
WHERE_ANY = "any"
WHERE_LOADING = "loading"
WHERE_QR = "qr"
WHERE_MAIN = "main"
WHERE_CHAT = "chat"
WHERE_ATTACH_MENU = "attach_menu"
WHERE_PREVIEW = "preview"
WHERE_DIALOG = "dialog"
WHERE_TAKEOVER = "takeover"


@dataclass(frozen=True)
class Selector:
    """A named element with ordered fallback candidates (newest first)."""

    name: str
    candidates: tuple[Candidate, ...]
    where: str = WHERE_ANY
    description: str = ""

    @property
    def resolved(self) -> tuple[tuple[str, str], ...]:
        """Candidates as ``(kind, expression)`` pairs; a bare string is CSS."""
        out: list[tuple[str, str]] = []
        for cand in self.candidates:
            if isinstance(cand, str):
                out.append(("css", cand))
            else:
                kind, expr = cand
                if kind not in ("css", "xpath"):
                    raise ValueError(f"selector {self.name}: unknown candidate kind {kind!r}")
                out.append((kind, expr))
        return tuple(out)

    def describe(self) -> tuple[str, ...]:
        """Human-readable candidates, for error messages (``xpath:`` prefix on XPaths)."""
        return tuple(expr if kind == "css" else f"xpath:{expr}" for kind, expr in self.resolved)


def _x(expr: str) -> tuple[str, str]:
    return ("xpath", expr)


# XPath fragment: a button, whatever WhatsApp made it (a <button> or a div with role=button).
_BTN = "(self::button or @role='button')"

# --- page-level states ------------------------------------------------------------------------------

LOADING = Selector(
    "loading",
    (
        _x("//*[@id='app']/div/div/div[3]/progress"),  # 2025-03-21 "new theme"
        _x("//*[@id='app']/div/div/div[2]/progress"),  # 2022-08 .. 2025-03
        "progress",
        "div[role='progressbar']",
        "[aria-label^='Loading your chats']",
        "div[data-testid='startup']",
        "div[data-testid='loading']",
    ),
    WHERE_LOADING,
    "startup screen with a progress bar",
)

QR_CODE = Selector(
    "qr_code",
    (
        "[data-testid='link-device-qr-code'][data-ref]",  # 2025-26 source
        "[data-testid='link-device-qr-code'] [data-ref]",
        "div[data-ref]:has(> canvas)",
        "div[data-ref]",
        _x("//canvas[@aria-label]/parent::*[@data-ref]"),  # open-wa: canvas[aria-label] → parentElement
    ),
    WHERE_QR,
    "element holding the QR payload in data-ref",
)

QR_CANVAS = Selector(
    "qr_canvas",
    (
        "canvas[aria-label='Scan this QR code to link a device!']",  # ~2023+
        "canvas[aria-label='Scan me!']",  # 2020-22
        "div[data-ref] canvas",
        ".landing-main canvas",
    ),
    WHERE_QR,
    "the QR canvas",
)

QR_REFRESH = Selector(
    "qr_refresh",
    (
        "button:has(span[data-icon*='refresh'])",
        "[data-icon*='refresh']",
        "[data-testid='refresh-large']",
        "div[data-ref] > span > button",
    ),
    WHERE_QR,
    "reload button on an expired QR",
)

MAIN = Selector(
    "main_screen",
    (
        "#pane-side",
        "div[aria-label='Chat list']",
        "[data-testid='chat-list']",
        "#side",
        "[data-icon='new-chat-outline']",
        _x("//h1[text()='Chats']"),
        "[data-icon='chat']",  # 2023-08-23
        "[data-icon='search']",  # 2023-09 .. 2024-07
        "[data-testid='intro-md-beta-logo-light']",  # 2021-10 .. 2023-08
        "[data-testid='intro-md-beta-logo-dark']",
    ),
    WHERE_MAIN,
    "logged-in main screen (chat list)",
)

# In-page chat opening (sender's "inpage" method): the New chat button in the chat list's header opens a
# drawer whose "Search name or number" box takes a full number; Enter runs the same number lookup as the
# deep link ("Starting chat", then the chat or the invalid-number popup) without reloading the app.
NEW_CHAT_BUTTON = Selector(
    "new_chat_button",
    (
        "#side header button[aria-label='New chat']",  # 2025-26
        "button[aria-label='New chat']",
        "button:has(> span[data-icon='new-chat-outline'])",
        "span[data-icon='new-chat-outline']",  # the icon itself (DOM reference, section 1)
        "div[role='button'][title='New chat']",  # older builds: a div button with a title
        "div[title='New chat']",
    ),
    WHERE_MAIN,
    "New chat button in the chat list header",
)

NEW_CHAT_SEARCH = Selector(
    "new_chat_search",
    (
        "input[aria-label='Search name or number']",  # 2025-26: an INPUT in the New chat drawer
        "input[placeholder='Search name or number']",
        "div[contenteditable='true'][aria-label='Search name or number']",
        "div[contenteditable='true'][title='Search name or number']",
    ),
    WHERE_MAIN,
    "the New chat drawer's 'Search name or number' box (shown after New chat is clicked)",
)

# Rows the New chat drawer may list for a typed number (clicked only when Enter opened nothing, and only
# a row whose text or title carries exactly the number's digits; never inside #main or the chat list).
NEW_CHAT_RESULT = Selector(
    "new_chat_result",
    (
        "[role='listitem']",
        "[role='row']",
        "[data-testid='cell-frame-container']",
        "[role='button']",
    ),
    WHERE_MAIN,
    "a result row in the New chat drawer",
)

CHAT = Selector(
    "chat_panel",
    ("#main", "header[data-testid='conversation-header']"),
    WHERE_CHAT,
    "an open chat",
)

CHAT_TITLE = Selector(
    "chat_title",
    (
        # 2026: no title attribute anywhere in the header; the name or number is the span's text.
        "#main header [data-testid='conversation-info-header-chat-title']",
        "header[data-testid='conversation-header'] [data-testid='conversation-info-header-chat-title']",
        "#main header [role='button'] span[dir='auto']",
        "#main header span[dir='auto'][title]",
        "#main header span[title]",
        "header[data-testid='conversation-header'] span[title]",
    ),
    WHERE_CHAT,
    "the open chat's name or number (titles carry U+202A/U+202C)",
)

COMPOSE_BOX = Selector(
    "compose_box",
    (
        "#main footer div[contenteditable='true'][data-lexical-editor='true']",  # 2025-26 Lexical
        "#main footer div[contenteditable='true'][role='textbox'][aria-placeholder^='Type a message']",
        "#main footer div[contenteditable='true'][role='textbox'][aria-label^='Type a message']",
        "#main footer div[contenteditable='true'][title='Type a message']",  # 2022-23
        "#main footer div[contenteditable='true'][role='textbox']",
        "#main footer div[contenteditable='true'][data-tab='10']",  # 2023-25
        "#main footer div[contenteditable='true'][data-tab='6']",  # 2021-22
        "div[data-testid='conversation-compose-box-input']",  # 2022 data-testid era
        "#main footer div[contenteditable='true']",
    ),
    WHERE_CHAT,
    "message compose box",
)

SEND_BUTTON = Selector(
    "send_button",
    (
        "#main footer button[aria-label='Send']",  # 2025-26 (wds-ic-send-filled inside)
        "#main footer span[data-icon='wds-ic-send-filled']",
        "#main footer span[data-icon='send']",  # 2024
        "#main footer [data-testid='compose-btn-send']",  # 2022
    ),
    WHERE_CHAT,
    "send button (shown only while the compose box has text)",
)

ATTACH_BUTTON = Selector(
    "attach_button",
    (
        "#main footer button[aria-label='Attach']",  # 2025-26 (plus-rounded inside)
        "#main footer span[data-icon='plus-rounded']",
        "#main footer span[data-icon='plus']",  # 2024
        "#main footer span[data-icon='attach-menu-plus']",  # 2023-08
        "#main footer span[data-icon='clip']",  # up to 2023
        "#main footer div[title='Attach']",
    ),
    WHERE_CHAT,
    "attach (+) button",
)

MEDIA_INPUT = Selector(
    "media_input",
    (
        # 2026-09: created by "Photos & videos" (the sticker item's input is accept='image/*': attach.py
        # takes the input the chosen item created, and this list only where an era keeps them in the menu).
        "input[type='file'][accept='image/*,video/*,image/webp']",
        "input[type='file'][accept='image/*']",  # 2026
        "input[type='file'][accept='image/*,video/mp4,video/3gpp,video/quicktime']",  # 2020-25
        "input[type='file'][accept^='image/']",
    ),
    WHERE_ATTACH_MENU,
    "hidden file input for photos & videos",
)

DOCUMENT_INPUT = Selector(
    "document_input",
    (
        "input[type='file'][accept='*']",
        "input[type='file']:not([accept^='image'])",
    ),
    WHERE_ATTACH_MENU,
    "hidden file input for documents",
)

CAPTION_BOX = Selector(
    "caption_box",
    (
        "[role='dialog'] div[contenteditable='true'][aria-label^='Add a caption']",
        "div[contenteditable='true'][aria-label^='Add a caption']",
        "[data-testid='media-caption-input-container'] div[contenteditable='true']",
        _x("//div[@contenteditable='true'][not(ancestor::footer)][not(ancestor::*[@id='side'])]"),
    ),
    WHERE_PREVIEW,
    "caption box of the media preview",
)

MEDIA_SEND = Selector(
    "media_send_button",
    (
        # 2026: "Send 1 selected" (N files)
        "[role='dialog'] div[role='button'][aria-label^='Send '][aria-label$=' selected']",
        "[role='dialog'] button[aria-label^='Send '][aria-label$=' selected']",
        "[role='dialog'] div[role='button'][aria-label='Send']",
        "[role='dialog'] button[aria-label='Send']",
        "[role='dialog'] span[data-icon='wds-ic-send-filled']",
        "[role='dialog'] span[data-icon='send']",
        "span[data-icon='send-light']",  # older preview
    ),
    WHERE_PREVIEW,
    "send button of the media preview",
)

DIALOG = Selector(
    "dialog",
    ("div[role='dialog']", "[data-animate-modal-popup='true']"),
    WHERE_DIALOG,
    "a modal popup",
)

DIALOG_OK = Selector(
    "dialog_ok",
    (
        _x(f"//*[@role='dialog']//*[{_BTN} and normalize-space(.)='OK']"),
        _x(f"//*[@data-animate-modal-popup='true']//*[{_BTN} and normalize-space(.)='OK']"),
        "[data-testid='popup-controls-ok']",  # 2022
    ),
    WHERE_DIALOG,
    "the OK button of a popup",
)

USE_HERE = Selector(
    "use_here_button",
    (
        _x(f"//*[{_BTN} and normalize-space(.)='Use here']"),
        _x(f"//*[{_BTN} and (normalize-space(.)='Use Here' or normalize-space(.)='\u201cUse Here\u201d')]"),
        "[data-testid='popup-controls-ok']",  # older builds
    ),
    WHERE_TAKEOVER,
    "'Use here' on the another-window / another-computer screen",
)

MESSAGE_TEXT = Selector(
    "message_text",
    (
        # 2026: the class is gone in some builds; the testid can carry several tokens. Never the
        # [data-pre-plain-text] container itself: it also holds the time and the tick's icon title.
        "[data-pre-plain-text] span[data-testid~='selectable-text']",
        "span[data-testid~='selectable-text']",
        "[data-pre-plain-text] span.selectable-text",
        "span.selectable-text",
    ),
    WHERE_CHAT,
    "text span inside a bubble (searched inside the bubble)",
)

MESSAGE_PRE_PLAIN = Selector(
    "message_pre_plain_text",
    ("[data-pre-plain-text]",),
    WHERE_CHAT,
    "bubble node whose data-pre-plain-text holds '[HH:MM, D/M/YYYY] Name: '",
)

STATUS_ICON = Selector(
    "status_icon",
    (
        "[data-testid='msg-meta'] [aria-label]",  # 2026: svg <title>wds-ic-*</title> + aria-label
        "span[data-icon^='msg-']",
        "span[data-icon^='status-']",
    ),
    WHERE_CHAT,
    "tick / clock icon of a bubble (searched inside the bubble)",
)

OFFLINE_ICON = Selector(
    "offline_icon",
    ("span[data-icon='alert-computer']", "span[data-icon='alert-phone']"),
    WHERE_ANY,
    "offline butterbar icon (older)",
)

# --- reading messages (searched inside one message row unless said otherwise) -------------------------

MESSAGE_ROW = Selector(
    "message_row",
    ("#main div[role='row']", "#main [data-id]"),
    WHERE_CHAT,
    "a message row in the open chat (a row and its [data-id] child are one message)",
)
# The attribute that holds a message's id: "3EB0…" (2026, bare) or "true_<jid>_<id>" (older).
MESSAGE_ID_ATTRIBUTE = "data-id"
# ... and the one that holds "[HH:MM, date] Name: " on MESSAGE_PRE_PLAIN.
PRE_PLAIN_ATTRIBUTE = "data-pre-plain-text"
# The attribute of QR_CODE that holds the QR payload ("<ref>,<key>,<key>,<secret>,WEB").
QR_PAYLOAD_ATTRIBUTE = "data-ref"

AUTHOR_LABEL = Selector(
    "author_label",
    ("span[aria-label$=':']",),
    WHERE_CHAT,
    "the screen-reader author label of a bubble: 'You:' on ours (TEXTS['own_author']), a name on theirs",
)

OUTGOING_MARK = Selector(
    "outgoing_mark",
    (
        "[data-icon='tail-out']",  # 2026: only on the first bubble of a series
        "[data-id^='true_']",  # older ids: true_<jid>_<ID> is outgoing
        ".message-out",  # 2018-2025 (no such class in 2026)
    ),
    WHERE_CHAT,
    "a marker of our own message when it has no author label",
)

INCOMING_MARK = Selector(
    "incoming_mark",
    ("[data-icon='tail-in']", "[data-id^='false_']", ".message-in"),
    WHERE_CHAT,
    "a marker of a received message",
)

READ_MORE = Selector(
    "read_more",
    ("[role='button']", "button"),
    WHERE_CHAT,
    "buttons inside a bubble; the one whose text is TEXTS['read_more'] means the text is cut",
)

# Media markers. The simulator's (and a 2025 build's) ``*-msg`` testids first, then what public code reading
# WhatsApp Web in 2023-26 finds them by (whatsapp-web-dom.md section 6). A bubble with an image, video or
# canvas that none of these knows is read as kind unknown, never as text (``js/bubbles.js``).
IMAGE_BLOCK = Selector(
    "image_block",
    ("[data-testid='image-msg']", "[data-testid='image-thumb']", "img[src^='blob:']"),
    WHERE_CHAT,
    "a photo in a bubble",
)
VIDEO_BLOCK = Selector(
    "video_block",
    ("[data-testid='video-msg']", "[data-testid='video-thumb']", "[data-testid='video-content']", "video"),
    WHERE_CHAT,
    "a video in a bubble",
)
DOCUMENT_BLOCK = Selector(
    "document_block",
    ("[data-testid='document-msg']", "[data-testid='document-thumb']", "[data-icon^='document-refreshed']"),
    WHERE_CHAT,
    "a document in a bubble",
)
STICKER_BLOCK = Selector("sticker_block", ("[data-testid='sticker-msg']",), WHERE_CHAT, "a sticker")
AUDIO_BLOCK = Selector(
    "audio_block",
    ("[data-testid='audio-msg']", "[data-icon='audio-play']", "audio"),
    WHERE_CHAT,
    "an audio file",
)
MEDIA_BLOCK = Selector(
    "media_block",
    ("[data-testid='media-msg']",),
    WHERE_CHAT,
    "a photo or a video in a bubble (older builds do not say which)",
)
MEDIA_ELEMENT = Selector(
    "media_element",
    ("img", "video", "canvas"),
    WHERE_CHAT,
    "what can show a photo or a video in a bubble; one no block above knows makes the bubble's kind unknown",
)
CHAT_CHROME = Selector(
    "chat_chrome",
    ("header", "footer"),
    WHERE_CHAT,
    "the chat's header and composer (searched inside the chat panel): never the start-of-chat notice",
)

# --- attach menu (2026: the file input appears only after an item is chosen) ------------------------

ATTACH_MEDIA_ITEM = Selector(
    "attach_media_item",
    (
        "[role='menu'] [role='menuitem'][aria-label='Photos & videos']",
        "[role='menuitem'][aria-label='Photos & videos']",
        "li[role='button'][aria-label='Photos & videos']",
        _x(f"//*[(@role='menuitem' or {_BTN}) and normalize-space(.)='Photos & videos']"),
    ),
    WHERE_ATTACH_MENU,
    "the attach menu's 'Photos & videos' item (never 'New sticker')",
)

ATTACH_DOCUMENT_ITEM = Selector(
    "attach_document_item",
    (
        "[role='menu'] [role='menuitem'][aria-label='Document']",
        "[role='menuitem'][aria-label='Document']",
        "li[role='button'][aria-label='Document']",
        _x(f"//*[(@role='menuitem' or {_BTN}) and normalize-space(.)='Document']"),
    ),
    WHERE_ATTACH_MENU,
    "the attach menu's 'Document' item",
)

FILE_INPUT = Selector(
    "file_input",
    ("input[type='file']",),
    WHERE_ATTACH_MENU,
    "any file input (the one a chosen attach item created, or the one inside it in older builds)",
)

NEW_CHAT_RESULT_TITLE = Selector(
    "new_chat_result_title",
    ("[title]",),
    WHERE_MAIN,
    "the element of a New chat result row that carries the number in its title (searched inside the row)",
)

# --- page regions --------------------------------------------------------------------------------------

CHAT_LIST = Selector(
    "chat_list",
    ("#pane-side", "div[aria-label='Chat list']", "[data-testid='chat-list']"),
    WHERE_MAIN,
    "the chat list (never clicked by the New chat result picker)",
)

PRIVATE_CONTENT = Selector(
    "private_content",
    ("#main", "#pane-side", ".copyable-text"),
    WHERE_ANY,
    "message content the page probe leaves out of the page text (a message saying 'Use here')",
)

PRIVATE_TITLES = Selector(
    "private_titles",
    (
        "#main header span[title]",
        "#main header [data-testid='conversation-info-header-chat-title']",
        "#pane-side span[title]",
        "[data-testid='cell-frame-container'] span[title]",
    ),
    WHERE_ANY,
    "chat names blurred in debug screenshots",
)

# 2026: a restricted account's chats have no composer; the footer shows a block bar instead ("Your account
# on linked devices is restricted. You can't start new chats right now."). Nothing can be sent until it lifts.
RESTRICTED_BAR = Selector(
    "restricted_bar",
    (
        "#main [data-testid~='block-message']",
        "#main [data-testid~='reachout-timelock-compose-bar']",
        "[data-testid~='block-message']",
        "[data-testid~='reachout-timelock-compose-bar']",
        _x("//*[@id='main']//*[contains(text(), 'account on linked devices is restricted')]"),
    ),
    WHERE_CHAT,
    "the block bar that replaces a restricted account's composer (shown only while restricted)",
)

# 2026: "What's new on WhatsApp Web" modal after an update; it covers the page and swallows clicks and keys.
WHATS_NEW_CONTINUE = Selector(
    "whats_new_continue",
    (
        _x(f"//*[@role='dialog']//*[{_BTN} and normalize-space(.)='Continue']"),
        _x(f"//*[@data-animate-modal-popup='true']//*[{_BTN} and normalize-space(.)='Continue']"),
    ),
    WHERE_DIALOG,
    "the Continue button of the What's new modal",
)


# Every selector, for ``doctor`` and the state probe.
ALL: tuple[Selector, ...] = (
    LOADING,
    QR_CODE,
    QR_CANVAS,
    QR_REFRESH,
    MAIN,
    NEW_CHAT_BUTTON,
    NEW_CHAT_SEARCH,
    NEW_CHAT_RESULT,
    CHAT,
    CHAT_TITLE,
    COMPOSE_BOX,
    SEND_BUTTON,
    ATTACH_BUTTON,
    MEDIA_INPUT,
    DOCUMENT_INPUT,
    CAPTION_BOX,
    MEDIA_SEND,
    DIALOG,
    DIALOG_OK,
    USE_HERE,
    MESSAGE_TEXT,
    MESSAGE_PRE_PLAIN,
    STATUS_ICON,
    OFFLINE_ICON,
    MESSAGE_ROW,
    AUTHOR_LABEL,
    OUTGOING_MARK,
    INCOMING_MARK,
    READ_MORE,
    IMAGE_BLOCK,
    VIDEO_BLOCK,
    DOCUMENT_BLOCK,
    STICKER_BLOCK,
    AUDIO_BLOCK,
    MEDIA_BLOCK,
    MEDIA_ELEMENT,
    CHAT_CHROME,
    ATTACH_MEDIA_ITEM,
    ATTACH_DOCUMENT_ITEM,
    FILE_INPUT,
    NEW_CHAT_RESULT_TITLE,
    CHAT_LIST,
    PRIVATE_CONTENT,
    PRIVATE_TITLES,
    RESTRICTED_BAR,
    WHATS_NEW_CONTINUE,
)

BY_NAME: dict[str, Selector] = {s.name: s for s in ALL}

# --- texts (English; old and new wording). Matched case-insensitively as substrings. -------------------

TEXTS: dict[str, tuple[str, ...]] = {
    # The deep link's lookup popup; it stays at least 750 ms once shown.
    "starting_chat": ("Starting chat",),
    # Invalid number popup: newest "The number +1 555-… isn't on WhatsApp." (2025-26), legacy 2019-2025.
    "invalid_number": (
        "isn't on WhatsApp",
        "isn\u2019t on WhatsApp",
        "is not on WhatsApp",
        "Phone number shared via url is invalid",
    ),
    # Takeover screens.
    "takeover_window": ("WhatsApp is open in another window",),
    "takeover_computer": ("WhatsApp is open on another computer or browser",),
    "use_here": ("Use here", "Use Here"),
    "connecting_takeover": ("Connecting\u2026", "Connecting..."),
    # Offline butterbar (current) and pre-multi-device texts.
    "offline": (
        "Computer not connected",
        "Make sure your computer has an active internet connection",
        "Phone not connected",
        "Trying to reach phone",
    ),
    # Logged out (LOGOUT screen before the reload to /?post_logout=1).
    "logged_out": ("You've been logged out", "You\u2019ve been logged out", "Logging out"),
    # QR screen wording, 2024+ then 2021-23.
    "qr_screen": (
        "Steps to log in",
        "Log in with phone number",
        "Use WhatsApp on your computer",
        "To use WhatsApp on your computer",
    ),
    # Temporary ban, proxy block, terms-of-service block, unavailable service.
    "blocked": (
        "temporarily banned",
        "Your account is banned",
        "This account is not allowed to use WhatsApp",
        "account has been banned",
        "is no longer able to use WhatsApp",
        "unable to connect through the proxy",
        "WhatsApp is blocked",
    ),
    # Attachment rejection popups (exact source texts; {maxSize} and counts vary).
    "file_rejected": (
        "you tried adding is larger than the",
        "you tried adding are larger than the",
        "you tried adding is not supported",
        "you tried adding are not supported",
        "has no content",
        "have no content",
        "failed to load",
    ),
    "loading": ("Loading your chats",),
    # The author label on our own bubbles (2026, for screen readers; localised).
    "own_author": ("You:",),
    # The start-of-chat notice, the first row of a chat whose whole history is shown (whatsapp-web-dom.md
    # section 6; localised). Searched in the chat panel before every message, outside header and footer.
    "chat_start": (
        "Messages and calls are end-to-end encrypted",
        "Messages are end-to-end encrypted",
        "Messages to this chat and calls are now secured with end-to-end encryption",
    ),
    # The button that cuts a long message.
    "read_more": ("Read more",),
    # 2026: the page refuses a browser whose user agent says HeadlessChrome (or Electron, WhatsApp/).
    "unsupported_browser": ("WhatsApp works with Google Chrome", "update Chrome"),
    # 2026: a restricted account (the block bar in an open chat).
    "restricted": ("account on linked devices is restricted", "You can't start new chats right now"),
    # 2026: the What's new modal after an update.
    "whats_new": ("What's new on WhatsApp Web",),
    # 2026: screens that replace the app.
    "database_error": ("A database error occurred",),
    "storage_full": ("browser storage is full", "storage is full"),
    # Expired QR: 2026 overlay on the code (click the code), older pages' reload button.
    "qr_expired": ("Select to reload QR code", "Click to reload QR code"),
}

# Status icon data-icon values and trimmed aria-labels → tick state (models.TICK_*).
TICK_BY_DATA_ICON: dict[str, str] = {
    "msg-time": "pending",
    "status-time": "pending",
    "msg-check": "sent",
    "status-check": "sent",
    "msg-dblcheck": "delivered",
    "status-dblcheck": "delivered",
    "msg-dblcheck-ack": "read",
    "status-dblcheck-ack": "read",
    "message-fail": "failed",  # a send WhatsApp did not accept (no tick)
    "msg-fail": "failed",
}
TICK_BY_LABEL: dict[str, str] = {
    "pending": "pending",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
}
# 2026 SVG <title> values. One script claims wds-ic-delivered is the single tick, so it only proves "not
# pending": the aria-label wins whenever there is one.
TICK_BY_SVG_TITLE: dict[str, str] = {
    "wds-ic-pending": "pending",
    "wds-ic-clock": "pending",
    "wds-ic-sent": "sent",
    "wds-ic-delivered": "sent",
    # Field test 2026-09-08: drawn for delivered (grey) AND read (blue): without an aria-label it only
    # proves "delivered".
    "wds-ic-read": "delivered",
    "message-fail": "failed",
}
