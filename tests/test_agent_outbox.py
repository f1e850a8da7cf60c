"""The agent's outbox and retry rules: durability under SIGKILL, retention, full disk, backoff.

Real SQLite files in tmp_path, real child processes killed with SIGKILL, a real HTTP server on
loopback for the kill-mid-send case. No mocks.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from email.utils import formatdate
from pathlib import Path
from types import SimpleNamespace

import pytest

import metersync_generated.v1 as model
from metersync import xml_edge
from metersync_agent.backoff import (
    BASE_SECONDS,
    CAP_SECONDS,
    Delivered,
    Refused,
    RetryLater,
    backoff_delay,
    decide,
    next_delay,
    parse_retry_after,
)
from metersync_agent.outbox import (
    EnqueueContext,
    Outbox,
    OutboxFull,
    ReportBytes,
    RetentionLimits,
)
from metersync_agent.report import status_info


def _build(ctx: EnqueueContext, size: int = 200) -> ReportBytes:
    rid = str(uuid.uuid4())
    body = f"<r seq='{ctx.sequence}' id='{rid}'>{os.urandom(size // 2).hex()}</r>".encode()
    return ReportBytes(rid, body, f'sig="{rid}"')


# --- storing and delivering ---------------------------------------------------------------


def test_reports_survive_reopen_in_sequence_order_with_exact_bytes(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    stored = []
    with Outbox(path) as ob:
        for _ in range(5):
            stored.append(ob.enqueue(_build))
    assert [s.sequence for s in stored] == [1, 2, 3, 4, 5]
    with Outbox(path) as ob:
        assert [r for _, r in ob.report_ids()] == [s.report_id for s in stored]
        for s in stored:
            got = ob.get(s.sequence)
            assert got is not None
            assert (got.body, got.signature) == (s.body, s.signature)
        # journal mode is WAL, and every connection runs synchronous=FULL (2)
        assert ob._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert ob._db.execute("PRAGMA synchronous").fetchone()[0] == 2
        first = ob.next_due()
        assert first is not None and first.sequence == 1
        ob.mark_delivered(1)
        nxt = ob.next_due()
        assert nxt is not None and nxt.sequence == 2
        st = ob.status()
        assert (st.queued, st.delivered_reports, st.next_sequence) == (4, 1, 6)


def test_enqueue_context_reports_queue_state(tmp_path: Path) -> None:
    seen: list[EnqueueContext] = []

    def build(ctx: EnqueueContext) -> ReportBytes:
        seen.append(ctx)
        return _build(ctx)

    with Outbox(tmp_path / "o.sqlite3") as ob:
        ob.enqueue(build)
        ob.enqueue(build)
        ob.enqueue(build)
    assert [c.queue_depth for c in seen] == [0, 1, 2]
    assert seen[0].oldest_queued_at is None and seen[2].oldest_queued_at is not None


def test_failed_build_stores_nothing_and_keeps_the_sequence(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as ob:
        ob.enqueue(_build)

        def broken(ctx: EnqueueContext) -> ReportBytes:
            raise ValueError("serializer failed")

        with pytest.raises(ValueError):
            ob.enqueue(broken)
        assert ob.enqueue(_build).sequence == 2
        assert len(ob.report_ids()) == 2


def test_duplicate_report_id_is_refused_by_the_store(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as ob:
        first = ob.enqueue(_build)
        with pytest.raises(Exception, match="UNIQUE"):
            ob.enqueue(lambda ctx: ReportBytes(first.report_id, b"<other/>", "x"))
        assert ob.report_ids() == [(1, first.report_id)]


def test_next_attempt_time_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as ob:
        ob.enqueue(_build)
        at = ob.mark_retry(1, 120.0, "HTTP 503")
    with Outbox(path) as ob:
        assert ob.next_due(time.time()) is None
        assert ob.next_due(at + 0.001) is not None
        row = ob.oldest()
        assert row is not None and row.attempts == 1


def test_refused_report_is_kept_but_not_sent(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as ob:
        ob.enqueue(_build)
        ob.enqueue(_build)
        ob.mark_refused(1, "1008 SCHEMA_VIOLATION")
        due = ob.next_due()
        assert due is not None and due.sequence == 2
        st = ob.status()
        assert (st.queued, st.refused) == (1, 1)


def test_counters_kept_in_the_same_transaction(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as ob:

        def build(ctx: EnqueueContext) -> ReportBytes:
            rb = _build(ctx)
            return ReportBytes(
                rb.report_id,
                rb.body,
                rb.signature,
                [("sn:x:1", "total", "1.3.6", 100 + ctx.sequence)],
            )

        seen: list[dict] = []

        def spy(ctx: EnqueueContext) -> ReportBytes:
            seen.append(dict(ctx.previous_counters))
            return build(ctx)

        ob.enqueue(spy)
        ob.enqueue(spy)
    assert seen == [{}, {("sn:x:1", "total", "1.3.6"): 101}]


def test_a_counter64_of_2_64_minus_1_is_kept_and_old_baselines_migrate(tmp_path: Path) -> None:
    """Issue 9, case 1: SQLite INTEGER stops at 2^63-1; a valid Counter64 must never stop the
    outbox. Baselines of an older outbox (an INTEGER table) are carried over."""
    path = tmp_path / "o.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE last_counter (device_key TEXT NOT NULL, kind TEXT NOT NULL,"
        " oid TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (device_key, kind, oid));"
        "INSERT INTO last_counter VALUES ('sn:old', 'total', '1.3.6', 42);"
    )
    db.close()
    top = 2**64 - 1
    seen: list[dict] = []

    def build(ctx: EnqueueContext) -> ReportBytes:
        seen.append(dict(ctx.previous_counters))
        rb = _build(ctx)
        return ReportBytes(rb.report_id, rb.body, rb.signature, [("sn:x", "total", "1.3.6", top)])

    with Outbox(path) as ob:
        ob.enqueue(build)
    with Outbox(path) as ob:
        ob.enqueue(build)
    assert seen[0] == {("sn:old", "total", "1.3.6"): 42}
    assert seen[1][("sn:x", "total", "1.3.6")] == top


# --- retention ----------------------------------------------------------------------------


def test_retention_max_reports_drops_oldest_and_counts(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, "metersync.agent.outbox")
    with Outbox(tmp_path / "o.sqlite3", limits=RetentionLimits(max_reports=3)) as ob:
        ids = [ob.enqueue(_build).report_id for _ in range(5)]
        assert [r for _, r in ob.report_ids()] == ids[2:]
        assert ob.status().dropped_reports == 2
    dropped_logs = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped_logs) == 2
    assert ids[0] in dropped_logs[0] and "maxReports" in dropped_logs[0]


def test_retention_max_reports_bounds_unsent_reports_not_the_rejected_area(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", limits=RetentionLimits(max_reports=1)) as ob:
        rejected = ob.enqueue(_build)
        ob.mark_refused(rejected.sequence, "1008 SCHEMA_VIOLATION: test")
        first = ob.enqueue(_build)
        assert {r for _, r in ob.report_ids()} == {rejected.report_id, first.report_id}
        assert ob.status().dropped_reports == 0  # a refused report is no unsent report
        second = ob.enqueue(_build)
        assert {r for _, r in ob.report_ids()} == {rejected.report_id, second.report_id}
        assert ob.status().dropped_reports == 1


def test_retention_max_bytes_never_drops_the_new_report(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", limits=RetentionLimits(max_bytes=1000)) as ob:
        a = ob.enqueue(lambda c: _build(c, 400))
        b = ob.enqueue(lambda c: _build(c, 400))
        assert len(ob.report_ids()) == 2  # about 2 x 460 bytes: within 1000
        c = ob.enqueue(lambda c: _build(c, 400))
        assert [r for _, r in ob.report_ids()] == [b.report_id, c.report_id]
        big = ob.enqueue(lambda c: _build(c, 3000))  # alone above the limit: still kept
        assert [r for _, r in ob.report_ids()] == [big.report_id]
        assert ob.status().dropped_reports == 3
        assert a.report_id not in [r for _, r in ob.report_ids()]


def test_retention_max_age_counts_across_restarts(tmp_path: Path) -> None:
    now = [1_000_000.0]
    path = tmp_path / "o.sqlite3"
    limits = RetentionLimits(max_age_days=2)
    with Outbox(path, limits=limits, clock=lambda: now[0]) as ob:
        old = ob.enqueue(_build)
        now[0] += 86400
        mid = ob.enqueue(_build)
    now[0] += 86400 + 1  # old is now 2 days + 1 s old, mid 1 day + 1 s
    with Outbox(path, limits=limits, clock=lambda: now[0]) as ob:
        new = ob.enqueue(_build)
        ids = [r for _, r in ob.report_ids()]
        assert old.report_id not in ids and ids == [mid.report_id, new.report_id]
        assert ob.status().dropped_reports == 1


# --- full disk ----------------------------------------------------------------------------


def test_full_disk_keeps_what_is_stored_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as ob:
        pages = ob._db.execute("PRAGMA page_count").fetchone()[0]
    stored = []
    with Outbox(path, max_page_count=pages + 12) as ob:
        with pytest.raises(OutboxFull) as info:
            for _ in range(1000):
                stored.append(ob.enqueue(lambda c: _build(c, 3000)))
        assert 3 <= len(stored) < 1000
        msg = str(info.value)
        assert "full" in msg and "NOT stored" in msg and f"{len(stored)} reports" in msg
        # nothing already committed was touched, and the refused report left no trace
        assert [s for s, _ in ob.report_ids()] == [s.sequence for s in stored]
        # delivering frees room: the next report fits again; the lost one kept its sequence
        # number and is counted (MS-DEL-20)
        for s in stored[:4]:
            ob.mark_delivered(s.sequence)
        again = ob.enqueue(lambda c: _build(c, 3000))
        assert again.sequence == stored[-1].sequence + 2
        assert ob.status().dropped_reports == 1
    with Outbox(path) as ob:
        for s in stored[4:]:
            got = ob.get(s.sequence)
            assert got is not None and got.body == s.body
        assert ob._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 1 MiB tmpfs: SQLite meets ENOSPC and answers SQLITE_FULL, as on a full disk."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        why = f"cannot mount a small tmpfs ({done.stderr.decode().strip()}): run as root"
        pytest.fail(why) if os.environ.get("CI") == "true" else pytest.skip(why)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def _fill(disk: Path) -> Path:
    """Take every free byte of `disk` with one file; returns it (delete it to free space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while os.write(fd, b"\0" * 4096):
            pass
    os.close(fd)
    return filler


def test_full_disk_counts_the_lost_report_and_never_stops_delivery(small_disk: Path) -> None:
    """MS-DEL-20: a report a full disk refuses keeps its sequence number and is counted in
    droppedReports; receipts and retry times are kept while full; all recovers by itself."""
    with Outbox(small_disk / "o.sqlite3") as ob:
        stored = [ob.enqueue(lambda c: _build(c, 3000)) for _ in range(5)]
        filler = _fill(small_disk)
        assert ob.status().full_since is None
        for _ in range(2):
            with pytest.raises(OutboxFull):
                ob.enqueue(lambda c: _build(c, 3000))
        full_since = ob.status().full_since
        assert full_since is not None  # shown in the status while it lasts (MS-DEL-20)
        settings = SimpleNamespace(channel_enabled=True, update_mode="manual")
        info = status_info(settings, 0.0, 0, None, 0, None, storage_full_since=full_since)  # type: ignore[arg-type]
        status = model.AgentStatus(agent_id=str(uuid.uuid4()), **vars(info))
        assert b"<storageFullSince>" in xml_edge.to_bytes(status)  # valid by the XSD
        ob.mark_delivered(stored[0].sequence)  # the receipt cannot be written: held
        assert ob._delivered == {stored[0].sequence}
        assert ob.oldest().sequence == stored[1].sequence  # not offered again
        at = ob.mark_retry(stored[1].sequence, 300.0, "503")
        assert ob.oldest().next_attempt_at == at  # the wait holds though it is not on disk
        filler.unlink()  # space returns
        seen: list[EnqueueContext] = []
        again = ob.enqueue(lambda c: seen.append(c) or _build(c, 3000))
        assert again.sequence == stored[-1].sequence + 3  # a gap of two: the manager sees it
        assert seen[0].dropped_reports == 2 and ob.status().dropped_reports == 2
        assert ob.status().full_since is None  # recovered
        assert stored[0].sequence not in [s for s, _ in ob.report_ids()]
        assert ob._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --- backoff and the delivery decision ----------------------------------------------------


def test_backoff_is_full_jitter_capped() -> None:
    rng = random.Random(7)
    for attempt in (0, 1, 3, 6, 9, 20, 200):
        ceiling = min(CAP_SECONDS, BASE_SECONDS * 2**attempt) if attempt < 64 else CAP_SECONDS
        samples = [backoff_delay(attempt, rng) for _ in range(2000)]
        assert min(samples) >= 0.0 and max(samples) <= ceiling
        assert max(samples) > 0.95 * ceiling  # spread over the whole range: full jitter
        assert 0.4 * ceiling < sum(samples) / len(samples) < 0.6 * ceiling
    assert CAP_SECONDS == 900.0  # MS-DEL-10
    assert max(backoff_delay(12, rng) for _ in range(500)) <= 900.0


def test_retry_after_is_a_floor() -> None:
    rng = random.Random(1)
    assert all(next_delay(0, 30.0, rng) >= 30.0 for _ in range(200))
    delays = [next_delay(10, 30.0, rng) for _ in range(500)]
    assert min(delays) >= 30.0 and max(delays) > 800.0  # backoff still applies above it


def test_parse_retry_after() -> None:
    now = time.time()
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None
    later = parse_retry_after(formatdate(now + 90, usegmt=True), now)
    assert later is not None and 88.0 <= later <= 91.0


@pytest.mark.parametrize(
    ("status", "kwargs", "expected"),
    [
        (200, {"receipt_ok": True}, Delivered),
        (200, {}, RetryLater),  # 200 without a Receipt: resend, the manager dedupes
        (503, {"error_code": 4002, "retry_after": 10.0}, RetryLater),
        (429, {"error_code": 4001}, RetryLater),
        (500, {"error_code": 4003}, RetryLater),
        (502, {}, RetryLater),  # a proxy's page, no MeterSync Error
        (404, {}, RetryLater),  # wrong URL: never drop readings over configuration
        (400, {"error_code": 1008}, Refused),
        (422, {"error_code": 3001}, Refused),
        (400, {"error_code": 4999}, RetryLater),  # unknown code in the capacity thousand
        (400, {"error_code": 2004}, RetryLater),  # clock skew
        (409, {"error_code": 2005}, Refused),  # replayed reportId
        (400, {"error_code": 9123}, Refused),  # unknown vendor code, not 429/5xx
        (503, {"error_code": 9123}, RetryLater),  # unknown vendor code with 503
        (302, {}, RetryLater),  # redirects are not followed: a failed attempt
    ],
)
def test_decide(status: int, kwargs: dict, expected: type) -> None:
    out = decide(status, **kwargs)
    assert isinstance(out, expected)
    if isinstance(out, RetryLater) and "retry_after" in kwargs:
        assert out.retry_after == kwargs["retry_after"]


def test_agent_level_codes_are_retried_with_an_alert() -> None:
    for code in (2001, 2002, 2003, 2008, 2009):
        out = decide(401, error_code=code, error_name="X")
        assert isinstance(out, RetryLater) and out.alert, code
    assert not decide(503, error_code=4002).alert  # type: ignore[union-attr]
    assert isinstance(decide(400, error_code=1008), Refused)


# --- SIGKILL: mid-write and mid-send ------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import hashlib, sys, time, urllib.request, uuid
    from metersync_agent.outbox import Outbox, ReportBytes

    mode, path = sys.argv[1], sys.argv[2]
    ob = Outbox(path)

    def build(ctx):
        rid = str(uuid.uuid4())
        body = f"<r seq='{ctx.sequence}' id='{rid}'>{'x' * 3000}</r>".encode()
        return ReportBytes(rid, body, "sig")

    if mode == "write":
        while True:
            s = ob.enqueue(build)
            print(s.sequence, s.report_id, hashlib.sha256(s.body).hexdigest(), flush=True)
    else:
        url = sys.argv[3]
        while (item := ob.next_due(float("inf"))) is not None:
            req = urllib.request.Request(url, data=item.body, method="POST",
                                         headers={"X-Report-Id": item.report_id})
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
            ob.mark_delivered(item.sequence)
            print("delivered", item.sequence, flush=True)
        print("empty", flush=True)
    """
)


def _child(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_write_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    committed: dict[int, tuple[str, str]] = {}
    rng = random.Random(3)
    for round_ in range(4):
        proc = _child(tmp_path, "write", str(path))
        want = len(committed) + rng.randint(5, 60)
        assert proc.stdout is not None
        while len(committed) < want:
            line = proc.stdout.readline()
            assert line, f"child died early: {proc.stderr.read() if proc.stderr else ''}"
            seq, rid, digest = line.split()
            committed[int(seq)] = (rid, digest)
        time.sleep(rng.random() * 0.05)  # land somewhere inside a later transaction
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate()
        # Whole lines printed before the kill are committed too; the kill may cut the last one
        # short (that report is then "committed but not printed", allowed below).
        for line in rest.split("\n")[:-1]:
            seq, rid, digest = line.split()
            committed[int(seq)] = (rid, digest)
        assert proc.returncode == -signal.SIGKILL, round_
        with Outbox(path) as ob:
            rows = ob.report_ids()
            assert ob._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            stored = {s: r for s, r in rows}
            # gapless 1..n, each reportId once, and every committed report with its exact bytes
            assert sorted(stored) == list(range(1, len(rows) + 1))
            assert len(set(stored.values())) == len(rows)
            for seq, (rid, digest) in committed.items():
                got = ob.get(seq)
                assert got is not None and got.report_id == rid
                assert hashlib.sha256(got.body).hexdigest() == digest
            # at most one report committed but not yet printed when the kill hit
            assert len(rows) - len(committed) in (0, 1)
            for seq in stored:
                committed.setdefault(
                    seq, (stored[seq], hashlib.sha256(ob.get(seq).body).hexdigest())
                )


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records every POSTed body; holds the answer to one chosen request until released."""

    received: list[tuple[str, str]] = []
    hold_id: str | None = None
    holding = threading.Event()
    release = threading.Event()

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        rid = self.headers["X-Report-Id"]
        type(self).received.append((rid, hashlib.sha256(body).hexdigest()))
        if rid == type(self).hold_id:
            type(self).holding.set()
            type(self).release.wait(30)
            return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def test_sigkill_mid_send_resends_the_same_bytes(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as ob:
        stored = {}
        for _ in range(20):
            s = ob.enqueue(lambda c: _build(c, 3000))
            stored[s.report_id] = hashlib.sha256(s.body).hexdigest()
        held = ob.get(8)
        assert held is not None
    _Recorder.received = []
    _Recorder.hold_id = held.report_id
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1/reports"
    try:
        proc = _child(tmp_path, "send", str(path), url)
        assert _Recorder.holding.wait(30), proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)  # the manager has the bytes; the agent has no receipt
        proc.communicate()
        _Recorder.hold_id = None
        _Recorder.release.set()
        with Outbox(path) as ob:
            assert [s for s, _ in ob.report_ids()][0] == 8  # 1..7 delivered, 8 still queued
        proc = _child(tmp_path, "send", str(path), url)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip().endswith("empty")
    finally:
        server.shutdown()
        server.server_close()
    ids = [rid for rid, _ in _Recorder.received]
    assert set(ids) == set(stored)
    assert ids.count(held.report_id) == 2 and len(ids) == 21  # only the unanswered one, twice
    for rid, digest in _Recorder.received:
        assert stored[rid] == digest  # a resend is byte-identical
    with Outbox(path) as ob:
        assert ob.status().queued == 0 and ob.status().delivered_reports == 20


def test_wal_file_is_used_so_readers_never_block_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as ob:
        ob.enqueue(_build)
        reader = sqlite3.connect(path)
        reader.execute("BEGIN")
        assert reader.execute("SELECT COUNT(*) FROM report").fetchone()[0] == 1
        ob.enqueue(_build)  # would time out under a rollback journal with a reader open
        reader.rollback()
        reader.close()


# --- a corrupt outbox (issue 9, case 3) ----------------------------------------------------


def test_corrupt_outbox_is_quarantined_salvaged_and_starts_a_new_epoch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """MS-DEL-21: a truncated last page is detected at start-up; the file is moved aside, the
    readable reports are kept with their exact bytes, and a new sequence epoch starts at 1."""
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as ob:
        stored = [ob.enqueue(lambda c: _build(c, 1500)) for _ in range(40)]
        ob.mark_delivered(stored[0].sequence)
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size - 4096 - 100)  # the last page gone, the one before it cut
    with caplog.at_level(logging.ERROR, "metersync.agent.outbox"):
        ob = Outbox(path)
    with ob:
        found = ob.salvaged
        assert found is not None and found.quarantined.exists()
        msg = caplog.text
        assert "corrupt" in msg and str(found.quarantined) in msg and "What to do" in msg
        bodies = {s.report_id: s.body for s in stored}
        kept = [ob.get(s) for s, _ in ob.report_ids()]
        assert 0 < len(kept) < 39
        assert all(k is not None and bodies[k.report_id] == k.body for k in kept)
        assert ob.oldest().report_id == kept[0].report_id  # salvaged reports go first
        seen: list[EnqueueContext] = []
        new = ob.enqueue(lambda c: seen.append(c) or _build(c))
        assert new.sequence == 1 and seen[0].sequence_epoch == 2
        assert ob.status().sequence_epoch == 2
    with Outbox(path) as again:  # the new outbox is sound: no second quarantine
        assert again.salvaged is None and again.status().sequence_epoch == 2
