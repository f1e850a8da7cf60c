"""Checks of a manager's channel (Manager-Channel): the harness plays an agent holding one.

The harness enrolls a simulated agent, opens the channel (WebSocket `GET /v1/channel` and
long-poll), and makes the manager send requests over it with the manager's own operator
trigger: by default the reference's documented operator API
`GET {url}/api/v1/agents/{agentId}/channel?path=…`, or a vendor's `--channel-command` with
`{agent_id}` and `{path}` replaced. It checks authentication of the upgrade and the polls
(MS-CH-3), the long-poll endpoints (MS-CH-4), that requests are well-formed GETs for the paths
of Table 10-1, one per message (MS-CH-5, MS-CH-8, MS-MSG-8), the limit of 4 outstanding
(MS-CH-14) and one channel per agent (MS-CH-17). Answering requests itself, the harness checks
that a snapshot read over the channel is never a reading (MS-CH-18, through the read API) and
that Errors with codes the manager does not know reach the operator as Table 13-2 says (MS-ERR-3).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import re
import shlex
import ssl
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import metersync_generated.v1 as model
from metersync import signing, xml_edge
from metersync.errors import ProtocolError
from metersync_conformance.manager.core import ManagerContext
from metersync_conformance.manager.store import (
    at,
    complete,
    dev_path,
    fresh_serial,
    key_of,
    read,
    send_ok,
    set_total,
)
from metersync_conformance.registry import Finding, check, excerpt_of, fail, not_tested, ok
from metersync_conformance.wire import SimAgent, _example_report, now, xml_time

CHANNEL = ("Manager-Channel",)
SUBPROTOCOL = "metersync.v1"
RESOURCES = ("/status", "/devices", "/devices/sn:conformance:abc123", "/devices/sn:x:y/fresh")
HOLD_LIMIT = 30.0
UUID_V4_V7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[47][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def _ws_url(base: str) -> str:
    return base.replace("https:", "wss:", 1).replace("http:", "ws:", 1).rstrip("/") + "/v1/channel"


def _path(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path


def signed(
    agent: SimAgent, method: str, url: str, *, skew: float = 0.0, key: Any = None
) -> dict[str, str]:
    """MeterSync-Date and MeterSync-Signature for a request without body (section 10.3)."""
    date = signing.format_date(time.time() + skew)
    data = signing.bodyless_bytes(method, _path(url), date)
    sig = signing.sign(key or agent.key, data, agent.agent_id)
    return {signing.DATE_HEADER: date, signing.HEADER: sig}


async def open_ws(
    url: str, headers: dict[str, str], cacert: Path | None = None
) -> tuple[Any, int | None, bytes]:
    """(connection or None, refusal status, refusal body); `cacert` is trusted for wss."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    tls: Any = None
    if url.startswith("wss:"):
        tls = ssl.create_default_context(cafile=str(cacert) if cacert else None)
    try:
        protocols: Any = [SUBPROTOCOL]
        ws = await connect(
            url, subprotocols=protocols, additional_headers=headers, proxy=None, ssl=tls
        )
    except InvalidStatus as exc:
        return None, exc.response.status_code, exc.response.body or b""
    return ws, None, b""


def _code(body: bytes) -> int | None:
    try:
        return int(xml_edge.parse_message(body, expect=("Error",)).obj.code)
    except (ProtocolError, ValueError):
        return None


def _answer_for(raw: str | bytes) -> bytes | None:
    """A valid ChannelResponse (an Error 5002) for a request, so the manager stops waiting."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    try:
        req = xml_edge.parse_message(data, expect=("ChannelRequest",)).obj
    except ProtocolError:
        return None
    err = xml_edge.error_message(ProtocolError("RESOURCE_NOT_FOUND", "the harness has nothing"))
    resp = model.ChannelResponse(
        version=xml_edge.PROTOCOL_VERSION,
        request_id=req.request_id,
        status=404,
        body=model.ChannelBody(error=err),
    )
    return xml_edge.to_bytes(resp)


def trigger(ctx: ManagerContext, agent: SimAgent, path: str) -> asyncio.Task[Any]:
    """Make the manager send `GET path` to the agent (runs until the manager gets its answer)."""
    command = ctx.channel_command
    if command:
        text = command.replace("{agent_id}", shlex.quote(agent.agent_id))
        text = text.replace("{path}", shlex.quote(path))

        async def run_command() -> Any:
            proc = await asyncio.create_subprocess_shell(
                text, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
            )
            return await proc.wait()

        return asyncio.ensure_future(run_command())
    url = f"{ctx.url.rstrip('/')}/api/v1/agents/{agent.agent_id}/channel?path={quote(path)}"

    async def operator_get() -> Any:
        return await ctx.client.get(url, headers=await ctx.api_headers(), timeout=60)

    return asyncio.ensure_future(operator_get())


async def _recv(ws: Any, timeout: float) -> Any:
    with contextlib.suppress(TimeoutError):
        return await asyncio.wait_for(ws.recv(), timeout)
    return None


@check("MS-CH-3", "MS-CH-20", classes=CHANNEL, role="manager")
async def channel_requests_authenticated(ctx: ManagerContext) -> list[Finding]:
    """Upgrades and polls: unsigned 2001, unknown 2002, forged 2003, skewed 2004, replay 2005."""
    agent = await ctx.main_agent()
    url = _ws_url(ctx.url)
    stranger = SimAgent()
    cases = [
        ("no signature", {}, 2001),
        ("unknown agent", signed(stranger, "GET", url), 2002),
        ("forged", signed(agent, "GET", url, key=stranger.key), 2003),
        ("900 s skew", signed(agent, "GET", url, skew=-900), 2004),
    ]
    out: list[Finding] = []
    for what, headers, code in cases:
        ws, status, body = await open_ws(url, headers, ctx.cacert)
        if ws is not None:
            await ws.close()
            out.append(
                fail(f"upgrade with {what} accepted", expected=f"error {code}", actual="101")
            )
        elif _code(body) != code:
            out.append(
                fail(
                    f"upgrade with {what}",
                    expected=f"error {code}",
                    actual=f"HTTP {status}, error {_code(body)}",
                    excerpt=excerpt_of(body, 400),
                )
            )
    good = signed(agent, "GET", url)
    ws, status, body = await open_ws(url, good, ctx.cacert)
    if ws is None:
        out.append(
            fail(
                "a correctly signed upgrade was refused",
                expected="101",
                actual=f"HTTP {status}, error {_code(body)}",
            )
        )
    else:
        await ws.close()
        again, status, body = await open_ws(url, good, ctx.cacert)
        if again is not None:
            await again.close()
            out.append(fail("a replayed upgrade was accepted", expected="error 2005"))
        elif _code(body) != 2005:
            out.append(
                fail(
                    "a replayed upgrade",
                    expected="error 2005",
                    actual=f"HTTP {status}, error {_code(body)}",
                )
            )
    poll = ctx.url.rstrip("/") + "/v1/channel/poll"
    for what, headers, code in (
        ("no signature", {}, 2001),
        ("900 s skew", signed(agent, "POST", poll, skew=900), 2004),
    ):
        r = await ctx.client.post(poll, headers=headers)
        if _code(r.content) != code:
            out.append(
                fail(
                    f"long-poll with {what}",
                    expected=f"error {code}",
                    actual=f"HTTP {r.status_code}, error {_code(r.content)}",
                )
            )
    return out or [ok("unsigned, unknown, forged, skewed and replayed channel requests refused")]


@check(
    "MS-CH-5", "MS-CH-8", "MS-MSG-8", "MS-MSG-4", "MS-DEL-1",
    classes=CHANNEL, role="manager", timeout=90,
)  # fmt: skip
async def only_get_requests_over_the_channel(ctx: ManagerContext) -> list[Finding]:
    """Each request: one text message, a valid ChannelRequest, GET, a path of Table 10-1."""
    agent = await ctx.main_agent()
    url = _ws_url(ctx.url)
    ws, status, body = await open_ws(url, signed(agent, "GET", url), ctx.cacert)
    if ws is None:
        return [
            fail(
                "the harness could not open a channel",
                actual=f"HTTP {status}",
                excerpt=excerpt_of(body, 400),
            )
        ]
    out: list[Finding] = []
    ids: set[str] = set()
    try:
        for path in RESOURCES:
            task = trigger(ctx, agent, path)
            msg = await _recv(ws, 20)
            if msg is None:
                out.append(fail(f"the manager sent nothing for {path}", "MS-CH-5"))
                task.cancel()
                continue
            if not isinstance(msg, str):
                out.append(fail("a request came as a binary message", "MS-CH-5"))
            data = msg.encode("utf-8") if isinstance(msg, str) else msg
            try:
                req = xml_edge.parse_message(data, expect=("ChannelRequest",)).obj
            except ProtocolError as exc:
                out.append(
                    fail(
                        f"not a valid ChannelRequest: {exc}",
                        "MS-MSG-8",
                        excerpt=excerpt_of(data, 600),
                    )
                )
                task.cancel()
                continue
            if req.method != "GET" or req.path != path:
                out.append(
                    fail(
                        "the manager sent another method or path",
                        "MS-CH-8",
                        expected=f"GET {path}",
                        actual=f"{req.method} {req.path}",
                    )
                )
            if req.request_id in ids:
                for r in ("MS-MSG-8", "MS-DEL-1"):
                    out.append(fail("a requestId was used twice", r, actual=req.request_id))
            if not UUID_V4_V7.fullmatch(str(req.request_id)):
                out.append(
                    fail(
                        "the requestId is not a canonical lower-case version 4 or 7 UUID",
                        "MS-MSG-4",
                        actual=req.request_id,
                    )
                )
            ids.add(req.request_id)
            answer = _answer_for(data)
            if answer is not None:
                await ws.send(answer.decode("utf-8"))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)
    finally:
        await ws.close()
    return out or [
        ok(
            f"{len(RESOURCES)} requests: one text message each, GET, Table 10-1 "
            "paths, fresh canonical UUID v4/v7 requestIds"
        )
    ]


@check("MS-CH-4", classes=CHANNEL, role="manager", timeout=120)
async def long_poll_endpoints(ctx: ManagerContext) -> list[Finding]:
    """A held poll delivers a request (200); responses are taken (204); an idle poll: 204."""
    agent = await ctx.main_agent()
    poll = ctx.url.rstrip("/") + "/v1/channel/poll"
    responses = ctx.url.rstrip("/") + "/v1/channel/responses"
    out: list[Finding] = []
    t0 = time.monotonic()
    r = await ctx.client.post(poll, headers=signed(agent, "POST", poll), timeout=HOLD_LIMIT + 15)
    held = time.monotonic() - t0
    if r.status_code != 204 or r.content:
        out.append(
            fail(
                "an idle long-poll",
                expected="204 without body",
                actual=f"HTTP {r.status_code}",
                excerpt=excerpt_of(r.content, 400),
            )
        )
    elif held > HOLD_LIMIT + 2:
        out.append(fail(f"the poll was held {held:.1f} s", expected="at most 30 s"))
    poller = asyncio.ensure_future(
        ctx.client.post(poll, headers=signed(agent, "POST", poll), timeout=HOLD_LIMIT + 15)
    )
    await asyncio.sleep(0.3)
    task = trigger(ctx, agent, "/status")
    r = await poller
    if r.status_code != 200:
        task.cancel()
        out.append(
            fail(
                "a poll while a request waits",
                expected="200 ChannelRequest",
                actual=f"HTTP {r.status_code}",
                excerpt=excerpt_of(r.content, 400),
            )
        )
        return out
    answer = _answer_for(r.content)
    if answer is None:
        task.cancel()
        return [
            *out,
            fail("the poll's body is not a ChannelRequest", excerpt=excerpt_of(r.content, 400)),
        ]
    headers = {"Content-Type": "application/vnd.metersync+xml", signing.HEADER: agent.sign(answer)}
    posted = await ctx.client.post(responses, content=answer, headers=headers)
    if posted.status_code != 204:
        out.append(
            fail(
                "a signed ChannelResponse",
                expected="204",
                actual=f"HTTP {posted.status_code}",
                excerpt=excerpt_of(posted.content, 400),
            )
        )
    with contextlib.suppress(Exception):
        await asyncio.wait_for(task, 10)
    return out or [ok(f"idle poll 204 after {held:.1f} s; request 200; response 204")]


@check("MS-CH-14", classes=CHANNEL, role="manager", timeout=90)
async def at_most_four_outstanding(ctx: ManagerContext) -> Finding:
    """Six requests asked at once: at most four reach the agent before it answers."""
    agent = SimAgent()
    await ctx.enroll(agent)
    url = _ws_url(ctx.url)
    ws, status, _ = await open_ws(url, signed(agent, "GET", url), ctx.cacert)
    if ws is None:
        return fail("the harness could not open a channel", actual=f"HTTP {status}")
    tasks = [trigger(ctx, agent, "/status") for _ in range(6)]
    got: list[Any] = []
    try:
        while (msg := await _recv(ws, 1.0)) is not None:
            got.append(msg)
        first = len(got)
        for msg in list(got):
            answer = _answer_for(msg)
            if answer is not None:
                await ws.send(answer.decode("utf-8"))
    finally:
        await asyncio.sleep(0.2)
        for t in tasks:
            t.cancel()
        await ws.close()
    if first > 4:
        return fail(
            f"{first} requests were outstanding at once", expected="at most 4", actual=str(first)
        )
    if first == 0:
        return fail("the manager sent no request at all")
    return ok(f"{first} of 6 requests sent before any answer")


@check("MS-CH-17", classes=CHANNEL, role="manager")
async def one_channel_per_agent(ctx: ManagerContext) -> Finding:
    """A second channel of the same agent closes the first."""
    agent = await ctx.main_agent()
    url = _ws_url(ctx.url)
    first, _, _ = await open_ws(url, signed(agent, "GET", url), ctx.cacert)
    if first is None:
        return not_tested("the harness could not open a channel")
    second, _, _ = await open_ws(url, signed(agent, "GET", url), ctx.cacert)
    try:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(first.wait_closed(), 3)
        closed = first.close_code is not None
    finally:
        await first.close()
        if second is not None:
            await second.close()
    if not closed:
        return fail("the older channel stayed open", expected="closed", actual="open")
    return ok(f"the older channel closed (code {first.close_code})")


# --- what the manager does with the agent's answers (MS-CH-18, MS-ERR-3) --------------------


def _respond(raw: str | bytes, status: int, body: model.ChannelBody) -> tuple[str, bytes] | None:
    """(path asked, a ChannelResponse with this status and body) for a request, or None."""
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    try:
        req = xml_edge.parse_message(data, expect=("ChannelRequest",)).obj
    except ProtocolError:
        return None
    resp = model.ChannelResponse(
        version=xml_edge.PROTOCOL_VERSION, request_id=req.request_id, status=status, body=body
    )
    return str(req.path), xml_edge.to_bytes(resp)


async def _serve_one(ws: Any, status: int, body: model.ChannelBody) -> str | None:
    """Answer the next request on the channel; the path it asked for (None: no request)."""
    msg = await _recv(ws, 20)
    if msg is None:
        return None
    answered = _respond(msg, status, body)
    if answered is None:
        return None
    await ws.send(answered[1].decode("utf-8"))
    return answered[0]


def _fresh_device(serial: str, polled: datetime, total: int) -> model.Device:
    """What an agent's fresh read of the device would answer: a complete, newer snapshot."""
    snap = copy.deepcopy(_example_report().device[0])
    snap.identity.serial_number, snap.identity.device_key = serial, key_of(serial)
    snap.polled_at, snap.collection_error = xml_time(polled), []
    for c in snap.counter:
        if c.kind == model.CounterKind.TOTAL:
            c.value = total
    return model.Device(**{f.name: getattr(snap, f.name) for f in dataclasses.fields(snap)})


@check("MS-CH-18", classes=CHANNEL, role="manager", timeout=90)
async def channel_snapshot_not_a_reading(ctx: ManagerContext) -> list[Finding]:
    """Report 1000, a fresh read over the channel 5000, report 1100: latest and usage ignore it."""
    agent = await ctx.enrolled_agent()
    serial, t = fresh_serial(), now()
    key = key_of(serial)
    rid, sent = agent.report(
        serial=serial, mutate=at(t - timedelta(minutes=10), complete, set_total(1000))
    )
    ans = await ctx.send(agent, sent, what="report 1")
    if ans.receipt_status != "accepted":
        return [fail(f"report 1 was not accepted ({ans.brief()})", actual=ans.brief())]
    url = _ws_url(ctx.url)
    ws, status, body = await open_ws(url, signed(agent, "GET", url), ctx.cacert)
    if ws is None:
        return [fail("the harness could not open a channel", actual=f"HTTP {status}")]
    fresh = _fresh_device(serial, t - timedelta(minutes=5), 5000)
    try:
        task = trigger(ctx, agent, f"/devices/{key}/fresh")
        asked = await _serve_one(ws, 200, model.ChannelBody(device=fresh))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
    finally:
        await ws.close()
    if asked != f"/devices/{key}/fresh":
        return [fail("the manager did not ask for the fresh read", actual=str(asked))]
    out: list[Finding] = []
    latest = await read(ctx, dev_path(key, "/latest"))
    totals = [c.get("value") for c in latest.get("counters", []) if c.get("kind") == "total"]
    if latest.get("reportId") != rid or totals != [1000]:
        out.append(
            fail(
                "the snapshot read over the channel became the device's latest reading",
                expected=f"latest from report {rid}, total 1000",
                actual=f"report {latest.get('reportId')}, totals {totals}",
            )
        )
    bad = await send_ok(
        ctx, agent, serial, at(t - timedelta(minutes=1), complete, set_total(1100)), what="report 2"
    )
    if bad:
        return [*out, bad]
    meters = await read(
        ctx, "/api/v1/meters", deviceKey=key, kind="total",
        **{"from": (t - timedelta(minutes=11)).isoformat(), "to": t.isoformat()},
    )  # fmt: skip
    line = next((x for x in meters.get("lines", []) if x.get("kind") == "total"), None)
    if not (
        line
        and line.get("usage") == 100
        and not line.get("resets")
        and (line.get("start") or {}).get("value") == 1000
        and (line.get("end") or {}).get("value") == 1100
    ):
        out.append(
            fail(
                "the channel snapshot counted as a read or a baseline in the meter export",
                expected="usage 100 from reads 1000 and 1100 only, no reset",
                actual=str(line)[:500],
            )
        )
    return out or [
        ok("the fresh read (total 5000) changed neither the latest reading nor the usage of 100")
    ]


def _error_body(code: int, retry_after: int | None) -> model.ChannelBody:
    name = "XCONF_PROBE_CODE" if code >= 9000 else "FUTURE_CODE"
    err = model.Error(
        version=xml_edge.PROTOCOL_VERSION,
        code=code,
        name=name,
        message=f"an error code {code} this manager may not know (conformance probe)",
        retry_after=retry_after,
    )
    return model.ChannelBody(error=err)


# (code, the agent's status, retried later?): the thousand decides, for 7000-9999 the status.
UNKNOWN_CODES = (
    (5999, 503, False),
    (1999, 503, False),
    (4999, 400, True),
    (9999, 503, True),
    (7999, 429, True),
    (9998, 400, False),
)


@check("MS-ERR-3", classes=CHANNEL, role="manager", timeout=120)
async def unknown_channel_codes_by_thousand(ctx: ManagerContext) -> list[Finding]:
    """Agent Errors 5999/503, 1999/503, 4999/400, 9999/503, 7999/429, 9998/400 to the operator."""
    if ctx.channel_command:
        return [
            not_tested(
                "the operator's view of an agent's Error is observed through the read API "
                "(GET /api/v1/agents/{agentId}/channel); a --channel-command shows none"
            )
        ]
    agent = await ctx.enrolled_agent()
    url = _ws_url(ctx.url)
    ws, status, body = await open_ws(url, signed(agent, "GET", url), ctx.cacert)
    if ws is None:
        return [fail("the harness could not open a channel", actual=f"HTTP {status}")]
    out: list[Finding] = []
    try:
        for code, agent_status, retry in UNKNOWN_CODES:
            task = trigger(ctx, agent, "/status")
            if await _serve_one(ws, agent_status, _error_body(code, 7 if retry else None)) is None:
                task.cancel()
                out.append(fail(f"the manager sent no request to answer with {code}"))
                continue
            resp = await asyncio.wait_for(task, 20)
            st, after = resp.status_code, resp.headers.get("retry-after")
            if retry:
                good = (st == 429 or 500 <= st <= 599) and bool(after)
                want = "429 or 5xx with Retry-After (retry later)"
            else:
                good = 400 <= st <= 499 and st != 429
                want = "a 4xx other than 429 (refused)"
            if not good:
                out.append(
                    fail(
                        f"the agent's Error {code} with status {agent_status} was not handled "
                        "by Table 13-2",
                        expected=want,
                        actual=f"HTTP {st}" + (f", Retry-After {after}" if after else ""),
                        excerpt=excerpt_of(resp.content, 600),
                    )
                )
    finally:
        await ws.close()
    return out or [
        ok(
            "unknown codes handled by their thousand (5999, 1999 refused; 4999 retried) and "
            "7000-9999 by status (9999/503, 7999/429 retried; 9998/400 refused)"
        )
    ]
