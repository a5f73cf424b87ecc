"""Message templates: ``{column}`` placeholders, ``{a|b|c}`` spintax and ``{{``/``}}`` literal braces.

This is deliberately not ``str.format``: a template comes from the user's file or command line and may
only name columns. ``{0.__class__}``, ``{x[0]}``, ``{x!r}`` and ``{x:>9}`` are errors, not features.

Grammar::

    template   := (text | "{{" | "}}" | group)*
    group      := "{" alternative ("|" alternative)* "}"
    alternative:= (text | "{{" | "}}" | group)*          # inside a group, text stops at | and }

A group with one alternative is a placeholder and must be a column name (letters, digits, spaces, ``_``
and ``-``; normalised like an identifier, so ``{First Name}`` == ``{first_name}``). A group with several
alternatives is spintax: one alternative is chosen per message, deterministically from a seed (so
rendering the same message again gives the same text). Alternatives may contain placeholders.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .contacts import column_key
from .errors import TemplateError

MAX_BODY_CHARS = 65_536  # WhatsApp's limit on one text message
ALWAYS_AVAILABLE = ("name", "phone")

_PLACEHOLDER = re.compile(r"[^\W\d][\w \-]*", re.UNICODE)


@dataclass(frozen=True)
class _Var:
    key: str
    source: str  # as written, for messages


@dataclass(frozen=True)
class _Choice:
    index: int  # position among the template's spintax groups: each picks independently
    alternatives: tuple[tuple[_Node, ...], ...]


_Node = str | _Var | _Choice


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.choices = 0

    def error(self, msg: str) -> TemplateError:
        return TemplateError(f"template: {msg} (at character {self.pos + 1})")

    def sequence(self, nested: bool) -> tuple[_Node, ...]:
        nodes: list[_Node] = []
        buf: list[str] = []
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "{":
                if text.startswith("{{", self.pos):
                    buf.append("{")
                    self.pos += 2
                    continue
                if buf:
                    nodes.append("".join(buf))
                    buf = []
                nodes.append(self.group())
                continue
            if ch == "}":
                if nested:
                    break
                if text.startswith("}}", self.pos):
                    buf.append("}")
                    self.pos += 2
                    continue
                raise self.error("single '}' (write '}}' for a literal brace)")
            if ch == "|" and nested:
                break
            buf.append(ch)
            self.pos += 1
        if buf:
            nodes.append("".join(buf))
        return tuple(nodes)

    def group(self) -> _Node:
        start = self.pos
        self.pos += 1  # the "{"
        alternatives = [self.sequence(nested=True)]
        while self.pos < len(self.text) and self.text[self.pos] == "|":
            self.pos += 1
            alternatives.append(self.sequence(nested=True))
        if self.pos >= len(self.text):
            self.pos = start
            raise self.error("'{' is never closed (write '{{' for a literal brace)")
        self.pos += 1  # the "}"
        if len(alternatives) > 1:
            self.choices += 1
            return _Choice(self.choices - 1, tuple(alternatives))
        only = alternatives[0]
        source = self.text[start + 1 : self.pos - 1]
        if len(only) == 1 and isinstance(only[0], str) and _PLACEHOLDER.fullmatch(only[0].strip()):
            return _Var(column_key(only[0]), source)
        self.pos = start
        if not source.strip():
            raise self.error("empty placeholder '{}'")
        raise self.error(
            f"invalid placeholder {{{source}}}: placeholders are plain column names like {{name}}; "
            "attribute, index, conversion and format-spec syntax is not allowed"
        )


class Template:
    """A parsed template. Build with :meth:`parse`; render many times."""

    def __init__(self, text: str, nodes: tuple[_Node, ...]) -> None:
        self.text = text
        self._nodes = nodes
        found: list[str] = []
        sources: dict[str, str] = {}
        _collect(nodes, found, sources)
        self._sources = sources
        #: Column keys the template uses, in order of first appearance.
        self.placeholders: tuple[str, ...] = tuple(found)
        #: Whether the template has spintax (only then does :meth:`render` use its seed).
        self.has_spintax = any(isinstance(n, _Choice) for n in nodes)
        # Without spintax the nodes are text and placeholders only: render() joins them in one go.
        self._flat: tuple[str | _Var, ...] | None = (
            None if self.has_spintax else tuple(n for n in nodes if not isinstance(n, _Choice))
        )

    @classmethod
    def parse(cls, text: str) -> Template:
        """Parse ``text``; raises :class:`errors.TemplateError` on malformed or unsafe syntax."""
        if not text.strip():
            raise TemplateError("the message is empty")
        parser = _Parser(text)
        nodes = parser.sequence(nested=False)
        return cls(text, nodes)

    def validate(self, available: Iterable[str]) -> None:
        """Check every placeholder names an available column key (``name`` and ``phone`` always are);
        raises TemplateError listing the placeholders that do not and the columns that exist."""
        have = set(available) | set(ALWAYS_AVAILABLE)
        missing = [k for k in self.placeholders if k not in have]
        if missing:
            shown = ", ".join("{" + self._sources[k] + "}" for k in missing)
            columns = ", ".join("{" + k + "}" for k in _unique(list(available) + list(ALWAYS_AVAILABLE)))
            which = "which is not a column" if len(missing) == 1 else "which are not columns"
            raise TemplateError(f"the template uses {shown}, {which}; available: {columns}")

    def render(self, variables: Mapping[str, str], seed: str) -> str:
        """The message for one recipient. ``seed`` (e.g. job name + phone) picks the spintax variants:
        the same seed always gives the same text. A missing variable is a TemplateError."""
        if self._flat is not None:
            # One join, no recursion: this runs once per row of an import.
            try:
                return "".join([n if isinstance(n, str) else variables[n.key] for n in self._flat])
            except KeyError:
                pass  # the general path below names the missing placeholder
        out: list[str] = []
        self._render(self._nodes, variables, seed, out)
        return "".join(out)

    def _render(
        self, nodes: tuple[_Node, ...], variables: Mapping[str, str], seed: str, out: list[str]
    ) -> None:
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif isinstance(node, _Var):
                try:
                    out.append(variables[node.key])
                except KeyError:
                    raise TemplateError(f"no value for {{{node.source}}}") from None
            else:
                self._render(
                    node.alternatives[_pick(seed, node.index, len(node.alternatives))], variables, seed, out
                )

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def _pick(seed: str, index: int, n: int) -> int:
    # A stable hash (not hash(), which changes per process) so a re-render picks the same variant.
    digest = hashlib.blake2b(f"{index}\x00{seed}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


def _collect(nodes: tuple[_Node, ...], found: list[str], sources: dict[str, str]) -> None:
    for node in nodes:
        if isinstance(node, _Var):
            if node.key not in sources:
                found.append(node.key)
                sources[node.key] = node.source
        elif isinstance(node, _Choice):
            for alt in node.alternatives:
                _collect(alt, found, sources)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def body_problem(body: str) -> str | None:
    """Why a rendered body cannot be sent (empty, or over WhatsApp's limit), or None when it can."""
    if not body.strip():
        return "the message is empty for this row"
    if len(body) > MAX_BODY_CHARS:
        return f"the message is {len(body):,} characters (WhatsApp allows {MAX_BODY_CHARS:,})"
    return None
