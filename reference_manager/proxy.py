"""Behind a reverse proxy (MS-OPS-1): the client address and scheme from forwarding headers,
honoured only when the peer is a trusted proxy.

`X-Forwarded-For` (or RFC 7239 `Forwarded: for=…`) is read right to left, skipping trusted
proxies; the first address that is not one is the client, as nginx's `real_ip_recursive` and
Hypercorn's `ProxyFixMiddleware` do (the latter trusts every peer, so we check the peer first).
A peer outside the trusted networks keeps its own address whatever headers it sends.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_FOR = re.compile(r'(?i)(?:^|[;,\s])for\s*=\s*"?\[?([^\]";,\s]+)')
_PROTO = re.compile(r'(?i)(?:^|[;,\s])proto\s*=\s*"?(https?)')


def parse_networks(cidrs: Iterable[str]) -> list[Network]:
    """Networks from `--trusted-proxy` values (an address alone is a /32 or /128)."""
    return [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs]


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip().strip('"')
    if text.startswith("["):  # [v6]:port
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class TrustedProxies:
    """ASGI middleware: rewrites scope client (and scheme) for requests from trusted peers."""

    def __init__(self, app: Any, networks: list[Network]) -> None:
        self.app = app
        self.networks = networks

    def trusted(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return addr is not None and any(addr in n for n in self.networks)

    def client(self, peer: str, headers: dict[bytes, bytes]) -> tuple[str, str | None]:
        """(client address, forwarded scheme or None) for a request from `peer`."""
        if not self.trusted(_address(peer)):
            return peer, None
        fwd = headers.get(b"forwarded", b"").decode("latin-1")
        hops = _FOR.findall(fwd) if fwd else []
        proto_m = _PROTO.search(fwd) if fwd else None
        if not hops:
            xff = headers.get(b"x-forwarded-for", b"").decode("latin-1")
            hops = [h for h in xff.split(",") if h.strip()]
        proto = proto_m.group(1).lower() if proto_m else None
        if proto is None:
            xfp = headers.get(b"x-forwarded-proto", b"").decode("latin-1").strip().lower()
            proto = xfp if xfp in ("http", "https") else None
        client = peer
        for hop in reversed(hops):
            addr = _address(hop)
            if addr is None:
                break  # an unreadable hop: trust nothing to its left
            client = str(addr)
            if not self.trusted(addr):
                break
        return client, proto

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("client"):
            headers: dict[bytes, bytes] = {}
            for k, v in scope["headers"]:
                headers[k] = headers[k] + b"," + v if k in headers else v
            host, port = scope["client"]
            client, proto = self.client(host, headers)
            if client != host or proto:
                scope = dict(scope, client=(client, port))
                if proto:
                    secure = proto == "https"
                    ws = scope["type"] == "websocket"
                    scope["scheme"] = ("wss" if secure else "ws") if ws else proto
        await self.app(scope, receive, send)


class RootPath:
    """ASGI middleware for a manager served under a prefix (MS-OPS-2): sets `root_path` and
    gives routing the full path whether the proxy kept the prefix or stripped it."""

    def __init__(self, app: Any, root_path: str) -> None:
        self.app = app
        self.root = root_path.rstrip("/")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            raw: bytes = scope.get("raw_path") or path.encode()
            if not (path == self.root or path.startswith(self.root + "/")):
                path, raw = self.root + path, self.root.encode() + raw
            scope = dict(scope, root_path=self.root, path=path, raw_path=raw)
        await self.app(scope, receive, send)
