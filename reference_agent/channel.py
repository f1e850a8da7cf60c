"""The bidirectional channel, agent side (spec chapter 10, MS-CH-*).

Off unless the agent's own Provisioning enables it (MS-CH-1). When on, the agent opens and
holds an outbound WebSocket to `{base}/v1/channel` (subprotocol `metersync.v1`, signed over
`GET <path> <MeterSync-Date>`), and falls back to HTTP long-poll (`POST /v1/channel/poll`,
`POST /v1/channel/responses`) when the upgrade is refused. Nothing listens on a port.

Two parts, as everywhere in the agent (STYLE.md, sans-IO first):

- `ChannelResources.answer(bytes) -> bytes | None`: one ChannelRequest in, one ChannelResponse
  out, from the agent's own state (`AgentView`). Only GET on the four resources of Table 10-1;
  5001 for other methods, 5002 for other paths, 5005 beyond 4 requests (or 2 fresh reads of
  one device) at once. Nothing here changes the agent's state (MS-CH-19).
- `ChannelClient.run()`: the transports, reconnecting with the report backoff (MS-CH-16).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

import metersync_generated.v1 as model
from metersync import signing, xml_edge
from metersync.errors import ProtocolError
from metersync.xml_edge import MEDIA_TYPE as CONTENT_TYPE
from metersync_agent.backoff import next_delay

log = logging.getLogger("metersync.agent.channel")

SUBPROTOCOL = "metersync.v1"
MAX_IN_PROGRESS = 4  # MS-CH-14
BUSY_RETRY_AFTER = 2  # seconds, in 5005 answers
FRESH_RETRY_AFTER = 30  # seconds, in 5004 answers
POLL_HOLD = 30.0  # the manager holds a long-poll at most this long (MS-CH-4)
MAX_MESSAGE = xml_edge.MAX_BYTES + 65536
_REQUEST_ID = re.compile(
    rb"<(?:[A-Za-z_][\w.-]*:)?requestId>\s*([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-"
    rb"[0-9a-f]{4}-[0-9a-f]{12})\s*</"
)


class FreshReadFailed(Exception):
    """A fresh read gave no value within the device budget (5004)."""


class AgentView(Protocol):
    """What the channel may read of the agent (implemented by AgentService)."""

    agent_id: str

    async def status_info(self) -> model.AgentStatusInfo: ...

    def snapshots(self) -> dict[str, model.DeviceSnapshot]:
        """The latest snapshot of every monitored device, by device key."""
        ...

    async def fresh(self, device_key: str) -> model.DeviceSnapshot:
        """A new poll of the device (raises FreshReadFailed when nothing was read)."""
        ...


def _summary(snap: model.DeviceSnapshot) -> model.DeviceSummary:
    ident = snap.identity
    return model.DeviceSummary(
        device_key=ident.device_key,
        ip_address=ident.ip_address,
        vendor=ident.vendor,
        model=ident.model,
        serial_number=ident.serial_number,
        last_polled_at=snap.polled_at,
        last_poll_complete=not snap.collection_error,
    )


def _device(snap: model.DeviceSnapshot) -> model.Device:
    import dataclasses

    return model.Device(**{f.name: getattr(snap, f.name) for f in dataclasses.fields(snap)})


def response_bytes(request_id: str, status: int, body: model.ChannelBody) -> bytes:
    resp = model.ChannelResponse(
        version=xml_edge.PROTOCOL_VERSION, request_id=request_id, status=status, body=body
    )
    return xml_edge.to_bytes(resp)


def error_response(request_id: str, exc: ProtocolError) -> bytes:
    body = model.ChannelBody(error=xml_edge.error_message(exc))
    return response_bytes(request_id, exc.http_status, body)


class ChannelResources:
    """ChannelRequest bytes → ChannelResponse bytes, from the agent's state (MS-CH-7..15)."""

    def __init__(self, view: AgentView, *, enabled: bool = True) -> None:
        self.view = view
        self.enabled = enabled
        self.in_progress = 0
        self.fresh_keys: set[str] = set()

    async def answer(self, data: bytes) -> bytes | None:
        """The response to send, or None for a request whose requestId cannot be read."""
        try:
            req = xml_edge.parse_message(data, expect=("ChannelRequest",)).obj
        except ProtocolError as exc:  # MS-CH-15: answer by requestId when readable
            m = _REQUEST_ID.search(data[:65536])
            if m is None:
                log.warning("ignored an unreadable channel request: %s", exc)
                return None
            log.warning("refused a channel request: %s", exc)
            return error_response(m.group(1).decode("ascii"), exc)
        try:
            status, body = await self._serve(req)
        except ProtocolError as exc:
            return error_response(req.request_id, exc)
        return response_bytes(req.request_id, status, body)

    async def _serve(self, req: model.ChannelRequest) -> tuple[int, model.ChannelBody]:
        if not self.enabled:
            raise ProtocolError("CHANNEL_DISABLED", "bidirectional mode is off on this agent")
        if req.method != "GET":
            raise ProtocolError(
                "METHOD_NOT_ALLOWED", f"only GET is allowed over the channel, not {req.method}"
            )
        kind, key = self._route(req.path)
        if self.in_progress >= MAX_IN_PROGRESS:
            raise ProtocolError(
                "CHANNEL_BUSY",
                f"{self.in_progress} channel requests are in progress; retry later",
                retry_after=BUSY_RETRY_AFTER,
            )
        if kind == "fresh" and key in self.fresh_keys:
            raise ProtocolError(
                "CHANNEL_BUSY",
                f"a fresh read of {key} is already in progress; retry later",
                retry_after=BUSY_RETRY_AFTER,
            )
        self.in_progress += 1
        if kind == "fresh":
            self.fresh_keys.add(key)
        try:
            return 200, await self._body(kind, key)
        finally:
            self.in_progress -= 1
            self.fresh_keys.discard(key)

    def _route(self, path: str) -> tuple[str, str]:
        if "?" in path or "#" in path:
            raise ProtocolError("RESOURCE_NOT_FOUND", "a resource path has no query or fragment")
        if path == "/status":
            return "status", ""
        if path == "/devices":
            return "devices", ""
        known = self.view.snapshots()
        if path.startswith("/devices/"):
            rest = path[len("/devices/") :]
            if rest in known:
                return "device", rest
            if rest.endswith("/fresh") and rest[: -len("/fresh")] in known:
                return "fresh", rest[: -len("/fresh")]
            if rest.endswith("/fresh"):
                rest = rest[: -len("/fresh")]
            raise ProtocolError("RESOURCE_NOT_FOUND", f"this agent monitors no device {rest!r}")
        raise ProtocolError(
            "RESOURCE_NOT_FOUND",
            f"no resource {path!r}; there are /status, /devices, /devices/{{deviceKey}} "
            "and /devices/{deviceKey}/fresh",
        )

    async def _body(self, kind: str, key: str) -> model.ChannelBody:
        if kind == "status":
            info = await self.view.status_info()
            import dataclasses

            fields = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}
            return model.ChannelBody(
                agent_status=model.AgentStatus(agent_id=self.view.agent_id, **fields)
            )
        snaps = self.view.snapshots()
        if kind == "devices":
            return model.ChannelBody(
                device_list=model.DeviceList(device=[_summary(s) for s in snaps.values()])
            )
        if kind == "device":
            return model.ChannelBody(device=_device(snaps[key]))
        try:
            snap = await self.view.fresh(key)
        except FreshReadFailed as exc:
            raise ProtocolError(
                "FRESH_READ_FAILED",
                f"the device {key} gave no value within its budget: {exc}",
                retry_after=FRESH_RETRY_AFTER,
            ) from None
        return model.ChannelBody(device=_device(snap))


# --- transports ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    websocket: str  # ws(s)://…/v1/channel
    poll: str  # http(s)://…/v1/channel/poll
    responses: str

    @classmethod
    def from_base(cls, base: str) -> Endpoints:
        parts = urlsplit(base.rstrip("/"))
        ws = "wss" if parts.scheme == "https" else "ws"
        http = f"{base.rstrip('/')}/v1/channel"
        return cls(
            urlunsplit((ws, parts.netloc, parts.path + "/v1/channel", "", "")),
            http + "/poll",
            http + "/responses",
        )


class Refused(Exception):
    """The manager (or a proxy) answered the WebSocket upgrade without switching protocols."""


class ChannelClient:
    """Holds the channel open: WebSocket first, long-poll when the upgrade is refused."""

    def __init__(
        self,
        *,
        base_url: str,
        agent_id: str,
        sign: Callable[[bytes], str],
        resources: ChannelResources,
        stop: asyncio.Event,
        ready: Callable[[], bool] = lambda: True,
        verify: ssl.SSLContext | None = None,
        proxy: str | None = None,
        timeout: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.urls = Endpoints.from_base(base_url)
        self.agent_id = agent_id
        self.sign = sign
        self.resources = resources
        self.stop = stop
        self.ready = ready
        self.verify = verify
        self.proxy = proxy
        self.timeout = timeout
        self.rng = rng or random.Random()
        self.transport: str | None = None  # "websocket" / "longpoll" while connected
        self._last_date = ""
        self._tasks: set[asyncio.Task[Any]] = set()

    def _signed_headers(self, method: str, url: str) -> dict[str, str]:
        """MeterSync-Date and the signature over `<METHOD> <path> <date>` (section 10.3)."""
        date = signing.format_date(time.time())
        while date == self._last_date:  # never the same signed bytes twice (MS-CH-3)
            date = signing.format_date(time.time() + 0.001)
        self._last_date = date
        path = urlsplit(url).path
        sig = self.sign(signing.bodyless_bytes(method, path, date))
        return {signing.DATE_HEADER: date, signing.HEADER: sig}

    async def run(self) -> None:
        attempt = 0
        while not self.stop.is_set():
            if not self.ready():  # not enrolled yet: the manager would not know the key
                if await self._sleep(1.0):
                    return
                continue
            served = False
            try:
                served = await self._websocket()
            except Refused as exc:
                log.info("channel: WebSocket refused (%s); using long-poll", exc)
                served = await self._long_poll()
            except (OSError, TimeoutError, ssl.SSLError) as exc:
                log.warning("channel: cannot reach %s: %s", self.urls.websocket, exc)
            except Exception as exc:  # websockets' own errors: a closed or broken connection
                log.warning("channel: %s: %s", type(exc).__name__, exc)
            finally:
                self.transport = None
                await self._cancel_tasks()
            attempt = 0 if served else attempt + 1
            delay = next_delay(attempt, None, self.rng)
            log.info("channel closed; opening it again in %.1f s", delay)
            if await self._sleep(delay):
                return

    async def _sleep(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), max(0.0, seconds))
        return self.stop.is_set()

    def _spawn(self, aw: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(aw)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel_tasks(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t

    # -- WebSocket (MS-CH-2) --

    async def _websocket(self) -> bool:
        """True when the channel was open (and has closed); raises Refused on a refused upgrade."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

        url = self.urls.websocket
        kw: dict[str, Any] = {}
        if url.startswith("wss:"):
            kw["ssl"] = self.verify
        try:
            ws = await connect(
                url,
                subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
                additional_headers=self._signed_headers("GET", url),
                proxy=self.proxy,
                open_timeout=self.timeout,
                ping_interval=20,  # MS-CH-16: a ping at least every 30 s while idle
                ping_timeout=20,
                max_size=MAX_MESSAGE,
                compression=None,
                user_agent_header=None,
                **kw,
            )
        except InvalidStatus as exc:
            raise Refused(f"HTTP {exc.response.status_code}") from None
        except InvalidHandshake as exc:
            raise Refused(str(exc)) from None
        if ws.subprotocol != SUBPROTOCOL:
            await ws.close()
            raise Refused(f"the manager did not select {SUBPROTOCOL}")
        self.transport = "websocket"
        log.info("channel open (WebSocket) to %s", url)
        lock = asyncio.Lock()

        async def serve(data: bytes) -> None:
            out = await self.resources.answer(data)
            if out is not None:
                async with lock:
                    await ws.send(out.decode("utf-8"))  # one text message per response

        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            while True:
                recv = asyncio.ensure_future(ws.recv())
                await asyncio.wait({recv, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not recv.done():
                    recv.cancel()
                    with contextlib.suppress(BaseException):
                        await recv
                    return True
                try:
                    msg = recv.result()
                except ConnectionClosed as exc:
                    log.info("channel: the WebSocket closed (%s)", exc)
                    return True
                data = msg.encode("utf-8") if isinstance(msg, str) else msg
                self._spawn(serve(data))
        finally:
            stopper.cancel()
            await ws.close()

    # -- long-poll (MS-CH-4) --

    async def _long_poll(self) -> bool:
        """Poll until a poll fails or we stop; True when at least one poll was answered."""
        served = False
        async with httpx.AsyncClient(
            verify=self.verify if self.verify is not None else True,
            proxy=self.proxy,
            timeout=httpx.Timeout(self.timeout, read=POLL_HOLD + self.timeout),
            trust_env=False,
            follow_redirects=False,
        ) as client:
            while not self.stop.is_set():
                headers = self._signed_headers("POST", self.urls.poll)
                poll = asyncio.ensure_future(client.post(self.urls.poll, headers=headers))
                stopper = asyncio.ensure_future(self.stop.wait())
                await asyncio.wait({poll, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if not poll.done():
                    poll.cancel()
                    with contextlib.suppress(BaseException):
                        await poll
                    return served
                try:
                    r = poll.result()
                except httpx.HTTPError as exc:
                    log.warning("channel: long-poll failed: %s", exc)
                    return served
                if r.status_code == 204:
                    served = self._mark_longpoll(served)
                    continue
                if r.status_code != 200:
                    log.warning(
                        "channel: long-poll answered HTTP %d: %s", r.status_code, r.text[:300]
                    )
                    return served
                served = self._mark_longpoll(served)
                self._spawn(self._answer_posted(client, r.content))
        return served

    def _mark_longpoll(self, served: bool) -> bool:
        if not served:
            log.info("channel open (long-poll) to %s", self.urls.poll)
        self.transport = "longpoll"
        return True

    async def _answer_posted(self, client: httpx.AsyncClient, data: bytes) -> None:
        out = await self.resources.answer(data)
        if out is None:
            return
        headers = {"Content-Type": CONTENT_TYPE, signing.HEADER: self.sign(out)}  # MS-CH-6
        try:
            r = await client.post(self.urls.responses, content=out, headers=headers)
        except httpx.HTTPError as exc:
            log.warning("channel: posting a response failed: %s", exc)
            return
        if r.status_code != 204:
            log.warning("channel: the manager answered %d to a response", r.status_code)
