"""``wabulk enqueue`` as a library call: contacts file -> rendered messages -> one queue transaction."""

from __future__ import annotations

import csv
import functools
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from . import settings
from .contacts import NOT_MOBILE, ContactFile, ContactRecord, Reject, check_country, open_contacts
from .errors import BadInput
from .export import neutralize
from .models import EnqueueStats, Job, NewJob, NewMessage
from .templates import Template, body_problem

if TYPE_CHECKING:
    from .cloud.costs import CostEstimate, Rates
    from .cloud.templates import Catalogue

MAX_REJECTS_SHOWN = 10
PREVIEWS = 3
REJECTS_COLUMNS = ("row", "column", "value", "reason")


DEFAULT_TEMPLATE_LANG = "en_US"


@dataclass(frozen=True)
class TemplateJob:
    """``enqueue --template``: a Cloud API template by name and language, and its parameters, each
    a message template (``{column}``, spintax) rendered per contact like ``--message``."""

    name: str
    language: str = DEFAULT_TEMPLATE_LANG
    params: tuple[str, ...] = ()
    # A template with a header or buttons that take parameters (checked against the synced catalogue):
    # the header's text values, its media (an https:// link rendered per contact, or a file uploaded once
    # per job) and one value per button that takes one, each rendered per contact like ``params``.
    header_params: tuple[str, ...] = ()
    header_media: str | None = None
    button_params: tuple[str, ...] = ()

    @property
    def header_link(self) -> bool:
        """Whether ``header_media`` is a link (rendered per contact) rather than a file."""
        return self.header_media is not None and self.header_media.strip().lower().startswith(
            ("https://", "http://", "{")
        )


class EnqueueTarget(Protocol):
    """What the importer needs from :class:`queue.Queue`."""

    def enqueue(
        self,
        job: NewJob,
        messages: Iterable[NewMessage],
        on_duplicate: Callable[[int | None, str, int | None], None] | None = None,
    ) -> EnqueueStats: ...

    def list_jobs(self) -> list[Job]: ...

    def is_opted_out(self, phone: str) -> bool: ...


@dataclass
class ImportResult:
    """What an import did (or, for a dry run, would do)."""

    job_id: int | None  # None for a dry run
    enqueued: int = 0
    invalid: int = 0  # rows rejected (bad number, empty or over-long message)
    duplicates: int = 0
    opted_out: int = 0
    not_mobile: int = 0  # valid numbers that are not mobile numbers (kept, flagged)
    rejects: list[Reject] = field(default_factory=list)  # the first few
    # Rows whose message has a placeholder that rendered as nothing ("Hi , …"): sent, but reported.
    empty_rows: int = 0
    empty_placeholders: dict[str, int] = field(default_factory=dict)  # placeholder key -> rows
    empty_examples: list[int] = field(default_factory=list)  # the first few row numbers
    # The first few duplicates dropped: (row, phone, the row it repeats); all are in the rejects file.
    duplicate_rows: list[tuple[int | None, str, int | None]] = field(default_factory=list)
    previews: list[str] = field(default_factory=list)  # the first rendered bodies
    param_previews: list[tuple[str, ...]] = field(default_factory=list)  # template jobs: their parameters
    param_labels: list[str] = field(default_factory=list)  # what each previewed parameter fills
    notices: list[str] = field(default_factory=list)
    template: TemplateJob | None = None
    category: str | None = None  # the template's category, from the synced catalogue
    cost: CostEstimate | None = None  # dry run with rates
    job_name: str = ""
    phone_column: str = ""
    name_column: str | None = None
    dry_run: bool = False

    def as_json(self) -> dict[str, Any]:
        """What ``wabulk enqueue --json`` prints, and what ``POST /api/jobs`` answers (plus its notices
        and rejected rows): one function so that the two cannot drift apart."""
        return {
            "job_id": self.job_id,
            "enqueued": self.enqueued,
            "invalid": self.invalid,
            "duplicates": self.duplicates,
            "opted_out": self.opted_out,
            "not_mobile": self.not_mobile,
            "empty_rows": self.empty_rows,
            "empty_placeholders": dict(self.empty_placeholders),
            "empty_examples": list(self.empty_examples),
            "duplicate_rows": [
                {"row": row, "phone": phone, "first_row": first} for row, phone, first in self.duplicate_rows
            ],
            "dry_run": self.dry_run,
            **({"previews": list(self.previews)} if self.dry_run else {}),
            **(
                {
                    "template": {
                        "name": self.template.name,
                        "language": self.template.language,
                        "category": self.category,
                        **({"previews": [list(p) for p in self.param_previews]} if self.dry_run else {}),
                    }
                }
                if self.template is not None
                else {}
            ),
            **({"cost": self.cost.as_json()} if self.cost is not None else {}),
        }


class _RejectsFile:
    """The full rejects CSV, written to a temp file and renamed into place only when the import
    finishes (a failed import leaves no half-written report behind)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._tmp: Path | None = None
        self._fh: TextIO | None = None
        self._writer: Any = None

    def open(self) -> None:
        if self.path is None:
            return
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self._fh = open(self._tmp, "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise BadInput(
                f"cannot write the rejects file: {exc.strerror or exc}", file=str(self.path)
            ) from None
        self._writer = csv.writer(self._fh, lineterminator="\n")
        self._writer.writerow(REJECTS_COLUMNS)

    def write(self, r: Reject) -> None:
        if self._writer is not None:
            self._writer.writerow(
                [str(r.row), neutralize(r.column or ""), neutralize(r.value), neutralize(r.reason)]
            )

    def commit(self) -> None:
        if self._fh is not None and self._tmp is not None and self.path is not None:
            self._fh.close()
            self._fh = None
            os.replace(self._tmp, self.path)
            self._tmp = None

    def discard(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def enqueue_file(
    queue: EnqueueTarget | None,
    path: Path | str,
    *,
    message: str | None = None,
    template: TemplateJob | None = None,
    catalogue: Catalogue | None = None,
    rates: Rates | None = None,
    name: str | None = None,
    country: str | None,
    phone_column: str | None = None,
    name_column: str | None = None,
    attachment: Path | str | None = None,
    not_before: float | None = None,
    max_attempts: int = settings.DEFAULT_MAX_ATTEMPTS,
    sessions: Sequence[str] = (),
    rejects_path: Path | str | None = None,
    dry_run: bool = False,
) -> ImportResult:
    """Read ``path``, render ``message`` (or ``template``'s parameters) for every valid row and enqueue
    them all as one job.

    A ``template`` job is checked against ``catalogue`` (name, approved language, parameter count: BadInput
    before any row is read; without a synced catalogue a notice says it was not checked). A parameter that
    renders empty for a row is BadInput naming the row and column (Meta refuses empty parameters), and the
    job is not written. ``rates`` (a dry run) adds a cost estimate per country.

    All-or-nothing: a fatal problem (unreadable file, no phone column, bad template, a template
    placeholder that names no column, a missing attachment) raises BadInput before anything is
    written, and one found part-way (a malformed line) rolls the whole job back. Row-level problems
    (a bad number, an empty or over-long message) are counted in ``invalid``, the first few kept in
    ``rejects`` and all written to ``rejects_path`` when given (also on a dry run: it is the report
    the user asked for). ``dry_run`` validates and previews without touching the queue (``queue`` may
    be None; then opted-out numbers are not counted). Raises BadInput when no row is usable.
    """
    src = Path(path)
    country = check_country(country)
    attach: str | None = None
    if attachment is not None:
        a = Path(attachment).expanduser()
        if not a.is_file():
            raise BadInput(
                "attachment not found" if not a.exists() else "attachment is not a file", file=str(a)
            )
        attach = str(a.resolve())
    if max_attempts < 1:
        raise BadInput(f"max attempts must be at least 1 (got {max_attempts})")
    if (message is None) == (template is None):
        raise BadInput("give either a message or a template")
    if rates is not None and not dry_run:
        raise BadInput("a cost estimate (--rates) is for a dry run: add --dry-run")
    layout: str | None = None
    if template is not None:
        if attach is not None:
            raise BadInput("a template job cannot carry an attachment (a media header: --header-media)")
        labelled = _labelled_params(template)
        param_templates = tuple(t for _, t in labelled)
        entry = _check_catalogue(template, catalogue, sessions)
        extras = _extras(template)
        from .cloud.templates import entry_shape, layout_for

        shape = entry_shape(entry) if entry is not None else None
        if extras.any or (shape is not None and shape.body_names):
            if entry is None or shape is None:
                raise BadInput(
                    "header and button parameters need the template's synced catalogue (which header and "
                    f"buttons it has); run: {_sync_hint(sessions)}"
                )
            layout = json.dumps(layout_for(shape, extras))
            if template.header_media is not None and not template.header_link:
                attach = _header_file(template.header_media, shape.media_header or "")
    parsed = Template.parse(message) if message is not None else None
    job_template = message if message is not None else _describe(template)
    rejects_file = Path(rejects_path) if rejects_path is not None else None
    if rejects_file is not None and src.exists() and rejects_file.exists() and rejects_file.samefile(src):
        raise BadInput("the rejects file must not be the input file", file=str(rejects_file))
    job_name = name or src.name

    contacts = open_contacts(src, country=country, phone_column=phone_column, name_column=name_column)
    with contacts:
        # Checked against the header, before a single row is read or written.
        result = ImportResult(
            job_id=None,
            notices=list(contacts.notices),
            job_name=job_name,
            phone_column=contacts.phone_column,
            name_column=contacts.name_column,
            dry_run=dry_run,
            template=template,
        )
        messages_of: Any
        if parsed is not None:
            parsed = parsed.for_columns(contacts.variable_names)
            messages_of = functools.partial(_messages, template=parsed)
        else:
            assert template is not None
            bound: list[Template] = []
            for (label, _), p in zip(labelled, param_templates, strict=True):
                try:
                    bound.append(p.for_columns(contacts.variable_names))
                except BadInput as exc:
                    raise BadInput(f"{label}: {exc}") from None
            param_templates = tuple(bound)
            result.param_labels = [_preview_label(label) for label, _ in labelled]
            if entry is not None:
                result.category = entry.category
            else:
                result.notices.append(_unchecked_notice(template, catalogue, sessions))
            messages_of = _template_messages(
                template, param_templates, contacts, [label for label, _ in labelled]
            )
        cost = None
        if rates is not None:
            from .cloud.costs import CostEstimate

            # A text job is free-form ("service"); a template job without a catalogue has no known category.
            cost = result.cost = CostEstimate(rates, result.category if template is not None else "service")
        if queue is not None:
            result.notices.extend(_queued_before(queue, src, job_template))
        report = _RejectsFile(rejects_file)
        report.open()
        phone_column = contacts.phone_column

        def duplicate(row: int | None, phone: str, first: int | None) -> None:
            result.duplicates += 1
            if len(result.duplicate_rows) < MAX_REJECTS_SHOWN:
                result.duplicate_rows.append((row, phone, first))
            why = f"duplicate: the same number as row {first}" if first is not None else "duplicate number"
            report.write(Reject(row or 0, phone_column, phone, why))

        try:
            messages = messages_of(
                contacts.records(), contacts.path, job_name=job_name, result=result, report=report
            )
            if dry_run:
                _dry_run(queue, messages, result, duplicate, cost)
            else:
                if queue is None:
                    raise ValueError("a queue is required unless dry_run")
                job = NewJob(
                    name=job_name,
                    template=job_template,
                    template_name=template.name if template is not None else None,
                    template_lang=template.language if template is not None else None,
                    template_layout=layout,
                    attachment=attach,
                    not_before=not_before,
                    max_attempts=max_attempts,
                    sessions=tuple(sessions),
                    source=str(src.resolve()),
                )
                stats = queue.enqueue(job, messages, duplicate)
                result.job_id = stats.job_id
                result.enqueued = stats.enqueued
                result.duplicates = stats.duplicates
                result.opted_out = stats.opted_out
        except _NoValidRows as exc:
            report.commit()  # the report explains why nothing was usable
            raise exc.error from None
        except BaseException:
            report.discard()
            raise
        report.commit()
    return result


def _describe(template: TemplateJob | None) -> str:
    """A template job's ``jobs.template``: what a person reads in the job list."""
    assert template is not None
    shown = ", ".join(template.params)
    return f"{template.name} ({template.language})" + (f": {shown}" if shown else "")


def _check_catalogue(template: TemplateJob, catalogue: Catalogue | None, sessions: Sequence[str]) -> Any:
    """The catalogue entry ``template`` will use (BadInput when it is wrong), or None when there is no
    synced catalogue to check against."""
    if catalogue is None or catalogue.empty:
        return None
    from .cloud.templates import check_template

    return check_template(
        catalogue, template.name, template.language, len(template.params), _extras(template)
    )


def _extras(template: TemplateJob) -> Any:
    from .cloud.templates import Extras

    media = None if template.header_media is None else ("link" if template.header_link else "file")
    return Extras(len(template.header_params), media, len(template.button_params))


def _sync_hint(sessions: Sequence[str]) -> str:
    from .cloud.templates import sync_hint

    return sync_hint(list(sessions))


# Meta's media header formats and the files each takes (reference §1.4).
_HEADER_SUFFIXES = {"image": (".jpg", ".jpeg", ".png"), "video": (".mp4", ".3gp", ".3gpp")}


def _header_file(given: str, kind: str) -> str:
    """The media header's file (resolved), uploaded once per job: BadInput when it is missing or not a
    kind of file the header takes."""
    path = Path(given).expanduser()
    if not path.is_file():
        raise BadInput(
            "--header-media: not a file" + ("" if path.exists() else " (not found)")
            + " and not an https:// link",
            file=str(path),
        )  # fmt: skip
    allowed = _HEADER_SUFFIXES.get(kind)
    if allowed and not path.name.lower().endswith(allowed):
        raise BadInput(
            f"--header-media: the template's header is an {kind}, which takes {'/'.join(allowed)} files",
            file=str(path),
        )
    return str(path.resolve())


def _labelled_params(template: TemplateJob) -> list[tuple[str, Template]]:
    """Every value a template job renders per contact, in ``messages.params`` order (body, header, then
    buttons), with the option it came from: BadInput naming it when one does not parse."""
    given: list[tuple[str, str]] = [(f"--template-param {i}", p) for i, p in enumerate(template.params, 1)]
    given += [(f"--header-param {i}", p) for i, p in enumerate(template.header_params, 1)]
    if template.header_media is not None and template.header_link:
        given.append(("--header-media", template.header_media))
    given += [(f"--button-param {i}", p) for i, p in enumerate(template.button_params, 1)]
    out: list[tuple[str, Template]] = []
    for label, text in given:
        try:
            out.append((label, Template.parse(text)))
        except BadInput as exc:
            raise BadInput(f"{label}: {exc}") from None
    return out


def _preview_label(label: str) -> str:
    """How a dry run names a parameter: ``{{1}}`` for the body's, else the option (``--header-param 1``)."""
    if label.startswith("--template-param "):
        return "{{" + label.rsplit(" ", 1)[1] + "}}"
    return label


def _unchecked_notice(template: TemplateJob, catalogue: Catalogue | None, sessions: Sequence[str]) -> str:
    from .cloud.templates import sync_hint

    return (
        f"no template catalogue was synced, so {template.name!r} ({template.language}) and its "
        f"{len(template.params)} parameter(s) were not checked: Meta refuses a wrong one only when the job "
        f"runs (132000/132001); check them first with: {sync_hint(list(sessions))}"
    )


def _template_messages(
    template: TemplateJob, params: tuple[Template, ...], contacts: ContactFile, labels: Sequence[str] = ()
) -> Any:
    """The per-row generator of a template job: each parameter rendered like ``--message``; an empty one,
    or a header link that does not render to an https:// URL, is BadInput naming the row and the column it
    came from."""
    labels = list(labels) or [f"--template-param {i}" for i in range(1, len(params) + 1)]
    nbody = len(template.params)
    columns = dict(zip(contacts.keys, contacts.headers, strict=False))
    columns["phone"] = contacts.phone_column
    if contacts.name_column:
        columns.setdefault("name", contacts.name_column)
    label = f"{template.name} ({template.language}): "
    used = tuple(dict.fromkeys(k for p in params for k in p.placeholders))

    def messages(
        records: Iterable[ContactRecord | Reject],
        path: Path,
        *,
        job_name: str,
        result: ImportResult,
        report: _RejectsFile,
    ) -> Iterator[NewMessage]:
        valid = 0
        empty: list[str] = []
        previews = result.param_previews
        for item in records:
            if isinstance(item, Reject):
                result.invalid += 1
                if len(result.rejects) < MAX_REJECTS_SHOWN:
                    result.rejects.append(item)
                report.write(item)
                continue
            row, phone, name, all_vars, mobile = item
            seed = f"{job_name}\x00{phone}"
            rendered = tuple(p.render(all_vars, seed if p.has_spintax else "", empty) for p in params)
            for i, (p, value) in enumerate(zip(params, rendered, strict=True), 1):
                keys = p.placeholders
                column = columns.get(keys[0], keys[0]) if keys else None
                what = f"template parameter {i}" if i <= nbody else labels[i - 1]
                if not value.strip():
                    raise BadInput(
                        f"{what} ({p.text}) is empty for this row, and WhatsApp refuses "
                        "empty parameters: fill it in or leave the row out",
                        file=str(path),
                        row=row,
                        column=column,
                    )
                if labels[i - 1] == "--header-media" and not value.strip().lower().startswith("https://"):
                    raise BadInput(
                        f"--header-media ({p.text}) is {value!r} for this row, not an https:// link "
                        "(Meta fetches the header's media from a public HTTPS URL)",
                        file=str(path),
                        row=row,
                        column=column,
                    )
            if empty:  # a placeholder rendered as nothing inside a longer parameter: sent, but reported
                _count_empty(result, row, empty)
                empty.clear()
            valid += 1
            if not mobile:
                result.not_mobile += 1
            body = label + ", ".join(rendered[:nbody])
            if len(result.previews) < PREVIEWS:
                result.previews.append(body)
                previews.append(rendered)
            yield NewMessage(
                phone=phone,
                body=body,
                name=name,
                variables={k: all_vars[k] for k in used if k in all_vars},
                source_row=row,
                flags=() if mobile else (NOT_MOBILE,),
                params=rendered,
            )
        if valid == 0:
            if not result.invalid:
                raise _NoValidRows(BadInput("nothing to enqueue: it has no contact rows", file=str(path)))
            raise _NoValidRows(BadInput(_all_rejected(result), file=str(path)))

    return messages


class _NoValidRows(Exception):
    def __init__(self, error: BadInput) -> None:
        self.error = error


def _messages(
    contacts: Iterable[ContactRecord | Reject],
    path: Path,
    *,
    template: Template,
    job_name: str,
    result: ImportResult,
    report: _RejectsFile,
) -> Iterator[NewMessage]:
    """Render each contact; count and report rejects; raise at the end when no row was usable."""

    def reject(r: Reject) -> None:
        result.invalid += 1
        if len(result.rejects) < MAX_REJECTS_SHOWN:
            result.rejects.append(r)
        report.write(r)

    valid = 0
    used = template.placeholders
    render = template.render
    seeded = template.has_spintax  # the seed only matters to spintax: skip building it per row otherwise
    previews = result.previews
    not_mobile = (NOT_MOBILE,)
    empty: list[str] = []
    for item in contacts:
        if isinstance(item, Reject):
            reject(item)
            continue
        row, phone, name, all_vars, mobile = item
        # The seed makes spintax stable per message: a re-render (or the dry run) picks the same variant.
        body = render(all_vars, f"{job_name}\x00{phone}" if seeded else "", empty)
        problem = body_problem(body)
        if problem is not None:
            empty.clear()
            reject(Reject(row, None, body[:200], problem))
            continue
        if empty:
            _count_empty(result, row, empty)
            empty.clear()
        valid += 1
        if not mobile:
            result.not_mobile += 1
        if len(previews) < PREVIEWS:
            previews.append(body)
        # Only the variables the template uses are stored: a 90-column Google export stays small.
        variables = {k: all_vars[k] for k in used if k in all_vars}
        yield NewMessage(
            phone=phone,
            body=body,
            name=name,
            variables=variables,
            source_row=row,
            flags=() if mobile else not_mobile,
        )
    if valid == 0:
        if not result.invalid:
            raise _NoValidRows(BadInput("nothing to enqueue: it has no contact rows", file=str(path)))
        raise _NoValidRows(BadInput(_all_rejected(result), file=str(path)))


def _count_empty(result: ImportResult, row: int, keys: list[str]) -> None:
    result.empty_rows += 1
    for key in dict.fromkeys(keys):
        result.empty_placeholders[key] = result.empty_placeholders.get(key, 0) + 1
    if len(result.empty_examples) < MAX_REJECTS_SHOWN:
        result.empty_examples.append(row)


def _all_rejected(result: ImportResult) -> str:
    """Why nothing is usable, with the column the numbers were read from, the first rejected rows and
    the next step: most often the numbers are in another column."""
    first = "; ".join(
        f"row {r.row} {r.value[:40]!r}: {r.reason}" for r in result.rejects[:3] if r.column is not None
    )
    text = f"nothing to enqueue: all {result.invalid} rows were rejected"
    if not first:  # every row was rejected for its message, not its number
        first = "; ".join(f"row {r.row}: {r.reason}" for r in result.rejects[:3])
        return f"{text} ({first})"
    return (
        f"{text}. The numbers were read from column {result.phone_column!r}; the first rejected: {first}. "
        "If the numbers are in another column, name it with --phone-column (or pass --country for "
        "numbers without a country code)."
    )


def _queued_before(queue: EnqueueTarget, src: Path, message: str) -> list[str]:
    """A warning when this file and message were queued before: usually an accidental second run."""
    source = str(src.resolve())
    same = [j for j in queue.list_jobs() if j.source == source and j.template == message]
    if not same:
        return []
    ids = ", ".join(str(j.id) for j in same)
    return [
        f"the same file and message were already queued as job {ids}; this queues them again "
        f"(stop it with `wabulk stop JOB` if that was not meant)"
    ]


def _dry_run(
    queue: EnqueueTarget | None,
    messages: Iterator[NewMessage],
    result: ImportResult,
    duplicate: Callable[[int | None, str, int | None], None],
    cost: CostEstimate | None = None,
) -> None:
    seen: dict[str, int | None] = {}
    for m in messages:
        if m.phone in seen:
            duplicate(m.source_row, m.phone, seen[m.phone])
            continue
        seen[m.phone] = m.source_row
        if queue is not None and queue.is_opted_out(m.phone):
            result.opted_out += 1
            continue
        result.enqueued += 1
        if cost is not None:
            cost.add(m.phone)


# --- --at --------------------------------------------------------------------------------------------

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"^\+\s*((?:\d+(?:\.\d+)?\s*[smhdw]\s*)+)$", re.IGNORECASE)
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_DAY_TIME = re.compile(r"^(today|tomorrow)(?:\s+(?:at\s+)?(\d{1,2})(?::(\d{2}))?)?$", re.IGNORECASE)
_CLOCK = re.compile(r"^(?:at\s+)?(\d{1,2}):(\d{2})$", re.IGNORECASE)
_EXAMPLES = '"2026-12-01 09:00", "2026-12-01T09:00+02:00", "+2h", "+30m", "tomorrow 09:00", "18:30"'


def parse_when(text: str, now: float) -> float:
    """A ``--at`` value as unix seconds. Accepts ISO 8601 date-times with or without a time zone
    (without: local time), a date alone (local midnight), ``+2h``/``+30m``/``+1d``/``+1h30m``,
    ``today|tomorrow HH:MM``, ``HH:MM`` (the next such time) and ``now``. BadInput otherwise."""
    s = text.strip()
    if s.lower() == "now":
        return now
    if m := _RELATIVE.match(s):
        return now + sum(float(n) * _UNITS[u.lower()] for n, u in _PART.findall(m.group(1)))
    local_now = datetime.fromtimestamp(now)  # naive local time: .timestamp() reads it as local again
    if m := _DAY_TIME.match(s):
        day = local_now.date() + timedelta(days=1 if m.group(1).lower() == "tomorrow" else 0)
        if m.group(2) is None:
            if m.group(1).lower() == "today":
                return now
            raise BadInput(f'--at {text!r}: say when tomorrow, e.g. "tomorrow 09:00"')
        return _at(day, int(m.group(2)), int(m.group(3) or 0), text)
    if m := _CLOCK.match(s):
        t = _at(local_now.date(), int(m.group(1)), int(m.group(2)), text)
        return (
            t
            if t > now
            else _at(local_now.date() + timedelta(days=1), int(m.group(1)), int(m.group(2)), text)
        )
    iso = s[:-1] + "+00:00" if s[-1:] in ("Z", "z") else s  # Python 3.10's fromisoformat lacks "Z"
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        raise BadInput(f"--at {text!r} is not a time; examples: {_EXAMPLES}") from None
    return dt.timestamp()


def _at(day: date, hour: int, minute: int, text: str) -> float:
    try:
        return datetime.combine(day, datetime.min.time()).replace(hour=hour, minute=minute).timestamp()
    except ValueError:
        raise BadInput(f"--at {text!r}: {hour:02d}:{minute:02d} is not a time of day") from None
