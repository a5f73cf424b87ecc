"""Structured logs: JSON lines in ``<home>/logs/wabulk.log``, rotated (5 MB × 5), readable only by the user.

Phone numbers are masked (``+1415•••0123``) unless ``log_numbers`` is on, and message bodies are never
written: only their length and a short hash, so two log lines can still be matched to one message.
Fields are passed with ``logger.info("sent", extra={"data": {...}})``; any key named ``phone`` in
``data`` is masked by the formatter, so a caller cannot leak a number by forgetting to mask it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

LOGGER_NAME = "wabulk"
LOG_FILE = "wabulk.log"
MAX_BYTES = 5 * 1024 * 1024
BACKUPS = 5

_PHONE_KEYS = {"phone", "recipient", "to"}

# Library practice: without setup_logging(), wabulk's records go nowhere rather than to stderr.
logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())


def mask_phone(phone: str | None) -> str:
    """``+14155550123`` -> ``+1415•••0123``: enough to tell recipients apart, not enough to dial."""
    if not phone:
        return ""
    p = str(phone)
    if len(p) <= 6:
        return p[:1] + "•" * max(0, len(p) - 1)
    head = 5 if p.startswith("+") else 4
    head = min(head, len(p) - 4)
    return p[:head] + "•••" + p[-4:]


def body_digest(body: str | None) -> dict[str, Any]:
    """What the logs keep of a message body: its length and the first 12 hex digits of its SHA-256."""
    b = body or ""
    return {"len": len(b), "sha256": hashlib.sha256(b.encode("utf-8")).hexdigest()[:12]}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, msg, plus the record's ``data`` dict."""

    def __init__(self, *, log_numbers: bool = False) -> None:
        super().__init__()
        self.log_numbers = log_numbers

    def _clean(self, data: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in _PHONE_KEYS and isinstance(value, str) and not self.log_numbers:
                out[key] = mask_phone(value)
            elif key == "body":
                # Bodies are personal data: never logged, whatever the caller passed.
                out["body"] = body_digest(value if isinstance(value, str) else str(value))
            elif isinstance(value, dict):
                out[key] = self._clean(value)
            else:
                out[key] = value
        return out

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        data = getattr(record, "data", None)
        if isinstance(data, dict):
            entry.update(self._clean(data))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class PrivateRotatingFileHandler(RotatingFileHandler):
    """A RotatingFileHandler whose files are created 0600 (logs name recipients and sessions)."""

    def _open(self):  # type: ignore[no-untyped-def]
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.chmod(self.baseFilename, 0o600)
        except OSError:
            pass
        return os.fdopen(fd, self.mode if "a" in self.mode else "a", encoding=self.encoding)


def setup_logging(logs_dir: Path, *, log_numbers: bool = False, level: int = logging.INFO) -> Path:
    """Attach the JSON file handler to the ``wabulk`` logger (idempotent per file) and return the
    log file's path. The directory is created private (0700)."""
    from .settings import ensure_private_dir

    ensure_private_dir(logs_dir)
    path = logs_dir / LOG_FILE
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    for h in list(logger.handlers):
        if isinstance(h, PrivateRotatingFileHandler) and Path(h.baseFilename) == path.resolve():
            h.setFormatter(JsonFormatter(log_numbers=log_numbers))
            return path
    handler = PrivateRotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    handler.setFormatter(JsonFormatter(log_numbers=log_numbers))
    logger.addHandler(handler)
    return path


def teardown_logging(path: Path) -> None:
    """Detach and close the handler writing to ``path`` (tests and repeated runs in one process)."""
    logger = logging.getLogger(LOGGER_NAME)
    for h in list(logger.handlers):
        if isinstance(h, PrivateRotatingFileHandler) and Path(h.baseFilename) == path.resolve():
            logger.removeHandler(h)
            h.close()
