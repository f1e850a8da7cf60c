"""The harness's agents keep to what the spec allows a manager to enforce (MS-LIM-5, MS-LIM-6).

Every request the harness sends as an agent goes through `AgentTransport`, which
- paces each agent identity (the `agent` of its MeterSync-Signature header) to at most 60
  requests in any 60 s, the least a manager must accept (MS-LIM-5);
- honours `Retry-After` of a 429 to an agent's request (waits, sends again, at most twice);
- when the manager is on loopback, sends each agent's requests from an address of its own in
  127.0.0.0/8 (unsigned ones from a rotating address), so that failed enrollments, limited per
  client address (MS-LIM-6), never spend the budget of another check.

The checks of the limits themselves (rate_limit, failed_enrollments_limited) use clients of
their own (`ManagerContext.raw_client`): unpaced, one address, no retry.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import itertools
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx

from metersync import signing

PER_MINUTE = 60  # MS-LIM-5: what a manager accepts at least from each agent
WINDOW = 60.0
RETRIES = 2
MAX_WAIT = 65.0  # a longer Retry-After is not waited for: the answer stands
POOL = 4096  # loopback source addresses the agents are spread over
_AGENT = re.compile(r'agent\s*=\s*"([^"]{1,64})"')


def loopback(url: str) -> bool:
    try:
        return ipaddress.ip_address(urlsplit(url).hostname or "").is_loopback
    except ValueError:
        return False


def address_of(agent: str) -> str:
    """A stable source address in 127.32.0.0/16 for an agent identity."""
    n = int.from_bytes(hashlib.sha256(agent.encode()).digest()[:4], "big") % POOL
    return f"127.32.{n // 250 + 1}.{n % 250 + 1}"


def raw_address() -> str:
    """A source address in 127.33.0.0/16, apart from the agents': for one limit check."""
    n = secrets.randbelow(250 * 250)
    return f"127.33.{n // 250 + 1}.{n % 250 + 1}"


def retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


class AgentTransport(httpx.AsyncBaseTransport):
    def __init__(self, make: Callable[..., httpx.AsyncHTTPTransport], spread: bool) -> None:
        self._make = make
        self._spread = spread
        self._transports: dict[str | None, httpx.AsyncHTTPTransport] = {}
        self._sent: dict[str, deque[float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._rotation = itertools.count()

    def _transport(self, agent: str | None) -> httpx.AsyncHTTPTransport:
        if not self._spread:
            addr = None
        elif agent:
            addr = address_of(agent)
        else:
            addr = address_of(f"unsigned-{next(self._rotation) % 64}")
        if addr not in self._transports:
            self._transports[addr] = self._make(**({"local_address": addr} if addr else {}))
        return self._transports[addr]

    def recent(self, agent: str) -> int:
        """Requests sent as `agent` in the last minute."""
        edge = time.monotonic() - WINDOW
        return sum(1 for t in self._sent.get(agent, ()) if t > edge)

    async def _pace(self, agent: str | None) -> None:
        if agent is None:
            return
        async with self._locks.setdefault(agent, asyncio.Lock()):
            sent = self._sent.setdefault(agent, deque())
            while len(sent) >= PER_MINUTE:
                wait = sent[0] + WINDOW - time.monotonic()
                if wait <= 0:
                    sent.popleft()
                    continue
                await asyncio.sleep(wait)
            sent.append(time.monotonic())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        m = _AGENT.search(request.headers.get(signing.HEADER, ""))
        agent = m.group(1) if m else None
        transport = self._transport(agent)
        await self._pace(agent)
        resp = await transport.handle_async_request(request)
        for _ in range(RETRIES):
            wait = retry_after(resp) if resp.status_code == 429 and agent else None
            if wait is None or wait > MAX_WAIT:
                break
            await resp.aread()
            await resp.aclose()
            await asyncio.sleep(wait)
            await self._pace(agent)
            resp = await transport.handle_async_request(request)
        return resp

    async def aclose(self) -> None:
        for t in self._transports.values():
            await t.aclose()
