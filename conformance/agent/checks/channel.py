"""Checks of an agent's channel (MS-CH-*), judged from what the harness manager recorded.

MS-CH-1 is judged on every agent run (Agent-Core): while its provisioning keeps the channel
off, the agent makes no channel request at all. The others need the channel phase
(agent/channel_phase.py), which runs when Agent-Channel is claimed.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from metersync.errors import BY_CODE
from metersync_conformance.agent.channel_phase import ChannelRun
from metersync_conformance.agent.harness import AgentContext
from metersync_conformance.peers.channel import Sent
from metersync_conformance.peers.manager import BASE_PATH
from metersync_conformance.registry import (
    Finding,
    Status,
    check,
    excerpt_of,
    fail,
    not_tested,
    ok,
)

CORE = ("Agent-Core",)
CHANNEL = ("Agent-Channel",)
POLL_AGAIN = 2.0  # seconds: "poll again at once", with room for a loaded test machine
REOPEN_WITHIN = 30.0  # seconds after a close: MS-DEL-10's first waits are at most 5 s, 10 s…


def _run(ctx: AgentContext) -> ChannelRun | Finding:
    run = ctx.channel
    if run is None:
        return not_tested("the channel phase did not run")
    if not run.opened:
        return fail(
            "the agent opened no channel after it was enabled: " + "; ".join(run.notes),
            excerpt=ctx.agent_log(),
        )
    return run


def _show(item: Sent) -> str:
    a = item.answer
    got = "no answer" if a is None else (a.problem or f"status {a.status}, {a.body_kind()}")
    if a is not None and a.code is not None:
        got += f" {a.code}"
    return f"{item.method} {item.path} → {got}"


def _excerpt(item: Sent) -> str | None:
    return excerpt_of(item.answer.raw if item.answer else item.raw, 800)


def _expect(req: str, items: list[Sent], status: int, code: int | None, what: str) -> Finding:
    if not items:
        return not_tested(f"no {what} was sent", req)
    for item in items:
        a = item.answer
        if a is None or a.status != status or a.code != code:
            return fail(
                f"{what}: {_show(item)}",
                req,
                expected=f"status {status}" + (f", error {code}" if code else ""),
                actual=_show(item),
                excerpt=_excerpt(item),
            )
    return ok(f"{what}: " + "; ".join(_show(i) for i in items), req)


def _time(value: Any) -> float | None:
    if value is None:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


@check("MS-CH-1", classes=CORE + CHANNEL, role="agent")
async def channel_off_unless_enabled(ctx: AgentContext) -> Finding:
    """With `channel enabled="false"` the agent makes no channel request."""
    peer = ctx.rec.peer
    if peer is None:
        return not_tested("the harness manager has no channel endpoints")
    end = ctx.channel.enabled_at if ctx.channel and ctx.channel.enabled_at else float("inf")
    early = [a for a in peer.attempts if a.t < end]
    if early:
        a = early[0]
        return fail(
            f"{len(early)} channel request(s) while the channel was off (first: {a.method} "
            f"{a.path})",
            expected="no request to /v1/channel*",
            actual=f"{a.method} {a.path}",
        )
    checked = len(ctx.rec.received)
    return ok(f"no channel request while off ({checked} other requests observed)")


@check("MS-CH-2", "MS-SEC-10", "MS-CH-20", classes=CHANNEL, role="agent")
async def channel_opened_signed_with_fallback(ctx: AgentContext) -> list[Finding]:
    """WebSocket upgrade of GET /v1/channel, metersync.v1, signed; long-poll when refused."""
    run = _run(ctx)
    if isinstance(run, Finding):
        return [run]
    peer = ctx.rec.peer
    opens = [a for a in peer.attempts if a.kind in ("websocket", "poll")]
    first = opens[0]
    out: list[Finding] = []
    if first.kind != "websocket":
        out.append(
            fail(
                "the agent's first channel request was not a WebSocket upgrade",
                "MS-CH-2",
                expected="GET /v1/channel (Upgrade: websocket)",
                actual=f"{first.method} {first.path}",
            )
        )
    elif "metersync.v1" not in first.subprotocols:
        out.append(
            fail(
                "the upgrade does not ask for the subprotocol metersync.v1",
                "MS-CH-2",
                actual=", ".join(first.subprotocols) or "none",
            )
        )
    elif first.path != BASE_PATH + "/v1/channel":
        out.append(
            fail(f"the upgrade went to {first.path}", "MS-CH-2", expected=BASE_PATH + "/v1/channel")
        )
    else:
        out.append(ok("GET /v1/channel upgraded to WebSocket with metersync.v1", "MS-CH-2"))
    unsigned = [a for a in peer.attempts if a.kind != "response" and a.signature_problem]
    n = len([a for a in peer.attempts if a.kind != "response"])
    for req in ("MS-SEC-10", "MS-CH-20"):
        if unsigned:
            a = unsigned[0]
            problem = f"a {a.kind} request is not signed per section 10.3: {a.signature_problem}"
            out.append(fail(problem, req, excerpt=str(a.headers)))
        else:
            out.append(ok(f"all {n} upgrades and polls signed, each signature used once", req))
    if run.blocked_at is None:
        out.append(not_tested("the upgrade was never refused", "MS-CH-2"))
    elif run.longpoll_at is None:
        out.append(
            fail(
                "after the upgrade was refused the agent never used long-poll",
                "MS-CH-2",
                expected="POST /v1/channel/poll",
                actual="none",
                excerpt=ctx.agent_log(),
            )
        )
    else:
        out.append(
            ok(
                f"upgrade refused → long-poll after {run.longpoll_at - run.blocked_at:.1f} s",
                "MS-CH-2",
            )
        )
    return out


@check("MS-CH-4", classes=CHANNEL, role="agent")
async def long_poll_again_at_once(ctx: AgentContext) -> Finding:
    """Long-poll: after each answer (200 or 204) the agent polls again at once."""
    run = _run(ctx)
    if isinstance(run, Finding):
        return run
    if run.longpoll_at is None:
        return fail("the agent never long-polled (the WebSocket was refused)")
    polls = [a for a in ctx.rec.peer.attempts if a.kind == "poll" and a.t >= run.longpoll_at]
    gaps = [
        nxt.t - cur.answered_at
        for cur, nxt in zip(polls, polls[1:], strict=False)
        if cur.answered_at is not None
    ]
    if not gaps:
        return fail("only one long-poll was made", actual=f"{len(polls)} polls")
    worst = max(gaps)
    if worst > POLL_AGAIN:
        return fail(
            f"the agent waited {worst:.1f} s before polling again",
            expected=f"at most {POLL_AGAIN} s",
            actual=f"{worst:.1f} s",
        )
    return ok(f"{len(polls)} polls, the next one at most {worst:.2f} s after each answer")


@check("MS-CH-6", "MS-HTTP-7", classes=CHANNEL, role="agent")
async def responses_over_the_request_transport(ctx: AgentContext) -> list[Finding]:
    """Each answer comes back over its request's transport; posted answers are signed."""
    run = _run(ctx)
    if isinstance(run, Finding):
        return [run]
    peer = ctx.rec.peer
    answered = [s for s in peer.sent if s.answer is not None and s.transport]
    wrong = [s for s in answered if s.answer.transport != s.transport]
    out = [
        fail(
            f"a request sent over {wrong[0].transport} was answered over "
            f"{wrong[0].answer.transport}",
            "MS-CH-6",
        )
        if wrong
        else ok(f"{len(answered)} answers, each over its request's transport", "MS-CH-6")
    ]
    posted = [a for a in peer.attempts if a.kind == "response"]
    bad = [a for a in posted if a.signature_problem]
    if not posted:
        out.append(not_tested("no response was posted over long-poll", "MS-HTTP-7"))
    elif bad:
        for req in ("MS-CH-6", "MS-HTTP-7"):
            out.append(
                fail(
                    f"a posted ChannelResponse is not signed like a report: "
                    f"{bad[0].signature_problem}",
                    req,
                )
            )
    else:
        out.append(
            ok(f"{len(posted)} posted ChannelResponses, each signed over its bytes", "MS-HTTP-7")
        )
    return out


@check("MS-CH-7", classes=CHANNEL, role="agent")
async def other_methods_refused(ctx: AgentContext) -> Finding:
    """POST, PUT and DELETE are answered 405 with error 5001."""
    run = _run(ctx)
    if isinstance(run, Finding):
        return run
    items = run.step("refuse") + [s for s in run.step("longpoll") if s.method != "GET"]
    return _expect("MS-CH-7", items, 405, 5001, "methods other than GET")


@check("MS-CH-9", classes=CHANNEL, role="agent")
async def unknown_paths_refused(ctx: AgentContext) -> Finding:
    """Other paths, a query, an unknown device key: 404 with error 5002."""
    run = _run(ctx)
    if isinstance(run, Finding):
        return run
    return _expect("MS-CH-9", run.step("notfound"), 404, 5002, "paths outside Table 10-1")


@check("MS-CH-10", "MS-MSG-14", classes=CHANNEL, role="agent")
async def status_resource(ctx: AgentContext) -> Finding:
    """GET /status: 200 and an AgentStatus naming the agent."""
    run = _run(ctx)
    if isinstance(run, Finding):
        return run
    items = [s for s in run.step("get") + run.step("longpoll") if s.path == "/status"]
    items = [s for s in items if s.method == "GET"]
    agents = set(ctx.rec.keys)
    for s in items:
        a = s.answer
        obj = a.obj.body.agent_status if a and a.obj else None
        if a is None or a.status != 200 or obj is None:
            return fail(
                f"GET /status: {_show(s)}",
                expected="200 AgentStatus",
                actual=_show(s),
                excerpt=_excerpt(s),
            )
        if obj.agent_id not in agents:
            return fail(
                "AgentStatus names another agent", expected=str(sorted(agents)), actual=obj.agent_id
            )
    if not items:
        return not_tested("GET /status was never answered")
    return ok(f"GET /status answered with the agent's AgentStatus {len(items)} times")


@check("MS-CH-11", "MS-MSG-15", classes=CHANNEL, role="agent")
async def device_list_resource(ctx: AgentContext) -> Finding:
    """GET /devices: 200 and a DeviceList with every device the agent reported."""
    run = _run(ctx)
    if isinstance(run, Finding):
        return run
    items = [s for s in run.step("get") if s.path == "/devices"]
    if not items:
        return not_tested("GET /devices was not sent")
    s = items[0]
    a = s.answer
    lst = a.obj.body.device_list if a and a.obj else None
    if a is None or a.status != 200 or lst is None:
        return fail(
            f"GET /devices: {_show(s)}",
            expected="200 DeviceList",
            actual=_show(s),
            excerpt=_excerpt(s),
        )
    listed = {d.device_key for d in lst.device}
    missing = [k for k in run.keys if k not in listed]
    if missing:
        return fail(
            f"{len(missing)} reported device(s) missing from DeviceList",
            expected=", ".join(run.keys),
            actual=", ".join(sorted(listed)),
            excerpt=_excerpt(s),
        )
    return ok(f"DeviceList holds all {len(run.keys)} devices the agent reported")


@check("MS-CH-12", classes=CHANNEL, role="agent")
async def device_and_fresh_resources(ctx: AgentContext) -> list[Finding]:
    """GET /devices/{key}: the held snapshot; …/fresh: a snapshot polled for the request."""
    run = _run(ctx)
    if isinstance(run, Finding):
        return [run]
    if not run.keys:
        return [fail("the agent reported no device, so none could be asked for")]
    key = run.keys[0]
    out: list[Finding] = []
    held = [s for s in run.step("get") if s.path == f"/devices/{key}"]
    fresh = run.step("fresh")
    for label, items in (("held", held), ("fresh", fresh)):
        s = items[0] if items else None
        a = s.answer if s else None
        dev = a.obj.body.device if a and a.obj else None
        if s is None or a is None or a.status != 200 or dev is None:
            shown = _show(s) if s else "not sent"
            out.append(
                fail(
                    f"{label} snapshot: {shown}",
                    expected="200 Device",
                    actual=shown,
                    excerpt=_excerpt(s) if s else None,
                )
            )
            continue
        if dev.identity.device_key != key:
            out.append(
                fail(
                    f"{label} snapshot of another device",
                    expected=key,
                    actual=dev.identity.device_key,
                )
            )
            continue
        polled = _time(dev.polled_at) or 0.0
        if label == "fresh" and polled < s.wall - 1.0:
            out.append(
                fail(
                    "the fresh snapshot was polled before it was asked for",
                    expected=f"polledAt ≥ {dt.datetime.fromtimestamp(s.wall, dt.UTC)}",
                    actual=str(dev.polled_at),
                )
            )
        elif label == "held" and polled > s.wall + 1.0:
            out.append(
                fail(
                    "GET /devices/{key} polled the device",
                    expected="the snapshot the agent held",
                    actual=str(dev.polled_at),
                )
            )
        else:
            out.append(ok(f"{label} snapshot of {key}, polledAt {dev.polled_at}"))
    return out


def _body(item: Sent, name: str) -> Any:
    """The answer's document of that kind (device, device_list, agent_status), else None."""
    a = item.answer
    return getattr(a.obj.body, name, None) if a and a.obj and a.status == 200 else None


def _cycle_of(report: Any) -> tuple[str, ...]:
    st = report.obj.agent_status
    last = st.last_cycle
    if last is None:
        return (report.report_id,)
    return str(st.started_at), str(last.started_at), str(last.finished_at)


STATUS_KEPT = ("software", "started_at", "channel_enabled", "update_mode", "dropped_reports")


@check("MS-CH-19", classes=CHANNEL, role="agent")
async def channel_requests_change_nothing(ctx: AgentContext) -> list[Finding]:
    """After status, device list, held and fresh snapshots, refused methods and paths, invalid
    requests and a burst of fresh reads: the same status and device list, every held snapshot
    one of the agent's own polls (not a fresh read), and no fresh snapshot in a report."""
    run = _run(ctx)
    if isinstance(run, Finding):
        return [run]
    before, after = run.step("get"), run.step("after")
    if not before or not after:
        return [not_tested("the status and device list were not asked for before and after")]
    out: list[Finding] = []

    def one(items: list[Sent], path: str, name: str) -> Any:
        found = [s for s in items if s.path == path]
        return _body(found[0], name) if found else None

    old, new = one(before, "/devices", "device_list"), one(after, "/devices", "device_list")
    if old is None or new is None:
        out.append(fail("GET /devices was not answered with a DeviceList before and after"))
    else:
        gone = sorted({d.device_key for d in old.device} - {d.device_key for d in new.device})
        came = sorted({d.device_key for d in new.device} - {d.device_key for d in old.device})
        if gone or came:
            out.append(fail("the device list changed", expected="the same device keys",
                            actual=f"gone {gone}, new {came}"))  # fmt: skip
    s0, s1 = one(before, "/status", "agent_status"), one(after, "/status", "agent_status")
    if s0 is None or s1 is None:
        out.append(fail("GET /status was not answered with an AgentStatus before and after"))
    else:
        changed = [f for f in STATUS_KEPT if str(getattr(s0, f)) != str(getattr(s1, f))]
        if changed:
            f = changed[0]
            out.append(fail(f"AgentStatus {f} changed", expected=str(getattr(s0, f)),
                            actual=str(getattr(s1, f))))  # fmt: skip
    fresh = {
        (d.identity.device_key, str(d.polled_at))
        for s in run.step("fresh") + run.step("burst")
        if (d := _body(s, "device")) is not None
    }
    for s in after:
        d = _body(s, "device")
        if d is not None and (d.identity.device_key, str(d.polled_at)) in fresh:
            out.append(fail(f"{s.path} now answers the snapshot of a fresh read",
                            expected="the snapshot of the agent's last poll cycle",
                            actual=f"polledAt {d.polled_at}", excerpt=_excerpt(s)))  # fmt: skip
            break
    t0 = run.enabled_at or 0.0
    reports = {r.report_id: r for r in ctx.rec.reports() if r.t >= t0}
    per_cycle: dict[tuple[str, ...], list[str]] = {}
    for r in reports.values():
        keys = [d.identity.device_key for d in r.obj.device]
        if any((k, str(d.polled_at)) in fresh for k, d in zip(keys, r.obj.device, strict=True)):
            out.append(fail(f"report {r.sequence} carries a fresh read's snapshot"))
            break
        per_cycle.setdefault(_cycle_of(r), []).extend(keys)
    twice = [c for c, keys in per_cycle.items() if len(keys) != len(set(keys))]
    if twice:
        out.append(fail("a device was reported twice for one poll cycle (an extra report)",
                        actual=f"agentStatus/lastCycle {twice[0]}"))  # fmt: skip
    if out:
        return out
    n = sum(len(v) for v in run.steps.values())
    return [ok(f"{n} channel requests: same status and {len(new.device)} devices, held "
               f"snapshots from polls, {len(reports)} reports without fresh reads")]  # fmt: skip


@check("MS-CH-13", classes=CHANNEL, role="agent")
async def fresh_read_of_a_silent_device(ctx: AgentContext) -> Finding:
    """A fresh read of a device that answers nothing: 504 with error 5004 and retryAfter."""
    run = _run(ctx)
    if isinstance(run, Finding):
        return run
    items = run.step("fresh_fail")
    if not items:
        return not_tested("the printers were not stopped (long-poll never started)")
    s = items[0]
    a = s.answer
    if a is None or a.status != 504 or a.code != 5004 or a.retry_after is None:
        return fail(
            f"fresh read with every printer stopped: {_show(s)}",
            expected="504, error 5004 with retryAfter",
            actual=_show(s),
            excerpt=_excerpt(s),
        )
    return ok(f"504/5004, retryAfter {a.retry_after} s")


@check("MS-CH-14", classes=CHANNEL, role="agent")
async def concurrency_limits(ctx: AgentContext) -> Finding:
    """At most one fresh read per device and four requests at once; beyond: 429/5005."""
    run = _run(ctx)
    if isinstance(run, Finding):
        return run
    burst = run.step("burst")
    if len(burst) < 2 or any(s.answer is None for s in burst):
        missing = [s for s in burst if s.answer is None]
        return fail(f"{len(missing)} of {len(burst)} burst requests were never answered")
    busy = [s for s in burst if s.answer.code == 5005]
    for s in busy:
        if s.answer.status != 429 or s.answer.retry_after is None:
            return fail(f"5005 without status 429 or retryAfter: {_show(s)}", excerpt=_excerpt(s))
    first, dup = burst[0], burst[1]
    if dup.answer.status == 200 and first.answer.t > dup.answer.t:
        return fail(
            "two fresh reads of one device were served at once",
            expected="the second refused with 5005",
            actual=_show(dup),
        )
    last_sent = max(s.t for s in burst)
    overlapping = [s for s in burst if s.answer.status == 200 and s.answer.t > last_sent + 0.05]
    if len(overlapping) > 4:
        return fail(
            f"{len(overlapping)} requests were in progress at once",
            expected="at most 4",
            actual=str(len(overlapping)),
        )
    return ok(f"burst of {len(burst)}: " + "; ".join(_show(s) for s in burst))


@check("MS-CH-15", classes=CHANNEL, role="agent")
async def invalid_requests(ctx: AgentContext) -> Finding:
    """An invalid request is answered with its pipeline error; garbage is ignored."""
    run = _run(ctx)
    if isinstance(run, Finding):
        return run
    inv = run.step("invalid")
    if not inv:
        return not_tested("no invalid request was sent")
    s = inv[0]
    if s.answer is None or s.answer.code != 1008 or s.answer.status != 400:
        return fail(
            f"a schema-invalid request: {_show(s)}",
            expected="400, error 1008",
            actual=_show(s),
            excerpt=_excerpt(s),
        )
    stray = ctx.rec.peer.unmatched
    if stray:
        return fail(
            "the agent answered a request it could not read, or sent a stray answer",
            excerpt=excerpt_of(stray[0].raw, 600),
        )
    after = run.step("after_garbage")
    if not after or after[0].answer is None or after[0].answer.status != 200:
        return fail(
            "the channel did not serve a GET after unreadable input",
            actual=_show(after[0]) if after else "not sent",
        )
    return ok("invalid request → 1008 under its requestId; garbage ignored; channel still serves")


@check("MS-CH-16", classes=CHANNEL, role="agent")
async def channel_reopened(ctx: AgentContext) -> Finding:
    """A channel the manager closed is opened again."""
    run = _run(ctx)
    if isinstance(run, Finding):
        return run
    if run.closed_at is None:
        return not_tested("the channel was not a WebSocket when the harness meant to close it")
    if run.reopened_at is None:
        return fail(
            f"not reopened within {REOPEN_WITHIN:.0f} s of the close", excerpt=ctx.agent_log()
        )
    return ok(f"reopened {run.reopened_at - run.closed_at:.1f} s after the close")


@check("MS-MSG-9", classes=CHANNEL, role="agent")
async def one_response_per_request(ctx: AgentContext) -> Finding:
    """Every readable request gets one ChannelResponse with its requestId and one document."""
    run = _run(ctx)
    if isinstance(run, Finding):
        return run
    sent = [s for s in ctx.rec.peer.sent if s.request_id]
    bad = [s for s in sent if s.answer is None or s.answer.problem or s.answer.obj is None]
    if bad:
        return fail(
            f"{len(bad)} of {len(sent)} requests got no valid ChannelResponse "
            f"(first: {_show(bad[0])})",
            excerpt=_excerpt(bad[0]),
        )
    return ok(f"{len(sent)} requests, each answered once by a valid ChannelResponse")


@check("MS-CONF-6", classes=CHANNEL, role="agent")
async def channel_capabilities_declared(ctx: AgentContext) -> Finding:
    """An Agent-Channel agent declares channel-websocket and channel-longpoll."""
    enr = [r for r in ctx.rec.received if r.kind == "Enrollment"]
    if not enr:
        return fail("the agent never enrolled")
    caps = {c.value for c in enr[0].obj.capability}
    want = {"channel-websocket", "channel-longpoll"}
    if not want <= caps:
        return fail(
            "the Enrollment lacks the channel capabilities",
            expected=str(sorted(want)),
            actual=str(sorted(caps)),
        )
    return ok(f"capabilities {sorted(caps)}")


ERROR_AUDIT = ("MS-ERR-1", "MS-MSG-7", "MS-ERR-2", "MS-ERR-4", "MS-XML-11")


def _error_problems(item: Sent) -> dict[str, str]:
    """What is wrong with one Error the agent answered, by requirement."""
    a = item.answer
    assert a is not None and a.obj is not None
    err = a.obj.body.error
    code, spec = int(err.code), BY_CODE.get(int(err.code))
    out: dict[str, str] = {}
    if spec is None and not 9000 <= code <= 9999:
        out["MS-ERR-2"] = f"code {code} is neither in Table 13-1 nor in the vendor range"
    elif spec is not None and a.status != spec.http_status:
        out["MS-ERR-2"] = f"status {a.status} for {code}, the table gives {spec.http_status}"
    if spec is not None and err.name != spec.name:
        out["MS-ERR-1"] = out["MS-MSG-7"] = f"name {err.name} for {code}, not {spec.name}"
    elif not (err.message or "").strip():
        out["MS-ERR-1"] = out["MS-MSG-7"] = f"error {code} without a message"
    elif spec is not None and spec.retry and err.retry_after is None:
        out["MS-ERR-1"] = out["MS-MSG-7"] = f"error {code} without retryAfter"
    if 9000 <= code <= 9999 and not re.fullmatch(r"[A-Z][A-Z0-9_]+", err.name or ""):
        out["MS-ERR-4"] = f"vendor error {code} named {err.name!r}"
    loc = err.location
    if code in (1001, 1002, 1004, 1008) and (loc is None or loc.line is None):
        out["MS-XML-11"] = f"error {code} without a line in location"
    return out


@check(*ERROR_AUDIT, classes=CORE + CHANNEL, role="agent")
async def channel_errors_audit(ctx: AgentContext) -> list[Finding]:
    """Every Error the agent answered over the channel: table code, name, status, message."""
    if ctx.channel is None:
        why = "an agent sends Error documents only over the channel; Agent-Channel is not claimed"
        return [not_tested(why, r) for r in ERROR_AUDIT]
    run = _run(ctx)
    if isinstance(run, Finding):
        return [run]
    errors = [s for s in ctx.rec.peer.sent if s.answer is not None and s.answer.code is not None]
    if not errors:
        return [not_tested("the agent answered no request with an Error", r) for r in ERROR_AUDIT]
    found: dict[str, tuple[Sent, str]] = {}
    for item in errors:
        for req, why in _error_problems(item).items():
            found.setdefault(req, (item, why))
    out = []
    codes = sorted({s.answer.code for s in errors if s.answer and s.answer.code})
    for req in ERROR_AUDIT:
        if req in found:
            item, why = found[req]
            out.append(fail(f"{_show(item)}: {why}", req, excerpt=_excerpt(item)))
        elif req == "MS-ERR-4" and not any(9000 <= c <= 9999 for c in codes):
            out.append(ok(f"no vendor codes used among {len(errors)} Errors ({codes})", req))
        else:
            out.append(ok(f"{len(errors)} Errors, codes {codes}", req))
    return out


@check("MS-XML-7", classes=CORE + CHANNEL, role="agent")
async def pipeline_order(ctx: AgentContext) -> Finding:
    """A request failing two pipeline steps is refused with the earlier step's code."""
    if ctx.channel is None:
        return not_tested("an agent receives documents only over the channel; not claimed")
    run = _run(ctx)
    if isinstance(run, Finding):
        return run
    items = run.step("order")
    if len(items) != 2:
        return not_tested("the pipeline-order requests were not sent")
    first = _expect("MS-XML-7", items[:1], 400, 1002, "DOCTYPE and schema-invalid")
    if first.status != Status.PASS:
        return first
    return _expect("MS-XML-7", items[1:], 400, 1004, "nested 40 deep and schema-invalid")
