"""The queue database's schema, as numbered migrations recorded in the database itself.

Never edit a migration once it has shipped: add ``m00N_…`` instead. Every migration here is
transactional, because :func:`migrate` runs them all inside one ``BEGIN IMMEDIATE`` so two processes
opening a new file at the same time cannot both create the schema. WAL is therefore enabled at
connect time (``queue.Queue``), not in a ``transactional=False`` migration.

Times are unix seconds (REAL). Phones are E.164 TEXT. ``sessions``/``settings``/``variables``/``flags``
are JSON text.
"""

from __future__ import annotations

import sqlite3

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from .schema import MIGRATION_SET

migrations = Migrations(MIGRATION_SET)

_JOB_STATUSES = "'queued','running','paused','waiting_for_login','completed','stopped'"
_MESSAGE_STATUSES = "'pending','sending','sent','failed','skipped','cancelled'"


@migrations()
def m001_initial(db: Database) -> None:
    """Jobs, messages, the append-only events log, workers and opt-outs."""
    db.executescript(
        f"""
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,
            template TEXT NOT NULL,
            attachment TEXT,
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ({_JOB_STATUSES})),
            status_reason TEXT,
            max_attempts INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
            sessions TEXT NOT NULL DEFAULT '[]',
            settings TEXT NOT NULL DEFAULT '{{}}',
            source TEXT,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            not_before REAL,
            pruned_at REAL
        );

        -- AUTOINCREMENT: a message id is never reused after prune, so the events log stays unambiguous.
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            job_id INTEGER NOT NULL REFERENCES jobs(id),
            phone TEXT NOT NULL,
            name TEXT,
            variables TEXT NOT NULL DEFAULT '{{}}',
            body TEXT NOT NULL,
            flags TEXT,
            source_row INTEGER,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ({_MESSAGE_STATUSES})),
            attempts INTEGER NOT NULL DEFAULT 0,
            max_attempts INTEGER NOT NULL DEFAULT 3,
            next_attempt_at REAL,
            claimed_by TEXT,
            lease_until REAL,
            send_started_at REAL,
            last_error TEXT,
            error_class TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            sent_at REAL,
            receipt TEXT,
            delivered_at REAL,
            read_at REAL,
            sent_by_session TEXT,
            -- One message per number per job: INSERT OR IGNORE drops (and the importer counts) duplicates.
            UNIQUE (job_id, phone)
        );

        -- The claim walks claimable jobs in id order and, per job, the first pending message by id:
        -- a partial index holds only pending rows, so sent history never slows the claim down.
        CREATE INDEX idx_messages_claim ON messages (job_id, id) WHERE status = 'pending';
        -- Expired leases (a worker died mid-send) are found without scanning: few rows are 'sending'.
        CREATE INDEX idx_messages_lease ON messages (lease_until) WHERE status = 'sending';
        -- Daily caps count what one session sent since a time.
        CREATE INDEX idx_messages_sent ON messages (sent_by_session, sent_at)
            WHERE sent_by_session IS NOT NULL;

        -- Append-only history. No foreign keys on purpose: prune deletes messages, history of jobs stays.
        -- Plain rowid (no AUTOINCREMENT): one page fewer per write; ids still only grow.
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            job_id INTEGER,
            message_id INTEGER,
            kind TEXT NOT NULL,
            from_status TEXT,
            to_status TEXT,
            detail TEXT
        );
        CREATE INDEX idx_events_message ON events (message_id, id);

        CREATE TABLE workers (
            id TEXT PRIMARY KEY,
            session TEXT NOT NULL,
            pid INTEGER NOT NULL,
            host TEXT NOT NULL,
            started_at REAL NOT NULL,
            heartbeat_at REAL NOT NULL,
            state TEXT
        );
        CREATE INDEX idx_workers_session ON workers (session);

        CREATE TABLE optouts (
            phone TEXT PRIMARY KEY,
            added_at REAL NOT NULL,
            reason TEXT
        );
        """
    )


@migrations()
def m002_job_counts(db: Database) -> None:
    """Per-job status counters kept by triggers, so ``status`` is O(1) on a 1M-message job.

    There is deliberately no DELETE trigger: ``prune`` deletes a finished job's messages and the
    counters are what keeps their totals visible afterwards.
    """
    db.executescript(
        """
        CREATE TABLE job_counts (
            job_id INTEGER NOT NULL REFERENCES jobs(id),
            status TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (job_id, status)
        ) WITHOUT ROWID;

        INSERT INTO job_counts (job_id, status, n)
            SELECT job_id, status, count(*) FROM messages GROUP BY job_id, status;

        CREATE TRIGGER messages_count_insert AFTER INSERT ON messages
        BEGIN
            INSERT INTO job_counts (job_id, status, n) VALUES (NEW.job_id, NEW.status, 1)
                ON CONFLICT (job_id, status) DO UPDATE SET n = n + 1;
        END;

        CREATE TRIGGER messages_count_update AFTER UPDATE OF status ON messages
        WHEN OLD.status IS NOT NEW.status
        BEGIN
            UPDATE job_counts SET n = n - 1 WHERE job_id = OLD.job_id AND status = OLD.status;
            INSERT INTO job_counts (job_id, status, n) VALUES (NEW.job_id, NEW.status, 1)
                ON CONFLICT (job_id, status) DO UPDATE SET n = n + 1;
        END;
        """
    )


@migrations()
def m003_stamp_session(db: Database) -> None:
    """Remember which session stamped ``send_started_at``.

    A message whose send may have gone out can only be checked in the chat of the account that sent
    it; another account would find nothing and send it a second time. So such a message is only ever
    claimed again by the same session.
    """
    db.execute("ALTER TABLE messages ADD COLUMN send_started_session TEXT")


@migrations()
def m004_receipts(db: Database) -> None:
    """Delivery receipts: what ``wabulk track`` needs, index-backed.

    - ``receipt_checked_at``: when the chat was last looked at for this message's ticks, so a message
      that stays on one tick for days does not take every tracking turn (the oldest come first).
    - ``idx_messages_track``: sent messages not yet read, per sending session by send time (only that
      session's chat shows the bubble). Rows leave the index once read.
    - ``idx_messages_undelivered``: sent messages without a delivered tick, per job by send time: the
      "undelivered after 24 h" count and listing read a range of it.
    - ``receipt_counts``: delivered/read totals per job kept by triggers (``status`` stays O(1)); like
      ``job_counts`` it has no DELETE trigger, so pruned jobs keep their totals.
    """
    db.executescript(
        """
        ALTER TABLE messages ADD COLUMN receipt_checked_at REAL;

        CREATE INDEX idx_messages_track ON messages (sent_by_session, sent_at)
            WHERE status = 'sent' AND read_at IS NULL;
        CREATE INDEX idx_messages_undelivered ON messages (job_id, sent_at)
            WHERE status = 'sent' AND delivered_at IS NULL;

        CREATE TABLE receipt_counts (
            job_id INTEGER PRIMARY KEY REFERENCES jobs(id),
            delivered INTEGER NOT NULL DEFAULT 0,
            read INTEGER NOT NULL DEFAULT 0
        );

        INSERT INTO receipt_counts (job_id, delivered, read)
            SELECT job_id, count(delivered_at), count(read_at) FROM messages
            WHERE delivered_at IS NOT NULL OR read_at IS NOT NULL GROUP BY job_id;

        CREATE TRIGGER messages_receipt_insert AFTER INSERT ON messages
        WHEN NEW.delivered_at IS NOT NULL OR NEW.read_at IS NOT NULL
        BEGIN
            INSERT INTO receipt_counts (job_id, delivered, read)
                VALUES (NEW.job_id, NEW.delivered_at IS NOT NULL, NEW.read_at IS NOT NULL)
                ON CONFLICT (job_id) DO UPDATE SET delivered = delivered + excluded.delivered,
                                                   read = read + excluded.read;
        END;

        CREATE TRIGGER messages_receipt_update AFTER UPDATE OF delivered_at, read_at ON messages
        WHEN (OLD.delivered_at IS NULL) IS NOT (NEW.delivered_at IS NULL)
          OR (OLD.read_at IS NULL) IS NOT (NEW.read_at IS NULL)
        BEGIN
            INSERT INTO receipt_counts (job_id, delivered, read)
                VALUES (NEW.job_id,
                        (NEW.delivered_at IS NOT NULL) - (OLD.delivered_at IS NOT NULL),
                        (NEW.read_at IS NOT NULL) - (OLD.read_at IS NOT NULL))
                ON CONFLICT (job_id) DO UPDATE SET delivered = delivered + excluded.delivered,
                                                   read = read + excluded.read;
        END;
        """
    )


@migrations()
def m005_enqueue_counts(db: Database) -> None:
    """Inserted messages are counted by the enqueue itself, not by per-row triggers.

    The two AFTER INSERT triggers ran a trigger program for every inserted row: about a third of a
    1M-row enqueue's insert time. ``Queue.enqueue`` is the only writer that inserts messages; it adds
    each batch's inserted rows to ``job_counts`` in one statement (all are ``pending``), and it never
    inserts receipt times, so ``receipt_counts`` had nothing to count on insert. The UPDATE triggers
    stay: status and receipt changes are still counted per row. A new code path that inserts messages
    must keep ``job_counts`` itself.
    """
    db.execute("DROP TRIGGER messages_count_insert")
    db.execute("DROP TRIGGER messages_receipt_insert")


@migrations()
def m006_fail_closed(db: Database) -> None:
    """What "never deliver a message twice" needs beyond the stamp (issue 14).

    - ``send_snapshot``: the ids of our outgoing bubbles in the chat right before Enter (JSON of
      ``models.ChatSnapshot``), written in the stamp's transaction; after a crash a new outgoing bubble
      not in it is ours, so verification no longer decides by minute-resolution times.
    - ``sends``: how many times the send action was stamped (pressed) for this message. The queue refuses
      a stamp beyond ``max_attempts``, and a second automatic resend of a stamped message.
    - ``absent_attempt``: the attempt whose verification found positive evidence that the message is not
      in the chat; only then may a stamped message be stamped (sent) again.
    - ``jobs.ready``: 0 while an import is still adding chunks (short transactions); such a job is not
      claimable and not listed. ``jobs.importer``: "host pid" of that import, to clean up after a kill.
    - ``sessions``: per WhatsApp session, the pause a human must lift (N unknown outcomes in a row, a
      blocked account), when it last pressed send (the pace survives restarts) and when it first sent
      (the warm-up ramp survives prune).
    - ``send_log``: one row per confirmed send, per session; the daily cap counts these, so pruning a
      job's messages does not reset today's count.
    - ``idx_messages_stamped``: open messages stamped by a session (orphans, other sessions' work).
    - ``idx_messages_unknown``: failed messages whose outcome is unknown, per job (status counts them).
    """
    db.executescript(
        """
        ALTER TABLE messages ADD COLUMN send_snapshot TEXT;
        ALTER TABLE messages ADD COLUMN sends INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE messages ADD COLUMN absent_attempt INTEGER;
        -- Stamps written before this migration counted one send each.
        UPDATE messages SET sends = 1 WHERE send_started_at IS NOT NULL;

        ALTER TABLE jobs ADD COLUMN ready INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE jobs ADD COLUMN importer TEXT;

        CREATE TABLE sessions (
            name TEXT PRIMARY KEY,
            paused_at REAL,
            paused_reason TEXT,
            last_send_at REAL,
            first_sent_at REAL,
            unknown_streak INTEGER NOT NULL DEFAULT 0
        );
        INSERT INTO sessions (name, first_sent_at, last_send_at)
            SELECT sent_by_session, min(sent_at), max(sent_at) FROM messages
            WHERE sent_by_session IS NOT NULL GROUP BY sent_by_session;

        CREATE TABLE send_log (
            session TEXT NOT NULL,
            at REAL NOT NULL
        );
        CREATE INDEX idx_send_log ON send_log (session, at);
        INSERT INTO send_log (session, at)
            SELECT sent_by_session, sent_at FROM messages
            WHERE sent_by_session IS NOT NULL AND sent_at IS NOT NULL;

        CREATE INDEX idx_messages_stamped ON messages (send_started_session, job_id)
            WHERE send_started_at IS NOT NULL AND status IN ('pending', 'sending');
        CREATE INDEX idx_messages_unknown ON messages (job_id)
            WHERE status = 'failed' AND error_class = 'unknown_outcome';
        """
    )


@migrations()
def m007_notifications(db: Database) -> None:
    """The notifications outbox, its per-target cursor over ``events``, and each session's login QR.

    ``notifications`` holds one row per (target, key): ``key`` names what it is about (``job_completed:3``,
    ``worker_died:<worker id>``), so two processes noticing the same thing queue it once. ``id`` is the
    de-duplication id receivers see. A row is ``pending`` until a 2xx answer (or exit 0) marks it
    ``delivered``; ``lease_until`` keeps two delivering processes off the same row. ``notify_cursors``
    remembers, per target, the last ``events`` row turned into notifications. ``session_qr`` is the QR
    payload a worker waiting for a login shows, so ``wabulk serve`` can show it too.
    """
    db.executescript(
        """
        CREATE TABLE notifications (
            id TEXT PRIMARY KEY,
            target TEXT NOT NULL,
            key TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            created_at REAL NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','delivered')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            lease_until REAL,
            last_error TEXT,
            delivered_at REAL,
            UNIQUE (target, key)
        );
        CREATE INDEX notifications_due ON notifications (status, next_attempt_at);
        CREATE TABLE notify_cursors (
            target TEXT PRIMARY KEY,
            last_event_id INTEGER NOT NULL
        );
        CREATE TABLE session_qr (
            session TEXT PRIMARY KEY,
            payload TEXT NOT NULL,
            at REAL NOT NULL
        );
        """
    )


@migrations()
def m008_device_linked(db: Database) -> None:
    """``sessions.linked_at``: when the session's current device was linked (a login that went from the QR
    to the app, in ``wabulk login`` or in a worker). A new device may not show what the old one sent
    (WhatsApp syncs history to it partially and late), so a send pressed before this time can be found
    in the chat (sent) but never proved absent there: verification answers unknown, never "resend"."""
    db.executescript("ALTER TABLE sessions ADD COLUMN linked_at REAL;")


@migrations()
def m009_session_provider(db: Database) -> None:
    """Sessions are accounts (issue 18): ``sessions.provider`` is how the account sends ("web": WhatsApp Web
    in a browser; "cloud": Meta's Cloud API) and ``sessions.provider_settings`` its settings (JSON: for the
    Cloud API its phone number id; a web session's browser profile follows from its name). Every session
    that existed before is a web session."""
    db.executescript(
        """
        ALTER TABLE sessions ADD COLUMN provider TEXT NOT NULL DEFAULT 'web';
        ALTER TABLE sessions ADD COLUMN provider_settings TEXT NOT NULL DEFAULT '{}';
        """
    )


@migrations()
def m010_fail_closed_queue(db: Database) -> None:
    """Fail closed, second round (issue 20), the queue's part.

    - ``events`` is rebuilt with AUTOINCREMENT: prune deletes a job's message events, often the newest
      rows, and a plain rowid then hands their ids out again, below the notifier's cursor (its
      notifications were lost). The sequence starts past every id ever handed out that is still known:
      the table's and every notify cursor's. Event ids now never step back, so they also order events.
    - ``messages.send_seq``: the ``events`` id of the message's first stamp, and ``sessions.linked_seq``
      the one of the session's latest device link: "relinked after the send was pressed" compares these,
      not two wall-clock times (a clock stepped back made an old stamp look newer than the link).
      Stamps and links from before this migration get 0 / the current top, so an old stamp of a session
      linked before is taken as older than the link (never proved absent: the safe side).
    - ``messages.send_instance``: the worker instance (its random registration id) that last stamped the
      message. Another instance may only take the chat's silence as absence once that one is provably
      gone: a frozen process on another host may still press Enter (same session name, two hosts).
    - ``worker_instances``: every registration (id, session, place, pid, start, clean end), kept after
      the ``workers`` row is replaced, so the stamping instance's fate can still be told.
    - ``send_log.message_id``: the daily cap counts a message when its send is pressed (an unknown
      outcome may have arrived), once per message.
    """
    db.executescript(
        """
        CREATE TABLE events_new (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            job_id INTEGER,
            message_id INTEGER,
            kind TEXT NOT NULL,
            from_status TEXT,
            to_status TEXT,
            detail TEXT
        );
        INSERT INTO events_new (id, at, job_id, message_id, kind, from_status, to_status, detail)
            SELECT id, at, job_id, message_id, kind, from_status, to_status, detail FROM events;
        DROP TABLE events;
        ALTER TABLE events_new RENAME TO events;
        CREATE INDEX idx_events_message ON events (message_id, id);
        DELETE FROM sqlite_sequence WHERE name = 'events';
        INSERT INTO sqlite_sequence (name, seq) VALUES ('events', max(
            (SELECT COALESCE(max(id), 0) FROM events),
            (SELECT COALESCE(max(last_event_id), 0) FROM notify_cursors)));

        ALTER TABLE messages ADD COLUMN send_seq INTEGER;
        ALTER TABLE messages ADD COLUMN send_instance TEXT;
        UPDATE messages SET send_seq = 0 WHERE send_started_at IS NOT NULL;
        ALTER TABLE sessions ADD COLUMN linked_seq INTEGER;
        UPDATE sessions SET linked_seq = (SELECT seq FROM sqlite_sequence WHERE name = 'events')
            WHERE linked_at IS NOT NULL;

        CREATE TABLE worker_instances (
            id TEXT PRIMARY KEY,
            session TEXT NOT NULL,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL
        );
        INSERT INTO worker_instances (id, session, host, pid, started_at)
            SELECT id, session, host, pid, started_at FROM workers;

        ALTER TABLE send_log ADD COLUMN message_id INTEGER;
        CREATE INDEX idx_send_log_message ON send_log (message_id) WHERE message_id IS NOT NULL;
        """
    )


@migrations()
def m013_cloud(db: Database) -> None:
    """What the Cloud API provider (issue 19) stores.

    - ``jobs.template_name``/``template_lang``: an approved WhatsApp template and its locale (NULL: a text
      job, ``template`` is the message body as before).
    - ``messages.params``: the rendered template parameters, a JSON list (NULL for text jobs); ``body``
      still holds a readable rendering for people.
    - ``messages.wamid``: the id Meta gave the message (the key of every status webhook), unique;
      ``wa_id``: the recipient's canonical WhatsApp id from the send response.
    - ``messages.pricing_category``/``billable``: what the status webhook's ``pricing`` said.
    - ``job_media``: a job's attachment uploaded once per sending session (the media id is per number).
    """
    db.executescript(
        """
        ALTER TABLE jobs ADD COLUMN template_name TEXT;
        ALTER TABLE jobs ADD COLUMN template_lang TEXT;
        ALTER TABLE messages ADD COLUMN params TEXT;
        ALTER TABLE messages ADD COLUMN wamid TEXT;
        ALTER TABLE messages ADD COLUMN wa_id TEXT;
        ALTER TABLE messages ADD COLUMN pricing_category TEXT;
        ALTER TABLE messages ADD COLUMN billable INTEGER;
        -- Status webhooks are matched by wamid: one index probe per status, and never two rows per id.
        CREATE UNIQUE INDEX idx_messages_wamid ON messages (wamid) WHERE wamid IS NOT NULL;
        CREATE TABLE job_media (
            job_id INTEGER NOT NULL REFERENCES jobs(id),
            session TEXT NOT NULL,
            media_id TEXT NOT NULL,
            uploaded_at REAL NOT NULL,
            PRIMARY KEY (job_id, session)
        );
        """
    )


@migrations()
def m014_template_catalogue(db: Database) -> None:
    """``cloud_templates``: the message templates of a Cloud API account (its WABA), as ``wabulk templates
    sync`` last fetched them, so that ``enqueue --template`` can refuse a wrong name, language or parameter
    count before anything is written. One row per (WABA, name, language), with the session it was synced
    through; a sync replaces the WABA's rows in one transaction. ``params`` counts the body's parameters.
    ``cloud_template_syncs`` records each session's last sync."""
    db.executescript(
        """
        CREATE TABLE cloud_templates (
            waba_id TEXT NOT NULL,
            name TEXT NOT NULL,
            language TEXT NOT NULL,
            session TEXT NOT NULL,
            category TEXT,
            status TEXT NOT NULL,
            params INTEGER NOT NULL,
            template_id TEXT,
            synced_at REAL NOT NULL,
            PRIMARY KEY (waba_id, name, language)
        );
        CREATE INDEX cloud_templates_session ON cloud_templates (session);
        -- One row per session that synced (also when its WABA has no template: "synced, empty" is not
        -- "never synced").
        CREATE TABLE cloud_template_syncs (
            session TEXT PRIMARY KEY,
            waba_id TEXT NOT NULL,
            synced_at REAL NOT NULL,
            templates INTEGER NOT NULL
        );
        """
    )


@migrations()
def m014_template_components(db: Database) -> None:
    """``cloud_templates``: what a template needs beyond its body's parameter count. ``other_params`` counts
    the parameters of its header (text placeholders, or one for a media header) and URL buttons, which
    ``enqueue --template`` does not fill (such a template is refused before anything is written);
    ``parameter_format`` is POSITIONAL or NAMED and ``components`` Meta's JSON as fetched (the body text,
    the names of named parameters)."""
    db.executescript(
        """
        ALTER TABLE cloud_templates ADD COLUMN other_params INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE cloud_templates ADD COLUMN parameter_format TEXT;
        ALTER TABLE cloud_templates ADD COLUMN components TEXT;
        """
    )


@migrations()
def m014_pricing_index(db: Database) -> None:
    """Billable messages per job and pricing category (``status``, the dashboard) read only the messages
    whose status webhook carried pricing: a partial index keeps that a probe, not a scan of every message."""
    db.executescript(
        """
        CREATE INDEX idx_messages_pricing ON messages (job_id, pricing_category, billable)
            WHERE pricing_category IS NOT NULL;
        """
    )


@migrations()
def m015_worker_cap(db: Database) -> None:
    """``workers.daily_cap``: the cap the worker actually runs with (``--daily-cap``, 0 = none; NULL: a
    worker from before, whose cap is the pace profile's). ``status`` and the dashboard show this cap, not
    a guess from ``WABULK_PACE``: a worker run with ``--daily-cap 0`` showed "cap today 20"."""
    db.executescript("ALTER TABLE workers ADD COLUMN daily_cap INTEGER;")


@migrations()
def m018_template_layout(db: Database) -> None:
    """``jobs.template_layout``: how a template job's stored parameters map to the send's components when
    its template has a header or buttons that take parameters (issue 19). JSON, e.g.
    ``{"body": 2, "header": {"format": "image", "source": "file"}, "buttons": [[0, "url"]]}``:
    ``messages.params`` then holds the body values, then the header's (its text values, or the media link
    rendered per contact), then one per button; a media header from a file is the job's ``attachment``,
    uploaded once per job and number (``job_media``). NULL: body parameters only, as before."""
    db.executescript("ALTER TABLE jobs ADD COLUMN template_layout TEXT;")


def names() -> list[str]:
    """Every migration this version of wabulk knows, in order."""
    return [m.name for m in migrations._migrations]


def applied(db: Database) -> list[str]:
    """The names of the wabulk migrations recorded in ``db`` (read-only)."""
    return [m.name for m in migrations.applied(db)]


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply pending migrations to an autocommit connection (``isolation_level=None``).

    All pending migrations run in one ``BEGIN IMMEDIATE`` transaction, so concurrent openers
    serialise and the loser finds nothing left to do. Returns the names applied.
    """
    db = Database(conn, execute_plugins=False, recursive_triggers=False)
    if not migrations.pending(db):
        return []
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read under the write lock: another process may have migrated meanwhile.
        todo = [m.name for m in migrations.pending(db)]
        migrations.apply(db)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return todo
