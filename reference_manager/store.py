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
import json
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    and_,
    bindparam,
    case,
    create_engine,
    event,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from metersync.errors import ProtocolError
from metersync_manager import (
    billing,
    contract,
    device_state,
    ownership,
    search_terms,
    shared_rows,
    staleness,
    tenancy,
)
from metersync_manager import models as m
from metersync_manager.extract import DeviceRows, ReportRows, iso, utc_naive
from metersync_manager.ingest import AgentRecord, Decision, TokenRecord, replayed
from metersync_manager.scope import ADMIN, Scope, ScopeError

DEFAULT_CUSTOMER = tenancy.DEFAULT_CUSTOMER
APPLIED = ownership.Disposition.APPLIED

_MIGRATION_LOCK = 84700001  # pg_advisory_xact_lock key: one migrating process at a time


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(Path(data_dir) / 'manager.db').resolve()}"


def _private_file(path: Path) -> None:
    """Create the database's folder 0700 and file 0600 (SQLite gives its WAL and shared-memory
    files the database file's mode); an existing file keeps its mode."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))


def _seconds(interval: timedelta | None) -> int | None:
    return None if interval is None else round(interval.total_seconds())


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt


LOCK_TIMEOUT_MS = 5000  # the longest wait for a lock held elsewhere (PostgreSQL and SQLite)
PROBE_TIMEOUT_MS = 2000  # /healthz: the longest wait for the write lock ingest needs
# The tables a report's ingest writes: the /healthz probe takes their write lock on PostgreSQL
# (a lock on any of them stalls ingest).
INGEST_TABLES = tuple(
    t.name
    for t in (
        m.reports, m.agents, m.readings, m.devices, m.device_state, m.device_ips, m.counters,
        m.supplies, m.alerts, m.collection_errors, m.counter_series, m.counter_reads,
    )
)  # fmt: skip


@dataclass(frozen=True)
class Stored:
    duplicate: bool
    devices: int


@dataclass
class _Job:
    rows: ReportRows
    sha256: str
    size: int
    received: datetime
    future: Future[Stored]


MAX_BATCH = 64  # reports per group commit
_RETRYABLE = {"40P01", "40001"}  # PostgreSQL deadlock, serialization failure
AGENT_STATUS = (
    "software_vendor",
    "software_product",
    "software_version",
    "queue_depth",
    "dropped_reports",
    "licence_state",
)
IDENTITY = (
    "vendor",
    "model",
    "serial_number",
    "mac_addresses",
    "hostname",
    "sys_name",
    "location",
    "firmware",
)


class Store:
    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                _private_file(Path(parsed.database))
            self.engine: Engine = create_engine(
                url,
                connect_args={"timeout": LOCK_TIMEOUT_MS / 1000, "check_same_thread": False},
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
            self._bound_waits()
            self._write_lock = contextlib.nullcontext()
            self._insert = postgresql.insert
        else:
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite or postgresql")
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_guard = threading.Lock()
        self._closed = False
        self._build_statements()

    # --- set-up --------------------------------------------------------------------------------

    def _bound_waits(self) -> None:
        """A lock held elsewhere fails a statement after LOCK_TIMEOUT_MS instead of holding
        the request: ingest then answers 4002 with Retry-After and /healthz 503."""

        @event.listens_for(self.engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
            cur.close()
            dbapi_conn.commit()  # (a rolled-back SET would be undone)

    def _setup_sqlite(self) -> None:
        @event.listens_for(self.engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's BEGIN below, not pysqlite's
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={LOCK_TIMEOUT_MS}")  # then 4002 (issue 9, case 8)
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

    def reading(self) -> contextlib.AbstractContextManager[Connection]:
        """A read transaction, for modules with their own queries (the console)."""
        return self._read()

    def writing(self) -> contextlib.AbstractContextManager[Connection]:
        """A write transaction (serialised on SQLite), for modules with their own tables."""
        return self._write()

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
                self._ensure_default_customer(conn, now)
                return m.SCHEMA_VERSION
            if current > m.SCHEMA_VERSION:
                raise RuntimeError(
                    f"the database schema is version {current}; this manager knows up to "
                    f"{m.SCHEMA_VERSION}: upgrade the manager"
                )
            for version in range(current + 1, m.SCHEMA_VERSION + 1):
                m.MIGRATIONS[version](conn)
                conn.execute(m.schema_version.insert().values(version=version, applied_at=now))
            self._ensure_default_customer(conn, now)
            return m.SCHEMA_VERSION

    @staticmethod
    def _ensure_default_customer(conn: Connection, now: datetime) -> None:
        """The customer of tokens created without one (and of everything before tenancy)."""
        found = conn.execute(
            select(m.customers.c.customer_id).where(m.customers.c.customer_id == DEFAULT_CUSTOMER)
        ).first()
        if found is None:
            conn.execute(
                m.customers.insert().values(
                    customer_id=DEFAULT_CUSTOMER, name="Default customer", created_at=now
                )
            )

    def close(self) -> None:
        with self._writer_guard:
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(None)
            writer.join()
        self.engine.dispose()

    # --- tokens and agents --------------------------------------------------------------------

    def add_token(
        self,
        token_hash: str,
        expires_at: datetime,
        now: datetime,
        agent_id: str | None = None,
        customer_id: str = DEFAULT_CUSTOMER,
        site: str | None = None,
    ) -> None:
        """A one-time token; with `agent_id`, a re-enrollment (key rotation) token of it. The
        agent it enrolls belongs to `customer_id` (which must exist) and its site `site`
        (created when new)."""
        with self._write() as conn:
            tenancy.require_customer(conn, customer_id)
            sid = tenancy.site_id(conn, customer_id, site, True, utc_naive(now))
            conn.execute(
                m.enrollment_tokens.insert().values(
                    token_hash=token_hash,
                    created_at=utc_naive(now),
                    expires_at=utc_naive(expires_at),
                    agent_id=agent_id,
                    customer_id=customer_id,
                    site_id=sid,
                )
            )

    def add_operator_token(
        self, token_hash: str, name: str, now: datetime, scope: Scope = ADMIN
    ) -> None:
        """An operator token with the role and customers of `scope` (every customer named
        must exist)."""
        with self._write() as conn:
            self._check_customers(conn, scope.customers)
            conn.execute(
                m.operator_tokens.insert().values(
                    token_hash=token_hash,
                    name=name,
                    created_at=utc_naive(now),
                    role=scope.role,
                    customers=scope.encode(),
                )
            )

    @staticmethod
    def _check_customers(conn: Connection, ids: frozenset[str] | set[str]) -> None:
        if not ids:
            return
        c = m.customers.c
        found = set(
            conn.execute(select(c.customer_id).where(c.customer_id.in_(sorted(ids)))).scalars()
        )
        missing = sorted(set(ids) - found)
        if missing:
            raise ScopeError(f"no such customer: {', '.join(missing)}")

    def revoke_operator_tokens(self, name: str, now: datetime) -> int:
        """Revoke every live operator token of this name; how many were revoked."""
        t = m.operator_tokens
        with self._write() as conn:
            done = conn.execute(
                t.update()
                .where(t.c.name == name, t.c.revoked_at.is_(None))
                .values(revoked_at=utc_naive(now))
            )
            return int(done.rowcount)

    def operator_token_valid(self, token_hash: str) -> bool:
        return self.operator_scope(token_hash) is not None

    def operator_scope(self, token_hash: str) -> Scope | None:
        """The scope of a live operator token; None when unknown or revoked."""
        t = m.operator_tokens
        with self._read() as conn:
            row = conn.execute(
                select(t.c.name, t.c.role, t.c.customers).where(
                    t.c.token_hash == token_hash, t.c.revoked_at.is_(None)
                )
            ).first()
            return None if row is None else Scope.decode(row.role, row.customers, row.name)

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
        if row is None:
            return None
        k = m.agent_keys.c
        old = conn.execute(
            select(k.public_key, k.superseded_at)
            .where(k.agent_id == agent_id)
            .order_by(k.superseded_at.desc())
        ).all()
        previous = tuple((x.public_key, _aware(x.superseded_at)) for x in old)
        return AgentRecord(row.agent_id, row.public_key, row.revoked, previous)

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
                        else TokenRecord(
                            row.token_hash, _aware(row.expires_at), row.used_by, row.agent_id
                        )
                    )
                    current = self._agent(conn, agent_id)
                    decision = decide(token, current)
                    if decision is Decision.ROTATE:
                        assert current is not None
                        self._spend(conn, token_hash, agent_id, now)
                        conn.execute(
                            m.agent_keys.insert().values(
                                agent_id=agent_id,
                                public_key=current.public_key,
                                superseded_at=utc_naive(now),
                            )
                        )
                        conn.execute(
                            update(m.agents)
                            .where(m.agents.c.agent_id == agent_id)
                            .values(
                                public_key=agent_values["public_key"],
                                algorithm=agent_values["algorithm"],
                            )
                        )
                    if decision is Decision.REGISTER:
                        assert row is not None
                        self._spend(conn, token_hash, agent_id, now)
                        conn.execute(
                            m.agents.insert().values(
                                **agent_values,
                                enrolled_at=utc_naive(now),
                                revoked=False,
                                customer_id=row.customer_id,
                                site_id=row.site_id,
                            )
                        )
                        tenancy.assign(
                            conn,
                            "agent",
                            agent_id,
                            row.customer_id,
                            row.site_id,
                            utc_naive(now),
                            "enrolled",
                        )
                    return decision
            except IntegrityError:
                continue
        raise RuntimeError("enrollment kept conflicting with concurrent enrollments")

    # --- mail refusals (SMTP binding, MS-SMTP-5) ------------------------------------------------

    def record_mail_refusal(self, values: dict[str, Any], now: datetime) -> None:
        with self._write() as conn:
            conn.execute(m.mail_refusals.insert().values(**values, received_at=utc_naive(now)))

    def mail_refusals(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest refused mails, newest first."""
        t = m.mail_refusals
        with self._read() as conn:
            rows = conn.execute(select(t).order_by(t.c.id.desc()).limit(limit)).mappings().all()
        return [{**r, "received_at": iso(r["received_at"])} for r in rows]

    @staticmethod
    def _spend(conn: Connection, token_hash: str, agent_id: str, now: datetime) -> None:
        tokens = m.enrollment_tokens
        spent = conn.execute(
            update(tokens)
            .where(tokens.c.token_hash == token_hash, tokens.c.used_by.is_(None))
            .values(used_by=agent_id, used_at=utc_naive(now))
        )
        if spent.rowcount != 1:  # spent meanwhile: decide again
            raise IntegrityError("token spent concurrently", None, Exception())

    # --- reports --------------------------------------------------------------------------------
    #
    # One writer thread per Store stores reports in batches ("group commit"): it takes every
    # report waiting, stores each inside its own SAVEPOINT (a report that fails rolls back alone)
    # and commits once. Receipts are answered after that commit, so each report is still all or
    # nothing and durable when acknowledged, while the fsync is paid once per batch.

    def submit_report(
        self, rows: ReportRows, sha256: str, size: int, now: datetime
    ) -> Future[Stored]:
        """Queue a report for the writer; the future holds Stored or the refusal."""
        job = _Job(rows, sha256, size, utc_naive(now), Future())
        with self._writer_guard:
            if self._closed:
                raise RuntimeError("the store is closed")
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="metersync-writer", daemon=True
                )
                self._writer.start()
            self._queue.put(job)
        return job.future

    def store_report(self, rows: ReportRows, sha256: str, size: int, now: datetime) -> Stored:
        """Store one report; duplicate (same id, same bytes) or 2005 (same id, other bytes)."""
        return self.submit_report(rows, sha256, size, now).result()

    def _write_loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            # A request whose client went away cancels its future while queued: skip it (no
            # receipt was sent; the agent resends). Once running, a future cannot be cancelled,
            # so set_result below never meets a cancelled future.
            batch = [j for j in batch if j.future.set_running_or_notify_cancel()]
            if batch:
                self._write_batch(batch)

    def _write_batch(self, batch: list[_Job]) -> None:
        outcome: list[Stored | BaseException] = []
        for attempt in range(3):
            outcome = []
            try:
                with self._write() as conn:
                    for job in batch:
                        try:
                            with conn.begin_nested():
                                outcome.append(self._store_one(conn, job))
                        except (ProtocolError, IntegrityError) as exc:  # this report only
                            outcome.append(exc)
                break
            except DBAPIError as exc:
                code = getattr(exc.orig, "sqlstate", None)
                if code in _RETRYABLE and attempt < 2:
                    continue  # a deadlock with another process: the whole batch again
                outcome = [exc] * len(batch)
                break
            except BaseException as exc:  # nothing of the batch was committed
                outcome = [exc] * len(batch)
                break
        for job, result in zip(batch, outcome, strict=True):
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            else:
                job.future.set_result(result)

    def _store_one(self, conn: Connection, job: _Job) -> Stored:
        rows = job.rows
        created = utc_naive(rows.created_at)
        res = conn.execute(
            self._ins_report,
            {
                "report_id": rows.report_id,
                "agent_id": rows.agent_id,
                "sequence": rows.sequence,
                "sequence_epoch": rows.sequence_epoch,
                "created_at": created,
                "received_at": job.received,
                "sha256": job.sha256,
                "size": job.size,
                "devices": len(rows.devices),
                "cycle_started_at": None
                if rows.cycle_started_at is None
                else utc_naive(rows.cycle_started_at),
            },
        )
        if res.first() is None:  # the id is stored already (perhaps a moment ago)
            stored = conn.execute(
                select(m.reports.c.sha256).where(m.reports.c.report_id == rows.report_id)
            ).scalar_one()
            if stored != job.sha256:
                raise replayed(rows.report_id)
            return Stored(duplicate=True, devices=0)
        if rows.problem is not None:  # meaning comes after idempotence (MS-HTTP-8)
            raise rows.problem
        params = {f"p_{k}": v for k, v in rows.agent_status.items()}
        params.update(p_agent=rows.agent_id, p_created=created, p_received=job.received)
        conn.execute(self._upd_agent, params)
        if rows.devices:
            self._store_devices(conn, rows, job.received)
        return Stored(duplicate=False, devices=len(rows.devices))

    def _build_statements(self) -> None:
        """Statements built once: per report only parameters change."""
        ins = self._insert
        self._ins_report = (
            ins(m.reports)
            .on_conflict_do_nothing(index_elements=["report_id"])
            .returning(m.reports.c.report_id)
        )

        a = m.agents.c
        created = bindparam("p_created", type_=DateTime())
        received = bindparam("p_received", type_=DateTime())
        newer = or_(a.status_at.is_(None), a.status_at <= created)
        status_values: dict[str, Any] = {
            k: case((newer, bindparam(f"p_{k}", type_=a[k].type)), else_=a[k]) for k in AGENT_STATUS
        }
        self._upd_agent = (
            update(m.agents)
            .where(a.agent_id == bindparam("p_agent"))
            .values(
                **status_values,
                status_at=case((newer, created), else_=a.status_at),
                last_seen_at=case(
                    (or_(a.last_seen_at.is_(None), a.last_seen_at < received), received),
                    else_=a.last_seen_at,
                ),
            )
        )

        d = m.devices.c
        dev = ins(m.devices)
        exc = dev.excluded
        newest = exc.last_seen >= d.last_seen
        keep_newest = {
            col: case(
                (newest, func.coalesce(exc[col], d[col])), else_=func.coalesce(d[col], exc[col])
            )
            for col in IDENTITY
        }
        self._upsert_device = dev.on_conflict_do_update(
            index_elements=["device_key"],
            set_={
                **keep_newest,
                "last_polled_at": exc.last_polled_at,  # applied snapshots only: always newer
                "current_ip": case((newest, exc.current_ip), else_=d.current_ip),
                "last_agent_id": case((newest, exc.last_agent_id), else_=d.last_agent_id),
                "first_seen": case(
                    (exc.first_seen < d.first_seen, exc.first_seen), else_=d.first_seen
                ),
                "last_seen": case((newest, exc.last_seen), else_=d.last_seen),
                "last_complete_at": case(
                    (
                        or_(
                            d.last_complete_at.is_(None),
                            exc.last_complete_at > d.last_complete_at,
                        ),
                        func.coalesce(exc.last_complete_at, d.last_complete_at),
                    ),
                    else_=d.last_complete_at,
                ),
            },
        )

        ip = m.device_ips.c
        ips = ins(m.device_ips)
        ipx = ips.excluded
        self._upsert_ip = ips.on_conflict_do_update(
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
        self._upsert_state = device_state.upsert(ins)
        self._upsert_rowsets = shared_rows.upsert_statement(ins)
        self._ins_readings = m.readings.insert().returning(
            m.readings.c.id, m.readings.c.device_key, sort_by_parameter_order=True
        )
        # The child rows (≈ 90 % of a report's rows) have no type needing conversion: they go
        # to the driver's executemany directly, without SQLAlchemy's per-row parameter work.
        mark = (lambda c: f":{c}") if self.dialect == "sqlite" else (lambda c: f"%({c})s")
        self._ins_children = {
            t.name: f"INSERT INTO {t.name} ({', '.join(c.name for c in t.columns)}) "
            f"VALUES ({', '.join(mark(c.name) for c in t.columns)})"
            for t in (m.counters, m.supplies, m.alerts, m.collection_errors)
        }

    def _store_devices(self, conn: Connection, rows: ReportRows, received: datetime) -> None:
        """Every snapshot is stored as a reading; only those ownership applies (MS-OWN) change
        the device's state and extend its counter series."""
        devs = sorted(rows.devices, key=lambda d: d.device_key)  # lock order (PostgreSQL)
        a = m.agents.c
        agent = conn.execute(
            select(a.customer_id, a.site_id).where(a.agent_id == rows.agent_id)
        ).one()
        states = self._device_states(conn, [x.device_key for x in devs])
        others = {
            st.owner_agent_id
            for st in states.values()
            if st.owner_agent_id and st.owner_agent_id != rows.agent_id
        }
        intervals = self._poll_intervals(conn, others) if others else {}
        verdicts: dict[str, ownership.Verdict] = {}
        for x in devs:
            st = states.get(x.device_key)
            owner_interval = intervals.get(st.owner_agent_id or "") if st else None
            verdicts[x.device_key] = ownership.judge(
                st, rows.agent_id, agent.customer_id, x.reading["polled_at"], owner_interval
            )
        applied = [x for x in devs if verdicts[x.device_key].disposition is APPLIED]
        events: list[dict[str, Any]] = []
        if applied:
            self._apply_devices(conn, rows.agent_id, agent, applied, verdicts, states, events)
            search_terms.refresh(conn, [x.device_key for x in applied])
        shared = shared_rows.plan(conn, devs)
        ids = conn.execute(
            self._ins_readings,
            [
                {
                    "report_id": rows.report_id,
                    "device_key": x.device_key,
                    "agent_id": rows.agent_id,
                    "received_at": received,
                    "disposition": verdicts[x.device_key].disposition.value,
                    **x.reading,
                    **shared_rows.refs(shared[x.device_key]),
                }
                for x in devs
            ],
        ).all()
        children: dict[str, list[dict[str, Any]]] = {
            "counters": [],
            "supplies": [],
            "alerts": [],
            "collection_errors": [],
        }
        newest = []  # the applied snapshots make the device's state (device_state)
        remembered: list[tuple[str, str, str, int]] = []
        for (reading_id, key), x in zip(ids, devs, strict=True):
            if key != x.device_key:
                raise RuntimeError("readings came back out of order")
            if verdicts[key].disposition is APPLIED:
                newest.append(
                    device_state.values(key, reading_id, x.reading, x.supplies, len(x.alerts))
                )
            for name, items in (
                ("counters", x.counters),
                ("supplies", x.supplies),
                ("alerts", x.alerts),
                ("collection_errors", x.errors),
            ):
                found = shared[key].get(name)
                if found is None or found[1] is not None:  # none, or an earlier reading's
                    continue
                children[name].extend({"reading_id": reading_id, **item} for item in items)
                remembered.append((key, name, found[0], reading_id))
        for c in children["counters"]:  # unsignedLong in a BIGINT column (billing.enc)
            c["value"] = billing.enc(c["value"])
            if c["previous"] is not None:
                c["previous"] = billing.enc(c["previous"])
        for name, batch in children.items():
            if batch:
                conn.exec_driver_sql(self._ins_children[name], batch)  # type: ignore[arg-type]
        shared_rows.remember(conn, self._upsert_rowsets, remembered)
        device_state.apply(conn, self._upsert_state, newest)
        found_of: dict[str, list[dict[str, Any]]] = {x.device_key: [] for x in devs}
        billing.record(
            conn,
            [
                billing.Snapshot(
                    x.device_key, x.reading["polled_at"], x.counters, found_of[x.device_key]
                )
                for x in applied
            ],
        )
        for x in devs:
            verdict = verdicts[x.device_key]
            found = found_of[x.device_key]
            if verdict.disposition is ownership.Disposition.CONFLICT:
                st = states[x.device_key]
                found.append(
                    {
                        "kind": "conflict",
                        "detail": {"owner": st.owner_agent_id, "reportId": rows.report_id},
                    }
                )
            for e in found:
                e.setdefault("device_key", x.device_key)
                e.setdefault("at", x.reading["polled_at"])
            events.extend(found)
        if events:
            self._add_events(conn, rows.agent_id, agent.customer_id, events)

    @staticmethod
    def _device_states(conn: Connection, keys: list[str]) -> dict[str, ownership.DeviceState]:
        d = m.devices.c
        q = (
            select(d.device_key, d.owner_agent_id, d.customer_id, d.last_polled_at, d.current_ip)
            .where(d.device_key.in_(keys))
            .order_by(d.device_key)
            .with_for_update()
        )
        return {
            r.device_key: ownership.DeviceState(
                r.owner_agent_id, r.customer_id, r.last_polled_at, r.current_ip
            )
            for r in conn.execute(q)
        }

    def _apply_devices(
        self,
        conn: Connection,
        agent_id: str,
        agent: Any,
        devs: list[DeviceRows],
        verdicts: dict[str, ownership.Verdict],
        states: dict[str, ownership.DeviceState],
        events: list[dict[str, Any]],
    ) -> None:
        conn.execute(
            self._upsert_device,
            [
                {
                    "device_key": x.device_key,
                    **x.identity,
                    "current_ip": x.ip,
                    "first_seen": x.reading["polled_at"],
                    "last_seen": x.reading["polled_at"],
                    "last_agent_id": agent_id,
                    "last_complete_at": x.reading["polled_at"] if x.reading["complete"] else None,
                    "owner_agent_id": agent_id,
                    "customer_id": agent.customer_id,
                    "site_id": agent.site_id,
                    "last_polled_at": x.reading["polled_at"],
                }
                for x in devs
            ],
        )
        conn.execute(
            self._upsert_ip,
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
        new = [x for x in devs if verdicts[x.device_key].new]
        for x in devs:
            st, at = states.get(x.device_key), x.reading["polled_at"]
            if st is not None and st.current_ip != x.ip:
                events.append(
                    {
                        "device_key": x.device_key,
                        "at": at,
                        "kind": "ip-change",
                        "detail": {"from": st.current_ip, "to": x.ip},
                    }
                )
            if verdicts[x.device_key].hand_over:
                assert st is not None
                tenancy.hand_over(conn, x.device_key, st.owner_agent_id, agent_id, agent, at)
                events.append(
                    {
                        "device_key": x.device_key,
                        "at": at,
                        "kind": "hand-over",
                        "detail": {"from": st.owner_agent_id, "to": agent_id},
                    }
                )
        if new:
            tenancy.first_reports(conn, agent_id, agent, new, events)

    @staticmethod
    def _add_events(
        conn: Connection, agent_id: str, customer_id: str, events: list[dict[str, Any]]
    ) -> None:
        conn.execute(
            m.device_events.insert(),
            [
                {
                    "device_key": e["device_key"],
                    "at": e["at"],
                    "kind": e["kind"],
                    "customer_id": e.get("customer_id", customer_id),
                    "site_id": e.get("site_id"),
                    "agent_id": agent_id,
                    "detail": json.dumps(e.get("detail", {}), sort_keys=True),
                }
                for e in events
            ],
        )

    # --- read API -------------------------------------------------------------------------------

    def health(self) -> int | None:
        """The schema version, once the write lock that ingest needs could be taken within
        PROBE_TIMEOUT_MS (and given back at once); a lock held elsewhere raises
        OperationalError, so /healthz answers 503 while ingest would answer 4002."""
        with self._read() as conn:
            version = conn.execute(select(func.max(m.schema_version.c.version))).scalar()
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            if self.dialect == "sqlite":
                cur.execute(f"PRAGMA busy_timeout={PROBE_TIMEOUT_MS}")
                try:
                    cur.execute("BEGIN IMMEDIATE")
                    cur.execute("ROLLBACK")
                finally:
                    cur.execute(f"PRAGMA busy_timeout={LOCK_TIMEOUT_MS}")
            else:
                cur.execute(f"SET LOCAL lock_timeout = {PROBE_TIMEOUT_MS}")
                cur.execute(f"LOCK TABLE {', '.join(INGEST_TABLES)} IN ROW EXCLUSIVE MODE")
                raw.rollback()
        except Exception as exc:
            raw.rollback()
            raise OperationalError("health probe", None, exc) from exc
        finally:
            raw.close()
        return version

    def count(self, table: str) -> int:
        """Rows in a table (tests and operations)."""
        with self._read() as conn:
            return conn.execute(
                select(func.count()).select_from(m.metadata.tables[table])
            ).scalar_one()

    def agents(
        self,
        agent_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
        scope: Scope = ADMIN,
        after: str | None = None,
    ) -> list[dict[str, Any]]:
        a = m.agents.c
        n_reports = (
            select(func.count())
            .select_from(m.reports)
            .where(m.reports.c.agent_id == a.agent_id)
            .scalar_subquery()
        )
        q = (
            select(m.agents, n_reports.label("n_reports"))
            .where(scope.where(a.customer_id))
            .order_by(a.agent_id)
        )
        if after is not None:  # keyset page (metersync_manager.paging)
            q = q.where(a.agent_id > after)
        q = q.where(a.agent_id == agent_id) if agent_id else q.limit(limit).offset(offset)
        with self._read() as conn:
            gaps = self._missing_sequences(conn, agent_id) if agent_id else None
            epoch = self._epochs(conn, agent_id) if agent_id else None
            rows = conn.execute(q).all()
            intervals = self._poll_intervals(conn, {r.agent_id for r in rows})
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
                    "customerId": r.customer_id,
                    "siteId": r.site_id,
                    "pollInterval": _seconds(intervals.get(r.agent_id)),
                    **({} if gaps is None else {"missingSequences": gaps}),
                    **({} if epoch is None else {"sequenceEpoch": epoch}),
                }
                for r in rows
            ]

    @staticmethod
    def _poll_intervals(conn: Connection, agent_ids: set[str]) -> dict[str, timedelta | None]:
        """Each agent's poll interval, from the cycle starts of its newest reports (MS-DEV-26)."""
        r = m.reports.c
        out: dict[str, timedelta | None] = {}
        for agent_id in sorted(agent_ids):
            starts = conn.execute(
                select(r.cycle_started_at)
                .where(r.agent_id == agent_id, r.cycle_started_at.is_not(None))
                .distinct()
                .order_by(r.cycle_started_at.desc())
                .limit(staleness.SAMPLE)
            ).scalars()
            out[agent_id] = staleness.poll_interval(starts)
        return out

    MAX_GAPS = 1000

    def _missing_sequences(self, conn: Connection, agent_id: str) -> list[dict[str, int]]:
        """MS-DEL-6: the ranges of sequence numbers not received below the highest received
        (from 1) of each sequence epoch (MS-DEL-21), oldest first, at most MAX_GAPS ranges."""
        r, f = m.reports.c, m.report_floors.c
        purged = (  # the reports below this were received and purged (retention)
            select(f.through)
            .where(f.agent_id == r.agent_id, f.sequence_epoch == r.sequence_epoch)
            .scalar_subquery()
        )
        prev = (
            func.coalesce(
                func.lag(r.sequence).over(partition_by=r.sequence_epoch, order_by=r.sequence),
                purged,
            )
        ).label("prev")
        inner = select(r.sequence, r.sequence_epoch, prev).where(r.agent_id == agent_id).subquery()
        q = (
            select(inner.c.sequence, inner.c.sequence_epoch, inner.c.prev)
            .where(
                or_(
                    and_(inner.c.prev.is_(None), inner.c.sequence > 1),
                    inner.c.sequence - inner.c.prev > 1,
                )
            )
            .order_by(inner.c.sequence_epoch, inner.c.sequence)
            .limit(self.MAX_GAPS)
        )
        return [
            {
                "from": 1 if x.prev is None else x.prev + 1,
                "to": x.sequence - 1,
                **({"epoch": x.sequence_epoch} if x.sequence_epoch > 1 else {}),
            }
            for x in conn.execute(q)
        ]

    @staticmethod
    def _epochs(conn: Connection, agent_id: str) -> int:
        """The agent's newest sequence epoch (MS-DEL-21); 1 before any report."""
        r = m.reports.c
        q = select(func.max(r.sequence_epoch)).where(r.agent_id == agent_id)
        return int(conn.execute(q).scalar() or 1)

    def devices(
        self,
        device_key: str | None = None,
        limit: int = 100,
        offset: int = 0,
        now: datetime | None = None,
        scope: Scope = ADMIN,
        after: str | None = None,
    ) -> list[dict[str, Any]]:
        d = m.devices.c
        q = select(m.devices).where(scope.where(d.customer_id)).order_by(d.device_key)
        if after is not None:  # keyset page (metersync_manager.paging)
            q = q.where(d.device_key > after)
        q = q.where(d.device_key == device_key) if device_key else q.limit(limit).offset(offset)
        clock = utc_naive(now or datetime.now(UTC))
        with self._read() as conn:
            rows = conn.execute(q).all()
            intervals = self._poll_intervals(conn, {r.last_agent_id for r in rows})
            out = []
            for r in rows:
                flag = staleness.device_flag(
                    r.last_complete_at, r.last_seen, intervals.get(r.last_agent_id), clock
                )
                out.append(
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
                        "ownerAgentId": r.owner_agent_id,
                        "customerId": r.customer_id,
                        "siteId": r.site_id,
                        "lastCompleteAt": iso(r.last_complete_at),
                        "stale": flag.stale,
                        "staleReason": flag.reason,
                    }
                )
            return out

    def device_visible(self, device_key: str, scope: Scope) -> bool:
        """The device exists and its customer is in `scope` (else the API answers 404)."""
        d = m.devices.c
        with self._read() as conn:
            q = select(d.device_key).where(d.device_key == device_key, scope.where(d.customer_id))
            return conn.execute(q).first() is not None

    def device_events(
        self, device_key: str, limit: int = 1000, after: tuple[datetime, int] | None = None
    ) -> list[dict[str, Any]]:
        """A device's events by time, `limit` of them after `after` (time, event id)."""
        e = m.device_events.c
        q = select(m.device_events).where(e.device_key == device_key)
        if after is not None:
            q = q.where(tuple_(e.at, e.id) > tuple_(utc_naive(after[0]), after[1]))
        q = q.order_by(e.at, e.id).limit(limit)
        with self._read() as conn:
            return [
                {
                    "eventId": x.id,
                    "at": iso(x.at),
                    "kind": x.kind,
                    "agentId": x.agent_id,
                    "customerId": x.customer_id,
                    "detail": json.loads(x.detail),
                }
                for x in conn.execute(q)
            ]

    def ip_history(self, device_key: str) -> list[dict[str, Any]]:
        r = m.readings.c
        prev = func.lag(r.ip).over(order_by=(r.polled_at, r.id)).label("prev")
        inner = (
            select(r.ip, r.polled_at, r.report_id, prev)
            .where(r.device_key == device_key, r.disposition == APPLIED.value)
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
            "value": billing.dec(c.value),
            "anomaly": c.anomaly,
            "previous": None if c.previous is None else billing.dec(c.previous),
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
            .where(r.device_key == device_key, r.disposition == APPLIED.value)
            .order_by(r.polled_at.desc(), r.id.desc())
            .limit(1)
        ).first()

    def latest(self, device_key: str) -> dict[str, Any] | None:
        with self._read() as conn:
            rd = self._latest_reading(conn, device_key)
            if rd is None:
                return None

            def rows(table: Any, *order: Any) -> list[Any]:
                holder = m.rows_of(table, rd)
                q = select(table).where(table.c.reading_id == holder).order_by(*order)
                return list(conn.execute(q))

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
            holder = m.rows_of(s, rd)
            items = conn.execute(select(s).where(s.c.reading_id == holder).order_by(s.c.idx))
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
            .join(m.readings, m.rows_of(m.counters) == c.reading_id)
            .where(r.device_key == device_key, r.disposition == APPLIED.value)
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
        scope: Scope = ADMIN,
    ) -> list[dict[str, Any]]:
        r, a = m.readings.c, m.alerts.c
        q = (
            select(m.alerts, r.device_key, r.polled_at, r.report_id)
            .join(m.readings, m.rows_of(m.alerts) == a.reading_id)
            .join(m.devices, m.devices.c.device_key == r.device_key)
            .where(r.disposition == APPLIED.value, scope.where(m.devices.c.customer_id))
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

    def meter_page(
        self,
        period: billing.Period,
        scope: Scope = ADMIN,
        after: tuple[str, int] | None = None,
        limit: int = 1000,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the meter export (MS-OWN-6): lines of up to `limit` device intervals."""
        with self._read() as conn:
            return billing.export_page(conn, period, scope, after, limit)

    def meter_lines(
        self, period: billing.Period, scope: Scope = ADMIN, page: int = 500
    ) -> Iterator[list[dict[str, Any]]]:
        """The whole export, page by page (bounded memory; each page its own transaction)."""
        after: tuple[str, int] | None = None
        while True:
            lines, nxt = self.meter_page(period, scope, after, page)
            if lines:
                yield lines
            if nxt is None:
                return
            after = billing.parse_cursor(nxt)

    def meters(
        self, start: datetime, end: datetime, device_key: str | None, kind: str | None
    ) -> list[dict[str, Any]]:
        """Every counter line of (start, end] (tests and small exports)."""
        period = billing.Period(utc_naive(start), utc_naive(end), None, device_key, kind)
        out = [x for page in self.meter_lines(period) for x in page]
        return [x for x in out if x["type"] == "counter"]

    # --- tenancy (operator actions) ------------------------------------------------------------

    def create_customer(self, customer_id: str, name: str, now: datetime) -> None:
        with self._write() as conn:
            tenancy.create_customer(conn, customer_id, name, utc_naive(now))

    def create_site(self, customer_id: str, name: str, now: datetime) -> int:
        with self._write() as conn:
            tenancy.require_customer(conn, customer_id)
            sid = tenancy.site_id(conn, customer_id, name, True, utc_naive(now))
            assert sid is not None
            return sid

    def customers(
        self, scope: Scope = ADMIN, limit: int | None = None, after: str | None = None
    ) -> list[dict[str, Any]]:
        """Customers by id with their sites and counts; `limit` of them after `after`."""
        c, s, d, a = m.customers.c, m.sites.c, m.devices.c, m.agents.c
        q = select(c.customer_id, c.name, c.created_at).where(scope.where(c.customer_id))
        if after is not None:
            q = q.where(c.customer_id > after)
        q = q.order_by(c.customer_id).limit(limit)
        with self._read() as conn:
            rows = conn.execute(q).all()
            ids = [r.customer_id for r in rows]
            sites = conn.execute(
                select(s.site_id, s.customer_id, s.name).where(s.customer_id.in_(ids))
            ).all()

            def counts(col: Any) -> dict[str, int]:
                q = select(col, func.count()).where(col.in_(ids)).group_by(col)
                return {k: int(n) for k, n in conn.execute(q).all()}

            n_dev, n_agents = counts(d.customer_id), counts(a.customer_id)
        return [
            {
                "customerId": r.customer_id,
                "name": r.name,
                "createdAt": iso(r.created_at),
                "devices": int(n_dev.get(r.customer_id, 0)),
                "agents": int(n_agents.get(r.customer_id, 0)),
                "sites": sorted(
                    (
                        {"siteId": x.site_id, "name": x.name}
                        for x in sites
                        if x.customer_id == r.customer_id
                    ),
                    key=lambda x: x["name"],
                ),
            }
            for r in rows
        ]

    def move(
        self,
        subject: str,
        subject_id: str,
        customer_id: str,
        site: str | None,
        now: datetime,
        by: str,
    ) -> int:
        """Move a device, or an agent with the devices it owns, to a customer and site
        (created when new); history is kept. How many devices moved."""
        at = utc_naive(now)
        with self._write() as conn:
            tenancy.require_customer(conn, customer_id)
            sid = tenancy.site_id(conn, customer_id, site, True, at)
            if subject == "agent":
                return tenancy.move_agent(conn, subject_id, customer_id, sid, at, by)
            tenancy.move_device(conn, subject_id, customer_id, sid, at, by)
            return 1

    def customer_exists(self, customer_id: str) -> bool:
        c = m.customers.c
        with self._read() as conn:
            q = select(c.customer_id).where(c.customer_id == customer_id)
            return conn.execute(q).first() is not None

    def agent_visible(self, agent_id: str, scope: Scope) -> bool:
        a = m.agents.c
        with self._read() as conn:
            q = select(a.agent_id).where(a.agent_id == agent_id, scope.where(a.customer_id))
            return conn.execute(q).first() is not None

    def define_contract_meter(self, customer_id: str, name: str, terms: str, now: datetime) -> None:
        with self._write() as conn:
            if customer_id != contract.DEALER_DEFAULTS:
                tenancy.require_customer(conn, customer_id)
            contract.define(conn, customer_id, name, terms, utc_naive(now))

    def remove_contract_meter(self, customer_id: str, name: str) -> bool:
        with self._write() as conn:
            return contract.remove(conn, customer_id, name)

    def contract_meters(self, customer_id: str) -> list[dict[str, Any]]:
        with self._read() as conn:
            return contract.listing(conn, customer_id)
