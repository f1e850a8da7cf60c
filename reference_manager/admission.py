"""Which requests may start, and how much body memory they hold (sans-IO; issue 9, cases 4, 5).

Slots (MS-LIM-8): at most `total` requests in progress, at most `per_address` from one client
address, and a `reserve` of the total that only reports naming an enrolled, unrevoked agent
may take, at most `per_agent` of them per named agent (beyond that its requests count as any
other's): slow bodies from any number of addresses that name no such agent, or one known
agent's id, leave the reserve to the fleet.

Memory (MS-LIM-10): the bodies kept in memory by all requests in progress together stay within
`limit` bytes; a request that would pass it is refused, and gives back what it held when done.
"""

from __future__ import annotations

from collections import Counter


class Slots:
    def __init__(self, total: int, reserve: int, per_address: int, per_agent: int) -> None:
        self.total, self.reserve = total, reserve
        self.per_address, self.per_agent = per_address, per_agent
        self.in_flight = 0
        self.unknown = 0  # in progress without an enrolled, unrevoked agent named
        self._addresses: Counter[str] = Counter()
        self._agents: Counter[str] = Counter()

    def counted(self, agent: str | None) -> str | None:
        """The known agent a request is counted for: None (as any other) beyond its share."""
        return agent if agent is not None and self._agents[agent] < self.per_agent else None

    def busy(self, addr: str, agent: str | None) -> str | None:
        """Why a request from `addr` counted for `agent` (None: none) may not start now."""
        if self.in_flight >= self.total:
            return f"{self.in_flight} messages are being processed"
        if self._addresses[addr] >= self.per_address:  # one address never takes every slot
            return f"{self.per_address} messages from {addr} are being processed"
        if agent is None and self.unknown >= self.total - self.reserve:
            return f"{self.unknown} messages of no enrolled agent are being processed"
        return None

    def take(self, addr: str, agent: str | None) -> None:
        self.in_flight += 1
        self._addresses[addr] += 1
        if agent is None:
            self.unknown += 1
        else:
            self._agents[agent] += 1

    def give(self, addr: str, agent: str | None) -> None:
        self.in_flight -= 1
        _drop(self._addresses, addr)
        if agent is None:
            self.unknown -= 1
        else:
            _drop(self._agents, agent)


def _drop(counts: Counter[str], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]


class BodyMemory:
    """The bytes of request bodies held in memory, over all requests in progress."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def hold(self) -> Hold:
        return Hold(self)


class Hold:
    """What one request holds of a BodyMemory; `release` when the request ends."""

    def __init__(self, memory: BodyMemory) -> None:
        self.memory = memory
        self.bytes = 0

    def take(self, n: int) -> bool:
        """Hold n more bytes; False (nothing taken) when that would pass the limit."""
        if self.memory.held + n > self.memory.limit:
            return False
        self.memory.held += n
        self.bytes += n
        return True

    def release(self) -> None:
        self.memory.held -= self.bytes
        self.bytes = 0
