"""A TCP tap in front of the harness's TLS manager: what each connection of the agent did.

The manager (Hypercorn serving HTTPS) listens on a private port; the tap listens on the port
the agent is given and copies bytes both ways, unchanged. For each connection it notes whether
the agent opened with a TLS handshake record or with plain text, and the protocol version the
server chose, read from the ServerHello (which is never encrypted: TLS 1.3 names itself in the
`supported_versions` extension). A handshake the agent refuses leaves a connection with no
request at the manager; a request means the agent accepted the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from metersync_conformance.peers.proxy import LoopbackServer

HANDSHAKE = 0x16
SERVER_HELLO = 0x02
SUPPORTED_VERSIONS = 0x002B
VERSIONS = {0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2"}
VERSIONS[0x0304] = "TLSv1.3"
PEEK = 4096  # bytes of each direction kept for parsing


@dataclass
class Connection:
    t: float  # time.monotonic() at accept
    first: bytes = b""  # the agent's first bytes
    server_first: bytes = b""
    closed: bool = False

    @property
    def plain_text(self) -> bool:
        """The agent spoke first and not with a TLS handshake record."""
        return bool(self.first) and self.first[0] != HANDSHAKE

    @property
    def version(self) -> str | None:
        """The version the server chose (None: no ServerHello, so no handshake)."""
        return server_hello_version(self.server_first)


@dataclass
class TapLog:
    connections: list[Connection] = field(default_factory=list)

    def closed(self) -> int:
        return sum(c.closed for c in self.connections)

    def settled(self) -> bool:
        """At least one connection, and every one of them closed."""
        return bool(self.connections) and all(c.closed for c in self.connections)


def server_hello_version(data: bytes) -> str | None:
    """The negotiated version named by the first ServerHello in `data`, if complete."""
    if len(data) < 5 or data[0] != HANDSHAKE:
        return None
    body = data[5 : 5 + int.from_bytes(data[3:5], "big")]
    if len(body) < 4 or body[0] != SERVER_HELLO:
        return None
    hello = body[4 : 4 + int.from_bytes(body[1:4], "big")]
    if len(hello) < 35:
        return None
    legacy = int.from_bytes(hello[0:2], "big")
    at = 34 + 1 + hello[34]  # version, random, session id
    at += 3  # cipher suite, compression method
    if len(hello) >= at + 2:
        end = at + 2 + int.from_bytes(hello[at : at + 2], "big")
        at += 2
        while at + 4 <= min(end, len(hello)):
            kind = int.from_bytes(hello[at : at + 2], "big")
            size = int.from_bytes(hello[at + 2 : at + 4], "big")
            if kind == SUPPORTED_VERSIONS and size == 2:
                legacy = int.from_bytes(hello[at + 4 : at + 6], "big")
            at += 4 + size
    return VERSIONS.get(legacy, f"0x{legacy:04x}")


class TlsTap(LoopbackServer):
    def __init__(self, upstream: tuple[str, int], host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.upstream = upstream
        self.log = TapLog()
        self.changed = asyncio.Event()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(time.monotonic())
        self.log.connections.append(conn)
        self.changed.set()
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            conn.closed = True
            return
        await asyncio.gather(
            self._pipe(reader, up_w, conn, True), self._pipe(up_r, writer, conn, False)
        )
        conn.closed = True
        self.changed.set()

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, conn: Connection, agent: bool
    ) -> None:
        try:
            while data := await src.read(65536):
                if agent and len(conn.first) < PEEK:
                    conn.first += data[: PEEK - len(conn.first)]
                elif not agent and len(conn.server_first) < PEEK:
                    conn.server_first += data[: PEEK - len(conn.server_first)]
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()
