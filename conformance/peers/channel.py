"""The channel side of the harness manager: accepts an agent's channel and asks over it.

It serves `GET /v1/channel` (WebSocket, `metersync.v1`), `POST /v1/channel/poll` and
`POST /v1/channel/responses` like a manager, but records every attempt exactly as received
(headers, whether the section 10.3 signature verifies) and can send ANY request, including
methods and paths a manager must never send, to test the agent's refusals (MS-CH-7, MS-CH-9,
MS-CH-15). It can also refuse the WebSocket upgrade (as a blocking proxy would) and close
the current WebSocket, to see the agent fall back to long-poll and reconnect (MS-CH-2, 16).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from quart import Quart, Response, request, websocket

from metersync import signing, xml_edge
from metersync.errors import ProtocolError
from metersync.xml_edge import MEDIA_TYPE as CONTENT_TYPE

SUBPROTOCOL = "metersync.v1"
HOLD = 2.0  # the harness holds a long-poll this long (the spec allows up to 30 s)


async def wait_until(changed: asyncio.Event, pred: Any, timeout: float, poll: float) -> bool:
    """Wait until pred() is true, re-evaluated whenever `changed` is set and at least every
    `poll` seconds, or until the timeout; whether it became true."""
    deadline = time.monotonic() + timeout
    while not pred():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), min(left, poll))
    return True


@dataclass
class Attempt:
    """One channel request of the agent: an upgrade, a poll or a posted response."""

    t: float  # time.monotonic()
    kind: str  # "websocket" / "poll" / "response"
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    subprotocols: list[str] = field(default_factory=list)
    signature_problem: str | None = None
    answer: int = 0
    answered_at: float | None = None


@dataclass
class Answer:
    """A ChannelResponse (or what came instead) to one request the harness sent."""

    t: float
    transport: str
    raw: bytes
    obj: Any = None
    problem: str | None = None

    @property
    def status(self) -> int | None:
        return int(self.obj.status) if self.obj is not None else None

    @property
    def code(self) -> int | None:
        err = self.obj.body.error if self.obj is not None else None
        return int(err.code) if err is not None else None

    @property
    def retry_after(self) -> int | None:
        err = self.obj.body.error if self.obj is not None else None
        return None if err is None or err.retry_after is None else int(err.retry_after)

    def body_kind(self) -> str | None:
        if self.obj is None:
            return None
        b = self.obj.body
        for name in ("agent_status", "device_list", "device", "error"):
            if getattr(b, name) is not None:
                return {"agent_status": "AgentStatus", "device_list": "DeviceList"}.get(
                    name, name.capitalize()
                )
        return None


@dataclass
class Sent:
    request_id: str | None
    method: str
    path: str
    raw: bytes
    t: float
    transport: str
    wall: float  # time.time() when queued, to compare with polledAt
    answer: Answer | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ChannelPeer:
    """The harness manager's channel state and the scenario's handle on it."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys  # agentId -> public key, filled by the harness's enrollment endpoint
        self.attempts: list[Attempt] = []
        self.sent: list[Sent] = []
        self.unmatched: list[Answer] = []  # answers naming no request the harness sent
        self.refuse_websocket = False
        self.outgoing: asyncio.Queue[Sent] = asyncio.Queue()
        self.transport: str | None = None  # "websocket" / "longpoll" while connected
        self.ws_open = asyncio.Event()
        self.kick = asyncio.Event()  # set: close the current WebSocket
        self.changed = asyncio.Event()
        self._seen_sigs: set[str] = set()

    # -- the scenario's side --

    async def wait_for(self, pred: Any, timeout: float) -> bool:
        return await wait_until(self.changed, pred, timeout, poll=0.5)

    def connected(self) -> bool:
        if self.transport == "websocket":
            return True
        recent = [a for a in self.attempts if a.kind == "poll" and a.answer in (0, 200, 204)]
        return bool(recent) and time.monotonic() - recent[-1].t < HOLD + 5

    def request(
        self, method: str, path: str, *, raw: bytes | None = None, request_id: str | None = None
    ) -> Sent:
        """Queue a ChannelRequest (any method, any path) or raw bytes; returns its record."""
        rid = request_id
        if raw is None:
            rid = str(uuid.uuid4())
            raw = (
                f'<?xml version="1.0" encoding="UTF-8"?>\n'
                f'<ChannelRequest xmlns="urn:metersync:v1" version="1.0">'
                f"<requestId>{rid}</requestId><method>{method}</method><path>{path}</path>"
                f"<createdAt>{signing.format_date(time.time())[:19]}Z</createdAt>"
                f"</ChannelRequest>"
            ).encode()
        item = Sent(rid, method, path, raw, time.monotonic(), self.transport or "", time.time())
        self.sent.append(item)
        self.outgoing.put_nowait(item)
        return item

    async def ask(self, method: str, path: str, timeout: float = 40.0) -> Sent:
        item = self.request(method, path)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(item.done.wait(), timeout)
        return item

    # -- the manager's side --

    def _record(self, kind: str, method: str, path: str, headers: Any) -> Attempt:
        hdrs = {k.lower(): v for k, v in headers.items()}
        at = Attempt(time.monotonic(), kind, method, path, hdrs)
        self.attempts.append(at)
        self.changed.set()
        return at

    def _check_bodyless(self, at: Attempt) -> None:
        """Section 10.3: the signature verifies, the date is fresh, never used before."""
        try:
            sig = signing.parse(at.headers.get("metersync-signature"))
            key = self.keys.get(sig.agent_id)
            if key is None:
                raise ProtocolError("UNKNOWN_AGENT", f"agent {sig.agent_id} never enrolled")
            date = at.headers.get("metersync-date")
            when = signing.parse_date(date)
            signed = signing.bodyless_bytes(at.method, at.path, (date or "").strip())
            signing.verify(key, signed, sig)
            if abs(when - time.time()) > 300:
                raise ProtocolError("CLOCK_SKEW", f"MeterSync-Date {date} is off by > 300 s")
            value = at.headers["metersync-signature"]
            if value in self._seen_sigs:
                raise ProtocolError("REPLAYED_MESSAGE", "the same signature was sent twice")
            self._seen_sigs.add(value)
        except ProtocolError as exc:
            at.signature_problem = str(exc)

    def answered(self, raw: bytes, transport: str) -> None:
        ans = Answer(time.monotonic(), transport, raw)
        try:
            ans.obj = xml_edge.parse_message(raw, expect=("ChannelResponse",)).obj
        except ProtocolError as exc:
            ans.problem = str(exc)
        rid = ans.obj.request_id if ans.obj is not None else None
        match = next((s for s in self.sent if s.request_id == rid and s.answer is None), None)
        if match is None:
            self.unmatched.append(ans)
        else:
            match.answer = ans
            match.done.set()
        self.changed.set()


def register(app: Quart, peer: ChannelPeer, base: str = "") -> None:
    @app.websocket(base + "/v1/channel")
    async def channel_ws() -> Any:
        at = peer._record("websocket", "GET", websocket.path, websocket.headers)
        at.subprotocols = list(websocket.requested_subprotocols)
        peer._check_bodyless(at)
        if peer.refuse_websocket:
            at.answer = 403
            return Response(b"WebSocket blocked by the conformance harness", status=403)
        await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in at.subprotocols else None)
        at.answer = 101
        peer.kick = asyncio.Event()
        kick = peer.kick
        peer.transport = "websocket"
        peer.ws_open.set()

        async def sender() -> None:
            while True:
                item = await peer.outgoing.get()
                item.transport, item.t = "websocket", time.monotonic()
                await websocket.send(item.raw.decode("utf-8", "replace"))

        async def receiver() -> None:
            while True:
                msg = await websocket.receive()
                peer.answered(msg.encode("utf-8") if isinstance(msg, str) else msg, "websocket")

        tasks = {asyncio.ensure_future(f) for f in (sender(), receiver(), kick.wait())}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            peer.transport = None
            peer.ws_open.clear()
            peer.changed.set()
        return None

    @app.post(base + "/v1/channel/poll")
    async def channel_poll() -> Response:
        at = peer._record("poll", "POST", request.path, request.headers)
        peer._check_bodyless(at)
        if at.signature_problem:
            at.answer = 401
            return Response(at.signature_problem.encode(), status=401)
        peer.transport = "longpoll"
        try:
            item = await asyncio.wait_for(peer.outgoing.get(), HOLD)
        except TimeoutError:
            at.answer, at.answered_at = 204, time.monotonic()
            peer.changed.set()
            return Response(b"", status=204)
        item.transport, item.t = "longpoll", time.monotonic()
        at.answer, at.answered_at = 200, time.monotonic()
        peer.changed.set()
        return Response(item.raw, status=200, content_type=CONTENT_TYPE)

    @app.post(base + "/v1/channel/responses")
    async def channel_responses() -> Response:
        raw = await request.get_data()
        at = peer._record("response", "POST", request.path, request.headers)
        at.answer = 204
        try:
            sig = signing.parse(at.headers.get("metersync-signature"))
            key = peer.keys.get(sig.agent_id)
            if key is None:
                raise ProtocolError("UNKNOWN_AGENT", f"agent {sig.agent_id} never enrolled")
            signing.verify(key, raw, sig)
        except ProtocolError as exc:
            at.signature_problem = str(exc)
        peer.answered(raw, "longpoll")
        return Response(b"", status=204)
