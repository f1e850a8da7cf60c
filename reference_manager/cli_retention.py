"""Retention on the command line: `manager purge` and the periodic purge of `manager serve`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from metersync_manager import retention

_log = logging.getLogger("metersync.manager.retention")


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--keep-readings",
        type=float,
        metavar="DAYS",
        help="remove device snapshots polled longer ago (default: keep forever; each "
        "device's newest is always kept, and billing never needs them)",
    )
    p.add_argument(
        "--keep-collection-errors",
        type=float,
        metavar="DAYS",
        help="remove collection errors of snapshots polled longer ago (default: forever)",
    )
    p.add_argument(
        "--keep-reports",
        type=float,
        metavar="DAYS",
        help="remove report ids and digests received longer ago; at least 400, the replay "
        "horizon (MS-DEL-19; default: forever)",
    )


def policy(args: argparse.Namespace) -> retention.Policy:
    """The policy of the options; ValueError for a period the rules do not allow."""

    def days(value: float | None) -> timedelta | None:
        return None if value is None else timedelta(days=value)

    return retention.Policy(
        readings=days(args.keep_readings),
        errors=days(args.keep_collection_errors),
        reports=days(args.keep_reports),
    )


def register(sub: Any, db_options: Callable[[argparse.ArgumentParser], None]) -> None:
    purge = sub.add_parser(
        "purge", help="remove what the retention periods no longer keep, and say what"
    )
    db_options(purge)
    add_options(purge)
    purge.set_defaults(func=cmd_purge)


def summary(removed: dict[str, int]) -> str:
    return ", ".join(f"{n} {table.replace('_', ' ')}" for table, n in removed.items())


def cmd_purge(args: argparse.Namespace) -> int:
    from metersync_manager.cli import _with_store

    try:
        rules = policy(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not rules.active:
        print("nothing to do: give --keep-readings, --keep-collection-errors or --keep-reports",
              file=sys.stderr)  # fmt: skip
        return 2
    removed = _with_store(args, lambda s: retention.purge(s, rules, datetime.now(UTC)))
    print(f"removed: {summary(removed)}")
    return 0


async def schedule(
    store: Any, rules: retention.Policy, stop: asyncio.Event, every: float = 3600.0
) -> None:
    """`manager serve`: purge at start and then every `every` seconds until `stop`."""
    while not stop.is_set():
        try:
            removed = await asyncio.to_thread(retention.purge, store, rules, datetime.now(UTC))
            if any(removed.values()):
                _log.info("retention removed %s", summary(removed))
        except Exception:  # a failed purge is retried next time; the manager keeps serving
            _log.exception("retention purge failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
