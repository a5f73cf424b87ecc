"""The simulated template catalogue: Meta-shaped templates and the checks a template send goes through.

A catalogue entry is what ``GET /{waba_id}/message_templates`` returns for it::

    {"name": "order_ready", "language": "en_US", "category": "UTILITY", "status": "APPROVED",
     "parameter_format": "POSITIONAL", "id": "…",
     "components": [{"type": "BODY", "text": "Hi {{1}}, your order {{2}} is ready.",
                     "example": {"body_text": [["Alice", "B-100"]]}}]}

Parameter counts are not a field: as with Meta, they are the placeholders in the component texts (``{{1}}``,
or ``{{first_name}}`` for NAMED templates), one media parameter for an IMAGE/VIDEO/DOCUMENT header, one
text parameter per URL button whose url has a placeholder, one coupon_code per COPY_CODE button and an
optional payload per QUICK_REPLY button.
"""

from __future__ import annotations

import copy
import functools
import re
import zlib
from typing import Any

from .errors import GraphError, invalid_param

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
MEDIA_FORMATS = ("IMAGE", "VIDEO", "DOCUMENT")
BODY_PARAM_TYPES = ("text", "currency", "date_time")
MAX_BODY = 1024


@functools.lru_cache(maxsize=4096)
def placeholders(text: str) -> tuple[str, ...]:
    """The distinct placeholders of ``text`` in order of first appearance."""
    seen: list[str] = []
    for m in PLACEHOLDER.finditer(text):
        if m.group(1) not in seen:
            seen.append(m.group(1))
    return tuple(seen)


def template(
    name: str,
    body: str,
    *,
    language: str = "en_US",
    category: str = "UTILITY",
    status: str = "APPROVED",
    header: str | None = None,
    footer: str | None = None,
    url_button: str | None = None,
    buttons: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Meta-shaped catalogue entry. ``header``: a text (may hold ``{{1}}``) or IMAGE/VIDEO/DOCUMENT;
    ``url_button``: a button url (may end in ``{{1}}``); ``buttons``: Meta's button objects (after the URL
    button). NAMED format when the body uses named placeholders."""
    names = placeholders(body)
    named = any(not n.isdigit() for n in names)
    components: list[dict[str, Any]] = []
    if header is not None:
        if header in MEDIA_FORMATS:
            components.append({"type": "HEADER", "format": header})
        else:
            components.append({"type": "HEADER", "format": "TEXT", "text": header})
    comp: dict[str, Any] = {"type": "BODY", "text": body}
    if names:
        if named:
            comp["example"] = {
                "body_text_named_params": [{"param_name": n, "example": f"example {n}"} for n in names]
            }
        else:
            comp["example"] = {"body_text": [[f"example {n}" for n in names]]}
    components.append(comp)
    if footer is not None:
        components.append({"type": "FOOTER", "text": footer})
    all_buttons = [{"type": "URL", "text": "Open", "url": url_button}] if url_button is not None else []
    all_buttons += buttons or []
    if all_buttons:
        components.append({"type": "BUTTONS", "buttons": all_buttons})
    return {
        "name": name,
        "parameter_format": "NAMED" if named else "POSITIONAL",
        "components": components,
        "language": language,
        "status": status,
        "category": category,
        "id": template_id(name, language),
    }


def template_id(name: str, language: str) -> str:
    """A stable numeric id for a (name, language)."""
    return str(10**15 + zlib.crc32(f"{name}/{language}".encode()))


DEFAULT_TEMPLATES: list[dict[str, Any]] = [
    # Meta's sample template, present in every new WABA.
    template("hello_world", "Hello World", header="Hello World", footer="WhatsApp Business Platform sample"),
    template("order_ready", "Hi {{1}}, your order {{2}} is ready for pickup."),
    template("order_ready", "Olá {{1}}, o seu pedido {{2}} está pronto.", language="pt_BR"),
    template(
        "shipping_update",
        "Hello {{first_name}}, your parcel {{tracking}} ships today.",
        url_button="https://track.example.com/{{1}}",
    ),
    template(
        "spring_sale",
        "Hi {{1}}, our spring sale starts now: {{2}} off everything.",
        category="MARKETING",
        header="IMAGE",
    ),
    template("invoice_ready", "Hi {{1}}, your invoice is attached.", header="DOCUMENT"),
    template("login_code", "{{1}} is your verification code.", category="AUTHENTICATION"),
    template("winter_promo", "Hi {{1}}, winter deals inside.", category="MARKETING", status="PAUSED"),
    template("old_offer", "Hi {{1}}, an offer for you.", category="MARKETING", status="DISABLED"),
    template("draft_notice", "Hi {{1}}, this is a draft.", status="PENDING"),
    template("bad_copy", "Hi {{1}}, click here.", status="REJECTED"),
]


def normalise(entry: dict[str, Any]) -> dict[str, Any]:
    """Check a catalogue entry given by a test or a ``--templates`` file; fill ``id`` and the format."""
    tpl = copy.deepcopy(entry)
    for key in ("name", "language", "category", "status", "components"):
        if key not in tpl:
            raise ValueError(f"template {entry.get('name')!r}: missing {key!r}")
    if not isinstance(tpl["components"], list):
        raise ValueError(f"template {tpl['name']!r}: components must be a list")
    tpl.setdefault("id", template_id(tpl["name"], tpl["language"]))
    if "parameter_format" not in tpl:
        body = _component(tpl, "BODY")
        names = placeholders(body.get("text", "")) if body else []
        tpl["parameter_format"] = "NAMED" if any(not n.isdigit() for n in names) else "POSITIONAL"
    return tpl


def _component(tpl: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for comp in tpl["components"]:
        if str(comp.get("type", "")).upper() == kind:
            return comp  # type: ignore[no-any-return]
    return None


def _count_error(label: str, given: int, expected: int) -> GraphError:
    return GraphError(
        132000,
        f"{label}: number of localizable_params ({given}) does not match the expected number of params "
        f"({expected})",
    )


def _format_error(details: str) -> GraphError:
    return GraphError(132012, details)


def _request_components(components: Any) -> dict[str, Any]:
    """The send's components by key: ``header``, ``body``, ``button:<index>``."""
    if components is None:
        return {}
    if not isinstance(components, list):
        raise invalid_param("Param template['components'] must be an array.")
    found: dict[str, Any] = {}
    for i, comp in enumerate(components):
        if not isinstance(comp, dict) or not isinstance(comp.get("type"), str):
            raise invalid_param(f"Param template['components'][{i}]['type'] is required.")
        kind = comp["type"].lower()
        params = comp.get("parameters", [])
        if not isinstance(params, list):
            raise invalid_param(f"Param template['components'][{i}]['parameters'] must be an array.")
        if kind == "button":
            found[f"button:{comp.get('index', '0')}"] = (i, params, comp.get("sub_type"))
        elif kind in ("header", "body"):
            found[kind] = (i, params, None)
        else:
            raise invalid_param(f"Param template['components'][{i}]['type'] is invalid.")
    return found


def _text_param(i: int, j: int, param: Any, label: str) -> str:
    if not isinstance(param, dict) or param.get("type") not in BODY_PARAM_TYPES:
        raise _format_error(f"{label}: parameter {j + 1} must be of type text")
    if param["type"] != "text":
        value = param.get(param["type"], {})
        return str(value.get("fallback_value", "")) if isinstance(value, dict) else ""
    text = param.get("text")
    if not isinstance(text, str) or not text.strip():
        raise invalid_param(
            f"Param template['components'][{i}]['parameters'][{j}]['text'] must be non-empty."
        )
    if "\n" in text or "\t" in text or "    " in text:
        # Meta refuses new lines, tabs and more than 4 consecutive spaces in a text parameter.
        raise invalid_param(
            f"Param template['components'][{i}]['parameters'][{j}]['text'] cannot have new-line/tab "
            "characters or more than 4 consecutive spaces"
        )
    return text


def check_send(tpl: dict[str, Any], components: Any) -> None:
    """Check a template send's components against the approved template.

    Raises :class:`GraphError` 132000 (counts), 132012 (types), 132005 (too long) or 100 (empty values).
    """
    given = _request_components(components)
    named = tpl.get("parameter_format") == "NAMED"
    # Header.
    header = _component(tpl, "HEADER")
    h_params = given.get("header", (0, [], None))
    h_expected = 0
    h_format = str(header.get("format", "TEXT")).upper() if header else None
    if header is not None:
        h_expected = 1 if h_format in MEDIA_FORMATS else len(placeholders(header.get("text", "")))
    if len(h_params[1]) != h_expected:
        raise _count_error("header", len(h_params[1]), h_expected)
    if h_format in MEDIA_FORMATS and h_params[1]:
        want = str(h_format).lower()
        param = h_params[1][0]
        if not isinstance(param, dict) or param.get("type") != want or not isinstance(param.get(want), dict):
            raise _format_error(f"header: expected a parameter of type {want}")
        media = param[want]
        if ("id" in media) == ("link" in media):
            raise invalid_param(f"Param template header {want} must contain either id or link.")
    elif h_params[1]:
        for j, p in enumerate(h_params[1]):
            _text_param(h_params[0], j, p, "header")
    # Body.
    body = _component(tpl, "BODY")
    text = body.get("text", "") if body else ""
    names = placeholders(text)
    b_index, b_params, _ = given.get("body", (0, [], None))
    if len(b_params) != len(names):
        raise _count_error("body", len(b_params), len(names))
    values: dict[str, str] = {}
    for j, p in enumerate(b_params):
        value = _text_param(b_index, j, p, "body")
        if named:
            pname = p.get("parameter_name")
            if pname not in names:
                raise GraphError(
                    132000, f"body: parameter_name {pname!r} is not a parameter of the template {list(names)}"
                )
            values[pname] = value
        else:
            values[str(j + 1)] = value
    if named and set(values) != set(names):
        raise _count_error("body", len(values), len(names))
    if len(text) + sum(map(len, values.values())) > MAX_BODY:  # (rendering every send costs throughput)
        rendered = PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)
        if len(rendered) > MAX_BODY:
            raise GraphError(
                132005, f"body: the hydrated text is {len(rendered)} characters (max {MAX_BODY})"
            )
    # Buttons: a URL button with a placeholder takes one text parameter, a COPY_CODE button one
    # coupon_code, a QUICK_REPLY button optionally one payload; each component names its button by index
    # and sub_type, which must be the button's.
    buttons_comp = _component(tpl, "BUTTONS")
    buttons = buttons_comp.get("buttons", []) if buttons_comp else []
    for idx, button in enumerate(buttons):
        btype = str(button.get("type", "")).upper()
        allowed: tuple[int, ...] = (0,)
        if btype == "URL" and placeholders(button.get("url", "")):
            allowed = (1,)
        elif btype == "COPY_CODE":
            allowed = (1,)
        elif btype == "QUICK_REPLY":
            allowed = (0, 1)
        entry = given.get(f"button:{idx}")
        n = len(entry[1]) if entry else 0
        if n not in allowed:
            raise _count_error(f"buttons[{idx}]", n, allowed[-1])
        if entry and n:
            _check_button(idx, btype, entry)
    extra = [k for k in given if k.startswith("button:") and not _button_exists(k, len(buttons))]
    if extra:
        raise _count_error(f"buttons[{extra[0].split(':', 1)[1]}]", 1, 0)


# A button's type -> the sub_type a send names it by, and the type of its parameter.
_BUTTON_KINDS = {
    "URL": ("url", "text"),
    "COPY_CODE": ("copy_code", "coupon_code"),
    "QUICK_REPLY": ("quick_reply", "payload"),
}


def _check_button(idx: int, btype: str, entry: tuple[int, list[Any], Any]) -> None:
    """A button component's sub_type and parameter against the approved button (132012 when they differ,
    100 for an empty value)."""
    i, params, sub_type = entry
    sub, ptype = _BUTTON_KINDS.get(btype, ("", ""))
    if str(sub_type or "").lower() != sub:
        raise _format_error(f"buttons[{idx}]: the button is {sub or btype.lower()}, not {sub_type!r}")
    param = params[0]
    if not isinstance(param, dict) or param.get("type") != ptype:
        raise _format_error(f"buttons[{idx}]: parameter must be of type {ptype}")
    value = param.get(ptype)
    if not isinstance(value, str) or not value.strip():
        raise invalid_param(
            f"Param template['components'][{i}]['parameters'][0]['{ptype}'] must be non-empty."
        )
    if ptype == "coupon_code" and len(value) > 15:
        raise invalid_param(
            f"Param template['components'][{i}]['parameters'][0]['coupon_code'] is too long (max 15)."
        )


def _button_exists(key: str, count: int) -> bool:
    try:
        return 0 <= int(key.split(":", 1)[1]) < count
    except ValueError:
        return False


def render(tpl: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """A catalogue entry as the templates list shows it (only ``fields`` and ``id`` when fields are asked)."""
    if not fields:
        return copy.deepcopy(tpl)
    out = {k: copy.deepcopy(tpl[k]) for k in fields if k in tpl}
    out["id"] = tpl["id"]
    return out
