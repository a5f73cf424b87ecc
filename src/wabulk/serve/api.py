"""The HTTP API and the dashboard's page of ``wabulk serve``: one more client of the queue, like the CLI.

Every endpoint opens the database, calls the same library function the matching command calls
(:func:`wabulk.report.status_report`, :func:`wabulk.importer.enqueue_file`, ``Queue.pause_job``…) and
answers with the same JSON the command's ``--json`` prints. Errors are the command's one line, as
``{"error": "...", "exit_code": N}`` with an HTTP status (400 bad input, 404 unknown job, 409 a transition
the job cannot make, 503 no database). The app keeps no state of its own beyond the token.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from wabulk import __version__, errors, exitcodes
from wabulk.queue import Queue
from wabulk.settings import Settings

from .guard import COOKIE, Guard, csrf_token

DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024


def plain_validation_message(e: dict[str, Any]) -> str:
    """A request field's problem in the CLI's words ("must be at most 20"), not pydantic's ("Input
    should be less than or equal to 20")."""
    kind = str(e.get("type", ""))
    ctx = e.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind in ("less_than_equal", "less_than"):
        return f"must be at most {ctx.get('le', ctx.get('lt'))}"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}"
    if kind.startswith("int_"):
        return "must be a whole number"
    if kind.startswith(("float_", "decimal_")):
        return "must be a number"
    if kind.startswith("bool_"):
        return "must be true or false"
    msg = str(e.get("msg", "invalid"))
    return msg.replace("Input should be", "must be", 1)


# A QR older than this is not shown: WhatsApp rotates it about every 20 s, so it has surely expired.
QR_FRESH_SECONDS = 90.0
MESSAGES_PAGE = 50
MESSAGES_PAGE_MAX = 1000
_UPLOAD_SUFFIXES = (".csv", ".tsv", ".txt", ".xlsx")
_CONTROL = re.compile(r"[\x00-\x1f\x7f/\\]")


def _status_code(exc: errors.WabulkError) -> int:
    if isinstance(exc, (errors.JobNotFound, errors.MessageNotFound)):
        return 404
    if isinstance(exc, errors.InvalidTransition):
        return 409
    if isinstance(exc, errors.DatabaseError):
        return 503
    if exc.exit_code == exitcodes.BAD_INPUT:
        return 400
    return 500


def error_response(exc: errors.WabulkError, **extra: Any) -> JSONResponse:
    """The CLI's ``Error: …`` line as JSON, with its exit code."""
    return JSONResponse(
        {"error": str(exc), "exit_code": exc.exit_code, **extra}, status_code=_status_code(exc)
    )


def message_row(m: Any) -> dict[str, Any]:
    """One message as the dashboard lists it."""
    return {
        "id": m.id,
        "phone": m.phone,
        "name": m.name,
        "status": m.status,
        "attempts": m.attempts,
        "error": m.last_error,
        "error_class": m.error_class,
        "sent_at": m.sent_at,
        "receipt": m.receipt,
        "delivered_at": m.delivered_at,
        "read_at": m.read_at,
        "session": m.sent_by_session,
        "body": m.body,
    }


def _safe_name(filename: str | None) -> str:
    """The uploaded file's base name, for the job's name only (never used as a path)."""
    base = (filename or "upload.csv").replace("\\", "/").rsplit("/", 1)[-1]
    return _CONTROL.sub("", base).strip()[:120] or "upload.csv"


def create_app(settings: Settings, *, token: str, max_upload: int = DEFAULT_MAX_UPLOAD) -> Any:
    """The ASGI app: the FastAPI routes behind :class:`~wabulk.serve.guard.Guard`."""
    app = FastAPI(
        title="wabulk",
        version=__version__,
        description="Queue, watch and steer WhatsApp bulk jobs. Every request needs the token "
        "(`Authorization: Bearer <token>`), except /api/health.",
    )
    db = settings.db
    Queue(db).close()  # create (and migrate) the file now, as `wabulk enqueue` would

    def queue() -> Queue:
        return Queue(db, create=False)

    @app.exception_handler(errors.WabulkError)
    async def _wabulk_error(_request: Request, exc: errors.WabulkError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # One line, like the CLI's usage errors (exit 2), instead of FastAPI's list of details.
        problems = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
            text = plain_validation_message(e)
            problems.append(f"{where}: {text}" if where else text)
        return JSONResponse(
            {"error": "; ".join(problems) or "invalid request", "exit_code": exitcodes.BAD_INPUT},
            status_code=422,
        )

    # --- dashboard ---------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def dashboard(request: Request) -> HTMLResponse:
        page = resources.files("wabulk.serve").joinpath("static/index.html").read_text(encoding="utf-8")
        page = page.replace("{{csrf}}", csrf_token(token)).replace("{{version}}", __version__)
        response = HTMLResponse(page, headers=_page_headers())
        if request.scope.get("state", {}).get("auth") == "query":
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    @app.get("/api", include_in_schema=False)
    def api_reference() -> HTMLResponse:
        # The OpenAPI page without third-party scripts (/docs is FastAPI's Swagger UI, from a CDN).
        page = resources.files("wabulk.serve").joinpath("static/api.html").read_text(encoding="utf-8")
        return HTMLResponse(page, headers=_page_headers())

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        # A fixed set of names: the request never chooses a path.
        files = {"app.js": "text/javascript", "app.css": "text/css", "api.js": "text/javascript"}
        if name not in files:
            return JSONResponse({"error": "not found"}, status_code=404)
        body = resources.files("wabulk.serve").joinpath("static/" + name).read_bytes()
        return Response(body, media_type=files[name], headers={"Cache-Control": "no-cache"})

    # --- API --------------------------------------------------------------------------------------------
    @app.get("/api/health", tags=["status"])
    def health() -> dict[str, Any]:
        """Liveness: no token needed, nothing sensitive."""
        return {"ok": True, "version": __version__}

    @app.get("/api/status", tags=["status"])
    def status(job_id: int | None = None, undelivered_after: str = "24h") -> dict[str, Any]:
        """The same JSON as `wabulk status --json`."""
        return _report(settings, queue, job_id, undelivered_after)

    @app.get("/api/jobs/{job_id}", tags=["jobs"])
    def job(job_id: int, undelivered_after: str = "24h") -> dict[str, Any]:
        """One job: its row of `wabulk status JOB_ID --json`."""
        return dict(_report(settings, queue, job_id, undelivered_after)["jobs"][0])

    @app.get("/api/jobs/{job_id}/messages", tags=["jobs"])
    def messages(
        job_id: int, status: str | None = None, offset: int = 0, limit: int = MESSAGES_PAGE
    ) -> dict[str, Any]:
        """One page of the job's messages (by id), with text, status, error and receipts; ``status``
        filters; ``total`` is how many match, so a list can page through all of them."""
        limit = max(1, min(limit, MESSAGES_PAGE_MAX))
        offset = max(0, offset)
        with queue() as q:
            total, page = q.message_page(job_id, status=status, offset=offset, limit=limit)
        return {
            "job_id": job_id,
            "status": status,
            "offset": offset,
            "limit": limit,
            "total": total,
            "messages": [message_row(m) for m in page],
        }

    @app.post("/api/jobs", tags=["jobs"])
    def enqueue(
        file: Annotated[UploadFile, File(description="Contacts: CSV (any delimiter/encoding) or .xlsx.")],
        message: Annotated[str, Form(description="Message template, e.g. 'Hi {name}'.")],
        name: Annotated[str | None, Form(description="Job name (default: the file's name).")] = None,
        country: Annotated[
            str | None, Form(description="Default country for local numbers (ISO code).")
        ] = None,
        phone_column: Annotated[str | None, Form()] = None,
        name_column: Annotated[str | None, Form()] = None,
        at: Annotated[
            str | None, Form(description="Do not start before ('2026-12-01 09:00', '+2h').")
        ] = None,
        session: Annotated[
            str | None, Form(description="Only these sessions may send it (comma separated).")
        ] = None,
        max_attempts: Annotated[int, Form(ge=1, le=20)] = 3,
        dry_run: Annotated[bool, Form(description="Validate and preview; write nothing.")] = False,
        attachment: Annotated[
            UploadFile | None,
            File(description="Image, video or document sent with each message (the text is its caption)."),
        ] = None,
    ) -> JSONResponse:
        """Queue a job, as `wabulk enqueue --json` (dry_run: preview, with the rejected rows and the
        file's columns: every header and the phone and name columns detected)."""
        return _enqueue(
            queue,
            file,
            attachment=attachment,
            attachments_dir=settings.home / "attachments",
            message=message,
            name=name,
            country=country,
            phone_column=phone_column,
            name_column=name_column,
            at=at,
            session=session,
            max_attempts=max_attempts,
            dry_run=dry_run,
        )

    def control(job_id: int, action: str) -> dict[str, Any]:
        with queue() as q:
            if action == "pause":
                j = q.pause_job(job_id)
            elif action == "resume":
                j = q.resume_job(job_id)
            else:
                j = q.stop_job(job_id)
                cancelled = q.counts(job_id).get("cancelled", 0)
                return {
                    "id": j.id,
                    "status": j.status,
                    "cancelled": cancelled,
                    "message": f"Job {j.id} is {j.status}; {cancelled} message(s) cancelled.",
                }
        return {"id": j.id, "status": j.status, "message": f"Job {j.id} is {j.status}."}

    @app.post("/api/jobs/{job_id}/pause", tags=["control"])
    def pause(job_id: int) -> dict[str, Any]:
        """As `wabulk pause`: workers stop claiming its messages within a second."""
        return control(job_id, "pause")

    @app.post("/api/jobs/{job_id}/resume", tags=["control"])
    def resume(job_id: int) -> dict[str, Any]:
        """As `wabulk resume`."""
        return control(job_id, "resume")

    @app.post("/api/jobs/{job_id}/stop", tags=["control"])
    def stop(job_id: int) -> dict[str, Any]:
        """As `wabulk stop`: pending messages become cancelled."""
        return control(job_id, "stop")

    @app.post("/api/jobs/{job_id}/retry-failed", tags=["control"])
    def retry_failed(job_id: int, error_class: str | None = None) -> dict[str, Any]:
        """As `wabulk retry-failed JOB_ID [--error-class C]`."""
        with queue() as q:
            q.get_job(job_id)
            n = q.retry_failed(job_id, message_id=None, error_class=error_class)
        return {"id": job_id, "retried": n, "message": f"{n} message(s) back in the queue."}

    @app.get("/api/jobs/{job_id}/export.csv", tags=["jobs"])
    def export(job_id: int, undelivered: bool = False, undelivered_after: str = "24h") -> Response:
        """As `wabulk export JOB_ID [--undelivered]`: one CSV row per recipient."""
        from wabulk.export import export_job
        from wabulk.receipts import export_undelivered, parse_age

        after = parse_age(undelivered_after, option="undelivered_after")
        buf = io.StringIO(newline="")
        with queue() as q:
            if undelivered:
                export_undelivered(q, job_id, buf, now=time.time(), after=after)
            else:
                export_job(q, job_id, buf)
        suffix = "-undelivered" if undelivered else ""
        return Response(
            buf.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="job-{job_id}{suffix}.csv"'},
        )

    # --- opt-outs ---------------------------------------------------------------------------------------
    @app.get("/api/optouts", tags=["optouts"])
    def optouts() -> list[dict[str, Any]]:
        """As `wabulk optout list --json`."""
        from wabulk.store.optouts import optouts_as_json

        with queue() as q:
            return optouts_as_json(q.list_optouts())

    @app.post("/api/optouts", tags=["optouts"])
    async def optout_add(request: Request) -> JSONResponse:
        """As `wabulk optout add`: JSON ``{"numbers": [...], "country": "GB", "reason": "..."}``."""
        body = await request.json()
        numbers = body.get("numbers") if isinstance(body, dict) else None
        if not isinstance(numbers, list) or not numbers or not all(isinstance(n, str) for n in numbers):
            raise errors.BadInput("give the numbers to add as a JSON list of strings in 'numbers'")
        phones = _normalize(numbers, body.get("country"))
        reason = body.get("reason")
        with queue() as q:
            n = q.add_optouts(phones, reason if isinstance(reason, str) else None)
        return JSONResponse({"added": n, "message": f"{n} number(s) added to the opt-out list."})

    @app.delete("/api/optouts/{phone}", tags=["optouts"])
    def optout_remove(phone: str, country: str | None = None) -> dict[str, Any]:
        """As `wabulk optout remove`."""
        phones = _normalize([phone], country)
        with queue() as q:
            n = q.remove_optouts(phones)
        return {"removed": n, "message": f"{n} number(s) removed from the opt-out list."}

    # --- sessions ---------------------------------------------------------------------------------------
    @app.get("/api/sessions/{session}/qr.svg", tags=["status"])
    def session_qr(session: str) -> Response:
        """The QR code the session's worker shows while it waits for a login (404 when none)."""
        from wabulk.notify import store

        with queue() as q:
            found = store.read_qr(q.conn, session)
        if found is None or time.time() - found[1] > QR_FRESH_SECONDS:
            return JSONResponse({"error": f"session {session!r} shows no login QR"}, status_code=404)
        import segno

        out = io.BytesIO()
        segno.make(found[0], error="L", micro=False).save(out, kind="svg", scale=6, border=4)
        return Response(out.getvalue(), media_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    @app.get("/api/notifications", tags=["status"])
    def notifications(limit: int = 50) -> list[dict[str, Any]]:
        """The most recent notifications and whether they were delivered. ``target`` is described
        without the secrets a webhook URL may carry; ``text`` is what the notification said."""
        from wabulk.notify import describe, store

        with queue() as q:
            return [
                {
                    "id": n.id,
                    "kind": n.kind,
                    "target": describe(n.target),
                    "text": n.payload.get("text") if isinstance(n.payload, dict) else None,
                    "status": n.status,
                    "attempts": n.attempts,
                    "created_at": n.created_at,
                    "delivered_at": n.delivered_at,
                    "last_error": n.last_error,
                }
                for n in store.listing(q.conn, limit=max(1, min(limit, 500)))
            ]

    return with_webhooks(Guard(app, token=token, max_body=max_upload), db), app


def with_webhooks(guarded: Any, db: Path) -> Any:
    """Put Meta's webhook endpoint (``/webhooks/whatsapp``) in front of the guarded app: Meta cannot send
    the API token, so the endpoint authenticates by the payload's signature (the app secret) instead."""
    from wabulk import settings as cfg
    from wabulk.cloud.webhooks import PATH, WebhookReceiver, handle_asgi

    receiver = WebhookReceiver(db, app_secret=cfg.cloud_app_secret(), verify_token=cfg.cloud_verify_token())

    async def root(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path") == PATH:
            await handle_asgi(receiver, scope, receive, send)
            return
        await guarded(scope, receive, send)

    return root


def _page_headers() -> dict[str, str]:
    # The page runs only its own script; it cannot be framed by another site.
    return {
        "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self';"
        " script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def _report(settings: Settings, queue: Any, job_id: int | None, undelivered_after: str) -> dict[str, Any]:
    from wabulk.receipts import parse_age
    from wabulk.report import status_report

    after = parse_age(undelivered_after, option="undelivered_after")
    with queue() as q:
        report = status_report(
            q, job_id=job_id, undelivered_after_seconds=after, pace=settings.pace, now=time.time()
        )
        out = report.as_dict()
    return out


def _normalize(numbers: list[str], country: Any) -> list[str]:
    from wabulk.contacts import normalize_phones

    # ``country`` comes from a JSON body: anything but a string means the default country.
    return normalize_phones(numbers, country if isinstance(country, str) else None)


def _columns(src: Path, country: str | None) -> dict[str, Any]:
    """The file's headers and the phone and name columns wabulk picks by itself (None when it finds
    none): what the dashboard's column-mapping step shows and lets the user change."""
    from wabulk.contacts import open_contacts, read_header

    try:
        headers = read_header(src)
    except errors.WabulkError:
        return {"headers": [], "phone": None, "name": None}
    try:
        with open_contacts(src, country=country) as cf:
            return {"headers": headers, "phone": cf.phone_column, "name": cf.name_column}
    except errors.WabulkError:
        return {"headers": headers, "phone": None, "name": None}


def _save_attachment(upload: UploadFile, folder: Path) -> Path:
    """Keep an uploaded attachment under ``folder`` (a new private sub-folder per upload, under the file's
    own base name: WhatsApp shows a document's name to the recipient)."""
    from wabulk.settings import ensure_private_dir

    name = _safe_name(upload.filename or "attachment")
    where = ensure_private_dir(folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}")
    path = where / name
    with open(path, "wb") as fh:
        shutil.copyfileobj(upload.file, fh)
    return path


def _enqueue(
    queue: Any,
    upload: UploadFile,
    *,
    session: str | None,
    at: str | None,
    attachment: UploadFile | None,
    attachments_dir: Path,
    **kw: Any,
) -> JSONResponse:
    """Save the upload in a private temp dir under a fixed name, run the importer on it, answer. A real
    job's attachment is kept under ``attachments_dir`` (the worker reads it when it sends); a preview's
    only in the temp dir."""
    from wabulk.contacts import default_country
    from wabulk.importer import enqueue_file, parse_when

    filename = _safe_name(upload.filename)
    suffix = Path(filename).suffix.lower()
    if suffix not in _UPLOAD_SUFFIXES:
        suffix = ".csv"
    dry_run = bool(kw.pop("dry_run"))
    tmp = Path(tempfile.mkdtemp(prefix="wabulk-upload-"))
    try:
        src = tmp / ("contacts" + suffix)
        with open(src, "wb") as fh:
            shutil.copyfileobj(upload.file, fh)
        rejects_path = tmp / "rejects.csv"
        country = kw["country"] or default_country()
        # A browser sends an empty part for an attachment field left empty.
        attach: Path | None = None
        if attachment is not None and attachment.filename:
            attach = _save_attachment(attachment, tmp if dry_run else attachments_dir)
        try:
            not_before = parse_when(at, time.time()) if at else None
            sessions = tuple(s.strip() for s in session.split(",") if s.strip()) if session else ()
            q = queue()  # a dry run too: it counts the opted-out numbers as the real run does
            try:
                result = enqueue_file(
                    q,
                    src,
                    message=kw["message"],
                    name=kw["name"] or filename,
                    country=country,
                    phone_column=kw["phone_column"],
                    name_column=kw["name_column"],
                    not_before=not_before,
                    max_attempts=kw["max_attempts"],
                    attachment=attach,
                    sessions=sessions,
                    rejects_path=rejects_path,
                    dry_run=dry_run,
                )
            finally:
                if q is not None:
                    q.close()
        except errors.WabulkError as exc:
            if attach is not None and not dry_run:
                shutil.rmtree(attach.parent, ignore_errors=True)  # no job will ever read it
            # The file's own name, as the CLI names the file it was given, not the private temp copy.
            text = str(exc).replace(str(src.resolve()), filename).replace(str(src), filename)
            if attach is not None:
                text = text.replace(str(attach.resolve()), attach.name).replace(str(attach), attach.name)
            body: dict[str, Any] = {
                "error": text,
                "exit_code": exc.exit_code,
                "rejects": _read_rejects(rejects_path),
            }
            if dry_run:
                body["columns"] = _columns(src, country)
            return JSONResponse(body, status_code=_status_code(exc))
        out: dict[str, Any] = result.as_json()
        out["notices"] = list(result.notices)
        out["rejects"] = _read_rejects(rejects_path)
        out["phone_column"] = result.phone_column
        out["name_column"] = result.name_column
        if dry_run:
            out["columns"] = _columns(src, country)
        return JSONResponse(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_rejects(path: Path, limit: int = 500) -> list[dict[str, Any]]:
    """The rejected rows the importer wrote (row, column, value, reason), at most ``limit``."""
    if not path.exists():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        rows: Iterator[dict[str, str]] = csv.DictReader(fh)
        out: list[dict[str, Any]] = []
        for r in rows:
            if len(out) >= limit:
                break
            value = r.get("value") or ""
            if value.startswith("'") and value[1:2] in ("=", "+", "-", "@", "\t", "\r"):
                r["value"] = value[1:]  # the file is neutralised for spreadsheets; JSON need not be
            out.append(r)
    return out
