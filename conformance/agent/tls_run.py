"""The TLS run: the agent against managers and relays whose certificates it must check.

A short run beside the main scenarios. The harness makes a throw-away PKI (peers/pki.py), serves
one recorded printer, and starts one agent process per stage, all at once, each with its own state
directory and its own manager (HTTPS behind a TLS tap, peers/tls_tap.py) or relay
(peers/mail_relay.py):

HTTP (Agent-HTTP; with Agent-Channel the agents also have their channel on, over wss):
- `https-trusted`: a certificate for 127.0.0.1 from the CA given in `manager/caBundle`: the
  agent must deliver, over TLS 1.2 or later;
- `https-client-cert`: the same, but the manager requires a client certificate from the CA of
  `manager/clientCertificate` (MS-SEC-18): the agent must present it and still sign;
- `https-untrusted` (a CA the agent was not given), `https-wrong-host` (the right CA, but the
  certificate names another host), `https-tls1.1` (the right certificate, but only TLS 1.0
  and 1.1 offered): the agent must send nothing;
- `http-remote`: a manager URL `http://` with a host under `.invalid`: refused (3001).
SMTP (Agent-SMTP; SMTP-only provisioning, enrollment over plain HTTP on loopback):
- `smtp-starttls`: STARTTLS required, AUTH required and offered only over TLS, certificate
  from the CA given in `transports/smtp/caBundle`: the mail must arrive, logged in over TLS;
- `smtp-tls`: the same relay with implicit TLS;
- `smtp-untrusted`: STARTTLS with a certificate from another CA: no login, no mail;
- `smtp-plain-auth`: no STARTTLS, AUTH advertised in plain text: no login, no mail;
- `smtp-none-remote`: `security` `none` with a relay under `.invalid`: refused (3001).

A stage that must send nothing ends when the agent has tried and every connection it opened
is closed (or when something arrived); the checks (agent/checks/tls.py) judge the records.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

from metersync.snmpsim import (
    Endpoint,
    SnmpSimulator,
    free_udp_port,
    install_recording,
)
from metersync_conformance.agent.harness import (
    SMTP_FROM,
    SMTP_TO,
    AgentProcess,
    Device,
    Setup,
    is_tls_check,
    provisioning,
)
from metersync_conformance.agent.truth import load
from metersync_conformance.peers.mail_relay import FakeRelay, RelayTls
from metersync_conformance.peers.manager import FakeManager, ServerTls
from metersync_conformance.peers.pki import Pki
from metersync_conformance.registry import Verdict, run_checks, select

HOST = "127.3.2.10"
RECORDING = "lexmark_ms"
SMTP_LOGIN = ("conformance-agent", "smtp-pass-1618")
HTTP_STAGES = (
    "https-trusted",
    "https-client-cert",
    "https-untrusted",
    "https-wrong-host",
    "https-tls1.1",
    "http-remote",
)
SMTP_STAGES = ("smtp-starttls", "smtp-tls", "smtp-untrusted", "smtp-plain-auth", "smtp-none-remote")
MUST_DELIVER = ("https-trusted", "https-client-cert", "smtp-starttls", "smtp-tls")
REFUSALS = {"http-remote": "http://manager.conformance.invalid:8443", "smtp-none-remote": ""}
REMOTE_RELAY = "relay.conformance.invalid"
DELIVER_WAIT = 45.0
REFUSE_WAIT = 30.0
SETUP = Setup(poll_interval=2, discovery_interval=600, http_timeout=5, snmp=(1.5, 0, 10))


@dataclass
class Stage:
    """One agent process against one manager (and relay), and what came of it."""

    name: str
    manager: FakeManager
    relay: FakeRelay | None = None
    reached: bool = False  # its wait condition held before the timeout
    exit_code: int | None = None
    log: str = ""
    channel: bool = False  # the agent's channel was on

    def requests(self) -> int:
        """Every request that reached the manager: MeterSync posts, strays, channel attempts."""
        rec = self.manager.rec
        peer = len(rec.peer.attempts) if rec.peer is not None else 0
        return len(rec.received) + len(rec.strays) + peer

    def failed_twice(self) -> bool:
        """Two connections (sessions) of the agent closed and nothing delivered: it will not."""
        if self.manager.rec.accepted_reports():
            return False
        if self.relay is not None:
            return sum(s.closed for s in self.relay.log.sessions) >= 2
        tap = self.manager.tap
        return self.requests() == 0 and tap is not None and tap.log.closed() >= 2

    def settled(self) -> bool:
        """The agent tried and every connection it opened is closed, or something arrived (with
        the channel on: until a channel attempt too, so that it is judged as well)."""
        if self.relay is not None:
            return self.relay.log.settled() or bool(self.manager.rec.reports())
        tap = self.manager.tap
        peer = self.manager.rec.peer
        if self.requests() > 0:
            return not self.channel or bool(peer and peer.attempts)
        return tap is not None and tap.log.settled()


@dataclass
class TlsRun:
    """Everything the TLS checks judge."""

    classes: tuple[str, ...]
    stages: dict[str, Stage] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def stage(self, name: str) -> Stage | None:
        return self.stages.get(name)


def planned_stages(classes: list[str], only: tuple[str, ...] | None = None) -> tuple[str, ...]:
    names: list[str] = []
    if "Agent-HTTP" in classes or "Agent-Channel" in classes:
        names += HTTP_STAGES
    if "Agent-SMTP" in classes:
        names += SMTP_STAGES
    return tuple(n for n in names if only is None or n in only)


def _pem(tag: str, text: str) -> str:
    return f"<{tag}>{escape(text)}</{tag}>"


def _manager_tls(name: str, pki: Pki) -> ServerTls:
    cert = {"https-untrusted": pki.untrusted, "https-wrong-host": pki.wrong_host}.get(
        name, pki.server
    )
    return ServerTls(
        cert.cert_file,
        cert.key_file,
        client_ca_file=pki.client_ca.cert_file if name == "https-client-cert" else None,
        old_only=name == "https-tls1.1",
    )


def _relay_tls(name: str, pki: Pki) -> RelayTls:
    import ssl

    if name == "smtp-plain-auth":
        return RelayTls("plain-auth")
    cert = pki.untrusted if name == "smtp-untrusted" else pki.relay
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert.cert_file), str(cert.key_file))
    return RelayTls("implicit" if name == "smtp-tls" else "starttls", ctx)


def _smtp_transports(host: str, port: int, security: str, pki: Pki, login: bool) -> str:
    user, password = SMTP_LOGIN
    creds = f"<username>{user}</username><password>{password}</password>" if login else ""
    ca = _pem("caBundle", pki.mail.cert_pem) if security != "none" else ""
    return (
        f'<http enabled="false"/><smtp enabled="true"><host>{host}</host><port>{port}</port>'
        f"<security>{security}</security>{ca}{creds}"
        f"<from>{SMTP_FROM}</from><to>{SMTP_TO}</to></smtp>"
    )


def _document(name: str, stage: Stage, pki: Pki, device: Device) -> bytes:
    url = stage.manager.url
    extra, transports = "", None
    if name.startswith("https"):
        extra = _pem("caBundle", pki.trusted.cert_pem)
        extra += _pem("clientCertificate", pki.client.chain_pem)
    elif name == "http-remote":
        url = REFUSALS[name] + "/metersync-base"
    elif name == "smtp-none-remote":
        transports = _smtp_transports(REMOTE_RELAY, 25, "none", pki, login=False)
    elif stage.relay is not None:
        security = "tls" if name == "smtp-tls" else "starttls"
        transports = _smtp_transports(stage.relay.host, stage.relay.port, security, pki, True)
    return provisioning(
        url,
        [device],
        setup=SETUP,
        channel=stage.channel,
        manager_extra=extra,
        transports_xml=transports,
    )


async def _drive(stage: Stage, agent: AgentProcess) -> None:
    rec = stage.manager.rec
    agent.start()
    if stage.name in REFUSALS:
        deadline = time.monotonic() + REFUSE_WAIT
        while agent.pid is not None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        stage.reached = agent.pid is None
    elif stage.name in MUST_DELIVER:

        def delivered() -> bool:
            if not rec.accepted_reports():
                return False
            return not stage.channel or bool(rec.peer and rec.peer.attempts)

        stage.reached = await _wait(
            stage, DELIVER_WAIT, lambda: delivered() or stage.failed_twice()
        )
        stage.reached = delivered()
    else:
        stage.reached = await _wait(stage, REFUSE_WAIT, stage.settled)
    stage.exit_code = await agent.stop()
    stage.log = agent.log.read_text(errors="replace")[-2000:] if agent.log.exists() else ""


async def _wait(stage: Stage, timeout: float, done: Callable[[], bool]) -> bool:
    """Until done(): re-checked on every request and every half second (connections closing
    are not requests)."""
    return await stage.manager.rec.wait_for(done, timeout, poll=0.5)


async def run_tls(
    command: str,
    classes: list[str],
    *,
    walks: Path | None = None,
    keep: Path | None = None,
    only: str = "",
    progress: Callable[..., None] | None = None,
    stages: tuple[str, ...] | None = None,
) -> tuple[list[Verdict], float]:
    """Run the TLS stages the classes call for (or `stages`), then the TLS checks."""
    started = time.monotonic()
    names = planned_stages(classes, stages)
    run = TlsRun(tuple(classes))
    checks = [c for c in select("agent", classes) if is_tls_check(c.name) and only in c.name]
    if not names or not checks:
        return [], time.monotonic() - started
    recordings = [r for r in load(walks) if r.name == RECORDING] or load(walks)[:1]
    tmp = None
    if keep:
        work = keep
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="metersync-conformance-tls-")
        work = Path(tmp.name)
    pki = Pki.create(work / "pki")
    port = free_udp_port(HOST)
    device = Device(recordings[0], HOST, port, work / "printers" / recordings[0].name)
    install_recording(device.recording.snmprec, device.data_dir)
    printer = SnmpSimulator(endpoints=[Endpoint(HOST, port, device.data_dir)])
    agents: dict[str, AgentProcess] = {}
    try:
        await asyncio.to_thread(printer.start)
        for name in names:
            tls = _manager_tls(name, pki) if name.startswith("https") else None
            manager = await FakeManager(tls=tls).start()
            stage = run.stages[name] = Stage(name, manager)
            stage.channel = name.startswith("https") and "Agent-Channel" in classes
            if name.startswith("smtp") and name != "smtp-none-remote":
                stage.relay = await FakeRelay(manager.rec, tls=_relay_tls(name, pki)).start()
            folder = work / name
            (folder / "state").mkdir(parents=True, exist_ok=True)
            prov = folder / "provisioning.xml"
            prov.write_bytes(_document(name, stage, pki, device))
            prov.chmod(0o600)
            agents[name] = AgentProcess(command, prov, folder / "state", folder / "agent.log")
        await asyncio.gather(*(_drive(run.stages[n], agents[n]) for n in names))
    finally:
        for agent in agents.values():
            await agent.stop()
        for stage in run.stages.values():
            if stage.relay is not None:
                await stage.relay.stop()
            await stage.manager.stop()
        await asyncio.to_thread(printer.stop)
    verdicts = await run_checks(checks, run, progress)  # type: ignore[arg-type]
    if tmp:
        tmp.cleanup()
    return verdicts, time.monotonic() - started


def tls_classes(classes: list[str]) -> bool:
    """Whether a certification run of these classes includes the TLS run."""
    return bool(planned_stages(classes))
