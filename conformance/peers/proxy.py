"""A small HTTP proxy on loopback for the agent under test (MS-HTTP-13).

It forwards absolute-form requests (`POST http://host:port/path HTTP/1.1`) to the harness
manager with `Connection: close`, marks each forwarded request with a header the manager
records, and tunnels `CONNECT` byte for byte. It notes every request line and the
`Proxy-Authorization` it was given, so a check can tell that the agent went through it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Self
from urllib.parse import urlsplit

MARK = "X-Conformance-Proxy"


@dataclass
class ProxyLog:
    requests: list[tuple[str, str]] = field(default_factory=list)  # (request line, auth)


class LoopbackServer:
    """A TCP server of the harness on a free loopback port; subclasses serve connections."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.Task[None]] = set()  # connections in progress

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._tracked, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _tracked(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._open.add(task)  # type: ignore[arg-type]
        try:
            await self._serve(reader, writer)
        finally:
            self._open.discard(task)  # type: ignore[arg-type]

    async def close(self) -> None:
        """Stop listening and end the connections still open (an agent's kept-alive tunnel),
        so that no task outlives the run ("Task was destroyed but it is pending")."""
        if self._server is not None:
            self._server.close()
            for task in list(self._open):
                task.cancel()
            await asyncio.gather(*self._open, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class Proxy(LoopbackServer):
    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.log = ProxyLog()

    def url(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@{self.host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        line = (await reader.readline()).decode("latin-1").strip()
        if not line:
            return False
        headers: list[tuple[str, str]] = []
        while True:
            h = (await reader.readline()).decode("latin-1").rstrip("\r\n")
            if not h:
                break
            name, _, value = h.partition(":")
            headers.append((name.strip(), value.strip()))
        auth = next((v for k, v in headers if k.lower() == "proxy-authorization"), "")
        self.log.requests.append((line, auth))
        method, target, _version = line.split(" ", 2)
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            up_r, up_w = await asyncio.open_connection(host, int(port))
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
            return False
        url = urlsplit(target)
        length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
        body = await reader.readexactly(length) if length else b""
        path = url.path + (f"?{url.query}" if url.query else "")
        keep = [
            (k, v)
            for k, v in headers
            if k.lower() not in ("proxy-authorization", "proxy-connection", "connection")
        ]
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in keep)
        head += f"{MARK}: 1\r\nConnection: close\r\n\r\n"
        up_r, up_w = await asyncio.open_connection(url.hostname, url.port or 80)
        up_w.write(head.encode("latin-1") + body)
        await up_w.drain()
        answer = await up_r.read()
        up_w.close()
        writer.write(_close_delimited(answer))
        await writer.drain()
        return False


def _close_delimited(answer: bytes) -> bytes:
    """The upstream answer, told to close the client connection after it."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    lines = [x for x in head.split(b"\r\n") if not x.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + sep + body


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        dst.close()
