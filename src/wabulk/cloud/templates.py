"""The account's template catalogue: ``wabulk templates sync`` and the checks of ``enqueue --template``.

Meta refuses a send whose template name or language is not approved (132001) or whose parameter count is
wrong (132000) — but only when the worker posts it, after the job was queued. Syncing the approved
templates (``GET /{v}/{WABA_ID}/message_templates``, paged) lets ``enqueue`` refuse such a job before
anything is written, naming what is wrong.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from wabulk.errors import BadInput, ConfigError, WabulkError
from wabulk.models import CatalogueTemplate

if TYPE_CHECKING:
    from wabulk.queue import Queue

# The fields a sync asks for, and the page size (Meta's maximum for this edge is in the hundreds; a
# small page keeps each answer quick and exercises paging on real accounts).
FIELDS = "name,language,status,category,components,parameter_format,id"
PAGE_SIZE = 100
MAX_PAGES = 1000  # a loop guard: a paging cursor that never ends must not hang the sync
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0

# {{1}}, {{2}} … (positional) or {{first_name}} (named parameters).
_PARAM = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_MEDIA_HEADERS = ("IMAGE", "VIDEO", "DOCUMENT", "LOCATION")


class GraphRequestError(WabulkError):
    """A Graph API read failed: ``code`` is the Graph error code (None when no Graph answer came)."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


def body_params(components: Sequence[Mapping[str, Any]] | None) -> int:
    """How many parameters a template's body takes: its distinct ``{{…}}`` placeholders."""
    for comp in components or ():
        if str(comp.get("type", "")).upper() == "BODY":
            return len(dict.fromkeys(_PARAM.findall(str(comp.get("text") or ""))))
    return 0


def other_params(components: Sequence[Mapping[str, Any]] | None) -> int:
    """How many parameters a template needs outside its body: a text header's placeholders, one for a
    media header (image, video, document, location), one per URL button whose url has a placeholder and
    one per COPY_CODE button (quick-reply payloads are optional, not counted)."""
    shape = shape_of(components)
    media = 1 if shape.header_format in _MEDIA_HEADERS else 0
    return shape.header_params + media + sum(1 for b in shape.buttons if b.required)


@dataclass(frozen=True)
class ButtonSlot:
    """A button of a template that takes a parameter when sent: ``index`` (its position among all the
    template's buttons, as Meta numbers them), ``sub_type`` (``url``, ``copy_code``, ``quick_reply``) and
    whether Meta requires the parameter (a quick reply's payload is optional)."""

    index: int
    sub_type: str
    required: bool = True


@dataclass(frozen=True)
class TemplateShape:
    """What a send of a template must carry besides its body parameters (reference §1.3)."""

    body: int  # the body's parameters
    header_format: str | None = None  # TEXT, IMAGE, VIDEO, DOCUMENT, LOCATION; None: no header
    header_params: int = 0  # a TEXT header's placeholders
    buttons: tuple[ButtonSlot, ...] = ()  # the buttons that take a parameter, in order
    # A template created with NAMED parameters ({{first_name}}): the body's names in order; each value is
    # sent with its ``parameter_name`` (Meta refuses positional values for it, 132000). Empty: positional.
    body_names: tuple[str, ...] = ()

    @property
    def media_header(self) -> str | None:
        """``image``/``video``/``document`` (``location`` too) when the header is media, else None."""
        return self.header_format.lower() if self.header_format in _MEDIA_HEADERS else None


def shape_of(components: Sequence[Mapping[str, Any]] | None) -> TemplateShape:
    """The :class:`TemplateShape` of a template from Meta's ``components``."""
    body = body_params(components)
    body_names: tuple[str, ...] = ()
    for comp in components or ():
        if str(comp.get("type", "")).upper() == "BODY":
            names = tuple(dict.fromkeys(_PARAM.findall(str(comp.get("text") or ""))))
            body_names = names if any(not n.isdigit() for n in names) else ()
            break
    header_format: str | None = None
    header_params = 0
    slots: list[ButtonSlot] = []
    for comp in components or ():
        kind = str(comp.get("type", "")).upper()
        if kind == "HEADER":
            header_format = str(comp.get("format") or "TEXT").upper()
            if header_format not in _MEDIA_HEADERS:
                header_params = len(dict.fromkeys(_PARAM.findall(str(comp.get("text") or ""))))
        elif kind == "BUTTONS":
            for i, button in enumerate(comp.get("buttons") or ()):
                if not isinstance(button, dict):
                    continue
                btype = str(button.get("type", "")).upper()
                if btype == "URL" and _PARAM.search(str(button.get("url") or "")):
                    slots.append(ButtonSlot(i, "url"))
                elif btype == "COPY_CODE":
                    slots.append(ButtonSlot(i, "copy_code"))
                elif btype == "QUICK_REPLY":
                    slots.append(ButtonSlot(i, "quick_reply", required=False))
    return TemplateShape(body, header_format, header_params, tuple(slots), body_names)


def parse_template(item: Mapping[str, Any]) -> CatalogueTemplate | None:
    """One template object of the Graph API's list, or None when it lacks a name or language."""
    name = item.get("name")
    language = item.get("language")
    if not isinstance(name, str) or not isinstance(language, str) or not name or not language:
        return None
    category = item.get("category")
    tid = item.get("id")
    components = item.get("components")
    if not isinstance(components, list):
        components = []
    fmt = item.get("parameter_format")
    return CatalogueTemplate(
        name=name,
        language=language,
        status=str(item.get("status") or "UNKNOWN").upper(),
        category=str(category).upper() if category else None,
        params=body_params(components),
        template_id=str(tid) if tid is not None else None,
        other_params=other_params(components),
        parameter_format=str(fmt).upper() if fmt else None,
        components=json.dumps(components, ensure_ascii=False),
    )


def fetch_templates(
    base_url: str,
    version: str,
    waba_id: str,
    token: str,
    *,
    client: Any = None,
    page_size: int = PAGE_SIZE,
) -> list[CatalogueTemplate]:
    """Every template of ``waba_id``, following the list's paging cursors to the last page.

    Raises GraphRequestError (code 190: the token was refused; 100: no such WABA or no permission on it;
    None: the Graph API could not be reached or answered something that is not Graph JSON)."""
    import httpx

    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT))
    url = f"{base_url.rstrip('/')}/{version}/{waba_id}/message_templates"
    params: dict[str, Any] = {"fields": FIELDS, "limit": page_size}
    out: list[CatalogueTemplate] = []
    try:
        for _ in range(MAX_PAGES):
            page = _get(http, url, params, token)
            data = page.get("data")
            if not isinstance(data, list):
                raise GraphRequestError(f"the template list from {_origin(url)} has no 'data' list")
            out.extend(t for t in (parse_template(x) for x in data if isinstance(x, dict)) if t)
            paging = page.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after") if isinstance(paging, dict) else None
            # Meta: no "next" link means this was the last page (a cursor alone does not).
            if not (isinstance(paging, dict) and paging.get("next")) or not after:
                return out
            params = {**params, "after": after}
        raise GraphRequestError(f"the template list of {waba_id} did not end after {MAX_PAGES} pages")
    finally:
        if own:
            http.close()


def token_wabas(base_url: str, version: str, token: str, *, client: Any = None) -> list[str]:
    """The WhatsApp Business Accounts the token may manage (``GET /debug_token``: its granular scope
    ``whatsapp_business_management``); empty when Meta does not say."""
    import httpx

    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT))
    try:
        page = _get(http, f"{base_url.rstrip('/')}/{version}/debug_token", {"input_token": token}, token)
    finally:
        if own:
            http.close()
    data = page.get("data")
    if not isinstance(data, dict):
        return []
    for scope in data.get("granular_scopes") or ():
        if isinstance(scope, dict) and scope.get("scope") == "whatsapp_business_management":
            return [str(t) for t in scope.get("target_ids") or () if str(t).isdigit()]
    return []


def _get(http: Any, url: str, params: Mapping[str, Any], token: str) -> dict[str, Any]:
    import httpx

    try:
        resp = http.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
    except httpx.ConnectError as exc:
        raise GraphRequestError(f"cannot connect to the Graph API at {_origin(url)} ({exc})") from None
    except httpx.TimeoutException:
        raise GraphRequestError(f"the Graph API at {_origin(url)} did not answer in time") from None
    except httpx.HTTPError as exc:
        raise GraphRequestError(f"reading from the Graph API at {_origin(url)} failed ({exc})") from None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GraphRequestError(f"the Graph API at {_origin(url)} answered HTTP {resp.status_code}, not JSON")
    err = body.get("error")
    if isinstance(err, dict) or resp.status_code >= 400:
        err = err if isinstance(err, dict) else {}
        code = err.get("code") if isinstance(err.get("code"), int) else None
        text = str(err.get("message") or f"HTTP {resp.status_code}")
        raise GraphRequestError(f"Graph error {code}: {text}", code=code)
    return body


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


# --- sync -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    session: str
    waba_id: str
    templates: list[CatalogueTemplate]

    @property
    def approved(self) -> int:
        return sum(1 for t in self.templates if t.approved)


def resolve_waba_id(
    queue: Queue, session: str, given: str | None, *, discover: Callable[[], list[str]] | None = None
) -> str:
    """The WhatsApp Business Account whose templates ``session`` sends: ``given``, else the one the last
    sync of this session used, else the one ``login --cloud`` found for its number, else the only one
    ``discover()`` (the token's) names. ConfigError when none says."""
    if given is not None:
        waba = given.strip()
        if not waba.isdigit():
            raise BadInput(f"--waba-id must be the account's numeric id (got {given!r})")
        return waba
    last = queue.catalogue_syncs().get(session)
    if last is not None:
        return last[0]
    recorded = queue.session_provider(session)
    if recorded is not None and recorded[1].get("waba_id"):
        return str(recorded[1]["waba_id"])
    if discover is not None:
        found = discover()
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise ConfigError(
                f"the token may use {len(found)} WhatsApp Business Accounts ({', '.join(found)}): "
                "choose one with --waba-id"
            )
    raise ConfigError(
        f"the WhatsApp Business Account id of session {session!r} is not known yet: pass --waba-id "
        "(WhatsApp Manager shows it beside the account name)"
    )


def _sync_error(exc: GraphRequestError, waba_id: str) -> NoReturn:
    if exc.code in (0, 190) or (exc.code is not None and 200 <= exc.code <= 299):
        raise ConfigError(
            f"the Graph API refused the access token (code {exc.code}): set a working WABULK_CLOUD_TOKEN"
        ) from None
    if exc.code == 100:
        raise ConfigError(
            f"the Graph API does not know WhatsApp Business Account {waba_id!r} or the token has no "
            f"permission on it (code 100): check --waba-id"
        ) from None
    raise ConfigError(f"templates sync failed: {exc}") from None


def sync_templates(
    queue: Queue,
    session: str,
    waba_id: str,
    *,
    token: str | None,
    base_url: str,
    version: str,
    client: Any = None,
    now: float | None = None,
) -> SyncResult:
    """Fetch the templates of ``waba_id`` and make them the catalogue of ``session``, replacing the last
    sync in one transaction (a failed fetch leaves it untouched). Raises ConfigError without a token,
    and with a one-line reason when the Graph API refuses (bad token, unknown WABA) or cannot be reached."""
    if not token:
        raise ConfigError("no access token: set WABULK_CLOUD_TOKEN (the system-user token of the app)")
    try:
        templates = fetch_templates(base_url, version, waba_id, token, client=client)
    except GraphRequestError as exc:
        _sync_error(exc, waba_id)
    queue.replace_catalogue(session, waba_id, templates, synced_at=time.time() if now is None else now)
    return SyncResult(session, waba_id, templates)


def sync_waba(
    queue: Queue, session: str, waba_id: str | None, *, token: str | None, base_url: str, version: str
) -> SyncResult:
    """``wabulk templates sync``: find the account (``waba_id``, the last sync's, or the token's only one),
    then :func:`sync_templates`."""
    if not token:
        raise ConfigError("no access token: set WABULK_CLOUD_TOKEN (the system-user token of the app)")

    def discover() -> list[str]:
        try:
            return token_wabas(base_url, version, token)
        except GraphRequestError as exc:
            return _sync_error(exc, "?")

    waba = resolve_waba_id(queue, session, waba_id, discover=discover)
    return sync_templates(queue, session, waba, token=token, base_url=base_url, version=version)


# --- the checks of enqueue --template -----------------------------------------------------------------


@dataclass(frozen=True)
class Catalogue:
    """The synced templates enqueue checks against: those of the job's sessions (or of every session that
    synced), and which of the job's sessions never synced."""

    templates: list[CatalogueTemplate]
    synced: dict[str, tuple[str, float]]  # session -> (WABA id, synced at)
    unsynced: tuple[str, ...] = ()  # the job's sessions without a catalogue

    @property
    def empty(self) -> bool:
        return not self.synced


def load_catalogue(queue: Queue, sessions: Iterable[str] = ()) -> Catalogue:
    """The catalogue ``enqueue --template`` checks a job against: the job's sessions' (when it names
    sessions), else every synced one."""
    syncs = queue.catalogue_syncs()
    wanted = list(sessions)
    if wanted:
        mine = {s: syncs[s] for s in wanted if s in syncs}
        return Catalogue(
            queue.catalogue(mine) if mine else [], mine, tuple(s for s in wanted if s not in syncs)
        )
    return Catalogue(queue.catalogue(), syncs)


def sync_hint(sessions: Sequence[str]) -> str:
    """How to sync, for the messages below."""
    return f"wabulk templates sync --session {sessions[0] if sessions else 'NAME'}"


@dataclass(frozen=True)
class Extras:
    """What ``enqueue --template`` gives besides body parameters: how many ``--header-param`` and
    ``--button-param`` values, and ``header_media``: ``"link"`` (an https link, rendered per contact),
    ``"file"`` (uploaded once per job) or None."""

    header_params: int = 0
    header_media: str | None = None
    button_params: int = 0

    @property
    def any(self) -> bool:
        return bool(self.header_params or self.header_media or self.button_params)


def layout_for(shape: TemplateShape, extras: Extras) -> dict[str, Any]:
    """How a job's stored parameters (``messages.params``: body values, then header values, then button
    values) map to the send's components, and the body's parameter names of a NAMED template; stored with
    the job (``jobs.template_layout``) and read by the payload builder. Only call it after
    :func:`check_extras` accepted ``extras``."""
    layout: dict[str, Any] = {"body": shape.body}
    if shape.body_names:
        layout["names"] = list(shape.body_names)
    if shape.media_header and extras.header_media:
        layout["header"] = {"format": shape.media_header, "source": extras.header_media}
    elif extras.header_params:
        layout["header"] = {"format": "text", "params": extras.header_params}
    required = [b for b in shape.buttons if b.required]
    slots = required if extras.button_params == len(required) else list(shape.buttons)
    if extras.button_params:
        layout["buttons"] = [[b.index, b.sub_type] for b in slots]
    return layout


def check_extras(name: str, language: str, shape: TemplateShape, extras: Extras) -> None:
    """BadInput (exit 2) naming what is wrong when the header and button values given do not fit the
    template: Meta would refuse every send (132000 count, 132012 kind)."""
    what = f"template {name!r} ({language})"
    media = shape.media_header
    a_media = f"{'an' if (media or 'x')[0] in 'aeiou' else 'a'} {media}"
    if media == "location":
        raise BadInput(f"{what} has a location header, which wabulk does not fill: use another template")
    if media is not None and not extras.header_media:
        raise BadInput(
            f"{what} has {a_media} header: give it with --header-media (an https:// link, or a file "
            "uploaded once for the job)"
        )
    if extras.header_media and media is None:
        has = "a text header" if shape.header_format else "no header"
        raise BadInput(f"{what} has {has}, not a media one: drop --header-media")
    if extras.header_params != shape.header_params:
        want, n = shape.header_params, extras.header_params
        if media is not None and n:
            raise BadInput(f"{what} has {a_media} header: give it with --header-media, not --header-param")
        raise BadInput(
            f"{what} takes {want} header parameter{'' if want == 1 else 's'} "
            f"and {n} --header-param {'was' if n == 1 else 'were'} given"
        )
    required = sum(1 for b in shape.buttons if b.required)
    if extras.button_params not in (required, len(shape.buttons)):
        kinds = ", ".join(
            f"{b.index}: {b.sub_type}{'' if b.required else ' (optional)'}" for b in shape.buttons
        )
        counts = str(required) if required == len(shape.buttons) else f"{required} or {len(shape.buttons)}"
        raise BadInput(
            f"{what} takes {counts} button parameter(s) (buttons {kinds or 'none'}) "
            f"and {extras.button_params} --button-param given"
        )


def check_template(
    catalogue: Catalogue, name: str, language: str, nparams: int, extras: Extras | None = None
) -> CatalogueTemplate:
    """The approved catalogue entry the job will use; BadInput (exit 2) naming what is wrong when the name
    is unknown, the language not approved for it, ``nparams`` is not the count its body takes, or the
    header and button values (``extras``) do not fit its header and buttons (:func:`check_extras`).

    With several synced sessions (no ``--session``), the template must be approved in ``language``
    in at least one of them, and fit there."""
    extras = extras or Extras()
    hint = sync_hint(list(catalogue.synced))
    same_name = [t for t in catalogue.templates if t.name == name]
    if not same_name:
        known = sorted({t.name for t in catalogue.templates if t.approved})
        shown = ", ".join(known[:10]) + (", …" if len(known) > 10 else "") if known else "none"
        raise BadInput(
            f"template {name!r} is not in the synced catalogue (approved: {shown}); "
            f"if it was created since, run: {hint}"
        )
    in_lang = [t for t in same_name if t.language == language]
    approved_langs = sorted({t.language for t in same_name if t.approved})
    if not in_lang:
        raise BadInput(
            f"template {name!r} has no {language!r} version (approved in: "
            f"{', '.join(approved_langs) or 'no language'}); choose one with --template-lang"
        )
    ok = [t for t in in_lang if t.approved]
    if not ok:
        raise BadInput(
            f"template {name!r} ({language}) is {in_lang[0].status}, not APPROVED: Meta refuses to send it"
            + (f" (approved in: {', '.join(approved_langs)})" if approved_langs else "")
        )
    fits = [t for t in ok if t.params == nparams]
    if not fits:
        want = ok[0].params
        raise BadInput(
            f"template {name!r} ({language}) takes {want} parameter{'' if want == 1 else 's'} "
            f"and {nparams} --template-param {'was' if nparams == 1 else 'were'} given"
        )
    check_extras(name, language, entry_shape(fits[0]), extras)
    return fits[0]


def entry_shape(entry: CatalogueTemplate) -> TemplateShape:
    """The shape of a synced catalogue entry (from the components Meta returned)."""
    try:
        components = json.loads(entry.components) if entry.components else []
    except ValueError:
        components = []
    return shape_of(components if isinstance(components, list) else [])


def catalogue_rows(templates: Iterable[CatalogueTemplate]) -> Iterator[dict[str, Any]]:
    """``templates list --json``: one dict per template."""
    for t in templates:
        yield {
            "session": t.session,
            "waba_id": t.waba_id,
            "name": t.name,
            "language": t.language,
            "category": t.category,
            "status": t.status,
            "params": t.params,
            "synced_at": t.synced_at,
        }
