"""Data over years: readings share the rows they repeat (schema 13), and retention purges
readings, collection errors and report ids (metersync_manager.retention), SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_manager_support import Dev, TestAgent, enrolled, store  # noqa: F401

from metersync_manager import cli_retention, ingest, retention
from metersync_manager import models as m
from metersync_manager.store import Store, sqlite_url

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def put(s: Store, a: TestAgent, devs: list[Dev], received: datetime, seq: int = 1) -> None:
    raw = a.report(devs, sequence=seq)
    s.store_report(ingest.read_report(raw), ingest.digest(raw), len(raw), received)


def printer(key: str, at: datetime, total: int, level: int, error: str | None = None) -> Dev:
    return Dev(
        key,
        polled_at=at,
        counters=[("total", total, {}), ("mono", 10, {})],
        supplies=[{"index": 1, "level": level}, {"index": 2, "level": 50, "colour": "cyan"}],
        alerts=[{"index": 7}],
        error=error,
    )


def rows(s: Store, table: str) -> int:
    return s.count(table)


def test_a_repeated_reading_stores_no_rows_and_reads_back_the_same(store: Store) -> None:  # noqa: F811
    a = enrolled(store)
    put(store, a, [printer("sn:hp:r", NOW, 100, 80)], NOW)
    first = store.latest("sn:hp:r")
    put(store, a, [printer("sn:hp:r", NOW + DAY, 100, 80)], NOW + DAY, 2)
    again = store.latest("sn:hp:r")
    for part in ("counters", "supplies", "alerts", "collectionErrors"):
        assert again[part] == first[part]
    assert again["polledAt"] != first["polledAt"]
    assert (rows(store, "counters"), rows(store, "supplies"), rows(store, "alerts")) == (2, 2, 1)
    put(store, a, [printer("sn:hp:r", NOW + 2 * DAY, 130, 80)], NOW + 2 * DAY, 3)
    assert rows(store, "counters") == 4  # the counters changed: a new set
    assert rows(store, "supplies") == 2  # the supplies did not
    history = store.counter_history("sn:hp:r", "total", None, None, 10, 0)
    assert [(h["polledAt"][:10], h["value"]) for h in history] == [
        ("2026-11-28", 100),
        ("2026-11-29", 100),
        ("2026-11-30", 130),
    ]
    assert len(store.alerts("sn:hp:r", None, None, 10, 0)) == 3  # one per reading, as before
    assert [s["level"]["raw"] for s in store.supplies("sn:hp:r")["items"]] == [80, 50]


def test_purge_readings_keeps_the_newest_and_moves_shared_rows(store: Store) -> None:  # noqa: F811
    a = enrolled(store)
    for day in range(3):  # three equal readings: one set of rows, held by the first
        at = NOW + day * DAY
        put(store, a, [printer("sn:hp:p", at, 100, 80), printer(f"sn:hp:q{day}", at, 5, 9)], at)
    before = store.latest("sn:hp:p")
    meters = store.meters(NOW - DAY, NOW + 5 * DAY, "sn:hp:p", None)
    removed = retention.purge(store, retention.Policy(readings=DAY), NOW + 2 * DAY + DAY / 2)
    assert removed["readings"] == 2  # sn:hp:p's two older; each q device's only one is kept
    after = store.latest("sn:hp:p")
    for part in ("counters", "supplies", "alerts", "collectionErrors", "polledAt"):
        assert after[part] == before[part]
    assert [h["value"] for h in store.counter_history("sn:hp:p", "total", None, None, 9, 0)] == [
        100
    ]
    assert store.meters(NOW - DAY, NOW + 5 * DAY, "sn:hp:p", None) == meters  # billing untouched
    for day in range(3):
        assert store.latest(f"sn:hp:q{day}") is not None
    # the moved rows are still what a new equal reading shares
    put(store, a, [printer("sn:hp:p", NOW + 3 * DAY, 100, 80)], NOW + 3 * DAY)
    assert store.latest("sn:hp:p")["supplies"] == before["supplies"]
    assert rows(store, "supplies") == 2 * 4  # sn:hp:p's one set and each q device's


def test_purge_collection_errors_spares_newer_sharers(store: Store) -> None:  # noqa: F811
    a = enrolled(store)
    put(store, a, [printer("sn:hp:e", NOW, 1, 80, "no answer")], NOW)
    put(store, a, [printer("sn:hp:old", NOW, 1, 80, "genErr")], NOW)
    put(store, a, [printer("sn:hp:e", NOW + 3 * DAY, 1, 80, "no answer")], NOW + 3 * DAY)
    removed = retention.purge(store, retention.Policy(errors=DAY), NOW + 3 * DAY)
    assert removed["collection_errors"] == 1  # sn:hp:old's; sn:hp:e's is shared by a newer read
    assert store.latest("sn:hp:old")["collectionErrors"] == []
    (err,) = store.latest("sn:hp:e")["collectionErrors"]
    assert err["message"] == "no answer"
    put(store, a, [printer("sn:hp:old", NOW + 4 * DAY, 1, 80, "genErr")], NOW + 4 * DAY)
    (err,) = store.latest("sn:hp:old")["collectionErrors"]  # stored again, not shared
    assert err["message"] == "genErr"


def test_report_ids_stay_the_replay_horizon_and_leave_no_false_gap(store: Store) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="400 days"):
        retention.Policy(reports=timedelta(days=399))
    a = enrolled(store)
    old = NOW - timedelta(days=500)
    for seq in (1, 2, 3):
        put(store, a, [printer("sn:hp:s", old + seq * DAY, seq, 80)], old + seq * DAY, seq)
    put(store, a, [printer("sn:hp:s", NOW, 9, 80)], NOW, 5)
    gaps = [{"from": 4, "to": 4}]
    assert store.agents(agent_id=a.agent_id)[0]["missingSequences"] == gaps
    policy = retention.Policy(readings=30 * DAY, reports=timedelta(days=400))
    removed = retention.purge(store, policy, NOW)
    assert (removed["readings"], removed["reports"]) == (3, 3)
    (agent,) = store.agents(agent_id=a.agent_id)
    assert (agent["missingSequences"], agent["reports"]) == (gaps, 1)
    removed = retention.purge(store, policy, NOW + 300 * DAY)  # the newest is within 400 days
    assert removed["reports"] == 0 and store.latest("sn:hp:s") is not None


def test_purge_command_prints_what_it_removed(tmp_path: Any) -> None:
    data = tmp_path / "manager"
    s = Store(sqlite_url(data))
    s.migrate()
    try:
        a = enrolled(s)
        old = datetime.now(UTC) - 40 * DAY
        for seq in (1, 2):
            put(s, a, [printer("sn:hp:c", old + seq * DAY, seq, 80)], old + seq * DAY, seq)
    finally:
        s.close()
    cmd = [sys.executable, "-m", "metersync.cli", "manager", "purge", "--data-dir", str(data)]
    done = subprocess.run([*cmd, "--keep-readings", "30"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # the counters differ, the supplies and alerts move to the newer reading that shares them
    assert "removed: 1 readings, 2 counters, 0 supplies, 0 alerts" in done.stdout
    refused = subprocess.run([*cmd, "--keep-reports", "30"], capture_output=True, text=True)
    assert refused.returncode == 2 and "replay horizon" in refused.stderr


def test_serve_purges_on_its_schedule(store: Store) -> None:  # noqa: F811
    a = enrolled(store)
    old = datetime.now(UTC) - 10 * DAY
    for seq in (1, 2):
        put(store, a, [printer("sn:hp:j", old + seq * DAY, seq, 80)], old + seq * DAY, seq)

    async def run() -> None:
        stop = asyncio.Event()
        job = asyncio.create_task(
            cli_retention.schedule(store, retention.Policy(readings=DAY), stop, every=3600)
        )
        while store.count("readings") > 1:
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(job, 10)

    asyncio.run(run())
    assert store.count(m.readings.name) == 1
