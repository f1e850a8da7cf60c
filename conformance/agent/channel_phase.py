"""The scenario's channel phase (Agent-Channel): the harness manager uses the agent's channel.

Run after the other phases, with the agent's channel off until then (so MS-CH-1 is judged on
the whole run before it). The agent is restarted with `channel enabled="true"`, then over the
WebSocket it opens the harness sends: the four GETs of Table 10-1; POST, PUT and DELETE
(MS-CH-7); unknown paths, a query, an unknown device (MS-CH-9); an invalid request with a
readable requestId and garbage without one (MS-CH-15); a burst of six fresh reads, two of them
for the same device (MS-CH-14); then the status, the device list and each held snapshot again,
which all those requests must not have changed (MS-CH-19). It closes the WebSocket (the agent
must reopen it, MS-CH-16), then refuses upgrades like a blocking proxy (the agent must fall back
to long-poll, MS-CH-2) and asks again over long-poll; last, with every printer stopped, a fresh
read (MS-CH-13). The checks (agent/checks/channel.py) judge the records.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metersync_conformance.peers.channel import ChannelPeer, Sent

OPEN_WAIT = 30.0
ANSWER_WAIT = 40.0  # the harness's device budget (20 s) + 15 s + scheduling (MS-CH-17)
UNKNOWN_KEY = "sn:conformance:no-such-device"


@dataclass
class ChannelRun:
    """What happened in the channel phase, for the checks."""

    enabled_at: float | None = None  # monotonic: the agent restarted with the channel on
    opened: bool = False
    steps: dict[str, list[Sent]] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # device keys the agent reported
    closed_at: float | None = None  # the harness closed the WebSocket
    reopened_at: float | None = None
    blocked_at: float | None = None  # upgrades refused from here on
    longpoll_at: float | None = None  # first poll after the refusal
    printers_stopped: bool = False
    notes: list[str] = field(default_factory=list)

    def step(self, name: str) -> list[Sent]:
        return self.steps.get(name, [])


async def _answers(peer: ChannelPeer, items: list[Sent], timeout: float = ANSWER_WAIT) -> None:
    await peer.wait_for(lambda: all(s.answer is not None for s in items), timeout)


async def _ask_all(
    peer: ChannelPeer, run: ChannelRun, name: str, pairs: list[tuple[str, str]]
) -> None:
    """Ask one after the other (answers awaited), so concurrency limits never interfere."""
    for method, path in pairs:
        item = peer.request(method, path)
        run.steps.setdefault(name, []).append(item)
        await _answers(peer, [item])


async def run_channel_phase(
    ctx: Any, agent: Any, prov: Path, write_provisioning: Any, responders: list[Any]
) -> None:
    peer: ChannelPeer = ctx.rec.peer
    run = ctx.channel = ChannelRun()
    reports = ctx.rec.accepted_reports()
    seen: dict[str, None] = {}
    for r in reports:
        for d in r.obj.device:
            seen.setdefault(d.identity.device_key, None)
    run.keys = list(seen)

    ctx.exit_codes.append(await agent.stop())
    prov.write_bytes(write_provisioning(channel=True))
    run.enabled_at = time.monotonic()
    agent.start()
    run.opened = await peer.wait_for(peer.connected, OPEN_WAIT)
    if not run.opened:
        run.notes.append(f"no channel opened within {OPEN_WAIT:.0f} s of enabling it")
        return
    # An agent knows its devices again once it has polled them since its start.
    since = run.enabled_at
    await ctx.rec.wait_for(
        lambda: any(r.t > since and r.obj.device for r in ctx.rec.accepted_reports()), OPEN_WAIT
    )
    key = run.keys[0] if run.keys else UNKNOWN_KEY
    await _ask_all(
        peer,
        run,
        "get",
        [("GET", "/status"), ("GET", "/devices"), ("GET", f"/devices/{key}")],
    )
    await _ask_all(peer, run, "fresh", [("GET", f"/devices/{key}/fresh")])
    await _ask_all(
        peer,
        run,
        "refuse",
        [("POST", f"/devices/{key}/fresh"), ("PUT", "/status"), ("DELETE", "/devices")],
    )
    await _ask_all(
        peer,
        run,
        "notfound",
        [
            ("GET", "/configuration"),
            ("GET", "/status?verbose=1"),
            ("GET", f"/devices/{UNKNOWN_KEY}"),
            ("GET", f"/devices/{key}/fresh/more"),
        ],
    )
    # MS-CH-15: a schema-invalid request whose requestId is readable, then one without.
    rid = str(uuid.uuid4())
    bad = (
        f'<ChannelRequest xmlns="urn:metersync:v1" version="1.0"><requestId>{rid}</requestId>'
        f"<method>GET</method><path>/status</path><createdAt>yesterday</createdAt>"
        f"</ChannelRequest>"
    ).encode()
    invalid = peer.request("GET", "/status", raw=bad, request_id=rid)
    garbage = peer.request("GET", "", raw=b"<ChannelRequest xmlns='urn:metersync:v1'><request")
    run.steps["invalid"] = [invalid]
    run.steps["garbage"] = [garbage]
    # MS-XML-7: two faults each; the code of the earlier pipeline step must win.
    order = []
    for prefix, inner in (
        ("<!DOCTYPE ChannelRequest>", ""),  # step 3 (1002) before step 8 (1008)
        ("", "<x>" * 40 + "</x>" * 40),  # step 5 (1004) before step 8 (1008)
    ):
        orid = str(uuid.uuid4())
        doc = (
            f'{prefix}<ChannelRequest xmlns="urn:metersync:v1" version="1.0">'
            f"<requestId>{orid}</requestId><method>GET</method><path>/status</path>"
            f"<createdAt>yesterday</createdAt>{inner}</ChannelRequest>"
        ).encode()
        order.append(peer.request("GET", "/status", raw=doc, request_id=orid))
    run.steps["order"] = order
    await _answers(peer, [invalid, *order])
    await asyncio.sleep(0.5)  # time for an answer to garbage that should not come
    await _ask_all(peer, run, "after_garbage", [("GET", "/status")])

    # MS-CH-14: six fresh reads at once, two of the same device.
    burst_keys = [key, *run.keys[:5]] if run.keys else [key]
    burst = [peer.request("GET", f"/devices/{k}/fresh") for k in burst_keys]
    run.steps["burst"] = burst
    await _answers(peer, burst)
    # MS-CH-19: what the agent holds after every kind of request; compared with "get".
    again = [("GET", "/status"), ("GET", "/devices")]
    again += [("GET", f"/devices/{k}") for k in dict.fromkeys(burst_keys)]
    await _ask_all(peer, run, "after", again)

    # MS-CH-16: the channel closes; the agent opens it again.
    upgrades = len([a for a in peer.attempts if a.kind == "websocket"])
    if peer.transport == "websocket":
        run.closed_at = time.monotonic()
        peer.kick.set()
        if await peer.wait_for(
            lambda: (
                len([a for a in peer.attempts if a.kind == "websocket"]) > upgrades
                and peer.connected()
            ),
            OPEN_WAIT,
        ):
            run.reopened_at = next(a.t for a in reversed(peer.attempts) if a.kind == "websocket")

    # MS-CH-2: upgrades refused (a blocking proxy): the agent falls back to long-poll.
    run.blocked_at = time.monotonic()
    peer.refuse_websocket = True
    peer.kick.set()

    def polling() -> bool:
        return any(a.kind == "poll" and a.t > (run.blocked_at or 0) for a in peer.attempts)

    if await peer.wait_for(polling, OPEN_WAIT):
        run.longpoll_at = next(
            a.t for a in peer.attempts if a.kind == "poll" and a.t > (run.blocked_at or 0)
        )
        await _ask_all(
            peer,
            run,
            "longpoll",
            [("GET", "/status"), ("GET", f"/devices/{key}"), ("POST", "/status")],
        )
        # MS-CH-13: every printer gone, a fresh read has nothing to read.
        for r in responders:
            if r is not None:
                await asyncio.to_thread(r.stop)
        run.printers_stopped = True
        await _ask_all(peer, run, "fresh_fail", [("GET", f"/devices/{key}/fresh")])
        await asyncio.sleep(HOLD_MARGIN)  # a few more polls, to judge "poll again at once"


HOLD_MARGIN = 1.0
