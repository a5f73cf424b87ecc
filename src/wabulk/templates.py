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

Fallbacks: a group whose first alternative is a column name (of the file being imported) is a
fallback, not spintax: ``{name|there}`` renders the contact's ``name``, or "there" when it is empty.
Further alternatives that are column names are tried in turn (``{nickname|first_name|there}``); the
alternatives after them are the fallback text (several: spintax among them; ``{name|}``: nothing).
``{Hi|Hello}`` stays spintax because "Hi" is not a column. A placeholder that renders empty without a
fallback is reported (:meth:`Template.render`'s ``empty``) so an import can say which rows have it.
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


@dataclass(frozen=True)
class _Fallback:
    keys: tuple[_Var, ...]  # the first non-empty one is used
    default: tuple[_Node, ...]  # rendered when every key is empty


_Node = str | _Var | _Choice | _Fallback


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
        self.has_spintax = _has_choice(nodes)
        # Without groups the nodes are text and placeholders only: render() joins them in one go.
        self._flat: tuple[str | _Var, ...] | None = (
            tuple(n for n in nodes if isinstance(n, (str, _Var)))
            if all(isinstance(n, (str, _Var)) for n in nodes)
            else None
        )

    @classmethod
    def parse(cls, text: str) -> Template:
        """Parse ``text``; raises :class:`errors.TemplateError` on malformed or unsafe syntax."""
        if not text.strip():
            raise TemplateError("the message is empty")
        parser = _Parser(text)
        nodes = parser.sequence(nested=False)
        return cls(text, nodes)

    def for_columns(self, available: Iterable[str]) -> Template:
        """This template for a file with these column keys: groups whose first alternative is a column
        become fallbacks (``{name|there}``), then :meth:`validate`. Returns the template to render."""
        columns = list(available)
        have = set(columns) | set(ALWAYS_AVAILABLE)
        bound = Template(self.text, _bind(self._nodes, have))
        bound.validate(columns)
        return bound

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

    def render(self, variables: Mapping[str, str], seed: str, empty: list[str] | None = None) -> str:
        """The message for one recipient. ``seed`` (e.g. job name + phone) picks the spintax variants:
        the same seed always gives the same text. A missing variable is a TemplateError. ``empty``, when
        given, receives the key of each placeholder that rendered as nothing (blank value, no fallback)."""
        if self._flat is not None:
            # One join, no recursion: this runs once per row of an import.
            try:
                parts = [n if isinstance(n, str) else variables[n.key] for n in self._flat]
            except KeyError:
                pass  # the general path below names the missing placeholder
            else:
                if empty is not None:
                    empty.extend(
                        n.key for n in self._flat if isinstance(n, _Var) and not variables[n.key].strip()
                    )
                return "".join(parts)
        out: list[str] = []
        self._render(self._nodes, variables, seed, out, empty)
        return "".join(out)

    def _render(
        self,
        nodes: tuple[_Node, ...],
        variables: Mapping[str, str],
        seed: str,
        out: list[str],
        empty: list[str] | None,
    ) -> None:
        for node in nodes:
            if isinstance(node, str):
                out.append(node)
            elif isinstance(node, _Var):
                value = _value(variables, node)
                if empty is not None and not value.strip():
                    empty.append(node.key)
                out.append(value)
            elif isinstance(node, _Fallback):
                for var in node.keys:
                    value = _value(variables, var)
                    if value.strip():
                        out.append(value)
                        break
                else:
                    self._render(node.default, variables, seed, out, empty)
            else:
                alternative = node.alternatives[_pick(seed, node.index, len(node.alternatives))]
                self._render(alternative, variables, seed, out, empty)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def _pick(seed: str, index: int, n: int) -> int:
    # A stable hash (not hash(), which changes per process) so a re-render picks the same variant.
    digest = hashlib.blake2b(f"{index}\x00{seed}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


def _value(variables: Mapping[str, str], var: _Var) -> str:
    try:
        return variables[var.key]
    except KeyError:
        raise TemplateError(f"no value for {{{var.source}}}") from None


def _column_of(alternative: tuple[_Node, ...], have: set[str]) -> _Var | None:
    """The column an alternative names (``name`` in ``{name|there}``), or None when it is text."""
    if len(alternative) == 1 and isinstance(alternative[0], str):
        word = alternative[0].strip()
        if _PLACEHOLDER.fullmatch(word) and column_key(word) in have:
            return _Var(column_key(word), word)
    return None


def _bind(nodes: tuple[_Node, ...], have: set[str]) -> tuple[_Node, ...]:
    """Turn each group whose first alternative is a column into a :class:`_Fallback`."""
    bound: list[_Node] = []
    for node in nodes:
        if isinstance(node, _Choice):
            alternatives = tuple(_bind(a, have) for a in node.alternatives)
            keys: list[_Var] = []
            for alt in alternatives:
                var = _column_of(alt, have)
                if var is None:
                    break
                keys.append(var)
            if not keys:
                bound.append(_Choice(node.index, alternatives))
                continue
            rest = alternatives[len(keys) :]
            default: tuple[_Node, ...] = (
                () if not rest else rest[0] if len(rest) == 1 else (_Choice(node.index, rest),)
            )
            bound.append(_Fallback(tuple(keys), default))
        else:
            bound.append(node)
    return tuple(bound)


def _has_choice(nodes: tuple[_Node, ...]) -> bool:
    for node in nodes:
        if isinstance(node, _Choice):
            return True
        if isinstance(node, _Fallback) and _has_choice(node.default):
            return True
    return False


def _collect(nodes: tuple[_Node, ...], found: list[str], sources: dict[str, str]) -> None:
    for node in nodes:
        if isinstance(node, _Var):
            if node.key not in sources:
                found.append(node.key)
                sources[node.key] = node.source
        elif isinstance(node, _Choice):
            for alt in node.alternatives:
                _collect(alt, found, sources)
        elif isinstance(node, _Fallback):
            _collect(node.keys, found, sources)
            _collect(node.default, found, sources)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def body_problem(body: str) -> str | None:
    """Why a rendered body cannot be sent (empty, or over WhatsApp's limit), or None when it can."""
    if not body.strip():
        return "the message is empty for this row"
    if len(body) > MAX_BODY_CHARS:
        return f"the message is {len(body):,} characters (WhatsApp allows {MAX_BODY_CHARS:,})"
    return None
