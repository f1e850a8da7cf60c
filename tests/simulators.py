"""Real SNMP devices for tests: `snmpsim-command-responder` on loopback.

One `SnmpSimulator` is one responder process. It serves `.snmprec` files (community = file
name without `.snmprec`, relative to the data dir; for SNMPv3 the same name is the context) on
one or more UDP endpoints, each endpoint being its own SNMP engine with its own data dir, so
different loopback addresses can look like different printers::

    from simulators import Endpoint, SnmpSimulator, V3User, write_snmprec

    write_snmprec(tmp_path / "data" / "public.snmprec", [
        "1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.11.2.3.9.1",
        "1.3.6.1.2.1.43.5.1.1.1.1|65|12345",
    ])
    with SnmpSimulator(tmp_path / "data") as sim:
        host, port = sim.address          # first endpoint, e.g. ("127.0.0.1", 40123)
        ...

    # several "devices" on their own addresses, each with its own recordings:
    eps = [Endpoint("127.0.0.2", data_dir=a), Endpoint("127.0.0.3", data_dir=b)]
    with SnmpSimulator(a, endpoints=eps, v3_users=[V3User("u", "authkey12", "privkey12")]):
        ...

As a pytest fixture::

    @pytest.fixture
    def sim(tmp_path):
        ...
        with SnmpSimulator(data) as s:
            yield s

Start-up waits for each endpoint's first SNMP answer (an SNMPv3 engine-discovery probe, which
any snmpsim engine answers whatever its data files or users), never a fixed sleep. Ports are
free UDP ports picked at start. Indices are kept in a cache dir (default shared under the
system temp dir) so a restart over the same files is fast. Delay-type variation modules block
the responder's event loop: put slow devices in their own `SnmpSimulator`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "Endpoint",
    "SnmpSimulator",
    "SimulatorError",
    "V3User",
    "free_udp_port",
    "write_snmprec",
]

DEFAULT_CACHE_DIR = Path(tempfile.gettempdir()) / "metersync-snmpsim-cache"


class SimulatorError(RuntimeError):
    """The responder did not start or did not answer in time (message carries its log)."""


@dataclass(frozen=True)
class V3User:
    """An SNMPv3 USM user; protocols use snmpsim's names (MD5, SHA, SHA256…, DES, AES…)."""

    name: str
    auth_key: str | None = None
    priv_key: str | None = None
    auth_proto: str = "SHA"
    priv_proto: str = "AES"


@dataclass
class Endpoint:
    """One SNMP engine on host:port (port 0 = pick a free one) serving data_dir (None = default)."""

    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path | str | None = None


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port that was free a moment ago on host."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def write_snmprec(path: Path | str, lines: Iterable[str]) -> Path:
    """Write a `.snmprec` file (`OID|TAG|VALUE` per line), sorted by OID as snmpsim expects.

    Lines are sorted numerically by OID so GETNEXT walks behave; keep your own order by
    writing the file yourself. Creates parent directories.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [ln.strip() for ln in lines if ln.strip()]
    rows.sort(key=lambda ln: tuple(int(x) for x in ln.split("|", 1)[0].strip(".").split(".")))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def responder_executable() -> Path:
    """`snmpsim-command-responder` next to the running interpreter (the venv's bin)."""
    exe = Path(sys.executable).parent / "snmpsim-command-responder"
    if not exe.exists():
        raise SimulatorError(f"snmpsim-command-responder not found next to {sys.executable}")
    return exe


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _int(v: int) -> bytes:
    return _tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def _discovery_probe(msg_id: int) -> bytes:
    """SNMPv3 noAuthNoPriv GET with an empty engine id: every engine answers with a Report."""
    o = lambda b: _tlv(0x04, b)  # noqa: E731
    seq = lambda *p: _tlv(0x30, b"".join(p))  # noqa: E731
    header = seq(_int(msg_id), _int(65507), o(b"\x04"), _int(3))
    usm = o(seq(o(b""), _int(0), _int(0), o(b""), o(b""), o(b"")))
    pdu = _tlv(0xA0, _int(msg_id) + _int(0) + _int(0) + seq())
    return seq(_int(3), header, usm, seq(o(b""), o(b""), pdu))


class SnmpSimulator:
    """A `snmpsim-command-responder` subprocess on loopback; use as a context manager."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        endpoints: Sequence[Endpoint] | int = 1,
        v3_users: Sequence[V3User] = (),
        variation_modules_dir: Path | str | None = None,
        cache_dir: Path | str | None = None,
        start_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        if isinstance(endpoints, int):
            endpoints = [Endpoint() for _ in range(endpoints)]
        self._requested = list(endpoints)
        self.v3_users = list(v3_users)
        self.variation_modules_dir = variation_modules_dir
        self.cache_dir = Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args)
        self.endpoints: list[tuple[str, int]] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of the first endpoint."""
        return self.endpoints[0]

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def command(self) -> list[str]:
        args = [str(responder_executable()), f"--cache-dir={self.cache_dir}", "--log-level=error"]
        mod_dirs = []
        if self.variation_modules_dir:
            mod_dirs.append(str(self.variation_modules_dir))
        spec = importlib.util.find_spec("snmpsim")
        if spec and spec.origin:  # an explicit dir replaces the default search path
            mod_dirs.append(str(Path(spec.origin).parent / "variation"))
        args += [f"--variation-modules-dir={d}" for d in mod_dirs]
        for (host, port), ep in zip(self.endpoints, self._requested, strict=True):
            args.append("--v3-engine-id=auto")  # starts a new engine: must come first
            for u in self.v3_users:
                args.append(f"--v3-user={u.name}")
                if u.auth_key:
                    args += [f"--v3-auth-key={u.auth_key}", f"--v3-auth-proto={u.auth_proto}"]
                    if u.priv_key:
                        args += [f"--v3-priv-key={u.priv_key}", f"--v3-priv-proto={u.priv_proto}"]
            args.append(f"--data-dir={ep.data_dir or self.data_dir}")
            args.append(f"--agent-udpv4-endpoint={host}:{port}")
        return args + self.extra_args

    def start(self) -> SnmpSimulator:
        if self.proc is not None:
            raise SimulatorError("already started")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.endpoints = [(ep.host, ep.port or free_udp_port(ep.host)) for ep in self._requested]
        fd, log = tempfile.mkstemp(prefix="snmpsim-", suffix=".log")
        self._log_path = Path(log)
        env = dict(os.environ, SNMPSIM_ALLOW_ROOT="true")
        with os.fdopen(fd, "wb") as logf:
            self.proc = subprocess.Popen(
                self.command(), stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env,
            )  # fmt: skip
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        pending = list(self.endpoints)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.1)
            msg_id = 1
            while pending:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise SimulatorError(f"snmpsim exited ({self.proc.returncode}):\n{self.log()}")
                if time.monotonic() > deadline:
                    raise SimulatorError(f"snmpsim silent on {pending}:\n{self.log()}")
                for ep in pending:
                    s.sendto(_discovery_probe(msg_id), ep)
                    msg_id += 1
                with contextlib.suppress(TimeoutError, ConnectionRefusedError):
                    while True:
                        _, peer = s.recvfrom(65535)
                        if peer in pending:
                            pending.remove(peer)

    def log(self, tail: int = 4000) -> str:
        """The last characters the responder wrote (errors only at --log-level=error)."""
        if not self._log_path or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")[-tail:]

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._log_path:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None

    def __enter__(self) -> SnmpSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
