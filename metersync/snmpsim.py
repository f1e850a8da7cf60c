"""Simulated printers: `snmpsim-command-responder` on loopback.

The one launcher for tests, benchmarks, the conformance harness and `metersync demo` (in the
core package, so the demo and a vendor's installed suite start printers too). One
`SnmpSimulator` is one responder process. It serves `.snmprec` files (community = file name
without `.snmprec`, relative to the data dir; for SNMPv3 the same name is the context) on one or
more UDP endpoints, each endpoint being its own SNMP engine with its own data dir, so different
loopback addresses look like different printers::

    from metersync.snmpsim import Endpoint, SnmpSimulator, V3User, write_snmprec

    write_snmprec(tmp_path / "data" / "public.snmprec", [
        "1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.11.2.3.9.1",
        "1.3.6.1.2.1.43.5.1.1.1.1|65|12345",
    ])
    with SnmpSimulator(tmp_path / "data") as sim:
        host, port = sim.address          # first endpoint, e.g. ("127.0.0.1", 40123)

    # several "devices" on their own addresses, each with its own recordings:
    eps = [Endpoint("127.0.0.2", data_dir=a), Endpoint("127.0.0.3", data_dir=b)]
    with SnmpSimulator(endpoints=eps, v3_users=[V3User("u", "authkey12", "privkey12")]):
        ...

Start-up waits for each endpoint's first SNMP answer (an SNMPv3 engine-discovery probe, which
any snmpsim engine answers whatever its data files or users), never a fixed sleep. Port 0 means
a free UDP port picked at start. snmpsim keeps its record indices in a cache dir: a private one
per simulator unless `cache_dir` is given (simulators started at the same time must not build the
same index files at once). Delay-type variation modules block
the responder's event loop: put slow devices in their own `SnmpSimulator`.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from metersync.ber import integer, tlv

__all__ = [
    "COMMUNITY",
    "Endpoint",
    "SimulatorError",
    "SnmpSimulator",
    "V3User",
    "free_udp_port",
    "install_recording",
    "write_snmprec",
]

COMMUNITY = "public"


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


@dataclass(frozen=True)
class Endpoint:
    """One SNMP engine on host:port (port 0 = pick a free one) serving data_dir (None = the
    simulator's)."""

    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path | str | None = None


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_udp_port(*hosts: str) -> int:
    """A UDP port that was free a moment ago on every host given (default 127.0.0.1; an IPv6
    address such as ::1 is served on an IPv6 endpoint)."""
    first, *rest = hosts or ("127.0.0.1",)
    for _ in range(50):
        with socket.socket(_family(first), socket.SOCK_DGRAM) as s:
            s.bind((first, 0))
            port = int(s.getsockname()[1])
        try:
            for h in rest:
                with socket.socket(_family(h), socket.SOCK_DGRAM) as s:
                    s.bind((h, port))
        except OSError as e:
            if e.errno != errno.EADDRINUSE:
                raise
            continue
        return port
    raise SimulatorError(f"no UDP port free on every one of {list(hosts)}")


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


def install_recording(src: Path, data_dir: Path) -> Path:
    """Copy a recording as the data dir's `public.snmprec`; an existing one is replaced with a
    fresh mtime so a running responder re-reads it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    dst = data_dir / f"{COMMUNITY}.snmprec"
    tmp = data_dir / f".{COMMUNITY}.snmprec.tmp"
    shutil.copyfile(src, tmp)
    old = dst.stat().st_mtime if dst.exists() else 0.0
    os.replace(tmp, dst)
    stamp = max(time.time(), old + 2.0)  # snmpsim compares mtimes in whole seconds
    os.utime(dst, (stamp, stamp))
    return dst


def responder_executable() -> Path:
    """`snmpsim-command-responder` next to the running interpreter (the venv's bin), else PATH."""
    exe = Path(sys.executable).parent / "snmpsim-command-responder"
    found = exe if exe.exists() else shutil.which("snmpsim-command-responder")
    if not found:
        raise SimulatorError(f"snmpsim-command-responder not found next to {sys.executable}")
    return Path(found)


def _discovery_probe(msg_id: int) -> bytes:
    """SNMPv3 noAuthNoPriv GET with an empty engine id: every engine answers with a Report."""

    def octets(b: bytes) -> bytes:
        return tlv(0x04, b)

    def seq(*parts: bytes) -> bytes:
        return tlv(0x30, b"".join(parts))

    header = seq(integer(msg_id), integer(65507), octets(b"\x04"), integer(3))
    usm = octets(seq(octets(b""), integer(0), integer(0), octets(b""), octets(b""), octets(b"")))
    pdu = tlv(0xA0, integer(msg_id) + integer(0) + integer(0) + seq())
    return seq(integer(3), header, usm, seq(octets(b""), octets(b""), pdu))


class SnmpSimulator:
    """A `snmpsim-command-responder` subprocess on loopback; use as a context manager.

    `log_file` keeps the responder's output there (else a temp file removed at stop);
    `new_session` puts it in its own session, so a terminal's Ctrl-C reaches only the caller,
    which stops it in its own order.
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        *,
        endpoints: Sequence[Endpoint] | int = 1,
        v3_users: Sequence[V3User] = (),
        variation_modules_dir: Path | str | None = None,
        cache_dir: Path | str | None = None,
        start_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
        log_file: Path | str | None = None,
        new_session: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir) if data_dir is not None else None
        if isinstance(endpoints, int):
            endpoints = [Endpoint() for _ in range(endpoints)]
        self._requested = list(endpoints)
        if any(ep.data_dir is None for ep in self._requested) and self.data_dir is None:
            raise SimulatorError("an endpoint without data_dir needs the simulator's data_dir")
        self.v3_users = list(v3_users)
        self.variation_modules_dir = variation_modules_dir
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._own_cache: Path | None = None  # a private cache dir, removed at stop
        self.start_timeout = start_timeout
        self.extra_args = list(extra_args)
        self.log_file = Path(log_file) if log_file else None
        self.new_session = new_session
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
        cache = self.cache_dir or self._own_cache
        args = [str(responder_executable()), f"--cache-dir={cache}", "--log-level=error"]
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
            if _family(host) == socket.AF_INET6:
                args.append(f"--agent-udpv6-endpoint=[{host}]:{port}")
            else:
                args.append(f"--agent-udpv4-endpoint={host}:{port}")
        return args + self.extra_args

    def start(self) -> SnmpSimulator:
        if self.proc is not None:
            raise SimulatorError("already started")
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        else:
            self._own_cache = Path(tempfile.mkdtemp(prefix="snmpsim-cache-"))
        self.endpoints = [(ep.host, ep.port or free_udp_port(ep.host)) for ep in self._requested]
        if self.log_file:
            self._log_path = self.log_file
            logf = self.log_file.open("wb")
        else:
            fd, log = tempfile.mkstemp(prefix="snmpsim-", suffix=".log")
            self._log_path = Path(log)
            logf = os.fdopen(fd, "wb")
        env = dict(os.environ, SNMPSIM_ALLOW_ROOT="true")
        with logf:
            self.proc = subprocess.Popen(
                self.command(), stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, start_new_session=self.new_session,
            )  # fmt: skip
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        pending = set(self.endpoints)
        with contextlib.ExitStack() as stack:
            socks = {}
            for family in sorted({_family(h) for h, _ in pending}):
                socks[family] = stack.enter_context(socket.socket(family, socket.SOCK_DGRAM))
                socks[family].settimeout(0.1 / len({_family(h) for h, _ in pending}))
            msg_id = 1
            while pending:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise SimulatorError(f"snmpsim exited ({self.proc.returncode}):\n{self.log()}")
                if time.monotonic() > deadline:
                    raise SimulatorError(f"snmpsim silent on {sorted(pending)}:\n{self.log()}")
                for ep in pending:
                    socks[_family(ep[0])].sendto(_discovery_probe(msg_id), ep)
                    msg_id += 1
                for s in socks.values():
                    with contextlib.suppress(TimeoutError, ConnectionRefusedError):
                        while True:
                            _, peer = s.recvfrom(65535)
                            pending.discard(peer[:2])

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
        if self._log_path and self._log_path != self.log_file:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
        if self._own_cache is not None:
            shutil.rmtree(self._own_cache, ignore_errors=True)
            self._own_cache = None
        self._log_path = None

    def __enter__(self) -> SnmpSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
