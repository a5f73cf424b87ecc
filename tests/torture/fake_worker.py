"""One worker process on a :class:`~tests.torture.common.DurableFake` transport: ``run_worker`` exactly as
``wabulk run`` calls it (same database settings, registration, signal handling), minus the browser.

    python -m tests.torture.fake_worker --db DB --home HOME --session s1 --deliveries deliveries.jsonl
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from tests.torture.common import DurableFake


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--session", required=True)
    ap.add_argument("--deliveries", type=Path, required=True)
    ap.add_argument("--lease", type=float, default=1.0)
    ap.add_argument("--jitter", type=float, default=0.01)
    ap.add_argument("--until-done", action="store_true")
    ap.add_argument("--blind", action="store_true", help="negative control: never find an earlier send")
    ap.add_argument("--blind-file", type=Path, help="while this file exists the page cannot be read")
    ap.add_argument("--breaker", type=int, help="the circuit breaker's threshold (default: wabulk's)")
    ap.add_argument("--heartbeat-every", type=float, help="seconds between heartbeats")
    ap.add_argument("--stale-after", type=float, help="a silent worker is dead after (s)")
    ap.add_argument("--hold-before", type=Path, help="first send: before the stamp, wait for this file")
    ap.add_argument("--hold-after", type=Path, help="first send: after the stamp, wait for this file")
    args = ap.parse_args(argv)

    from wabulk.errors import WabulkError
    from wabulk.settings import Settings
    from wabulk.worker import build_config, run_worker

    settings = Settings.from_env().with_(db=args.db, home=args.home, session=args.session)
    config = build_config(
        session=args.session, until_done=args.until_done, pace="off", lease_seconds=args.lease
    )
    if args.breaker:
        config = replace(config, breaker_threshold=args.breaker)
    if args.heartbeat_every:
        config = replace(config, heartbeat_every=args.heartbeat_every)
    if args.stale_after:
        config = replace(config, stale_after=args.stale_after)
    transport = DurableFake(args.deliveries, args.session, args.jitter, args.blind, args.blind_file)
    transport.hold_before, transport.hold_after = args.hold_before, args.hold_after
    try:
        return run_worker(settings, config, transport=transport)
    except WabulkError as e:
        print(f"Error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
