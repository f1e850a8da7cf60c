"""Listening sockets of a process tree, from /proc (Linux): is the agent a server anywhere?

A TCP socket in state LISTEN is a server. A UDP socket has no state; it is a listener when it
is bound to a fixed port (outside the kernel's ephemeral range) with no peer. An SNMP client
socket is bound to an ephemeral port. The trap receiver is the one UDP listener the spec allows,
and only where it is provisioned (MS-CONF-2, MS-TRAP-1): the senses run judges it with
`bound_udp`, every unconnected UDP socket whatever its port.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

TCP_LISTEN = "0A"
ALLOWED_UDP_PORTS: frozenset[int] = frozenset()  # not provisioned: none (MS-TRAP-1)


@dataclass(frozen=True)
class Listener:
    pid: int
    proto: str  # tcp, tcp6, udp, udp6
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.proto} {self.address}:{self.port} (pid {self.pid})"


def process_tree(root: int) -> list[int]:
    """root and every descendant, by walking /proc/*/stat parent ids."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def _ephemeral() -> range:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(lo), int(hi) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def _addr(hex_addr: str) -> tuple[str, int]:
    host, port = hex_addr.split(":")
    if len(host) == 8:
        ip = ".".join(str(b) for b in reversed(bytes.fromhex(host)))
    else:
        ip = "[" + host.lower() + "]"
    return ip, int(port, 16)


def _rows(pids: list[int], protos: tuple[str, ...]) -> list[tuple[int, str, list[str]]]:
    out = []
    for pid in pids:
        inodes = _socket_inodes(pid)
        for proto in protos if inodes else ():
            try:
                lines = Path(f"/proc/{pid}/net/{proto}").read_text().splitlines()[1:]
            except OSError:
                continue
            rows = map(str.split, lines)
            out += [(pid, proto, c) for c in rows if len(c) >= 10 and c[9] in inodes]
    return out


def bound_udp(pids: list[int]) -> list[Listener]:
    """Every UDP socket of the processes without a peer (clients and listeners alike)."""
    found = []
    for pid, proto, cols in _rows(pids, ("udp", "udp6")):
        ip, port = _addr(cols[1])
        if _addr(cols[2])[1] == 0:
            found.append(Listener(pid, proto, ip, port))
    return found


def listeners(pids: list[int]) -> list[Listener]:
    found: list[Listener] = []
    ephemeral = _ephemeral()
    for pid, proto, cols in _rows(pids, ("tcp", "tcp6", "udp", "udp6")):
        ip, port = _addr(cols[1])
        _, rport = _addr(cols[2])
        if proto.startswith("tcp"):
            if cols[3] == TCP_LISTEN:
                found.append(Listener(pid, proto, ip, port))
        elif rport == 0 and port not in ephemeral and port not in ALLOWED_UDP_PORTS:
            found.append(Listener(pid, proto, ip, port))
    return found
