"""Storage: SQLAlchemy 2 Core over SQLite (default, embedded) or PostgreSQL (shared).

A synchronous engine; the Quart adapter calls these methods in worker threads. Every report
is stored in ONE transaction. Idempotency rests on the reports primary key: the insert is
`ON CONFLICT DO NOTHING`, so of two concurrent copies exactly one inserts and the other sees
the stored row (PostgreSQL waits for the first transaction to end) and answers duplicate.

SQLite: WAL, synchronous=FULL (a receipt means durable: the agent deletes its copy), write
transactions start with BEGIN IMMEDIATE and are serialised in-process by a lock, so writers
never dead-end on a lock upgrade. PostgreSQL: row locks are taken in device-key order, so two
reports sharing devices cannot deadlock.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    create_engine,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from metersync_manager import models as m
from metersync_manager.extract import ReportRows, utc_naive
from metersync_manager.ingest import AgentRecord, Decision, TokenRecord, replayed
from metersync_manager.meters import Read, usage

_MIGRATION_LOCK = 84700001  # pg_advisory_xact_lock key: one migrating process at a time


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(Path(data_dir) / 'manager.db').resolve()}"


def iso(dt: datetime | None) -> str | None:
    """A stored (UTC, naive) time as RFC 3339 with Z."""
    if dt is None:
        return None
    text_ = dt.replace(tzinfo=None).isoformat(
        timespec="microseconds" if dt.microsecond else "seconds"
    )
    return text_ + "Z"


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


@dataclass(frozen=True)
class Stored:
    duplicate: bool
    devices: int


class Store:
    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                url,
                connect_args={"timeout": 30, "check_same_thread": False},
                pool_size=pool_size,
                max_overflow=0,
            )
            self._setup_sqlite()
            self._write_lock: contextlib.AbstractContextManager[Any] = threading.Lock()
            self._insert = sqlite.insert
        elif self.dialect == "postgresql":
            self.engine = create_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )
            self._write_lock = contextlib.nullcontext()
            self._insert = postgresql.insert
        else:
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite or postgresql")

    # --- set-up --------------------------------------------------------------------------------

    def _setup_sqlite(self) -> None:
        @event.listens_for(self.engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's BEGIN below, not pysqlite's
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(self.engine, "begin")
        def _begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("metersync_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._write_lock, self.engine.connect() as conn:
            conn = conn.execution_options(metersync_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def migrate(self) -> int:
        """Create or upgrade the schema; safe when several processes start at once."""
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            m.schema_version.create(conn, checkfirst=True)
            current = conn.execute(select(func.max(m.schema_version.c.version))).scalar()
            now = utc_naive(datetime.now(UTC))
            if current is None:
                m.metadata.create_all(conn, checkfirst=True)
                conn.execute(
                    m.schema_version.insert().values(version=m.SCHEMA_VERSION, applied_at=now)
                )
                return m.SCHEMA_VERSION
            if current > m.SCHEMA_VERSION:
                raise RuntimeError(
                    f"the database schema is version {current}; this manager knows up to "
                    f"{m.SCHEMA_VERSION}: upgrade the manager"
                )
            for version in range(current + 1, m.SCHEMA_VERSION + 1):
                m.MIGRATIONS[version](conn)
                conn.execute(m.schema_version.insert().values(version=version, applied_at=now))
            return m.SCHEMA_VERSION

    def close(self) -> None:
        self.engine.dispose()

    # --- tokens and agents --------------------------------------------------------------------

    def add_token(self, token_hash: str, expires_at: datetime, now: datetime) -> None:
        with self._write() as conn:
            conn.execute(
                m.enrollment_tokens.insert().values(
                    token_hash=token_hash,
                    created_at=utc_naive(now),
                    expires_at=utc_naive(expires_at),
                )
            )

    def agent(self, agent_id: str) -> AgentRecord | None:
        with self._read() as conn:
            return self._agent(conn, agent_id)

    @staticmethod
    def _agent(conn: Connection, agent_id: str) -> AgentRecord | None:
        row = conn.execute(
            select(m.agents.c.agent_id, m.agents.c.public_key, m.agents.c.revoked).where(
                m.agents.c.agent_id == agent_id
            )
        ).first()
        return None if row is None else AgentRecord(row.agent_id, row.public_key, row.revoked)

    def revoke(self, agent_id: str, now: datetime) -> bool:
        with self._write() as conn:
            res = conn.execute(
                update(m.agents)
                .where(m.agents.c.agent_id == agent_id)
                .values(revoked=True, revoked_at=utc_naive(now))
            )
            return res.rowcount == 1

    def enroll(
        self,
        token_hash: str,
        agent_values: dict[str, Any],
        decide: Callable[[TokenRecord | None, AgentRecord | None], Decision],
        now: datetime,
    ) -> Decision:
        """Read the token and agent, let the core decide, register in the same transaction."""
        agent_id = agent_values["agent_id"]
        tokens = m.enrollment_tokens
        for _attempt in range(3):
            try:
                with self._write() as conn:
                    row = conn.execute(
                        select(tokens).where(tokens.c.token_hash == token_hash).with_for_update()
                    ).first()
                    token = (
                        None
                        if row is None
                        else TokenRecord(row.token_hash, _aware(row.expires_at), row.used_by)
                    )
                    decision = decide(token, self._agent(conn, agent_id))
                    if decision is Decision.REGISTER:
                        spent = conn.execute(
                            update(tokens)
                            .where(tokens.c.token_hash == token_hash, tokens.c.used_by.is_(None))
                            .values(used_by=agent_id, used_at=utc_naive(now))
                        )
                        if spent.rowcount != 1:  # spent meanwhile: decide again
                            raise IntegrityError("token spent concurrently", None, Exception())
                        conn.execute(
                            m.agents.insert().values(
                                **agent_values, enrolled_at=utc_naive(now), revoked=False
                            )
                        )
                    return decision
            except IntegrityError:
                continue
        raise RuntimeError("enrollment kept conflicting with concurrent enrollments")

    # --- reports --------------------------------------------------------------------------------

    def store_report(self, rows: ReportRows, sha256: str, size: int, now: datetime) -> Stored:
        """Everything of one report in one transaction; duplicate or 2005 by the primary key."""
        ins = self._insert
        received = utc_naive(now)
        created = utc_naive(rows.created_at)
        with self._write() as conn:
            res = conn.execute(
                ins(m.reports)
                .values(
                    report_id=rows.report_id,
                    agent_id=rows.agent_id,
                    sequence=rows.sequence,
                    created_at=created,
                    received_at=received,
                    sha256=sha256,
                    size=size,
                    devices=len(rows.devices),
                )
                .on_conflict_do_nothing(index_elements=["report_id"])
                .returning(m.reports.c.report_id)
            )
            if res.first() is None:  # the id is stored already (perhaps this very moment)
                stored = conn.execute(
                    select(m.reports.c.sha256).where(m.reports.c.report_id == rows.report_id)
                ).scalar_one()
                if stored != sha256:
                    raise replayed(rows.report_id)
                return Stored(duplicate=True, devices=0)
            self._update_agent(conn, rows, created, received)
            if rows.devices:
                self._store_devices(conn, rows, received)
            return Stored(duplicate=False, devices=len(rows.devices))

    @staticmethod
    def _update_agent(
        conn: Connection, rows: ReportRows, created: datetime, received: datetime
    ) -> None:
        a = m.agents.c
        newer = or_(a.status_at.is_(None), a.status_at <= created)
        values: dict[str, Any] = {
            k: case((newer, v), else_=a[k]) for k, v in rows.agent_status.items()
        }
        values["status_at"] = case((newer, created), else_=a.status_at)
        values["last_seen_at"] = case(
            (or_(a.last_seen_at.is_(None), a.last_seen_at < received), received),
            else_=a.last_seen_at,
        )
        conn.execute(update(m.agents).where(a.agent_id == rows.agent_id).values(**values))

    def _store_devices(self, conn: Connection, rows: ReportRows, received: datetime) -> None:
        ins = self._insert
        devs = sorted(rows.devices, key=lambda d: d.device_key)  # lock order (PostgreSQL)
        d = m.devices.c
        dev_rows = [
            {
                "device_key": x.device_key,
                **x.identity,
                "current_ip": x.ip,
                "first_seen": x.reading["polled_at"],
                "last_seen": x.reading["polled_at"],
                "last_agent_id": rows.agent_id,
            }
            for x in devs
        ]
        stmt = ins(m.devices)
        exc = stmt.excluded
        newer = exc.last_seen >= d.last_seen
        keep_newest = {
            col: case(
                (newer, func.coalesce(exc[col], d[col])), else_=func.coalesce(d[col], exc[col])
            )
            for col in (*devs[0].identity.keys(),)
        }
        stmt = stmt.on_conflict_do_update(
            index_elements=["device_key"],
            set_={
                **keep_newest,
                "current_ip": case((newer, exc.current_ip), else_=d.current_ip),
                "last_agent_id": case((newer, exc.last_agent_id), else_=d.last_agent_id),
                "first_seen": case(
                    (exc.first_seen < d.first_seen, exc.first_seen), else_=d.first_seen
                ),
                "last_seen": case((newer, exc.last_seen), else_=d.last_seen),
            },
        )
        conn.execute(stmt, dev_rows)

        ip = m.device_ips.c
        ip_stmt = ins(m.device_ips)
        ipx = ip_stmt.excluded
        ip_stmt = ip_stmt.on_conflict_do_update(
            index_elements=["device_key", "ip"],
            set_={
                "first_seen": case(
                    (ipx.first_seen < ip.first_seen, ipx.first_seen), else_=ip.first_seen
                ),
                "last_seen": case(
                    (ipx.last_seen > ip.last_seen, ipx.last_seen), else_=ip.last_seen
                ),
            },
        )
        conn.execute(
            ip_stmt,
            [
                {
                    "device_key": x.device_key,
                    "ip": x.ip,
                    "first_seen": x.reading["polled_at"],
                    "last_seen": x.reading["polled_at"],
                }
                for x in devs
            ],
        )

        ids = conn.execute(
            m.readings.insert().returning(
                m.readings.c.id, m.readings.c.device_key, sort_by_parameter_order=True
            ),
            [
                {
                    "report_id": rows.report_id,
                    "device_key": x.device_key,
                    "agent_id": rows.agent_id,
                    "received_at": received,
                    **x.reading,
                }
                for x in devs
            ],
        ).all()
        counter_rows: list[dict[str, Any]] = []
        supply_rows: list[dict[str, Any]] = []
        alert_rows: list[dict[str, Any]] = []
        error_rows: list[dict[str, Any]] = []
        for (reading_id, key), x in zip(ids, devs, strict=True):
            assert key == x.device_key
            counter_rows.extend({"reading_id": reading_id, **c} for c in x.counters)
            supply_rows.extend({"reading_id": reading_id, **s} for s in x.supplies)
            alert_rows.extend({"reading_id": reading_id, **a} for a in x.alerts)
            error_rows.extend({"reading_id": reading_id, **e} for e in x.errors)
        for table, batch in (
            (m.counters, counter_rows),
            (m.supplies, supply_rows),
            (m.alerts, alert_rows),
            (m.collection_errors, error_rows),
        ):
            if batch:
                conn.execute(table.insert(), batch)

    # --- read API -------------------------------------------------------------------------------

    def health(self) -> int | None:
        with self._read() as conn:
            return conn.execute(select(func.max(m.schema_version.c.version))).scalar()

    def count(self, table: str) -> int:
        """Rows in a table (tests and operations)."""
        with self._read() as conn:
            return conn.execute(
                select(func.count()).select_from(m.metadata.tables[table])
            ).scalar_one()

    def agents(
        self, agent_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        a = m.agents.c
        n_reports = (
            select(func.count())
            .select_from(m.reports)
            .where(m.reports.c.agent_id == a.agent_id)
            .scalar_subquery()
        )
        q = select(m.agents, n_reports.label("n_reports")).order_by(a.agent_id)
        q = q.where(a.agent_id == agent_id) if agent_id else q.limit(limit).offset(offset)
        with self._read() as conn:
            return [
                {
                    "agentId": r.agent_id,
                    "enrolledAt": iso(r.enrolled_at),
                    "revoked": bool(r.revoked),
                    "lastSeenAt": iso(r.last_seen_at),
                    "software": {
                        "vendor": r.software_vendor,
                        "product": r.software_product,
                        "version": r.software_version,
                    },
                    "hostname": r.hostname,
                    "queueDepth": r.queue_depth,
                    "droppedReports": r.dropped_reports,
                    "licenceState": r.licence_state,
                    "reports": r.n_reports,
                }
                for r in conn.execute(q)
            ]

    def devices(
        self, device_key: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict[str, Any]]:
        d = m.devices.c
        q = select(m.devices).order_by(d.device_key)
        q = q.where(d.device_key == device_key) if device_key else q.limit(limit).offset(offset)
        with self._read() as conn:
            return [
                {
                    "deviceKey": r.device_key,
                    "vendor": r.vendor,
                    "model": r.model,
                    "serialNumber": r.serial_number,
                    "currentIp": r.current_ip,
                    "hostname": r.hostname,
                    "sysName": r.sys_name,
                    "location": r.location,
                    "firstSeen": iso(r.first_seen),
                    "lastSeen": iso(r.last_seen),
                    "agentId": r.last_agent_id,
                }
                for r in conn.execute(q)
            ]

    def ip_history(self, device_key: str) -> list[dict[str, Any]]:
        r = m.readings.c
        prev = func.lag(r.ip).over(order_by=(r.polled_at, r.id)).label("prev")
        inner = (
            select(r.ip, r.polled_at, r.report_id, prev)
            .where(r.device_key == device_key)
            .subquery()
        )
        q = (
            select(inner.c.ip, inner.c.polled_at, inner.c.report_id)
            .where(or_(inner.c.prev.is_(None), inner.c.prev != inner.c.ip))
            .order_by(inner.c.polled_at)
        )
        with self._read() as conn:
            return [
                {"ip": x.ip, "since": iso(x.polled_at), "reportId": x.report_id}
                for x in conn.execute(q)
            ]

    @staticmethod
    def _counter(c: Any) -> dict[str, Any]:
        return {
            "kind": c.kind,
            "unit": c.unit,
            "oid": c.oid,
            "source": c.source,
            "label": c.label,
            "marker": c.marker,
            "value": c.value,
            "anomaly": c.anomaly,
            "previous": c.previous,
        }

    @staticmethod
    def _supply(s: Any) -> dict[str, Any]:
        return {
            "index": s.idx,
            "marker": s.marker,
            "source": s.source,
            "supplyClass": s.supply_class,
            "type": s.type,
            "typeRaw": s.type_raw,
            "colour": s.colour,
            "description": s.description,
            "partNumber": s.part_number,
            "serialNumber": s.serial_number,
            "unit": s.unit,
            "level": {"raw": s.level_raw, "meaning": s.level_meaning},
            "maxCapacity": {"raw": s.max_raw, "meaning": s.max_meaning},
            "percent": None if s.percent_x100 is None else s.percent_x100 / 100,
        }

    @staticmethod
    def _alert(a: Any) -> dict[str, Any]:
        return {
            "index": a.idx,
            "severity": a.severity,
            "severityRaw": a.severity_raw,
            "trainingLevel": a.training_level,
            "group": a.grp,
            "groupIndex": a.group_index,
            "location": a.location,
            "code": a.code,
            "codeRaw": a.code_raw,
            "description": a.description,
            "time": a.time,
        }

    @staticmethod
    def _latest_reading(conn: Connection, device_key: str) -> Any:
        r = m.readings.c
        return conn.execute(
            select(m.readings)
            .where(r.device_key == device_key)
            .order_by(r.polled_at.desc(), r.id.desc())
            .limit(1)
        ).first()

    def latest(self, device_key: str) -> dict[str, Any] | None:
        with self._read() as conn:
            rd = self._latest_reading(conn, device_key)
            if rd is None:
                return None

            def rows(table: Any, *order: Any) -> list[Any]:
                return list(
                    conn.execute(select(table).where(table.c.reading_id == rd.id).order_by(*order))
                )

            return {
                "deviceKey": rd.device_key,
                "reportId": rd.report_id,
                "agentId": rd.agent_id,
                "polledAt": iso(rd.polled_at),
                "receivedAt": iso(rd.received_at),
                "ip": rd.ip,
                "complete": bool(rd.complete),
                "deviceStatus": rd.device_status,
                "printerStatus": rd.printer_status,
                "errorFlags": rd.error_flags.split() if rd.error_flags else [],
                "counters": [
                    self._counter(c) for c in rows(m.counters, m.counters.c.kind, m.counters.c.oid)
                ],
                "supplies": [self._supply(s) for s in rows(m.supplies, m.supplies.c.idx)],
                "alerts": [self._alert(a) for a in rows(m.alerts, m.alerts.c.idx)],
                "collectionErrors": [
                    {"oid": e.oid, "code": e.code, "message": e.message}
                    for e in rows(m.collection_errors)
                ],
            }

    def supplies(self, device_key: str) -> dict[str, Any] | None:
        with self._read() as conn:
            rd = self._latest_reading(conn, device_key)
            if rd is None:
                return None
            s = m.supplies
            items = conn.execute(select(s).where(s.c.reading_id == rd.id).order_by(s.c.idx))
            return {
                "deviceKey": device_key,
                "polledAt": iso(rd.polled_at),
                "items": [self._supply(x) for x in items],
            }

    def counter_history(
        self,
        device_key: str,
        kind: str | None,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        r, c = m.readings.c, m.counters.c
        q = (
            select(m.counters, r.polled_at, r.report_id)
            .join(m.readings, r.id == c.reading_id)
            .where(r.device_key == device_key)
        )
        if kind:
            q = q.where(c.kind == kind)
        if start:
            q = q.where(r.polled_at > utc_naive(start))
        if end:
            q = q.where(r.polled_at <= utc_naive(end))
        q = q.order_by(r.polled_at, r.id, c.kind, c.oid).limit(limit).offset(offset)
        with self._read() as conn:
            return [
                {**self._counter(x), "polledAt": iso(x.polled_at), "reportId": x.report_id}
                for x in conn.execute(q)
            ]

    def alerts(
        self,
        device_key: str | None,
        start: datetime | None,
        end: datetime | None,
        limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        r, a = m.readings.c, m.alerts.c
        q = select(m.alerts, r.device_key, r.polled_at, r.report_id).join(
            m.readings, r.id == a.reading_id
        )
        if device_key:
            q = q.where(r.device_key == device_key)
        if start:
            q = q.where(r.polled_at > utc_naive(start))
        if end:
            q = q.where(r.polled_at <= utc_naive(end))
        q = q.order_by(r.polled_at.desc(), r.id.desc(), a.idx).limit(limit).offset(offset)
        with self._read() as conn:
            return [
                {
                    **self._alert(x),
                    "deviceKey": x.device_key,
                    "polledAt": iso(x.polled_at),
                    "reportId": x.report_id,
                }
                for x in conn.execute(q)
            ]

    def meters(
        self, start: datetime, end: datetime, device_key: str | None, kind: str | None
    ) -> list[dict[str, Any]]:
        """The meter export of (start, end]: one line per device and counter series."""
        if end <= start:
            return []
        r, c = m.readings.c, m.counters.c
        series = (r.device_key, c.kind, c.unit, c.oid)
        base = select(*series, c.source, c.value, c.anomaly, r.polled_at).join(
            m.readings, r.id == c.reading_id
        )
        filters = []
        if device_key:
            filters.append(r.device_key == device_key)
        if kind:
            filters.append(c.kind == kind)
        lo, hi = utc_naive(start), utc_naive(end)
        rank = (
            func.row_number()
            .over(partition_by=series, order_by=(r.polled_at.desc(), c.value.desc()))
            .label("rn")
        )
        before_q = (
            select(*series, c.source, c.value, c.anomaly, r.polled_at, rank)
            .join(m.readings, r.id == c.reading_id)
            .where(r.polled_at <= lo, *filters)
            .subquery()
        )
        with self._read() as conn:
            before_rows = conn.execute(select(before_q).where(before_q.c.rn == 1)).all()
            period_rows = conn.execute(
                base.where(and_(r.polled_at > lo, r.polled_at <= hi), *filters)
            ).all()
        before: dict[tuple[str, str, str, str], tuple[Read, str]] = {}
        for x in before_rows:
            key = (x.device_key, x.kind, x.unit, x.oid)
            before[key] = (Read(x.polled_at, x.value, x.anomaly == "decreased"), x.source)
        in_period: dict[tuple[str, str, str, str], list[Read]] = {}
        sources: dict[tuple[str, str, str, str], str] = {}
        for x in period_rows:
            key = (x.device_key, x.kind, x.unit, x.oid)
            in_period.setdefault(key, []).append(
                Read(x.polled_at, x.value, x.anomaly == "decreased")
            )
            sources[key] = x.source
        lines = []
        for key in sorted(set(before) | set(in_period)):
            b = before.get(key)
            u = usage(b[0] if b else None, in_period.get(key, []))
            if u is None:
                continue
            lines.append(
                {
                    "deviceKey": key[0],
                    "kind": key[1],
                    "unit": key[2],
                    "oid": key[3],
                    "source": sources.get(key) or (b[1] if b else ""),
                    "start": {"value": u.start.value, "polledAt": iso(u.start.polled_at)},
                    "end": {"value": u.end.value, "polledAt": iso(u.end.polled_at)},
                    "usage": u.usage,
                    "resets": [
                        {
                            "at": iso(z.at),
                            "before": z.before,
                            "after": z.after,
                            "flagged": z.flagged,
                        }
                        for z in u.resets
                    ],
                    "readsInPeriod": u.reads_in_period,
                    "startInPeriod": u.start_in_period,
                    "stale": u.stale,
                }
            )
        return lines
