"""The bidirectional channel, manager side (spec chapter 10, MS-CH-3..5, 8, 14, 17).

Agents open the channel; the manager never connects to an agent. Three endpoints under the
base URL: the WebSocket `GET /v1/channel` (subprotocol `metersync.v1`) and the long-poll pair
`POST /v1/channel/poll` / `POST /v1/channel/responses`. The upgrade and every poll are signed
over `<METHOD> <path> <MeterSync-Date>` (section 10.3): checked in the order of section 8.3
(2001, 2002, 2008, 2003), then the clock (2004) and one-time use (2005).

`ChannelHub` is the registry of agents holding a channel (one per agent: a new WebSocket
closes the older one) with, per agent, a queue of ChannelRequests and the requests waiting
for their answer (at most 4, MS-CH-14). The operator's JSON surface asks through it:

    GET /api/v1/agents/{agentId}/channel?path=/devices   → the agent's XML answer
    GET /api/v1/channels                                   → agents holding a channel

Only GET, and only the paths of Table 10-1, are ever sent (MS-CH-8). Snapshots read over the
channel are shown to the operator, never stored as readings (MS-CH-18).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree
from quart import Quart, Response, request, websocket
from xsdata.models.datatype import XmlDateTime

import metersync_generated.v1 as model
from metersync import errors, signing, xml_edge
from metersync.errors import ProtocolError
from metersync.xml_edge import MEDIA_TYPE

log = logging.getLogger("metersync.manager.channel")

SUBPROTOCOL = "metersync.v1"
POLL_HOLD = 30.0  # MS-CH-4: a long-poll is held at most this long
POLL_GRACE = 10.0  # a long-poll agent counts as connected this long after its last poll
MAX_OUTSTANDING = 4  # MS-CH-14
ANSWER_WAIT = 45.0  # MS-CH-17: the default device budget (30 s) + 15 s
RELAY_RETRY_AFTER = 5  # seconds, for an agent's Error to retry that gave no retryAfter
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Table 10-1; a device key holds no "?" or "#" here, which would make it a query or fragment.
_RESOURCE = re.compile(r'^/(status|devices|devices/(sn|mac|sys):[!"$->@-~]{1,250}?(/fresh)?)$')


class NotConnected(Exception):
    """The agent holds no channel."""


class Busy(Exception):
    """The agent already has MAX_OUTSTANDING requests waiting for an answer."""


def resource_path_ok(path: str) -> bool:
    """A path of Table 10-1 (MS-CH-8), without query or fragment."""
    return bool(_RESOURCE.match(path))


@dataclass
class AgentChannel:
    """One agent's channel, whatever transport carries it at the moment."""

    agent_id: str
    queue: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    pending: dict[str, asyncio.Future[bytes]] = field(default_factory=dict)
    transport: str | None = None  # "websocket" / "longpoll"
    connection: int = 0  # id of the current WebSocket; a newer one closes the older (MS-CH-17)
    kick: asyncio.Event = field(default_factory=asyncio.Event)
    polling: int = 0
    last_poll: float = 0.0
    opened_at: float = 0.0

    def connected(self, now: float) -> bool:
        if self.transport == "websocket":
            return True
        if self.transport == "longpoll":
            return self.polling > 0 or now - self.last_poll < POLL_GRACE
        return False

    def fail_pending(self, why: str) -> None:
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(NotConnected(why))


class ChannelHub:
    """Registry of agents holding a channel, and the requests sent over them."""

    def __init__(self, peers: Any = None) -> None:
        self.channels: dict[str, AgentChannel] = {}
        self._next_connection = 0
        self._seen: dict[bytes, float] = {}  # accepted signatures → until when they count
        self.peers = peers  # cluster.Cluster on PostgreSQL (MS-OPS-5..7), else None
        self._relays: set[asyncio.Future[None]] = set()

    def channel(self, agent_id: str) -> AgentChannel:
        ch = self.channels.get(agent_id)
        if ch is None:
            ch = self.channels[agent_id] = AgentChannel(agent_id)
        return ch

    def open_websocket(self, agent_id: str) -> tuple[AgentChannel, int, asyncio.Event]:
        ch = self.channel(agent_id)
        ch.kick.set()  # the older WebSocket of this agent, if any, closes
        ch.kick = asyncio.Event()
        self._next_connection += 1
        ch.connection, ch.transport, ch.opened_at = self._next_connection, "websocket", time.time()
        return ch, ch.connection, ch.kick

    def close_websocket(self, ch: AgentChannel, connection: int) -> None:
        if ch.connection == connection and ch.transport == "websocket":
            ch.transport = None
            ch.fail_pending("the channel closed before the agent answered")

    def connected(self) -> list[dict[str, Any]]:
        now = time.time()
        return [
            {
                "agentId": ch.agent_id,
                "transport": ch.transport,
                "outstanding": len(ch.pending),
            }
            for ch in self.channels.values()
            if ch.connected(now)
        ]

    async def opened(self, agent_id: str, transport: str) -> None:
        """The registry learns that this process holds the agent's channel (MS-OPS-6)."""
        if self.peers is not None:
            await self.peers.announce(agent_id, transport)

    async def closed(self, agent_id: str) -> None:
        if self.peers is not None:
            await self.peers.withdraw(agent_id)

    async def everywhere(self) -> list[dict[str, Any]]:
        """`connected()`, with the channels other processes hold (outstanding: 0 here)."""
        mine = self.connected()
        if self.peers is None:
            return mine
        known = {c["agentId"] for c in mine}
        return mine + [
            {"agentId": agent, "transport": transport, "outstanding": 0}
            for agent, _pid, transport in await self.peers.holders()
            if agent not in known
        ]

    async def accept_once(self, signature: bytes, until: float, now: float) -> bool:
        """One-time use of a signature, in every process of the manager (MS-CH-3, MS-OPS-5)."""
        if self.peers is not None:
            return bool(await self.peers.remember(signature, until))
        return self.remember(signature, until, now)

    async def ask_anywhere(self, agent_id: str, path: str) -> tuple[bytes, str]:
        """`ask` through whichever process holds the channel; (answer, transport)."""
        ch = self.channels.get(agent_id)
        if self.peers is None or (ch is not None and ch.connected(time.time())):
            raw = await self.ask(agent_id, path)
            return raw, self.channels[agent_id].transport or "none"
        if not resource_path_ok(path):
            raise ValueError(f"{path!r} is not a resource of Table 10-1")
        return await self.peers.ask(agent_id, path, ANSWER_WAIT)  # type: ignore[no-any-return]

    def remember(self, signature: bytes, until: float, now: float) -> bool:
        """One-time use of a signature (MS-CH-3): False when it was accepted before."""
        if len(self._seen) > 10_000 or any(t < now for t in list(self._seen.values())[:64]):
            self._seen = {s: t for s, t in self._seen.items() if t >= now}
        if signature in self._seen:
            return False
        self._seen[signature] = until
        return True

    async def ask(self, agent_id: str, path: str, wait: float = ANSWER_WAIT) -> bytes:
        """Send `GET path` to the agent; its ChannelResponse bytes (MS-CH-5, MS-CH-8)."""
        if not resource_path_ok(path):
            raise ValueError(f"{path!r} is not a resource of Table 10-1")
        ch = self.channels.get(agent_id)
        if ch is None or not ch.connected(time.time()):
            raise NotConnected(f"the agent {agent_id} holds no channel")
        if len(ch.pending) >= MAX_OUTSTANDING:
            raise Busy(f"{len(ch.pending)} requests to this agent are waiting for an answer")
        request_id = str(uuid.uuid4())
        now = datetime.now(UTC).replace(microsecond=0)
        doc = model.ChannelRequest(
            version=xml_edge.PROTOCOL_VERSION,
            request_id=request_id,
            method="GET",  # the manager sends nothing else (MS-CH-8)
            path=path,
            created_at=XmlDateTime.from_datetime(now),
        )
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        ch.pending[request_id] = fut
        ch.queue.put_nowait(xml_edge.to_bytes(doc))
        try:
            return await asyncio.wait_for(fut, wait)
        finally:
            ch.pending.pop(request_id, None)

    def answered(self, agent_id: str, raw: bytes) -> None:
        """A ChannelResponse from the agent: wake whoever waits for it (else discard)."""
        try:
            resp = xml_edge.parse_message(raw, expect=("ChannelResponse",)).obj
        except ProtocolError as exc:
            log.warning("agent %s sent an invalid channel response: %s", agent_id, exc)
            raise
        ch = self.channels.get(agent_id)
        fut = ch.pending.get(resp.request_id) if ch else None
        if fut is None and self.peers is not None:  # the request came from another process
            task = asyncio.ensure_future(
                self.peers.forward_response(agent_id, resp.request_id, raw)
            )
            self._relays.add(task)
            task.add_done_callback(self._relays.discard)
            return
        if fut is None or fut.done():
            log.info("agent %s answered %s, which no one waits for", agent_id, resp.request_id)
            return
        fut.set_result(raw)


@dataclass(frozen=True)
class Answer:
    """An agent's ChannelResponse as the operator gets it: status, document, Retry-After."""

    status: int
    document: bytes
    retry_after: int | None = None


def inner_document(raw: bytes) -> Answer:
    """The agent's status and the body's document as its own XML, of a ChannelResponse.

    An Error is relayed by what it means (MS-ERR-3): one to retry later with 429 or a 5xx
    status and Retry-After, a refusal with a 4xx status other than 429. A code this manager
    does not know counts by its thousand, 7000-9999 by the agent's status (Table 13-2)."""
    root = xml_edge.parse_tree(raw)
    ns = {"m": xml_edge.NAMESPACE}
    status = int(root.findtext("m:status", namespaces=ns) or 500)
    body = root.find("m:body", ns)
    child = next(iter(body)) if body is not None and len(body) else None
    if child is None:
        return Answer(status, b"")
    doc = etree.tostring(child, xml_declaration=True, encoding="UTF-8")
    if child.tag != f"{{{xml_edge.NAMESPACE}}}Error":
        return Answer(status, doc)
    code = int(child.findtext("m:code", namespaces=ns) or 0)
    retry_after = child.findtext("m:retryAfter", namespaces=ns)
    if errors.retry_later(code, status):
        relayed = status if status == 429 or 500 <= status <= 599 else 503
        wait = int(retry_after) if retry_after else RELAY_RETRY_AFTER
        return Answer(relayed, doc, wait)
    return Answer(status if 400 <= status <= 499 and status != 429 else 403, doc)


# --- authentication of requests without body (section 10.3) ----------------------------------

AgentLookup = Callable[[str], Awaitable[Any]]


async def authenticate(
    hub: ChannelHub,
    method: str,
    path: str,
    headers: Any,
    lookup: AgentLookup,
    now: datetime,
    skew: timedelta,
) -> str:
    """The agent id of a correctly signed request without body, or a ProtocolError."""
    sig = signing.parse(signing.header_of(headers))  # 2001
    date = headers.get(signing.DATE_HEADER)
    agent = await lookup(sig.agent_id)
    if agent is None:
        raise ProtocolError("UNKNOWN_AGENT", f"no enrolled agent has the id {sig.agent_id!r}")
    if agent.revoked:
        raise ProtocolError("AGENT_REVOKED", f"the agent {agent.agent_id} was revoked")
    when = signing.parse_date(date)  # 2001 when missing: nothing to verify against
    signing.verify(agent.public_key, signing.bodyless_bytes(method, path, date.strip()), sig)
    off = abs(when - now.timestamp())
    if off > skew.total_seconds():
        raise ProtocolError(
            "CLOCK_SKEW",
            f"{signing.DATE_HEADER} differs from the manager's clock by {int(off)} s; the "
            f"window is {int(skew.total_seconds())} s: check the agent's clock",
        )
    if not await hub.accept_once(sig.value, when + skew.total_seconds() + 1, now.timestamp()):
        raise ProtocolError(
            "REPLAYED_MESSAGE", "this signature was already used; sign every request anew"
        )
    return sig.agent_id


def _raw_path(scope: Any, fallback: str) -> str:
    """The path as the agent sent it (base path included), which its signature covers."""
    root = scope.get("root_path", "")
    raw = scope.get("raw_path")
    path = raw.decode("latin-1").split("?", 1)[0] if raw else fallback
    # Behind a prefix the agent signed root_path + the path (MS-OPS-2); RootPath puts it back
    # when the proxy stripped it.
    return path if path == root or path.startswith(root + "/") else root + path


# --- routes ------------------------------------------------------------------------------------


def register(
    app: Quart,
    hub: ChannelHub,
    *,
    lookup: AgentLookup,
    read_body: Callable[[], Awaitable[bytes]],
    error_response: Callable[[ProtocolError], Response],
    clock: Callable[[], datetime],
    skew: timedelta,
    websocket_enabled: bool = True,
    hold: float = POLL_HOLD,
) -> None:
    """Add the channel endpoints and the operator's channel API to the manager app."""

    if websocket_enabled:

        @app.websocket("/v1/channel")
        async def channel_ws() -> Any:
            try:
                agent_id = await authenticate(
                    hub,
                    "GET",
                    _raw_path(websocket.scope, websocket.path),
                    websocket.headers,
                    lookup,
                    clock(),
                    skew,
                )
            except ProtocolError as exc:
                return error_response(exc)  # refused before the upgrade (HTTP answer)
            if SUBPROTOCOL not in websocket.requested_subprotocols:
                await websocket.accept()  # no subprotocol selected: the agent falls back
                await websocket.close(1002, f"only {SUBPROTOCOL} is spoken here")
                return None
            await websocket.accept(subprotocol=SUBPROTOCOL)
            ch, conn, kick = hub.open_websocket(agent_id)
            log.info("agent %s opened a channel (WebSocket)", agent_id)
            try:
                await hub.opened(agent_id, "websocket")
                await _serve_websocket(hub, ch, kick)
            finally:
                hub.close_websocket(ch, conn)
                if ch.transport is None:
                    with contextlib.suppress(Exception):
                        await hub.closed(agent_id)
                log.info("agent %s closed its channel (WebSocket)", agent_id)
            return None

    @app.post("/v1/channel/poll")
    async def channel_poll() -> Response:
        try:
            agent_id = await authenticate(
                hub, "POST", _raw_path(request.scope, request.path), request.headers, lookup,
                clock(), skew,
            )  # fmt: skip
        except ProtocolError as exc:
            return error_response(exc)
        ch = hub.channel(agent_id)
        if ch.transport != "websocket":
            ch.transport = "longpoll"
            await hub.opened(agent_id, "longpoll")
        ch.polling += 1
        try:
            data = await asyncio.wait_for(ch.queue.get(), hold)
        except TimeoutError:
            return Response(b"", status=204)
        finally:
            ch.polling -= 1
            ch.last_poll = time.time()
        return Response(data, status=200, content_type=MEDIA_TYPE)

    @app.post("/v1/channel/responses")
    async def channel_responses() -> Response:
        try:
            raw = await read_body()
            sig = signing.parse(signing.header_of(request.headers))
            agent = await lookup(sig.agent_id)
            if agent is None:
                raise ProtocolError("UNKNOWN_AGENT", f"no enrolled agent {sig.agent_id!r}")
            if agent.revoked:
                raise ProtocolError("AGENT_REVOKED", f"the agent {agent.agent_id} was revoked")
            signing.verify(agent.public_key, raw, sig)
            hub.answered(sig.agent_id, raw)
        except ProtocolError as exc:
            return error_response(exc)
        return Response(b"", status=204)

    @app.get("/api/v1/channels")
    async def list_channels() -> dict[str, Any]:
        return {"items": await hub.everywhere()}

    @app.get("/api/v1/agents/<agent_id>/channel")
    async def ask_agent(agent_id: str) -> Any:
        path = request.args.get("path", "")
        if not _UUID.match(agent_id):
            return {"status": 400, "title": "invalid parameter", "detail": "not a UUID"}, 400
        if not resource_path_ok(path):
            return {
                "status": 400,
                "title": "invalid parameter",
                "detail": "path must be /status, /devices, /devices/{deviceKey} or "
                "/devices/{deviceKey}/fresh",
            }, 400
        try:
            raw, transport = await hub.ask_anywhere(agent_id, path)
        except NotConnected as exc:
            return {"status": 409, "title": "agent not connected", "detail": str(exc)}, 409
        except Busy as exc:
            body = {"status": 429, "title": "too many requests", "detail": str(exc)}
            return body, 429, {"Retry-After": "2"}
        except TimeoutError:
            return {"status": 504, "title": "no answer from the agent in time"}, 504
        answer = inner_document(raw)
        headers = {"MeterSync-Channel-Transport": transport}
        if answer.retry_after is not None:
            headers["Retry-After"] = str(answer.retry_after)
        return Response(
            answer.document, status=answer.status, content_type=MEDIA_TYPE, headers=headers
        )


async def _serve_websocket(hub: ChannelHub, ch: AgentChannel, kick: asyncio.Event) -> None:
    """Send queued requests, receive responses, until the agent or a newer channel ends it."""

    async def sender() -> None:
        while True:
            data = await ch.queue.get()
            await websocket.send(data.decode("utf-8"))  # one text message per request

    async def receiver() -> None:
        while True:
            msg = await websocket.receive()
            raw = msg.encode("utf-8") if isinstance(msg, str) else msg
            with contextlib.suppress(ProtocolError):
                hub.answered(ch.agent_id, raw)

    tasks = {
        asyncio.ensure_future(sender()),
        asyncio.ensure_future(receiver()),
        asyncio.ensure_future(kick.wait()),
    }
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
