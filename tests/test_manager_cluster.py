"""Two `metersync manager serve` processes on one PostgreSQL database (MS-OPS-5..7).

A fresh database per test; the processes are real servers on loopback ports. The agent's
channel is a WebSocket held by process A; the operator asks process B. The per-agent rate
budget and the failed-enrollment budget are spent across both; a signature accepted by one
is refused by the other; a stopped process stops holding channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_channel import CLI, Proc
from test_end_to_end import _free_tcp_port, _wait
from test_manager_support import MEDIA, Dev, TestAgent, enrolled, pg_schema

from metersync import signing, xml_edge
from metersync_manager import ingest
from metersync_manager.store import Store

EXAMPLES = Path(__file__).resolve().parents[1] / "spec" / "examples" / "valid"
NS = "{urn:metersync:v1}"
PER_MINUTE = 60


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A database of its own (CREATE DATABASE), dropped afterwards."""
    import psycopg

    with pg_schema() as schema_url:  # skips (or fails under CI) without PostgreSQL
        base = schema_url.split("?", 1)[0]
        name = f"ms_cluster_{uuid.uuid4().hex[:12]}"
        admin = base.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield base.rsplit("/", 1)[0] + "/" + name
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


class Serve(Proc):
    """`metersync manager serve` over the shared database."""

    def __init__(self, url: str, log: Path) -> None:
        self.port = _free_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [*CLI, "manager", "serve", "--bind", f"127.0.0.1:{self.port}", "--database", url]
        argv += ["--rate-limit", str(PER_MINUTE), "--enroll-failures", "3", "--no-fleet"]
        super().__init__(argv, log)
        up = lambda: httpx.get(self.url + "/healthz").status_code == 200  # noqa: E731
        _wait("the manager", up, 60, self.proc, str(log))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with fresh_database() as url:
        store = Store(url)
        store.migrate()
        agent = enrolled(store)
        token = ingest.new_token()
        store.add_operator_token(ingest.hash_token(token), "tests", ingest.utcnow())
        store.close()
        a = b = None
        try:
            a, b = Serve(url, tmp_path / "a.log"), Serve(url, tmp_path / "b.log")
            yield {"a": a, "b": b, "agent": agent, "api": {"Authorization": f"Bearer {token}"}}
        finally:
            for s in (a, b):
                if s is not None:
                    s.stop()


def _upgrade_headers(agent: TestAgent) -> dict[str, str]:
    date = signing.format_date(time.time())
    sig = agent.sign(signing.bodyless_bytes("GET", "/v1/channel", date))
    return {signing.DATE_HEADER: date, signing.HEADER: sig}


def _answer_to(request: str) -> str:
    """The example DeviceList answer, for the ChannelRequest received."""
    rid = xml_edge.parse_tree(request.encode()).findtext(f"{NS}requestId")
    text = (EXAMPLES / "channel-response-devices.xml").read_text(encoding="utf-8")
    return re.sub(r"<requestId>[^<]*</requestId>", f"<requestId>{rid}</requestId>", text, count=1)


async def _refused_code(url: str, headers: dict[str, str]) -> str | None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    try:
        ws = await connect(
            url,
            subprotocols=["metersync.v1"],
            additional_headers=headers,  # type: ignore[list-item]
            proxy=None,
        )
    except InvalidStatus as exc:
        return xml_edge.parse_tree(exc.response.body).findtext(f"{NS}code")
    await ws.close()
    return None


async def _channel_scenario(c: dict[str, Any]) -> None:
    from websockets.asyncio.client import connect

    a, b, agent, api = c["a"], c["b"], c["agent"], c["api"]
    headers = _upgrade_headers(agent)
    ws_a = a.url.replace("http:", "ws:") + "/v1/channel"
    async with connect(
        ws_a,
        subprotocols=["metersync.v1"],
        additional_headers=headers,  # type: ignore[list-item]
        proxy=None,
    ) as ws:

        async def serve_requests() -> None:
            async for msg in ws:
                await ws.send(_answer_to(str(msg)))

        answering = asyncio.create_task(serve_requests())
        async with httpx.AsyncClient(timeout=60, headers=api) as http:
            listed = await http.get(b.url + "/api/v1/channels")
            assert [i["agentId"] for i in listed.json()["items"]] == [agent.agent_id]
            r = await http.get(
                f"{b.url}/api/v1/agents/{agent.agent_id}/channel", params={"path": "/devices"}
            )
            assert r.status_code == 200, r.text
            assert r.headers["MeterSync-Channel-Transport"] == "websocket"
            root = xml_edge.parse_tree(r.content)
            assert root.tag == f"{NS}DeviceList" and len(root.findall(f"{NS}device")) == 2
            # The same signed upgrade, replayed to the other process: 2005 (MS-CH-3, MS-OPS-5).
            ws_b = b.url.replace("http:", "ws:") + "/v1/channel"
            assert await _refused_code(ws_b, headers) == "2005"
        answering.cancel()
        with contextlib.suppress(BaseException):
            await answering


def test_operator_read_through_the_process_without_the_channel(cluster: dict[str, Any]) -> None:
    asyncio.run(_channel_scenario(cluster))
    a, b, agent = cluster["a"], cluster["b"], cluster["agent"]
    # A stops: it no longer holds the channel, B answers "not connected" (MS-OPS-7).
    a.stop()
    r = httpx.get(
        f"{b.url}/api/v1/agents/{agent.agent_id}/channel",
        params={"path": "/devices"},
        headers=cluster["api"],
        timeout=60,
    )
    assert r.status_code == 409, r.text


def test_rate_budget_is_shared(cluster: dict[str, Any]) -> None:
    """Alternating reports: each process sees fewer than its limit, together they exceed it
    (MS-LIM-5, MS-OPS-5). Separate budgets would accept every one."""
    a, b, agent = cluster["a"], cluster["b"], cluster["agent"]
    sent = 2 * (PER_MINUTE - 1)
    refused = {a.url: 0, b.url: 0}
    accepted = 0
    started = time.monotonic()
    with httpx.Client(timeout=30) as http:
        for i in range(sent):
            target = (a, b)[i % 2].url
            body = agent.report([Dev(f"sn:hp:cluster{i}")], sequence=i + 1)
            r = http.post(target + "/v1/reports", content=body, headers=agent.headers(body))
            if r.status_code == 200:
                accepted += 1
                continue
            assert r.status_code == 429, r.text
            assert xml_edge.parse_tree(r.content).findtext(f"{NS}code") == "4001"
            assert int(r.headers["Retry-After"]) >= 1
            refused[target] += 1
    elapsed = time.monotonic() - started
    assert refused[a.url] > 0 and refused[b.url] > 0, refused
    assert accepted <= PER_MINUTE + elapsed + 1  # the bucket refills at 1 per second


def test_failed_enrollments_counted_across_processes(cluster: dict[str, Any]) -> None:
    """--enroll-failures 3: two refused at A, one at B, and the next at B waits (MS-LIM-6)."""
    a, b = cluster["a"], cluster["b"]
    codes = []
    with httpx.Client(timeout=30) as http:
        for target in (a, a, b, b):
            stranger = TestAgent()
            body = stranger.enrollment("not-a-token-" + uuid.uuid4().hex)
            r = http.post(
                target.url + "/v1/enroll",
                content=body,
                headers={"Content-Type": MEDIA, **stranger.headers(body)},
            )
            codes.append(xml_edge.parse_tree(r.content).findtext(f"{NS}code"))
    assert codes[:3] == [codes[0]] * 3 and codes[0] != "4001", codes
    assert codes[3] == "4001", codes
