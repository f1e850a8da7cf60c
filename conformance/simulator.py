"""Simulated printers for the conformance run: `snmpsim-command-responder` on loopback.

The runtime twin of the tests' helper (tests/ is not packaged, and a vendor's installed suite
must start printers too). One `Responder` is one snmpsim process with one SNMP engine per
(address, port), each engine serving its own data dir; the community `public` selects
`public.snmprec` in that dir. Start-up waits for every engine's first answer to an SNMPv3
discovery probe, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

COMMUNITY = "public"


class SimulatorError(RuntimeError):
    pass


@dataclass(frozen=True)
class Printer:
    """One simulated printer: a recording served at host:port."""

    host: str
    port: int
    data_dir: Path

    @property
    def recording(self) -> Path:
        return self.data_dir / f"{COMMUNITY}.snmprec"


def free_udp_port(hosts: list[str]) -> int:
    """A UDP port free on every host given (tried a few times)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        ok = True
        for h in hosts[1:]:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
                    break
        if ok:
            return port
    raise SimulatorError("no UDP port free on every simulated address")


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


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _int(v: int) -> bytes:
    return _tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def _probe(msg_id: int) -> bytes:
    """An SNMPv3 noAuthNoPriv GET with an empty engine id: every engine answers it."""

    def octets(b: bytes) -> bytes:
        return _tlv(0x04, b)

    def seq(*parts: bytes) -> bytes:
        return _tlv(0x30, b"".join(parts))

    header = seq(_int(msg_id), _int(65507), octets(b"\x04"), _int(3))
    usm = octets(seq(octets(b""), _int(0), _int(0), octets(b""), octets(b""), octets(b"")))
    pdu = _tlv(0xA0, _int(msg_id) + _int(0) + _int(0) + seq())
    return seq(_int(3), header, usm, seq(octets(b""), octets(b""), pdu))


class Responder:
    """An snmpsim process serving `printers`; a context manager."""

    def __init__(
        self,
        printers: list[Printer],
        *,
        variation_dir: Path | None = None,
        cache_dir: Path | None = None,
        start_timeout: float = 30.0,
        v3_user: tuple[str, str, str, str, str] | None = None,
    ) -> None:
        self.printers = printers
        self.v3_user = v3_user  # (user, auth protocol, auth key, priv protocol, priv key)
        self.variation_dir = variation_dir
        self.cache_dir = cache_dir or Path(tempfile.gettempdir()) / "metersync-conformance-snmpsim"
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None

    def command(self) -> list[str]:
        exe = Path(sys.executable).parent / "snmpsim-command-responder"
        found = str(exe) if exe.exists() else shutil.which("snmpsim-command-responder")
        if not found:
            raise SimulatorError("snmpsim-command-responder is not installed")
        args = [found, f"--cache-dir={self.cache_dir}", "--log-level=error"]
        mods = [str(self.variation_dir)] if self.variation_dir else []
        spec = importlib.util.find_spec("snmpsim")
        if spec and spec.origin:
            mods.append(str(Path(spec.origin).parent / "variation"))
        args += [f"--variation-modules-dir={d}" for d in mods]
        for p in self.printers:
            args.append("--v3-engine-id=auto")  # a new engine: its options follow
            if self.v3_user:
                user, aproto, akey, pproto, pkey = self.v3_user
                args += [f"--v3-user={user}", f"--v3-auth-key={akey}"]
                args += [f"--v3-auth-proto={aproto}", f"--v3-priv-key={pkey}"]
                args.append(f"--v3-priv-proto={pproto}")
            args += [
                f"--data-dir={p.data_dir}",
                f"--agent-udpv4-endpoint={p.host}:{p.port}",
            ]
        return args

    def start(self) -> Responder:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        fd, log = tempfile.mkstemp(prefix="conformance-snmpsim-", suffix=".log")
        self._log = Path(log)
        env = dict(os.environ, SNMPSIM_ALLOW_ROOT="true")
        with os.fdopen(fd, "wb") as logf:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=logf,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        pending = {(p.host, p.port) for p in self.printers}
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.1)
            msg = 1
            while pending:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise SimulatorError(f"snmpsim exited ({self.proc.returncode}): {self.log()}")
                if time.monotonic() > deadline:
                    raise SimulatorError(f"snmpsim silent on {sorted(pending)}: {self.log()}")
                for ep in pending:
                    s.sendto(_probe(msg), ep)
                    msg += 1
                with contextlib.suppress(TimeoutError, ConnectionRefusedError):
                    while True:
                        _, peer = s.recvfrom(65535)
                        pending.discard(peer)

    def log(self) -> str:
        if self._log and self._log.exists():
            return self._log.read_text(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._log:
            with contextlib.suppress(OSError):
                self._log.unlink()
            self._log = None

    def __enter__(self) -> Responder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
