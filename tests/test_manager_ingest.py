"""The manager's core rules with plain objects, and the store over real SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError
from test_manager_support import Dev, TestAgent, enrolled, new_token, report_xml, store  # noqa: F401

from metersync import signing, xml_edge
from metersync.errors import ProtocolError, retry_later
from metersync_manager import channel, ingest, meters, staleness
from metersync_manager import models as m
from metersync_manager.ingest import AgentRecord, Decision, TokenRecord
from metersync_manager.models import SCHEMA_VERSION
from metersync_manager.store import Store

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
EXAMPLE = Path(__file__).resolve().parents[1] / "spec" / "examples" / "valid" / "report.xml"


def code(exc: pytest.ExceptionInfo[ProtocolError]) -> int:
    return exc.value.code


# --- enrollment -----------------------------------------------------------------------------


def enrollment(agent: TestAgent, token: str = "t" * 43):  # type: ignore[no-untyped-def]
    return ingest.read_enrollment(agent.enrollment(token))


def token_record(token: str = "t" * 43, *, expires: datetime | None = None, used_by=None):  # type: ignore[no-untyped-def]
    return TokenRecord(ingest.hash_token(token), expires or NOW + timedelta(hours=1), used_by)


def test_enrollment_registers_a_new_agent() -> None:
    a = TestAgent()
    assert ingest.decide_enrollment(enrollment(a), token_record(), None, NOW) is Decision.REGISTER


def test_enrollment_same_agent_same_key_is_idempotent() -> None:
    a = TestAgent()
    rec = AgentRecord(a.agent_id, signing.public_key_b64(a.key))
    tok = token_record(used_by=a.agent_id, expires=NOW - timedelta(days=2))  # even after expiry
    assert ingest.decide_enrollment(enrollment(a), tok, rec, NOW) is Decision.DUPLICATE


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown-token", 2006),
        ("expired-token", 2006),
        ("token-used-by-other", 2007),
        ("other-key", 2010),
        ("revoked", 2008),
    ],
)
def test_enrollment_refusals(case: str, expected: int) -> None:
    a = TestAgent()
    same = AgentRecord(a.agent_id, signing.public_key_b64(a.key))
    other_key = AgentRecord(a.agent_id, signing.public_key_b64(signing.generate_key()))
    token, agent = {
        "unknown-token": (None, None),
        "expired-token": (token_record(expires=NOW - timedelta(seconds=1)), None),
        "token-used-by-other": (token_record(used_by=str(uuid.uuid4())), None),
        "other-key": (token_record(), other_key),
        "revoked": (token_record(), dataclasses.replace(same, revoked=True)),
    }[case]
    with pytest.raises(ProtocolError) as exc:
        ingest.decide_enrollment(enrollment(a), token, agent, NOW)
    assert code(exc) == expected


def test_enrollment_proof_of_possession_and_skew() -> None:
    a, b = TestAgent(), TestAgent()
    raw = a.enrollment("t" * 43)
    enr = ingest.read_enrollment(raw)
    now = ingest.utcnow()
    ingest.check_enrollment(enr, raw, ingest.signer(a.sign(raw)), now)
    for sig, at, expected in [
        (signing.sign(b.key, raw, a.agent_id), now, 2003),  # not the enclosed key
        (b.sign(raw), now, 2009),  # signed as another agent
        (a.sign(raw), now + timedelta(seconds=301), 2004),
        (a.sign(raw), now - timedelta(seconds=301), 2004),
    ]:
        with pytest.raises(ProtocolError) as exc:
            ingest.check_enrollment(enr, raw, ingest.signer(sig), at)
        assert code(exc) == expected
    with pytest.raises(ProtocolError) as exc:
        ingest.signer(None)
    assert code(exc) == 2001


# --- reports --------------------------------------------------------------------------------


def test_authenticate_orders_unknown_revoked_bad_signature() -> None:
    a = TestAgent()
    raw = a.report([Dev("sn:hp:1")])
    sig = ingest.signer(a.sign(raw))
    rec = AgentRecord(a.agent_id, signing.public_key_b64(a.key))
    ingest.authenticate(sig, raw, rec)
    for agent, tampered, expected in [
        (None, raw, 2002),
        (dataclasses.replace(rec, revoked=True), raw, 2008),
        (rec, raw.replace(b"sn:hp:1", b"sn:hp:2"), 2003),
    ]:
        with pytest.raises(ProtocolError) as exc:
            ingest.authenticate(sig, tampered, agent)
        assert code(exc) == expected
    with pytest.raises(ProtocolError) as exc:
        ingest.signer(None)
    assert code(exc) == 2001


def test_read_report_rows_equal_the_document() -> None:
    rows = ingest.read_report(EXAMPLE.read_bytes())
    obj = xml_edge.parse_message(EXAMPLE.read_bytes()).obj  # the generated model, as oracle
    assert rows.report_id == obj.report_id and rows.agent_id == obj.agent_id
    assert rows.sequence == obj.sequence
    assert rows.created_at == obj.created_at.to_datetime()
    (dev,) = rows.devices
    snap = obj.device[0]
    assert dev.device_key == snap.identity.device_key
    assert dev.ip == snap.identity.ip_address
    assert [(c["kind"], c["value"], c["oid"], c["label"]) for c in dev.counters] == [
        (c.kind.value, c.value, c.oid, c.label) for c in snap.counter
    ]
    assert [(s["idx"], s["level_raw"], s["level_meaning"], s["max_raw"]) for s in dev.supplies] == [
        (s.index, s.level.raw, s.level.meaning.value, s.max_capacity.raw) for s in snap.supply
    ]
    assert [s["percent_x100"] for s in dev.supplies] == [
        None if s.percent is None else int(s.percent * 100) for s in snap.supply
    ]
    assert [(a["idx"], a["code"], a["code_raw"]) for a in dev.alerts] == [
        (a.index, a.code.value, a.code.raw) for a in snap.alert
    ]
    assert dev.reading["complete"] is (not snap.collection_error)
    assert dev.reading["error_flags"] == "lowToner"


def test_read_report_prose_rules_are_kept_for_after_dedupe() -> None:
    agent_id = str(uuid.uuid4())
    twice = ingest.read_report(report_xml(agent_id, [Dev("sn:hp:1"), Dev("sn:hp:1")]))
    no_tz = ingest.read_report(
        report_xml(agent_id, [Dev("sn:hp:1")]).replace(b"Z</createdAt>", b"</createdAt>")
    )
    for rows in (twice, no_tz):
        assert rows.problem is not None and rows.problem.code == 3001
        assert rows.devices == [] or rows is no_tz
    assert no_tz.created_at.tzinfo is not None  # read as UTC for the skew check
    with pytest.raises(ProtocolError) as exc:
        ingest.read_report(TestAgent().enrollment("t" * 43))
    assert code(exc) == 1007


def test_check_report_signer_and_skew() -> None:
    a = TestAgent()
    rows = ingest.read_report(a.report([], created_at=NOW))
    ingest.check_report(rows, a.agent_id, NOW)
    ingest.check_report(rows, a.agent_id, NOW - timedelta(seconds=299))
    # a report from the outbox, created a week ago, is still delivered
    ingest.check_report(rows, a.agent_id, NOW + timedelta(days=7))
    with pytest.raises(ProtocolError) as exc:
        ingest.check_report(rows, str(uuid.uuid4()), NOW)
    assert code(exc) == 2009
    with pytest.raises(ProtocolError) as exc:
        ingest.check_report(rows, a.agent_id, NOW - timedelta(seconds=301))
    assert code(exc) == 2004
    ingest.check_report(rows, a.agent_id, NOW + timedelta(days=399))
    with pytest.raises(ProtocolError) as exc:  # beyond the 400-day replay horizon
        ingest.check_report(rows, a.agent_id, NOW + timedelta(days=401))
    assert code(exc) == 2004


def test_old_key_reports_carry_only_readings_before_the_rotation() -> None:
    """Issue 9, case 7 (MS-SEC-20): a stolen superseded key, createdAt before the rotation but
    polledAt after it, cannot inject current readings; a late report of older readings can."""
    a = TestAgent()
    rotated = NOW + timedelta(hours=1)
    stolen = ingest.read_report(
        a.report([Dev("sn:hp:1", polled_at=rotated + timedelta(seconds=5))], created_at=NOW)
    )
    with pytest.raises(ProtocolError) as exc:
        ingest.check_report(stolen, a.agent_id, rotated, key_superseded_at=rotated)
    assert code(exc) == 2003
    late = ingest.read_report(a.report([Dev("sn:hp:1", polled_at=NOW)], created_at=NOW))
    ingest.check_report(late, a.agent_id, rotated, key_superseded_at=rotated)


def test_receipt_is_a_valid_document() -> None:
    r = ingest.receipt(str(uuid.uuid4()), str(uuid.uuid4()), True, NOW, 0)
    back = xml_edge.parse_message(xml_edge.to_bytes(r)).obj
    assert back.status.value == "duplicate" and back.devices_stored == 0


# --- meters ---------------------------------------------------------------------------------


def t(minutes: int) -> datetime:
    return NOW + timedelta(minutes=minutes)


def test_usage_plain_and_chained() -> None:
    u = meters.usage(meters.Read(t(0), 100), [meters.Read(t(2), 130), meters.Read(t(1), 110)])
    assert u is not None
    assert (u.start.value, u.end.value, u.usage, u.resets) == (100, 130, 30, [])


def test_usage_splits_at_a_reset_and_is_never_negative() -> None:
    reads = [meters.Read(t(1), 150), meters.Read(t(2), 20), meters.Read(t(3), 45)]
    u = meters.usage(meters.Read(t(0), 100), reads)
    assert u is not None
    assert u.usage == 50 + 25  # 100→150, reset (0), 20→45
    assert [(r.before, r.after, r.flagged) for r in u.resets] == [(150, 20, False)]


def test_usage_flagged_anomaly_counts_zero_even_when_higher() -> None:
    # a swapped device whose counter happens to be higher: flagged by the agent, never billed
    reads = [meters.Read(t(1), 5000, flagged=True), meters.Read(t(2), 5010)]
    u = meters.usage(meters.Read(t(0), 100), reads)
    assert u is not None and u.usage == 10 and u.resets[0].flagged


def test_usage_without_a_read_before_or_in_period() -> None:
    assert meters.usage(None, []) is None
    u = meters.usage(None, [meters.Read(t(5), 7), meters.Read(t(6), 9)])
    assert u is not None and u.start_in_period and u.usage == 2
    stale = meters.usage(meters.Read(t(0), 7), [])
    assert stale is not None and stale.stale and stale.usage == 0


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=30), st.data())
def test_usage_properties(values: list[int], data: st.DataObject) -> None:
    reads = [meters.Read(t(i), v) for i, v in enumerate(values)]
    whole = meters.usage(None, reads)
    assert whole is not None and whole.usage >= 0
    increases = sum(max(0, b - a) for a, b in zip(values, values[1:], strict=False))
    assert whole.usage == increases
    # Two consecutive periods bill exactly what the whole does: never double, never lost.
    cut = data.draw(st.integers(0, len(reads) - 1))
    first = meters.usage(None, reads[: cut + 1])
    second = meters.usage(reads[cut], reads[cut + 1 :])
    assert first is not None and second is not None
    assert first.usage + second.usage == whole.usage


# --- the store (real SQLite file and real PostgreSQL) ---------------------------------------


def test_store_enroll_spends_the_token(store: Store) -> None:  # noqa: F811
    token = new_token(store)
    now = ingest.utcnow()
    first, second = TestAgent(), TestAgent()
    results = []
    for agent in (first, first, second):
        enr = ingest.read_enrollment(agent.enrollment(token))
        values = {
            "agent_id": agent.agent_id,
            "public_key": signing.public_key_b64(agent.key),
            "algorithm": "ed25519",
            "software_vendor": "v",
            "software_product": "p",
            "software_version": "1",
        }
        try:
            results.append(
                store.enroll(
                    ingest.hash_token(token),
                    values,
                    lambda tok, ag, enr=enr: ingest.decide_enrollment(enr, tok, ag, now),
                    now,
                )
            )
        except ProtocolError as exc:
            results.append(exc.code)
    assert results == [Decision.REGISTER, Decision.DUPLICATE, 2007]
    assert store.count("agents") == 1


def test_store_report_then_duplicate_then_replay(store: Store) -> None:  # noqa: F811
    a = enrolled(store)
    raw = a.report([Dev("sn:hp:1", counters=[("total", 10, {})]), Dev("sn:hp:2")])
    rows = ingest.read_report(raw)
    first = store.store_report(rows, ingest.digest(raw), len(raw), NOW)
    again = store.store_report(rows, ingest.digest(raw), len(raw), NOW)
    assert (first.duplicate, first.devices) == (False, 2)
    assert (again.duplicate, again.devices) == (True, 0)
    assert store.count("reports") == 1 and store.count("readings") == 2
    with pytest.raises(ProtocolError) as exc:
        store.store_report(rows, hashlib.sha256(b"other").hexdigest(), len(raw), NOW)
    assert code(exc) == 2005
    assert store.count("readings") == 2 and store.count("counters") == 1


def test_store_meaning_problem_comes_after_idempotence(store: Store) -> None:  # noqa: F811
    a = enrolled(store)
    rid = str(uuid.uuid4())
    good = a.report([Dev("sn:hp:1")], report_id=rid)
    store.store_report(ingest.read_report(good), ingest.digest(good), len(good), NOW)
    bad = a.report([Dev("sn:hp:1"), Dev("sn:hp:1")], report_id=rid)
    with pytest.raises(ProtocolError) as exc:  # same id, other bytes: 2005 before 3001
        store.store_report(ingest.read_report(bad), ingest.digest(bad), len(bad), NOW)
    assert code(exc) == 2005
    new_bad = a.report([Dev("sn:hp:1"), Dev("sn:hp:1")])
    with pytest.raises(ProtocolError) as exc:
        store.store_report(ingest.read_report(new_bad), ingest.digest(new_bad), len(new_bad), NOW)
    assert code(exc) == 3001
    assert store.count("reports") == 1 and store.count("readings") == 1


def test_store_report_is_all_or_nothing(store: Store) -> None:  # noqa: F811
    a = enrolled(store)
    raw = a.report([Dev("sn:hp:1", counters=[("total", 10, {})]), Dev("sn:hp:2")])
    rows = ingest.read_report(raw)
    rows.devices[1].reading["ip"] = None  # NOT NULL: fails after the first device's rows
    with pytest.raises(IntegrityError):
        store.store_report(rows, ingest.digest(raw), len(raw), NOW)
    for table in ("reports", "devices", "readings", "counters", "device_ips"):
        assert store.count(table) == 0, table


def test_store_ip_change_is_an_event_not_a_new_device(store: Store) -> None:  # noqa: F811
    a = enrolled(store)
    for ip, minute in [("192.0.2.10", 0), ("192.0.2.20", 20), ("192.0.2.30", 30)]:
        raw = a.report([Dev("sn:hp:1", ip=ip, polled_at=t(minute))])
        store.store_report(ingest.read_report(raw), ingest.digest(raw), len(raw), NOW)
    (device,) = store.devices()
    assert device["currentIp"] == "192.0.2.30"
    assert device["firstSeen"].startswith("2026-11-28T08:00")
    assert [e["ip"] for e in store.ip_history("sn:hp:1")] == [
        "192.0.2.10",
        "192.0.2.20",
        "192.0.2.30",
    ]
    assert store.count("device_ips") == 3
    events = store.device_events("sn:hp:1")
    assert [(e["kind"], e["detail"]["to"]) for e in events] == [
        ("ip-change", "192.0.2.20"),
        ("ip-change", "192.0.2.30"),
    ]


def test_store_keeps_but_never_applies_an_out_of_order_snapshot(store: Store) -> None:  # noqa: F811
    """MS-OWN-4: a snapshot not newer than the owner's last applied one is stored only."""
    a = enrolled(store)
    for ip, minute, value in [("192.0.2.30", 30, 300), ("192.0.2.10", 0, 0)]:
        raw = a.report(
            [Dev("sn:hp:1", ip=ip, polled_at=t(minute), counters=[("total", value, {})])]
        )
        store.store_report(ingest.read_report(raw), ingest.digest(raw), len(raw), NOW)
    (device,) = store.devices()
    assert device["currentIp"] == "192.0.2.30"
    assert store.count("readings") == 2 and store.count("counter_reads") == 1
    assert [e["ip"] for e in store.ip_history("sn:hp:1")] == ["192.0.2.30"]
    assert store.latest("sn:hp:1")["polledAt"].startswith("2026-11-28T08:30")


def test_migrate_is_repeatable(store: Store) -> None:  # noqa: F811
    assert store.migrate() == store.migrate() == store.health()


def test_group_commit_isolates_each_report(store: Store) -> None:  # noqa: F811
    """Reports queued together: a failing one rolls back alone, the others are stored."""
    a = enrolled(store)
    raws = [a.report([Dev(f"sn:hp:{i}", counters=[("total", i, {})])]) for i in range(3)]
    rows = [ingest.read_report(r) for r in raws]
    rows[1].devices[0].reading["ip"] = None  # NOT NULL: fails inside its savepoint
    same_id = dataclasses.replace(rows[2], devices=[])  # same id as rows[2], other bytes
    futures = [
        store.submit_report(r, ingest.digest(raw), len(raw), NOW)
        for r, raw in zip(rows, raws, strict=True)
    ]
    futures.append(store.submit_report(same_id, ingest.digest(b"other"), 5, NOW))
    assert futures[0].result().devices == 1
    with pytest.raises(IntegrityError):
        futures[1].result()
    assert futures[2].result().devices == 1
    with pytest.raises(ProtocolError) as exc:
        futures[3].result()
    assert code(exc) == 2005
    assert store.count("reports") == 2 and store.count("readings") == 2
    assert store.count("counters") == 2 and store.count("devices") == 2


def test_writer_survives_requests_cancelled_while_queued(store: Store) -> None:  # noqa: F811
    """A client that hangs up cancels its future; the writer must keep serving the others."""
    a = enrolled(store)
    raws = [a.report([Dev(f"sn:hp:c{i}", counters=[("total", i, {})])]) for i in range(40)]
    futures = [
        store.submit_report(ingest.read_report(r), ingest.digest(r), len(r), NOW) for r in raws
    ]
    cancelled = [f for f in futures if f.cancel()]  # those the writer had not started yet
    for f in futures:
        if f not in cancelled:
            assert f.result(timeout=30).devices == 1
    later = a.report([Dev("sn:hp:after", counters=[("total", 1, {})])])
    stored = store.submit_report(ingest.read_report(later), ingest.digest(later), len(later), NOW)
    assert stored.result(timeout=30).devices == 1
    assert store.count("reports") == 41 - len(cancelled)


# --- devices dropping out (MS-DEV-26) -------------------------------------------------------


def test_poll_interval_is_the_median_gap_between_cycle_starts() -> None:
    hourly = [NOW - timedelta(hours=h) for h in (0, 1, 2, 3, 5, 5)]  # a missed cycle, a repeat
    assert staleness.poll_interval(hourly) == timedelta(hours=1)
    assert staleness.poll_interval([NOW, NOW]) is None
    assert staleness.poll_interval([]) is None


def test_device_flag_counts_three_intervals_of_complete_snapshots() -> None:
    hour = timedelta(hours=1)

    def flag(complete_h: float | None, latest_h: float) -> staleness.Staleness:
        done = None if complete_h is None else NOW - complete_h * hour
        return staleness.device_flag(done, NOW - latest_h * hour, hour, NOW)

    assert flag(2.9, 0) == staleness.Staleness(False)
    assert flag(3.1, 0) == staleness.Staleness(True, "partial")
    assert flag(None, 0) == staleness.Staleness(True, "partial")
    assert flag(4, 4) == staleness.Staleness(True, "missing")
    assert staleness.device_flag(None, NOW, None, NOW) == staleness.Staleness(False)


def test_store_flags_devices_without_a_complete_snapshot(store: Store) -> None:  # noqa: F811
    a = enrolled(store)
    for back in (4, 3, 2, 1, 0):
        created = NOW - timedelta(hours=back)
        devs = [
            Dev("sn:hp:steady", polled_at=created),
            Dev("sn:hp:down", polled_at=created, error="no answer"),
            Dev("sn:hp:late", polled_at=created, error="no answer" if back < 2 else None),
        ]
        if back == 4:
            devs.append(Dev("sn:hp:gone", polled_at=created))
        raw = a.report(devs, sequence=5 - back, created_at=created, cycle_started_at=created)
        store.store_report(ingest.read_report(raw), ingest.digest(raw), len(raw), NOW)
    got = {d["deviceKey"]: (d["stale"], d["staleReason"]) for d in store.devices(now=NOW)}
    assert got == {
        "sn:hp:steady": (False, None),
        "sn:hp:down": (True, "partial"),
        "sn:hp:late": (False, None),
        "sn:hp:gone": (True, "missing"),
    }
    (late,) = store.devices("sn:hp:late", now=NOW)
    assert late["lastCompleteAt"] == "2026-11-28T06:00:00Z"
    assert store.agents(a.agent_id)[0]["pollInterval"] == 3600
    # An hour later the last complete snapshot of "late" is over three intervals old; four
    # hours later even its newest (partial) snapshot is.
    (late,) = store.devices("sn:hp:late", now=NOW + timedelta(hours=1, minutes=1))
    assert (late["stale"], late["staleReason"]) == (True, "partial")
    (late,) = store.devices("sn:hp:late", now=NOW + timedelta(hours=3, minutes=1))
    assert (late["stale"], late["staleReason"]) == (True, "missing")


def test_migration_5_backfills_the_last_complete_snapshot(store: Store) -> None:  # noqa: F811
    from sqlalchemy import text

    a = enrolled(store)
    for minute, error in ((0, None), (10, "no answer")):
        raw = a.report([Dev("sn:hp:old", polled_at=t(minute), error=error)])
        store.store_report(ingest.read_report(raw), ingest.digest(raw), len(raw), NOW)
    with store.engine.begin() as conn:  # back to schema version 4
        downgrade_tenancy(conn)
        conn.execute(text("DROP INDEX ix_reports_agent_cycle"))
        conn.execute(text("ALTER TABLE reports DROP COLUMN cycle_started_at"))
        conn.execute(text("ALTER TABLE devices DROP COLUMN last_complete_at"))
        conn.execute(text("UPDATE schema_version SET version = 4 WHERE version = 5"))
    assert store.migrate() == SCHEMA_VERSION
    (dev,) = store.devices("sn:hp:old", now=NOW)
    assert dev["lastCompleteAt"] == "2026-11-28T08:00:00Z"


# --- an agent's channel Error, as the operator gets it (MS-ERR-3) ----------------------------


def _channel_error(code: int, status: int, retry_after: int | None = None) -> bytes:
    wait = "" if retry_after is None else f"<retryAfter>{retry_after}</retryAfter>"
    return (
        '<ChannelResponse xmlns="urn:metersync:v1" version="1.0">'
        "<requestId>00000000-0000-4000-8000-000000000001</requestId>"
        f'<status>{status}</status><body><Error version="1.0"><code>{code}</code>'
        f"<name>SOME_CODE</name><message>m</message>{wait}</Error></body></ChannelResponse>"
    ).encode()


@pytest.mark.parametrize(
    ("code", "status", "relayed", "retry_after"),
    [
        (5002, 404, 404, None),  # known: as the agent said
        (5005, 429, 429, 2),
        (5004, 504, 504, 30),
        (5999, 503, 403, None),  # unknown channel code: refused, whatever the status
        (5999, 409, 409, None),
        (1999, 500, 403, None),
        (4999, 400, 503, 5),  # unknown capacity code: retry later
        (9999, 503, 503, 7),  # vendor range: by status
        (7999, 429, 429, 5),
        (9998, 400, 400, None),
        (8999, 200, 403, None),
    ],
)
def test_channel_error_relayed_by_its_meaning(
    code: int, status: int, relayed: int, retry_after: int | None
) -> None:
    given_wait = {5005: 2, 5004: 30, 9999: 7}.get(code)
    answer = channel.inner_document(_channel_error(code, status, given_wait))
    assert (answer.status, answer.retry_after) == (relayed, retry_after)
    assert xml_edge.parse_message(answer.document, expect=("Error",)).obj.code == code
    assert retry_later(code, status) is (retry_after is not None)


def downgrade_counter_range(conn: Any) -> None:
    """Undo schema version 8 (offset-encoded counters) on a database of version 8."""
    from sqlalchemy import text

    for col in ("value", "previous"):
        conn.execute(text(f"UPDATE counters SET {col} = ({col} + 9223372036854775807) + 1"))
    conn.execute(text("UPDATE schema_version SET version = 7 WHERE version = 8"))


def downgrade_shared_rows(conn: Any) -> None:
    """Undo schema version 13 (readings sharing equal child rows) on a database of version 13
    whose readings each hold their own rows."""
    from sqlalchemy import text

    conn.execute(text("DROP TABLE device_rowsets"))
    conn.execute(text("DROP TABLE report_floors"))
    for kind in ("counters", "supplies", "alerts", "errors"):
        conn.execute(text(f"ALTER TABLE readings DROP COLUMN {kind}_of"))
    conn.execute(text("UPDATE schema_version SET version = 12 WHERE version = 13"))


def downgrade_console_search(conn: Any) -> None:
    """Undo schema versions 13 and 12 (shared rows; console search terms, forecast days, alert
    states) on a database of version 13."""
    from sqlalchemy import text

    downgrade_shared_rows(conn)
    conn.execute(text("DROP TABLE device_terms"))
    for name in ("ix_supply_forecasts_days", "ix_supply_forecasts_customer_days"):
        conn.execute(text(f"DROP INDEX {name}"))
    conn.execute(text("DROP INDEX ix_fleet_alerts_state"))
    conn.execute(text("ALTER TABLE supply_forecasts DROP COLUMN days_to_empty"))
    conn.execute(text("UPDATE schema_version SET version = 11 WHERE version = 12"))


def downgrade_sequence_epoch(conn: Any) -> None:
    """Undo schema version 10 (sequence epochs) on a database of version 10."""
    from sqlalchemy import text

    conn.execute(text("ALTER TABLE reports DROP COLUMN sequence_epoch"))
    conn.execute(text("UPDATE schema_version SET version = 9 WHERE version = 10"))


def downgrade_cluster(conn: Any) -> None:
    """Undo schema version 11 (shared state of several processes) on a database of version 11."""
    from sqlalchemy import text

    for table in reversed(m.CLUSTER_TABLES):
        conn.execute(text(f"DROP TABLE {table.name}"))
    conn.execute(text("UPDATE schema_version SET version = 10 WHERE version = 11"))


def downgrade_fleet(conn: Any) -> None:
    """Undo schema versions 13 to 9 (shared rows, console search, cluster, sequence epochs,
    fleet intelligence) on a database of version 13."""
    from sqlalchemy import text

    downgrade_console_search(conn)
    downgrade_cluster(conn)
    downgrade_sequence_epoch(conn)
    for table in reversed(m.FLEET_TABLES):
        conn.execute(text(f"DROP TABLE {table.name}"))
    conn.execute(text("UPDATE schema_version SET version = 8 WHERE version = 9"))


def downgrade_console(conn: Any) -> None:
    """Undo schema versions 9, 8 and 7 (fleet, counter range, console) on a database of
    version 9."""
    from sqlalchemy import text

    from metersync_manager import models

    downgrade_fleet(conn)
    downgrade_counter_range(conn)
    for index in models.CONSOLE_INDEXES:
        conn.execute(text(f"DROP INDEX {index.name}"))
    for table in ("device_state", "login_attempts", "console_sessions", "console_users"):
        conn.execute(text(f"DROP TABLE {table}"))
    conn.execute(text("UPDATE schema_version SET version = 6 WHERE version = 7"))


def downgrade_tenancy(conn: Any) -> None:
    """Undo schema versions 9 to 6 (down to before tenancy) on a database of version 9."""
    from sqlalchemy import text

    downgrade_console(conn)
    tables = ("device_events", "assignments", "sites", "customers", "counter_series")
    for table in (*tables, "counter_reads", "counter_resets", "contract_meters"):
        conn.execute(text(f"DROP TABLE {table}"))
    for table in ("agents", "devices"):
        conn.execute(text(f"DROP INDEX ix_{table}_customer_id"))
    drops = {
        "agents": ("customer_id", "site_id"),
        "devices": ("customer_id", "site_id", "owner_agent_id", "last_polled_at"),
        "enrollment_tokens": ("customer_id", "site_id"),
        "operator_tokens": ("role", "customers"),
        "readings": ("disposition",),
    }
    for table, columns in drops.items():
        for column in columns:
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    conn.execute(text("UPDATE schema_version SET version = 5 WHERE version = 6"))


def test_counters_keep_the_whole_unsigned_long_range(store: Store) -> None:  # noqa: F811
    """Issue 9, case 1: a Counter64 of 2^64-1 next to good devices is stored, read back and
    billed; nothing in the report is refused."""
    a = enrolled(store)
    top = 2**64 - 1
    devs = [
        Dev("sn:hp:max", polled_at=t(0), counters=[("total", top, {})]),
        Dev("sn:hp:mid", polled_at=t(0), counters=[("total", 2**63, {})]),
        Dev("sn:hp:ok", polled_at=t(0), counters=[("total", 7, {})]),
    ]
    raw = a.report(devs)
    rows = ingest.read_report(raw)
    assert rows.problem is None
    store.store_report(rows, ingest.digest(raw), len(raw), NOW)
    got = {
        k: store.latest(k)["counters"][0]["value"] for k in ("sn:hp:max", "sn:hp:mid", "sn:hp:ok")
    }
    assert got == {"sn:hp:max": top, "sn:hp:mid": 2**63, "sn:hp:ok": 7}
    (h,) = store.counter_history("sn:hp:max", None, None, None, 10, 0)
    assert h["value"] == top
    with pytest.raises(ProtocolError) as exc:  # beyond xs:unsignedLong: the schema refuses
        ingest.read_report(a.report([Dev("sn:hp:x", counters=[("total", 2**64, {})])]))
    assert code(exc) == 1008


def test_migration_8_offsets_the_stored_counters(store: Store) -> None:  # noqa: F811
    from sqlalchemy import text

    a = enrolled(store)
    raw = a.report([Dev("sn:hp:old", polled_at=t(0), counters=[("total", 12345, {})])])
    store.store_report(ingest.read_report(raw), ingest.digest(raw), len(raw), NOW)
    with store.engine.begin() as conn:
        downgrade_fleet(conn)
        downgrade_counter_range(conn)
        assert conn.execute(text("SELECT value FROM counters")).scalar() == 12345
    assert store.migrate() == SCHEMA_VERSION
    assert store.latest("sn:hp:old")["counters"][0]["value"] == 12345


def test_migration_9_starts_the_fleet_evaluator_after_stored_readings(store: Store) -> None:  # noqa: F811
    from sqlalchemy import select

    a = enrolled(store)
    raw = a.report([Dev("sn:hp:before7", polled_at=t(0))])
    store.store_report(ingest.read_report(raw), ingest.digest(raw), len(raw), NOW)
    with store.engine.begin() as conn:
        downgrade_fleet(conn)
    assert store.migrate() == SCHEMA_VERSION
    with store.engine.begin() as conn:
        pos = conn.execute(select(m.fleet_cursor.c.position)).scalar_one()
        newest = conn.execute(select(m.readings.c.id)).scalar_one()
    assert pos == newest  # old readings raise no alert storm


def test_migration_11_adds_the_shared_state_tables(store: Store) -> None:  # noqa: F811
    from sqlalchemy import inspect

    with store.engine.begin() as conn:
        downgrade_console_search(conn)
        downgrade_cluster(conn)
        assert "rate_buckets" not in inspect(conn).get_table_names()
    assert store.migrate() == SCHEMA_VERSION
    with store.engine.begin() as conn:
        names = set(inspect(conn).get_table_names())
    assert {t.name for t in m.CLUSTER_TABLES} <= names


def test_migration_6_puts_everything_in_the_default_customer(store: Store) -> None:  # noqa: F811
    a = enrolled(store)
    raw = a.report([Dev("sn:hp:before", polled_at=t(0))])
    store.store_report(ingest.read_report(raw), ingest.digest(raw), len(raw), NOW)
    store.add_operator_token("f" * 64, "old", NOW)
    with store.engine.begin() as conn:
        downgrade_tenancy(conn)
    assert store.migrate() == SCHEMA_VERSION
    (dev,) = store.devices("sn:hp:before", now=NOW)
    assert dev["customerId"] == "default"
    assert dev["ownerAgentId"] == a.agent_id
    scope = store.operator_scope("f" * 64)
    assert scope is not None and scope.all_customers


def test_migration_10_and_missing_sequences_per_epoch(store: Store) -> None:  # noqa: F811
    """MS-DEL-21/22: reports stored before step 10 are of epoch 1; a new epoch's sequences
    start again at 1 and its gaps are counted apart from the old epoch's."""
    a = enrolled(store)
    for seq in (1, 2, 4):
        raw = a.report([Dev("sn:hp:ep", polled_at=t(seq))], sequence=seq)
        store.store_report(ingest.read_report(raw), ingest.digest(raw), len(raw), NOW)
    with store.engine.begin() as conn:
        downgrade_console_search(conn)
        downgrade_cluster(conn)
        downgrade_sequence_epoch(conn)
    assert store.migrate() == SCHEMA_VERSION
    for seq in (1, 3):
        raw = a.report([Dev("sn:hp:ep", polled_at=t(10 + seq))], sequence=seq)
        raw = raw.replace(b"</sequence>", b"</sequence><sequenceEpoch>2</sequenceEpoch>")
        rows = ingest.read_report(raw)
        assert rows.sequence_epoch == 2
        store.store_report(rows, ingest.digest(raw), len(raw), NOW)
    (agent,) = store.agents(agent_id=a.agent_id)
    assert agent["sequenceEpoch"] == 2
    assert agent["missingSequences"] == [{"from": 3, "to": 3}, {"from": 2, "to": 2, "epoch": 2}]


def test_migration_13_keeps_every_reading_s_own_rows(store: Store) -> None:  # noqa: F811
    """Readings stored before step 13 keep their rows; readings after it that repeat them
    store none and still read back the same counters and supplies."""
    from sqlalchemy import func, select

    a = enrolled(store)
    dev = {"counters": [("total", 100, {})], "supplies": [{"index": 1, "level": 80}]}
    raw = a.report([Dev("sn:hp:m13", polled_at=t(0), **dev)])  # type: ignore[arg-type]
    store.store_report(ingest.read_report(raw), ingest.digest(raw), len(raw), NOW)
    with store.engine.begin() as conn:
        conn.execute(m.device_rowsets.delete())  # as if stored before step 13
        downgrade_shared_rows(conn)
    assert store.migrate() == SCHEMA_VERSION
    before = store.latest("sn:hp:m13")
    for minute in (1, 2):
        raw = a.report([Dev("sn:hp:m13", polled_at=t(minute), **dev)])  # type: ignore[arg-type]
        store.store_report(ingest.read_report(raw), ingest.digest(raw), len(raw), NOW)
    after = store.latest("sn:hp:m13")
    assert (after["counters"], after["supplies"]) == (before["counters"], before["supplies"])
    with store.engine.begin() as conn:
        n_counters = conn.execute(select(func.count()).select_from(m.counters)).scalar()
    assert n_counters == 2  # the old reading's, and one new set shared by the second read
