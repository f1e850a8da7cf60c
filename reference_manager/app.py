"""The manager's HTTP adapter (Quart): the ingest binding (XML) and the JSON read API.

Thin by design: read the body within its limits, call the core (ingest.py) in the spec's
order, call the store in a worker thread, write the answer. Every ingest refusal is an XML
Error with the HTTP status of its code; spec/openapi/manager.yaml describes every route.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar
from urllib.parse import unquote

from quart import Quart, Response, g, request
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

import metersync_spec
from metersync import signing, xml_edge
from metersync.errors import ProtocolError
from metersync.xml_edge import MEDIA_TYPE
from metersync_manager import api_tenancy, channel, console, ingest, paging
from metersync_manager.accept import accept_report
from metersync_manager.admission import BodyMemory, Hold, Slots
from metersync_manager.fleet import api as fleet_api
from metersync_manager.fleet.service import FleetConfig
from metersync_manager.limits import InProcessLimits
from metersync_manager.metrics import CONTENT_TYPE as metrics_content_type
from metersync_manager.metrics import Metrics
from metersync_manager.params import (
    BadParam,
    check_key,
    int_param,
    key_param,
    kind_param,
    problem,
    time_param,
)
from metersync_manager.store import Store

log = logging.getLogger("metersync.manager")

ACCEPTED_TYPES = {MEDIA_TYPE, "application/xml"}
DRAIN_FACTOR = 4  # read and discard up to 4× the limit so a client can read its 413
RETRY_AFTER_UNAVAILABLE = 5
RETRY_AFTER_BUSY = 2
HEALTH_TIMEOUT = 4.0  # seconds: /healthz answers 503 when the database takes longer
BODY_TIMEOUT = 30.0  # seconds the next part of a request body may take (MS-LIM-9)
BODY_DEADLINE = 120.0  # seconds a whole request body may take (MS-LIM-9)
BODY_MEMORY = 256 * 1024 * 1024  # bytes all bodies in progress may hold together (MS-LIM-10)
DRAIN_SECONDS = 2.0  # a refused body is drained for at most this long

_T = TypeVar("_T")

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def xml_response(
    obj: Any, status: int = 200, headers: dict[str, str] | None = None, validate: bool = True
) -> Response:
    data = xml_edge.to_bytes(obj, validate=validate)
    return Response(data, status=status, content_type=MEDIA_TYPE, headers=headers or {})


_SERVERS = re.compile(r"^servers:\n(?:[ \t].*\n)*", re.MULTILINE)


def with_server(spec_text: str, url: str) -> str:
    """The OpenAPI text with `url` as its only server."""
    url = url.rstrip("/").replace('"', "%22")
    block = f'servers:\n  - url: "{url}"\n    description: this manager\n'
    return _SERVERS.sub(lambda _: block, spec_text, count=1)


def _client_key() -> tuple[str, str]:
    """(rate-limit key, client address). The limit comes first in the processing order (8.3),
    so the agent is not verified yet; the key is the agent the signature check will verify,
    read by the same parser (MS-LIM-7), paired with the address so that a client naming
    another agent cannot spend that agent's budget. An unparseable header: the address."""
    addr = request.remote_addr or "?"
    try:
        agent = signing.parse(signing.header_of(request.headers)).agent_id[:64]
    except ProtocolError:
        return f"addr:{addr}", addr
    return f"agent:{agent}@{addr}", addr


DEVICES = "/api/v1/devices/"
ADDRESS_SHARE = 4  # one client address holds at most 1/4 of the requests in progress (64 of
# 256 by default: above the burst of 60 a single agent may send in a minute, MS-LIM-5)
RESERVE_SHARE = 4  # 1/4 of the requests in progress is kept for enrolled agents (MS-LIM-8)
AGENT_SHARE = 16  # one named agent holds at most 1/16 of them (16 of 256)


def _rate_limited(what: str, seconds: int) -> ProtocolError:
    return ProtocolError("RATE_LIMITED", f"{what}; retry in {seconds} s", retry_after=seconds)


def error_response(exc: ProtocolError) -> Response:
    headers = {}
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    resp = xml_response(xml_edge.error_message(exc), exc.http_status, headers)
    resp.metersync_code = exc.code  # type: ignore[attr-defined]  # read by the metrics
    return resp


async def read_body(
    max_bytes: int,
    *,
    keep: bool = True,
    idle: float = BODY_TIMEOUT,
    total: float = BODY_DEADLINE,
    hold: Hold | None = None,
) -> bytes:
    """The request body within the size limit, gzip decoded within the same limit, each part
    within `idle` seconds and the whole within `total` (MS-LIM-9). keep=False: read, decode
    and count only, keeping nothing (a body no enrolled agent signed, MS-LIM-10); `hold`
    counts what is kept against the memory of all bodies in progress."""
    mime = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if mime not in ACCEPTED_TYPES:
        raise ProtocolError(
            "UNSUPPORTED_MEDIA_TYPE",
            f"the content type is {mime or 'missing'!r}; send {MEDIA_TYPE}",
        )
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding not in ("identity", "gzip"):
        raise ProtocolError(
            "UNSUPPORTED_CONTENT_ENCODING",
            f"the Content-Encoding {encoding!r} is not supported; send identity or gzip",
        )
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise _too_large(f"the body has {declared} bytes", max_bytes)
    taken = _Body(max_bytes, _Gunzip() if encoding == "gzip" else None, keep, hold)
    async for chunk in _timed_chunks(idle, total):
        taken.add(chunk)  # nothing of a chunk outlives this call but what is kept
    return taken.result()


INFLATE_PIECE = 64 * 1024  # gzip is decoded in pieces of at most this many bytes


class _Body:
    """A body being read: sizes counted, decoded pieces kept (keep) within `hold`."""

    def __init__(self, max_bytes: int, inflater: _Gunzip | None, keep: bool, hold: Hold | None):
        self.max_bytes, self.inflater, self.keep, self.hold = max_bytes, inflater, keep, hold
        self.kept: list[bytes] = []
        self.received = self.produced = 0

    def add(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise _too_large(f"the body has more than {self.max_bytes} bytes", self.max_bytes)
        if self.inflater is None:
            self._take(chunk)
            return
        for piece in self.inflater.pieces(chunk, self.max_bytes - self.produced + 1):
            self._take(piece)

    def _take(self, piece: bytes) -> None:
        self.produced += len(piece)
        if self.produced > self.max_bytes:
            raise _too_large("the gzip body inflates beyond the limit", self.max_bytes)
        if not self.keep:
            return
        if self.hold is not None and not self.hold.take(len(piece)):
            raise ProtocolError(
                "RATE_LIMITED",
                f"the bodies in progress hold {self.hold.memory.limit} bytes; retry later",
                retry_after=RETRY_AFTER_BUSY,
                requirement="MS-LIM-10",
            )
        self.kept.append(piece)

    def result(self) -> bytes:
        if self.inflater is not None and not self.inflater.done:
            raise ProtocolError("UNSUPPORTED_CONTENT_ENCODING", "the gzip stream is truncated")
        return b"".join(self.kept)


class _Gunzip:
    """Incremental gzip decoding; RFC 1952: a stream may hold several members."""

    def __init__(self) -> None:
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)

    @property
    def done(self) -> bool:
        return self._z.eof

    def pieces(self, data: bytes, room: int) -> Iterator[bytes]:
        """The decoded pieces of `data`, stopping once more than `room` bytes came out."""
        produced, full = 0, False  # full: zlib may hold more output of the input it took
        try:
            while (data or full) and produced < room:
                if self._z.eof:
                    if not data:
                        return
                    self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
                limit = min(INFLATE_PIECE, room - produced)
                piece = self._z.decompress(data, limit)
                produced += len(piece)
                full = len(piece) == limit
                data = self._z.unused_data if self._z.eof else self._z.unconsumed_tail
                yield piece
        except zlib.error as exc:
            raise ProtocolError("UNSUPPORTED_CONTENT_ENCODING", f"broken gzip: {exc}") from None


async def _timed_chunks(idle: float, total: float) -> AsyncIterator[bytes]:
    """The body's chunks; 4001 when the next takes over `idle` s or all over `total` s."""
    chunks = request.body.__aiter__()
    deadline = time.monotonic() + total
    while True:
        wait = min(idle, deadline - time.monotonic())
        try:
            chunk = await asyncio.wait_for(chunks.__anext__(), max(wait, 0.0))
        except StopAsyncIteration:
            return
        except TimeoutError:
            what = f"no part of the body came for {idle:g} s" if wait >= idle else (
                f"the body took longer than {total:g} s")  # fmt: skip
            raise ProtocolError(
                "RATE_LIMITED",
                f"{what}; send it again",
                retry_after=RETRY_AFTER_BUSY,
                requirement="MS-LIM-9",
            ) from None
        yield chunk


def _too_large(what: str, limit: int) -> ProtocolError:
    return ProtocolError("DOCUMENT_TOO_LARGE", f"{what}; the limit is {limit} bytes")


async def _drain(budget: int) -> None:
    declared = request.content_length
    if declared is not None and declared > budget:
        return  # too much to read: the server closes the connection after the answer
    with contextlib.suppress(Exception):
        await asyncio.wait_for(_discard(budget), DRAIN_SECONDS)  # a stalled body is not waited


async def _discard(budget: int) -> None:
    async for chunk in request.body:
        budget -= len(chunk)
        if budget < 0:
            return


def create_app(
    store: Store,
    *,
    max_bytes: int = xml_edge.MAX_BYTES,
    skew: timedelta = ingest.SKEW,
    clock: Callable[[], datetime] = ingest.utcnow,
    max_in_flight: int = 256,
    bench_noop: bool = False,
    channel_websocket: bool = True,
    channel_hold: float = channel.POLL_HOLD,
    rate_limit: int = 600,
    enroll_failures: int = 10,
    fleet: FleetConfig | None = None,
    public_url: str | None = None,
    body_timeout: float = BODY_TIMEOUT,
    body_deadline: float = BODY_DEADLINE,
    body_memory: int = BODY_MEMORY,
) -> Quart:
    """The manager as an ASGI app over an opened (migrated) store."""
    app = Quart("metersync_manager")
    app.config["MAX_CONTENT_LENGTH"] = None  # read_body enforces the limit itself
    app.config["BODY_TIMEOUT"] = body_deadline
    executor: ThreadPoolExecutor | None = None  # one per serving (lifespan) period
    slots = Slots(  # requests in progress (MS-LIM-8)
        max_in_flight,
        reserve=max_in_flight // RESERVE_SHARE,
        per_address=max(1, max_in_flight // ADDRESS_SHARE),
        per_agent=max(1, max_in_flight // AGENT_SHARE),
    )
    memory = BodyMemory(body_memory)  # MS-LIM-10
    peers = None  # several processes share PostgreSQL (MS-OPS-5..7); SQLite: this process
    limits: Any = InProcessLimits(rate_limit, enroll_failures)  # MS-LIM-5, MS-LIM-6
    if store.dialect == "postgresql":
        from metersync_manager import cluster

        peers = cluster.Cluster(store, lambda fn, *a: run(fn, *a))
        limits = cluster.SharedLimits(peers, rate_limit, enroll_failures)

    async def run(fn: Callable[..., _T], *args: Any) -> _T:
        nonlocal executor
        if executor is None:
            executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="metersync-db")
        return await asyncio.get_running_loop().run_in_executor(executor, partial(fn, *args))

    @app.before_serving
    async def _join() -> None:
        if peers is not None:
            await peers.start(hub)

    @app.after_serving
    async def _close() -> None:
        nonlocal executor
        if peers is not None:
            await peers.stop()
        if executor is not None:
            executor.shutdown(wait=True)
            executor = None

    async def guarded(handler: Callable[[], Any], enrolling: bool = False) -> Response:
        """`limited_call`, counted and timed in the metrics."""
        started = time.perf_counter()
        resp = await limited_call(handler, enrolling)
        code = getattr(resp, "metersync_code", None)
        endpoint = "enroll" if enrolling else "reports"
        metrics.answered(endpoint, resp.status_code, code, time.perf_counter() - started)
        return resp

    async def known_agent() -> str | None:
        """The agent the signature header names when it is enrolled and not revoked (it is
        not verified yet: the body has not come); None for any other header."""
        try:
            agent_id = signing.parse(signing.header_of(request.headers)).agent_id
        except ProtocolError:
            return None
        found = await run(store.agent, agent_id)
        return agent_id if found is not None and not found.revoked else None

    def body(keep: bool = True) -> Any:
        """This request's body within every bound (MS-LIM-1, MS-LIM-9, MS-LIM-10)."""
        return read_body(max_bytes, keep=keep, idle=body_timeout, total=body_deadline,
                         hold=g.get("hold"))  # fmt: skip

    async def limited_call(handler: Callable[[], Any], enrolling: bool) -> Response:
        """Limits, then the handler; ProtocolError → its Error, database trouble → 503."""
        key, addr = _client_key()
        wait = await limits.blocked(addr) if enrolling else None
        if wait is not None:
            await _drain(DRAIN_FACTOR * max_bytes)
            return error_response(_rate_limited(f"too many failed enrollments from {addr}", wait))
        wait = await limits.take(key)
        if wait is not None:
            await _drain(DRAIN_FACTOR * max_bytes)
            return error_response(
                _rate_limited(f"more than {rate_limit} requests per minute", wait)
            )
        try:
            g.agent = None if enrolling else await known_agent()
        except (OperationalError, DBAPIError) as exc:
            return _unavailable(exc)
        g.counted = slots.counted(g.agent)  # the reserve's share of the named agent
        busy = slots.busy(addr, g.counted)
        if busy:
            return error_response(
                ProtocolError("RATE_LIMITED", f"{busy}; retry later", retry_after=RETRY_AFTER_BUSY)
            )
        slots.take(addr, g.counted)
        g.hold = memory.hold()
        try:
            return await handler()
        except ProtocolError as exc:
            if enrolling and exc.code < 4000:
                await limits.failed(addr)
            # Read what is left of a refused body (bounded), so the connection stays usable.
            await _drain(DRAIN_FACTOR * max_bytes)
            return error_response(exc)
        except (OperationalError, DBAPIError) as exc:
            return _unavailable(exc)
        except Exception:
            log.exception("ingest failed")
            return error_response(
                ProtocolError("INTERNAL_ERROR", "the manager failed; nothing was stored")
            )
        finally:
            g.hold.release()
            slots.give(addr, g.counted)

    def _unavailable(exc: Exception) -> Response:
        log.warning("database unavailable: %s", exc)
        metrics.database_errors.inc()
        return error_response(
            ProtocolError(
                "SERVICE_UNAVAILABLE",
                "the database cannot store messages now; nothing was stored",
                retry_after=RETRY_AFTER_UNAVAILABLE,
            )
        )

    @app.post("/v1/enroll")
    async def enroll() -> Response:
        async def handle() -> Response:
            raw = await body()
            sig = ingest.signer(signing.header_of(request.headers))
            enrollment = ingest.read_enrollment(raw)
            now = clock()
            ingest.check_enrollment(enrollment, raw, sig, now, skew)
            values = {
                "agent_id": enrollment.agent_id,
                "public_key": ingest.public_key_b64(enrollment),
                "algorithm": enrollment.public_key.algorithm.value,
                "hostname": enrollment.hostname,
                "capabilities": " ".join(c.value for c in enrollment.capability) or None,
                "software_vendor": enrollment.software.vendor,
                "software_product": enrollment.software.product,
                "software_version": enrollment.software.version,
            }
            decision = await run(
                store.enroll,
                ingest.hash_token(enrollment.token),
                values,
                lambda token, agent: ingest.decide_enrollment(enrollment, token, agent, now),
                now,
            )
            duplicate = decision is ingest.Decision.DUPLICATE
            return xml_response(
                ingest.receipt(enrollment.message_id, enrollment.agent_id, duplicate, now)
            )

        return await guarded(handle, enrolling=True)

    @app.post("/v1/reports")
    async def reports() -> Response:
        async def handle() -> Response:
            raw = await body(keep=g.agent is not None)  # nothing kept of an unknown signer's
            header = signing.header_of(request.headers)
            receipt = await accept_report(store, raw, header, run=run, clock=clock, skew=skew)
            # Every field comes from the validated report or from us; tests validate receipts.
            return xml_response(receipt, validate=False)

        return await guarded(handle)

    if bench_noop:

        @app.post("/bench/noop")
        async def noop() -> Response:
            await read_body(max_bytes)
            return Response(b"", status=200, content_type=MEDIA_TYPE)

    # --- the bidirectional channel (chapter 10) ------------------------------------------------

    async def lookup(agent_id: str) -> ingest.AgentRecord | None:
        return await run(store.agent, agent_id)

    hub = channel.ChannelHub(peers)
    metrics = Metrics(lambda: len(hub.connected()), lambda: slots.in_flight)
    app.extensions["metersync_channel"] = hub
    channel.register(
        app,
        hub,
        lookup=lookup,
        read_body=lambda: read_body(max_bytes, idle=body_timeout, total=body_deadline),
        error_response=error_response,
        clock=clock,
        skew=skew,
        websocket_enabled=channel_websocket,
        hold=channel_hold,
    )

    app.register_blueprint(console.blueprint(store, run, hub, clock))  # the web pages

    # --- JSON read API -------------------------------------------------------------------------

    @app.errorhandler(NotFound)
    @app.errorhandler(MethodNotAllowed)
    async def _ingest_path_refused(exc: HTTPException) -> Any:
        """MS-HTTP-19: under /v1/ a wrong path or method is an Error document, not HTML."""
        if not request.path.startswith("/v1/"):
            return exc
        if isinstance(exc, MethodNotAllowed):
            resp = error_response(
                ProtocolError(
                    "METHOD_NOT_ALLOWED",
                    f"{request.method} is not served on {request.path}; "
                    f"allowed: {', '.join(sorted(exc.valid_methods or ()))}",
                    requirement="MS-HTTP-19",
                )
            )
            resp.headers["Allow"] = ", ".join(sorted(exc.valid_methods or ()))
            return resp
        return error_response(
            ProtocolError(
                "RESOURCE_NOT_FOUND",
                f"{request.path} is not a MeterSync endpoint (Table 8-1 of the specification)",
                requirement="MS-HTTP-19",
            )
        )

    @app.errorhandler(BadParam)
    async def _bad_param(exc: BadParam) -> tuple[dict[str, Any], int]:
        return problem(400, "invalid parameter", str(exc))

    @app.before_request  # not a url_value_preprocessor: Quart 0.22 runs those for WebSockets
    async def _device_key_from_raw_path() -> None:  # with `request`, failing every upgrade
        """A device key may hold "/" (sent as %2F, MS-HTTP): route by the raw path, so that a
        key ending in "/latest" is never taken for the /latest of a shorter key."""
        values = request.view_args
        raw = (request.scope.get("raw_path") or b"").decode("latin-1").partition("?")[0]
        raw = raw.removeprefix(request.root_path)  # behind --root-path (MS-OPS-2)
        if not values or "device_key" not in values or not raw.startswith(DEVICES):
            return
        key_raw, slash, sub = raw[len(DEVICES) :].partition("/")
        key = unquote(key_raw)
        if values["device_key"] == key:
            return
        rule, args = app.url_map.bind("").match(
            DEVICES + "k" + slash + sub, method=request.method, return_rule=True
        )
        request.url_rule = rule
        values.clear()
        values.update(args, device_key=key)

    @app.before_request
    async def _operator_only() -> Any:
        """MS-HTTP-18: every /api/ operation (and /metrics) needs a live operator token."""
        if not request.path.startswith("/api/") and request.path != "/metrics":
            return None
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token and len(token) <= 512:
            scope = await run(store.operator_scope, ingest.hash_token(token))
            if scope is not None:
                g.scope = scope  # every /api/ query filters by it (metersync_manager.scope)
                return None
            detail = "the operator token is unknown or revoked"
        else:
            detail = "send an operator token: Authorization: Bearer <token>"
        body, status = problem(401, "operator token required", detail)
        return body, status, {"WWW-Authenticate": 'Bearer realm="metersync"'}

    spec_text = (metersync_spec.OPENAPI_DIR / "manager.yaml").read_text(encoding="utf-8")

    @app.get("/openapi.yaml")
    async def openapi() -> Response:
        """The OpenAPI with this manager's base URL as its server (MS-OPS-3)."""
        url = public_url or f"{request.scheme}://{request.host}{request.root_path}"
        return Response(with_server(spec_text, url), content_type="application/yaml")

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), content_type=metrics_content_type)

    @app.get("/healthz")
    async def healthz() -> tuple[dict[str, Any], int]:
        """The database answers and its write lock is free within a bound (issue 9, case 8)."""
        try:
            version = await asyncio.wait_for(run(store.health), HEALTH_TIMEOUT)
        except (OperationalError, DBAPIError, TimeoutError) as exc:
            log.warning("health: the database is unavailable: %s", exc)
            return {"status": "unavailable", "database": store.dialect, "schemaVersion": None}, 503
        return {"status": "ok", "database": store.dialect, "schemaVersion": version}, 200

    @app.get("/api/v1/agents")
    async def list_agents() -> Any:
        limit, after = paging.params(str)
        offset = int_param("offset", 0, 0, 1_000_000_000)  # superseded by cursor
        first = after[0] if after else None
        items = await run(store.agents, None, limit + 1, offset, g.scope, first)
        return paging.page(items, limit, lambda x: (x["agentId"],))

    @app.get("/api/v1/agents/<agent_id>")
    async def get_agent(agent_id: str) -> Any:
        if not _UUID.match(agent_id):
            raise BadParam("agentId is not a UUID")
        found = await run(store.agents, agent_id, 100, 0, g.scope)
        return found[0] if found else problem(404, "no such agent")

    @app.get("/api/v1/devices")
    async def list_devices() -> Any:
        limit, after = paging.params(str)
        offset = int_param("offset", 0, 0, 1_000_000_000)  # superseded by cursor
        first = after[0] if after else None
        items = await run(store.devices, None, limit + 1, offset, None, g.scope, first)
        return paging.page(items, limit, lambda x: (x["deviceKey"],))

    # Device keys may hold "/" (percent-encoded by clients): the path converter keeps it.
    @app.get("/api/v1/devices/<path:device_key>/ips")
    async def device_ips(device_key: str) -> Any:
        check_key(device_key)
        if not await run(store.device_visible, device_key, g.scope):
            return problem(404, "no such device")
        items = await run(store.ip_history, device_key)
        if not items:
            return problem(404, "no such device")
        return {"deviceKey": device_key, "items": items}

    @app.get("/api/v1/devices/<path:device_key>/latest")
    async def device_latest(device_key: str) -> Any:
        check_key(device_key)
        if not await run(store.device_visible, device_key, g.scope):
            return problem(404, "no such device")
        snap = await run(store.latest, device_key)
        return snap if snap else problem(404, "no such device")

    @app.get("/api/v1/devices/<path:device_key>/supplies")
    async def device_supplies(device_key: str) -> Any:
        check_key(device_key)
        if not await run(store.device_visible, device_key, g.scope):
            return problem(404, "no such device")
        found = await run(store.supplies, device_key)
        return found if found else problem(404, "no such device")

    @app.get("/api/v1/devices/<path:device_key>/counters")
    async def device_counters(device_key: str) -> Any:
        check_key(device_key)
        kind = kind_param()
        start, end = time_param("from"), time_param("to")
        limit = int_param("limit", 100, 1, 1000)
        offset = int_param("offset", 0, 0, 1_000_000_000)
        if not await run(store.device_visible, device_key, g.scope):
            return problem(404, "no such device")
        items = await run(store.counter_history, device_key, kind, start, end, limit, offset)
        return {"deviceKey": device_key, "items": items}

    @app.get("/api/v1/devices/<path:device_key>")
    async def get_device(device_key: str) -> Any:
        check_key(device_key)
        found = await run(store.devices, device_key, 100, 0, None, g.scope)
        return found[0] if found else problem(404, "no such device")

    @app.get("/api/v1/printer-alerts")
    async def list_printer_alerts() -> dict[str, Any]:
        key = key_param("deviceKey")
        start, end = time_param("from"), time_param("to")
        limit = int_param("limit", 100, 1, 1000)
        offset = int_param("offset", 0, 0, 1_000_000_000)
        return {"items": await run(store.alerts, key, start, end, limit, offset, g.scope)}

    app.extensions["metersync_store"] = store
    app.extensions["metersync_admission"] = (slots, memory)  # read by the fault tests
    app.extensions["metersync_run"] = run
    app.extensions["metersync_clock"] = clock
    app.register_blueprint(api_tenancy.bp)

    fleet_api.register(app, store, run=run, clock=clock, config=fleet or FleetConfig())
    return app
