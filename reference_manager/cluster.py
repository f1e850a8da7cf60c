"""Several `manager serve` processes on one PostgreSQL database (MS-OPS-5..7).

On SQLite one process keeps the limits, the signatures accepted once and the channel registry
in memory. On PostgreSQL every process may be behind one load balancer, so these live in the
database, on the database's clock (`clock_timestamp()`, one clock for every process):

- `rate_buckets`: one token bucket per rate-limit key, refilled and spent in one upsert
  (MS-LIM-5); `enroll_failures`: a row per failed enrollment (MS-LIM-6);
- `seen_signatures`: a signature accepted once is a primary key (MS-CH-3), inserted with
  `ON CONFLICT DO NOTHING`, so of two processes seeing the same signature exactly one wins;
- `channel_holders`: the process holding each agent's channel, `manager_processes` their
  heartbeats (a process that died stops holding channels after ALIVE seconds).

Channel requests travel between processes by PostgreSQL LISTEN/NOTIFY: the database is the one
service every process already shares, a notification reaches every listener of the database
at commit, and nothing new needs deploying (Redis or NATS would be a second service to run,
secure and keep alive). A notification carries at most 8,000 bytes, so it carries ids and
paths only; answers and forwarded documents go through the `channel_relay` table.

Operations, each one JSON notification on the database's topic, addressed by process id:
`ask` (relay a GET to the holder), `answer` (the holder's result is in channel_relay),
`opened` (an agent's channel moved to another process: an older WebSocket here closes and
requests queued here are handed over by `deliver`), `response` (a long-poll agent posted an
answer to a process that did not send the request; whichever process waits for it takes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

from metersync_manager import channel
from metersync_manager.store import Store

log = logging.getLogger("metersync.manager.cluster")

Run = Callable[..., Awaitable[Any]]
NOW = "extract(epoch from clock_timestamp())"
HEARTBEAT = 5.0  # seconds between a process's heartbeats
ALIVE = 20.0  # a process without a heartbeat this long holds no channel
RELAY_SLACK = 5.0  # a relayed request waits this much longer than the holder does
LONGPOLL_ALIVE = channel.POLL_HOLD + channel.POLL_GRACE

_TAKE = f"""
INSERT INTO rate_buckets AS b (key, tokens, at, granted)
VALUES (:key, :cap - 1, {NOW}, true)
ON CONFLICT (key) DO UPDATE SET
  tokens = least(:cap, b.tokens + greatest(0, excluded.at - b.at) * :rate)
    - CASE WHEN least(:cap, b.tokens + greatest(0, excluded.at - b.at) * :rate) >= 1
      THEN 1 ELSE 0 END,
  granted = least(:cap, b.tokens + greatest(0, excluded.at - b.at) * :rate) >= 1,
  at = greatest(b.at, excluded.at)
RETURNING granted, tokens
"""
_FAILURES = f"""
SELECT count(*), min(at) + :window - {NOW} FROM enroll_failures
WHERE address = :addr AND at > {NOW} - :window
"""
_HOLDER = f"""
SELECT h.agent_id, h.process_id, h.transport FROM channel_holders h
JOIN manager_processes p ON p.process_id = h.process_id
WHERE p.heartbeat > {NOW} - :alive AND (h.transport = 'websocket' OR h.at > {NOW} - :poll)
"""
_ANNOUNCE = f"""
WITH old AS (SELECT process_id FROM channel_holders WHERE agent_id = :agent)
INSERT INTO channel_holders (agent_id, process_id, transport, at)
VALUES (:agent, :pid, :transport, {NOW})
ON CONFLICT (agent_id) DO UPDATE SET process_id = excluded.process_id,
  transport = excluded.transport, at = excluded.at
RETURNING (SELECT process_id FROM old)
"""
_CLEANUP = (
    f"DELETE FROM rate_buckets WHERE at < {NOW} - 120",  # a bucket idle 60 s is full again
    f"DELETE FROM enroll_failures WHERE at < {NOW} - 120",
    f"DELETE FROM seen_signatures WHERE until < {NOW}",
    f"DELETE FROM channel_relay WHERE at < {NOW} - 300",
    f"DELETE FROM manager_processes WHERE heartbeat < {NOW} - 3600",
)


def conninfo(url: str) -> str:
    """The libpq URL of a SQLAlchemy PostgreSQL URL (search_path options kept)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class SharedLimits:
    """MS-LIM-5 and MS-LIM-6 counted across every process (the async twin of
    limits.InProcessLimits)."""

    def __init__(self, cluster: Cluster, per_minute: int, failures: int) -> None:
        self.cluster, self.capacity, self.failures = cluster, float(per_minute), failures
        self.rate = per_minute / 60.0

    async def take(self, key: str) -> int | None:
        params = {"key": key, "cap": self.capacity, "rate": self.rate}
        granted, tokens = await self.cluster.sql(_TAKE, params, one=True)
        return None if granted else max(1, math.ceil((1.0 - tokens) / self.rate))

    async def blocked(self, addr: str) -> int | None:
        count, wait = await self.cluster.sql(_FAILURES, {"addr": addr, "window": 60.0}, one=True)
        return None if count < self.failures else max(1, math.ceil(wait))

    async def failed(self, addr: str) -> None:
        sql = f"INSERT INTO enroll_failures (address, at) VALUES (:addr, {NOW})"
        await self.cluster.sql(sql, {"addr": addr})


class Cluster:
    """This process's part of the shared channel registry, and the relay to the others."""

    def __init__(self, store: Store, run: Run) -> None:
        self.store, self.run = store, run
        self.process_id = uuid.uuid4().hex
        self.hub: channel.ChannelHub | None = None
        self.topic = ""
        self._waiting: dict[str, asyncio.Future[tuple[str, bytes]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = asyncio.Event()

    # --- SQL in a worker thread -------------------------------------------------------------

    def _sql(self, sql: str, params: dict[str, Any], one: bool) -> Any:
        with self.store.engine.begin() as conn:
            result = conn.execute(text(sql), params)
            if one:
                return result.one()
            return result.fetchall() if result.returns_rows else None

    async def sql(self, sql: str, params: dict[str, Any], one: bool = False) -> Any:
        return await self.run(self._sql, sql, params, one)

    async def notify(self, message: dict[str, Any]) -> None:
        await self.sql(
            "SELECT pg_notify(:topic, :payload)",
            {"topic": self.topic, "payload": json.dumps(message)},
        )

    async def put(self, relay_id: str, kind: str, body: bytes) -> None:
        await self.sql(
            "INSERT INTO channel_relay (relay_id, kind, body, at) "
            f"VALUES (:id, :kind, :body, {NOW}) ON CONFLICT (relay_id) DO NOTHING",
            {"id": relay_id, "kind": kind, "body": body},
        )

    async def take_relayed(self, relay_id: str) -> tuple[str, bytes] | None:
        rows = await self.sql(
            "DELETE FROM channel_relay WHERE relay_id = :id RETURNING kind, body", {"id": relay_id}
        )
        return (rows[0][0], bytes(rows[0][1] or b"")) if rows else None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, hub: channel.ChannelHub) -> None:
        """Heartbeat and listen (before serving); idempotent."""
        self.hub = hub
        if self._tasks:
            return
        self.topic = await self.run(self._topic)
        await self.heartbeat()
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._beat())]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 10)

    def _topic(self) -> str:
        sql = "SELECT 'metersync_' || left(md5(current_database() || '.' || current_schema()), 20)"
        with self.store.engine.connect() as conn:
            return str(conn.execute(text(sql)).scalar())

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks = []
        with contextlib.suppress(Exception):
            await self.sql(
                "DELETE FROM channel_holders WHERE process_id = :pid", {"pid": self.process_id}
            )
            await self.sql(
                "DELETE FROM manager_processes WHERE process_id = :pid", {"pid": self.process_id}
            )

    async def heartbeat(self) -> None:
        await self.sql(
            f"INSERT INTO manager_processes (process_id, heartbeat) VALUES (:pid, {NOW}) "
            "ON CONFLICT (process_id) DO UPDATE SET heartbeat = excluded.heartbeat",
            {"pid": self.process_id},
        )

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self.heartbeat()
                await self.run(self._cleanup)
            except Exception as exc:  # the database is down: try again next beat
                log.warning("cluster heartbeat failed: %s", exc)

    def _cleanup(self) -> None:
        """Expired shared state: idle buckets, old failures, signatures past their horizon."""
        with self.store.engine.begin() as conn:
            for sql in _CLEANUP:
                conn.execute(text(sql))

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                aconn = await psycopg.AsyncConnection.connect(
                    conninfo(self.store.url), autocommit=True
                )
                async with aconn:
                    await aconn.execute(f'LISTEN "{self.topic}"')
                    self._listening.set()
                    async for note in aconn.notifies():
                        self._dispatch(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("cluster listener lost its connection (%s); reconnecting", exc)
                await asyncio.sleep(1)

    def _dispatch(self, payload: str) -> None:
        msg = json.loads(payload)
        if msg.get("to") not in (self.process_id, "*") and msg.get("op") != "opened":
            return
        handler = {
            "ask": self._on_ask,
            "answer": self._on_answer,
            "opened": self._on_opened,
            "deliver": self._on_deliver,
            "response": self._on_response,
        }.get(msg.get("op"))
        if handler is not None:
            task = asyncio.ensure_future(handler(msg))
            task.add_done_callback(_log_failure)

    # --- the registry ------------------------------------------------------------------------

    async def announce(self, agent_id: str, transport: str) -> None:
        """This process holds the agent's channel now."""
        params = {"agent": agent_id, "pid": self.process_id, "transport": transport}
        (old,) = await self.sql(_ANNOUNCE, params, one=True)
        if old != self.process_id:
            await self.notify({"op": "opened", "agent": agent_id, "by": self.process_id})

    async def withdraw(self, agent_id: str) -> None:
        await self.sql(
            "DELETE FROM channel_holders WHERE agent_id = :agent AND process_id = :pid",
            {"agent": agent_id, "pid": self.process_id},
        )

    async def holders(self) -> list[Any]:
        return list(await self.sql(_HOLDER, {"alive": ALIVE, "poll": LONGPOLL_ALIVE}))

    async def holder(self, agent_id: str) -> tuple[str, str] | None:
        found = [h for h in await self.holders() if h[0] == agent_id]
        return (found[0][1], found[0][2]) if found else None

    async def remember(self, signature: bytes, until: float) -> bool:
        rows = await self.sql(
            "INSERT INTO seen_signatures (signature, until) VALUES (:s, :u) "
            "ON CONFLICT (signature) DO NOTHING RETURNING 1",
            {"s": signature, "u": until},
        )
        return bool(rows)

    # --- the relay ---------------------------------------------------------------------------

    async def ask(self, agent_id: str, path: str, wait: float) -> tuple[bytes, str]:
        """`GET path` through the process holding the agent's channel."""
        found = await self.holder(agent_id)
        if found is None or found[0] == self.process_id:
            raise channel.NotConnected(f"the agent {agent_id} holds no channel")
        relay_id = str(uuid.uuid4())
        fut: asyncio.Future[tuple[str, bytes]] = asyncio.get_running_loop().create_future()
        self._waiting[relay_id] = fut
        try:
            ask = {"op": "ask", "to": found[0], "from": self.process_id, "id": relay_id}
            await self.notify({**ask, "agent": agent_id, "path": path, "wait": wait})
            kind, body = await asyncio.wait_for(fut, wait + RELAY_SLACK)
        finally:
            self._waiting.pop(relay_id, None)
        if kind == "answer":
            return body, found[1]
        if kind == "busy":
            raise channel.Busy(body.decode())
        if kind == "timeout":
            raise TimeoutError(body.decode())
        raise channel.NotConnected(body.decode())

    async def _on_ask(self, msg: dict[str, Any]) -> None:
        assert self.hub is not None
        try:
            kind, body = "answer", await self.hub.ask(msg["agent"], msg["path"], msg["wait"])
        except channel.NotConnected as exc:
            kind, body = "not-connected", str(exc).encode()
        except channel.Busy as exc:
            kind, body = "busy", str(exc).encode()
        except TimeoutError:
            kind, body = "timeout", b"no answer from the agent in time"
        await self.put(msg["id"], kind, body)
        await self.notify({"op": "answer", "to": msg["from"], "id": msg["id"]})

    async def _on_answer(self, msg: dict[str, Any]) -> None:
        fut = self._waiting.get(msg["id"])
        found = await self.take_relayed(msg["id"])
        if fut is not None and not fut.done() and found is not None:
            fut.set_result(found)

    async def _on_opened(self, msg: dict[str, Any]) -> None:
        """Another process holds the agent's channel now: close ours, hand queued requests on."""
        if msg["by"] == self.process_id or self.hub is None:
            return
        ch = self.hub.channels.get(msg["agent"])
        if ch is None:
            return
        if ch.transport == "websocket":
            ch.kick.set()  # MS-CH-17: one channel per agent
        while not ch.queue.empty():
            relay_id = str(uuid.uuid4())
            await self.put(relay_id, "request", ch.queue.get_nowait())
            await self.notify(
                {"op": "deliver", "to": msg["by"], "id": relay_id, "agent": msg["agent"]}
            )

    async def _on_deliver(self, msg: dict[str, Any]) -> None:
        found = await self.take_relayed(msg["id"])
        if found is not None and self.hub is not None:
            self.hub.channel(msg["agent"]).queue.put_nowait(found[1])

    async def forward_response(self, agent_id: str, request_id: str, raw: bytes) -> None:
        """An answer to a request another process sent (its long-poll moved here)."""
        await self.put(request_id, "response", raw)
        await self.notify({"op": "response", "to": "*", "id": request_id, "agent": agent_id})

    async def _on_response(self, msg: dict[str, Any]) -> None:
        ch = self.hub.channels.get(msg["agent"]) if self.hub else None
        fut = ch.pending.get(msg["id"]) if ch else None
        if fut is None or fut.done():
            return
        found = await self.take_relayed(msg["id"])
        if found is not None and not fut.done():
            fut.set_result(found[1])


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("cluster relay failed: %s", task.exception())
