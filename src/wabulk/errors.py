"""wabulk's exceptions. The CLI turns any ``WabulkError`` into one ``Error: …`` line and its exit code."""

from __future__ import annotations

from . import exitcodes

# What a provider's error is about (``WabulkError.scope``): the worker decides by this, never by the class.
SCOPE_RECIPIENT = "recipient"  # this one number (not on WhatsApp): says nothing about the account or job
SCOPE_ACCOUNT = "account"  # this account cannot send now (logged out, blocked, its page or browser broke)
SCOPE_JOB = "job"  # what is being sent (an attachment refused), or not known better


class WabulkError(Exception):
    """Base of every error wabulk raises on purpose. ``exit_code`` is what the CLI exits with.

    Errors a provider raises also say what the worker needs to decide: ``scope`` (SCOPE_RECIPIENT,
    SCOPE_ACCOUNT or SCOPE_JOB: what a streak of them pauses, if anything) and ``restart_provider`` (the
    connection is broken: restart the provider before the next message)."""

    exit_code: int = exitcodes.ERROR
    scope: str = SCOPE_JOB
    restart_provider: bool = False


class BadInput(WabulkError):
    """The user's input is wrong (file, column, template, argument); nothing was written."""

    exit_code = exitcodes.BAD_INPUT

    def __init__(
        self, message: str, *, file: str | None = None, row: int | None = None, column: str | None = None
    ) -> None:
        where = ", ".join(
            part
            for part in (
                file,
                f"row {row}" if row is not None else None,
                f"column {column!r}" if column is not None else None,
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.file = file
        self.row = row
        self.column = column


class TemplateError(BadInput):
    """A message template is malformed or names a column that does not exist."""


class DatabaseError(WabulkError):
    """The queue database cannot be opened or used (locked, corrupt, read-only, full disk)."""


class JobNotFound(WabulkError):
    """No job has the given id."""

    exit_code = exitcodes.BAD_INPUT


class MessageNotFound(WabulkError):
    """No message has the given id."""

    exit_code = exitcodes.BAD_INPUT


class InvalidTransition(WabulkError):
    """A job or message cannot move to the requested state (e.g. resuming a stopped job)."""

    exit_code = exitcodes.BAD_INPUT


class LeaseLost(WabulkError):
    """This worker no longer owns the message (lease expired and another worker took it): fencing."""


class SessionBusy(WabulkError):
    """Another live process already uses this WhatsApp session (profile lock or worker registration)."""


class ConfigError(WabulkError):
    """A setting is wrong or something the setting points at is missing (browser, driver)."""


class Unreachable(ConfigError):
    """The provider's service cannot be reached (for the web: the browser shows its network error page)."""

    scope = SCOPE_ACCOUNT


class ProviderDown(WabulkError):
    """The provider's connection to WhatsApp is down: it could not be made, or it died between messages
    (a browser that does not start, a dead driver). About the account, not a message: the worker restarts
    the provider before the next message."""

    scope = SCOPE_ACCOUNT
    restart_provider = True


# --- Sending one message -------------------------------------------------------------------------------


class SendError(WabulkError):
    """Sending one message failed. ``error_class`` is a short stable name stored in the queue."""

    error_class = "send_error"
    transient = True

    def __init__(self, message: str, *, error_class: str | None = None, scope: str | None = None) -> None:
        super().__init__(message)
        if error_class is not None:
            self.error_class = error_class
        if scope is not None:
            self.scope = scope


class TransientSendError(SendError):
    """Worth retrying later: a timeout, the service offline, the provider's connection lost."""

    transient = True


class PermanentSendError(SendError):
    """Retrying cannot help: the number is not on WhatsApp, the attachment was rejected."""

    transient = False


class NotOnWhatsApp(PermanentSendError):
    """WhatsApp said the number is not on WhatsApp (or that the URL's number is invalid)."""

    error_class = "not_on_whatsapp"
    scope = SCOPE_RECIPIENT


class AttachmentRejected(PermanentSendError):
    """WhatsApp refused the attachment (too large, unsupported type, empty)."""

    error_class = "attachment_rejected"


class ConfirmTimeout(TransientSendError):
    """The message was sent but never left the clock (pending) state in time: outcome unknown."""

    error_class = "confirm_timeout"
    scope = SCOPE_ACCOUNT


class Offline(TransientSendError):
    """The provider is cut off from WhatsApp for now (WhatsApp Web's 'Computer not connected' bar): no
    recipient is to blame; the message waits without spending an attempt."""

    error_class = "offline"
    scope = SCOPE_ACCOUNT


class ProviderCrashed(TransientSendError):
    """The provider's connection died while sending (a crashed browser or driver): whether the message
    left is not known, so it is verified before any resend. About the account: the worker restarts the
    provider before the next message."""

    error_class = "provider_crashed"
    scope = SCOPE_ACCOUNT
    restart_provider = True


class SessionError(WabulkError):
    """The WhatsApp session as a whole cannot send; no message is to blame."""

    error_class = "session"
    scope = SCOPE_ACCOUNT


class NotLoggedIn(SessionError):
    """The account is logged out (the web: the QR screen shows): a person must link it again."""

    error_class = "logged_out"


class Blocked(SessionError):
    """WhatsApp shows a temporary ban, proxy block or terms-of-service block screen."""

    error_class = "blocked"


class AccountRestricted(SessionError):
    """WhatsApp restricts the account on linked devices (the chat shows a block bar instead of the
    composer): nothing can be sent until it lifts, and no message is to blame."""

    error_class = "restricted"


class SendRefused(WabulkError):
    """The queue refused the send stamp although the lease holds: the job was stopped or paused, the number
    opted out, or the message's send budget is used up. Nothing may be sent; the queue has already settled
    the message (``status`` says how: cancelled, skipped, pending again, failed)."""

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message)
        self.status = status
