"""Scan targets: `10.0.0.7`, `printer.local`, `10.0.0.1-10.0.0.50`, `10.0.0.1-50`,
`10.0.0.0/22`, each with an optional `:port`; exclusions use the same syntax.

    >>> ts = TargetSet.parse(["10.0.0.0/30", "10.0.1.5:1161"], exclude=["10.0.0.2"])
    >>> list(ts)
    [('10.0.0.1', 161), ('10.0.0.3', 161), ('10.0.1.5', 1161)]

Expansion is lazy (a /8 is not materialised). A CIDR block of more than two addresses skips
its network and broadcast addresses. Hostnames are kept as written (resolved when polled).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["Target", "TargetError", "TargetSet", "parse_target"]

DEFAULT_PORT = 161
_HOST_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_-]+)*\.?$"
)


class TargetError(ValueError):
    """A target string that cannot be understood."""


@dataclass(frozen=True)
class Target:
    """One target spec: an IPv4 range [first, last] or a hostname, and a port (None = any)."""

    first: int = 0
    last: int = -1
    hostname: str | None = None
    port: int | None = None

    def __len__(self) -> int:
        return 1 if self.hostname else max(0, self.last - self.first + 1)

    def hosts(self) -> Iterator[str]:
        if self.hostname:
            yield self.hostname
            return
        for n in range(self.first, self.last + 1):
            yield str(ipaddress.IPv4Address(n))

    def covers(self, host: str, port: int) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.hostname:
            return host.lower().rstrip(".") == self.hostname.lower().rstrip(".")
        try:
            n = int(ipaddress.IPv4Address(host))
        except ValueError:
            return False
        return self.first <= n <= self.last


def _split_port(text: str) -> tuple[str, int | None]:
    if text.count(":") == 1:
        host, port_s = text.split(":")
        if not port_s.isdigit() or not 0 < int(port_s) < 65536:
            raise TargetError(f"bad port in {text!r}")
        return host, int(port_s)
    if ":" in text:
        raise TargetError(f"IPv6 targets are not supported: {text!r}")
    return text, None


def _ip(text: str, whole: str) -> int:
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        raise TargetError(f"bad IPv4 address {text!r} in {whole!r}") from None


def parse_target(text: str) -> Target:
    """Parse one target spec (see module doc)."""
    whole = text.strip()
    if not whole:
        raise TargetError("empty target")
    spec, port = _split_port(whole)
    if "/" in spec:
        try:
            net = ipaddress.IPv4Network(spec, strict=False)
        except ValueError as exc:
            raise TargetError(f"bad network {whole!r}: {exc}") from None
        first, last = int(net.network_address), int(net.broadcast_address)
        if net.num_addresses > 2:
            first, last = first + 1, last - 1
        return Target(first, last, port=port)
    if "-" in spec and spec.replace("-", "").replace(".", "").isdigit():
        a, b = spec.split("-", 1)
        first = _ip(a, whole)
        if "." in b:
            last = _ip(b, whole)
        else:  # 10.0.0.1-50: last octet only
            if not b.isdigit() or int(b) > 255:
                raise TargetError(f"bad range end in {whole!r}")
            last = (first & ~0xFF) | int(b)
        if last < first:
            raise TargetError(f"range {whole!r} ends before it starts")
        return Target(first, last, port=port)
    if spec.replace(".", "").isdigit():
        n = _ip(spec, whole)
        return Target(n, n, port=port)
    if not _HOST_RE.match(spec):
        raise TargetError(f"not an address, range, network or hostname: {whole!r}")
    return Target(hostname=spec, port=port)


@dataclass
class TargetSet:
    """Included targets minus excluded ones; iterates (host, port) lazily, without duplicates."""

    include: list[Target]
    exclude: list[Target]
    default_port: int = DEFAULT_PORT

    @classmethod
    def parse(
        cls, include: Iterable[str], exclude: Iterable[str] = (), default_port: int = DEFAULT_PORT
    ) -> TargetSet:
        return cls(
            [parse_target(t) for t in include], [parse_target(t) for t in exclude], default_port
        )

    def __iter__(self) -> Iterator[tuple[str, int]]:
        seen: set[tuple[str, int]] = set()
        for t in self.include:
            port = t.port if t.port is not None else self.default_port
            for host in t.hosts():
                key = (host, port)
                if key in seen or any(x.covers(host, port) for x in self.exclude):
                    continue
                if len(self.include) > 1:  # duplicates only possible across specs
                    seen.add(key)
                yield key

    def upper_bound(self) -> int:
        """At most this many addresses (before exclusions and duplicates)."""
        return sum(len(t) for t in self.include)
