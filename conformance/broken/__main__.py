"""Deliberately broken implementations: proof that the conformance suite can fail.

Each flaw wraps or patches the reference implementation in its own process, changing one
behaviour, so that a conformance run must catch it by exactly the requirement it breaks:

    python -m metersync_conformance.broken manager FLAW -- serve --data-dir D --bind H:P
    python -m metersync_conformance.broken agent FLAW -- run --config P --state-dir S

Managers: `duplicates` (answers `accepted` to a byte-identical report again), `forged` (accepts
a report whatever its signature, as long as the agent is enrolled), `doctype` (lets a DOCTYPE
declaration through the XML edge), `ignores-revocation` (verifies a revoked agent's reports as
if it were not revoked), `no-retry-after` (answers 429 without Retry-After), `expired-ok`
(as the agent's: `manager update` accepts an expired timestamp), `any-api-token` (takes any
bearer token, an enrollment token too, as an operator token for /api/v1), `stale-by-any-snapshot`
(a partial snapshot keeps a device from being flagged stale: MS-DEV-26), `channel-reading`
(stores a snapshot read over the channel as a reading: MS-CH-18), `relays-status` (gives the
operator an agent's channel Error with the agent's status, whatever its code: MS-ERR-3),
`unbounded` (its update client reads downloads past their length bound: MS-UPD-9),
`length-code` (stops an over-long download in time but refuses it with 6001, not 6004: MS-UPD-9),
`update-hurry` (`serve` in automatic mode checks the feed every third of the interval:
MS-UPD-14), `manual-fetches` (`serve` in manual mode checks the feed on the schedule all the
same: MS-UPD-13).
Agents: `wrong-unit` (reports page counters in sheets instead of impressions), `twin-counter`
(puts a snapshot's first counter in it twice: MS-BILL-2), `percent-3`
(reports a supply level of -3 "some remaining" as 3 %), `no-backoff` (retries every 0.3 s
instead of backing off, still honouring Retry-After), `listen` (opens a TCP listening port),
`expired-ok` (its update client accepts an expired timestamp: a freeze attack goes unnoticed),
`sign-base64` (signs a report's base64 text as mailed instead of its bytes: MS-SMTP-3),
`channel-post` (serves a POST, PUT or DELETE over the channel as if it were a GET),
`no-exclude` (polls the excluded targets too), `foreign-receipt` (takes a Receipt for another
report or agent as delivery), `unbounded` (as the manager's), `licence-early` (its update
command installs a licence before its notBefore: MS-UPD-21), `ignores-max-devices` (monitors
every printer whatever the licence's maxDevices: MS-UPD-22), `update-hurry` (in automatic mode
checks the feed every third of checkInterval: MS-UPD-14), `no-walk-cap` (walks a subtree to
its end, however long: MS-SNMP-10), `twin-reported` (a device found at two addresses is
reported twice per poll cycle, in two reports of that cycle: MS-ID-8), `smtp-code-ignored`
(takes every 5xx to the end of the mail data as a refusal, even one naming a MeterSync code to
retry: MS-SMTP-13), `fresh-kept` (a fresh read over the channel replaces the snapshot the agent
holds for the device: MS-CH-19), `tls-noverify` (checks neither the manager's certificate
chain nor its host name), `tls-old` (accepts TLS 1.0 and 1.1), `no-client-cert` (never
presents the provisioned client certificate), `smtp-plain-auth` (goes on in plain text, login
included, when the relay offers no STARTTLS), `smtp-noverify` (does not check the relay's
certificate). The senses run's flaws (traps, adaptive polling, privacy) are in broken/senses.py.

Flaws join with `+` (`expired-ok+unbounded`): each breaks its own rule, so one run of a
deliberately broken implementation can prove several checks at once.
"""

from __future__ import annotations

import copy
import re
import socket
import sys
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from metersync_conformance.broken.senses import SENSES_FLAWS, break_agent_senses

MANAGER_FLAWS = (
    "duplicates",
    "forged",
    "doctype",
    "ignores-revocation",
    "no-retry-after",
    "expired-ok",
    "any-api-token",
    "stale-by-any-snapshot",
    "channel-reading",
    "relays-status",
    "unbounded",
    "length-code",
    "update-hurry",
    "manual-fetches",
)

AGENT_FLAWS = (
    "wrong-unit",
    "twin-counter",
    "percent-3",
    "no-backoff",
    "listen",
    "expired-ok",
    "sign-base64",
    "channel-post",
    "no-exclude",
    "foreign-receipt",
    "unbounded",
    "licence-early",
    "ignores-max-devices",
    "update-hurry",
    "no-walk-cap",
    "twin-reported",
    "smtp-code-ignored",
    "fresh-kept",
    "tls-noverify",
    "tls-old",
    "no-client-cert",
    "smtp-plain-auth",
    "smtp-noverify",
    *SENSES_FLAWS,
)

_DOCTYPE = re.compile(rb"<!DOCTYPE[^>\[]*>")


def break_manager(flaw: str) -> None:
    if flaw.startswith("mut:"):  # a one-line mutation of the reference (mutations.py)
        from metersync_conformance.broken import mutations

        return mutations.apply(flaw[4:])
    from metersync import signing, xml_edge
    from metersync_manager import ingest

    if flaw == "duplicates":
        real_receipt = ingest.receipt

        def receipt(message_id: str, agent_id: str, duplicate: bool, now: Any,
                    devices_stored: int | None = None) -> Any:  # fmt: skip
            return real_receipt(message_id, agent_id, False, now, devices_stored)

        ingest.receipt = receipt  # type: ignore[assignment]
    elif flaw == "forged":

        def authenticate(sig: signing.Signature, raw: bytes, agent: Any) -> None:
            from metersync.errors import ProtocolError

            if agent is None:
                raise ProtocolError("UNKNOWN_AGENT", f"no enrolled agent {sig.agent_id}")
            if agent.revoked:
                raise ProtocolError("AGENT_REVOKED", f"agent {sig.agent_id} was revoked")

        ingest.authenticate = authenticate  # type: ignore[assignment]
    elif flaw == "doctype":
        real_check = xml_edge.check_bytes

        def check_bytes(data: bytes, max_bytes: int = xml_edge.MAX_BYTES) -> None:
            real_check(_DOCTYPE.sub(b"", data), max_bytes)  # a bare DOCTYPE slips through

        xml_edge.check_bytes = check_bytes  # type: ignore[assignment]
    elif flaw == "ignores-revocation":
        from dataclasses import replace

        real_auth = ingest.authenticate

        def authenticate_revoked(sig: signing.Signature, raw: bytes, agent: Any) -> Any:
            return real_auth(sig, raw, replace(agent, revoked=False) if agent else agent)

        ingest.authenticate = authenticate_revoked  # type: ignore[assignment]
    elif flaw == "no-retry-after":
        from metersync_manager import app

        real_error = app.error_response

        def error_response(exc: Any) -> Any:
            resp = real_error(exc)
            if resp.status_code == 429:
                del resp.headers["Retry-After"]
            return resp

        app.error_response = error_response  # type: ignore[assignment]
    elif flaw == "expired-ok":
        _accept_expired_timestamp()
    elif flaw == "any-api-token":
        from metersync_manager.scope import ADMIN
        from metersync_manager.store import Store

        Store.operator_scope = lambda self, token_hash: ADMIN  # type: ignore[method-assign]
    elif flaw == "stale-by-any-snapshot":
        from metersync_manager import staleness

        real_flag = staleness.device_flag

        def device_flag(last_complete: Any, last_snapshot: Any, interval: Any, now: Any) -> Any:
            return real_flag(last_snapshot, last_snapshot, interval, now)

        staleness.device_flag = device_flag  # type: ignore[assignment]
    elif flaw == "channel-reading":
        _store_channel_snapshots()
    elif flaw == "relays-status":
        from metersync_manager import channel

        real_inner = channel.inner_document

        def inner_document(raw: bytes) -> Any:
            status = int(xml_edge.parse_tree(raw).findtext(f"{{{xml_edge.NAMESPACE}}}status"))
            return channel.Answer(status, real_inner(raw).document)

        channel.inner_document = inner_document  # type: ignore[assignment]
    elif flaw == "unbounded":
        _unbounded_downloads()
    elif flaw == "length-code":
        _wrong_length_code()
    elif flaw == "update-hurry":
        from metersync_manager import cli as manager_cli

        real_schedule = manager_cli._update_schedule

        async def hurried(args: Any, stop: Any) -> None:
            args.update_interval /= 3
            await real_schedule(args, stop)

        manager_cli._update_schedule = hurried  # type: ignore[assignment]
    elif flaw == "manual-fetches":
        from metersync_manager import cli as manager_cli

        real_serve = manager_cli.cmd_serve

        def serve_checking(args: Any) -> int:
            if args.feed_url and args.trusted_root:
                args.update_mode = "automatic"  # whatever the operator chose
            return real_serve(args)

        manager_cli.cmd_serve = serve_checking  # type: ignore[assignment]
    else:
        raise SystemExit(f"unknown manager flaw {flaw!r}; known: {', '.join(MANAGER_FLAWS)}")


def _store_channel_snapshots() -> None:
    """The manager stores every Device answered over the channel as a reading of its own report."""
    import asyncio
    import hashlib
    import uuid
    from datetime import UTC, datetime

    from metersync import xml_edge
    from metersync_manager import app as app_module
    from metersync_manager import extract

    real_create = app_module.create_app

    def create_app(store: Any, **kw: Any) -> Any:
        app = real_create(store, **kw)
        hub = app.extensions["metersync_channel"]
        real_ask = hub.ask

        def store_reading(agent_id: str, raw: bytes) -> None:
            device = xml_edge.parse_tree(raw).find(f".//{{{xml_edge.NAMESPACE}}}Device")
            if device is None:
                return
            agent = store.agents(agent_id)[0]
            software = agent["software"]
            now = datetime.now(UTC)
            rows = extract.ReportRows(
                report_id=str(uuid.uuid4()),
                agent_id=agent_id,
                sequence=0,
                created_at=now,
                agent_status={
                    "software_vendor": software["vendor"],
                    "software_product": software["product"],
                    "software_version": software["version"],
                    "queue_depth": agent["queueDepth"] or 0,
                    "dropped_reports": agent["droppedReports"] or 0,
                    "licence_state": agent["licenceState"] or "valid",
                },
                devices=[extract._device(device)],
            )
            store.store_report(rows, hashlib.sha256(raw).hexdigest(), len(raw), now)

        async def ask(agent_id: str, path: str, *args: Any, **kwargs: Any) -> bytes:
            raw: bytes = await real_ask(agent_id, path, *args, **kwargs)
            await asyncio.to_thread(store_reading, agent_id, raw)
            return raw

        hub.ask = ask
        return app

    app_module.create_app = create_app  # type: ignore[assignment]


def _unbounded_downloads() -> None:
    """The TUF client reads every download to its end, whatever its length bound."""
    from tuf.ngclient.fetcher import FetcherInterface

    real = FetcherInterface.download_file

    def download_file(self: Any, url: str, max_length: int) -> Any:
        return real(self, url, 1 << 40)

    FetcherInterface.download_file = download_file  # type: ignore[method-assign]


def _wrong_length_code() -> None:
    """An over-long download is stopped at its bound but refused as 6001, not 6004."""
    from tuf.api import exceptions as tx

    from metersync import updates

    real = updates._refusal

    def refusal(exc: Exception, what: str) -> Any:
        if isinstance(exc, tx.DownloadLengthMismatchError):
            return updates.ProtocolError("FEED_SIGNATURE_INVALID", f"{what}: {exc}")
        return real(exc, what)

    updates._refusal = refusal  # type: ignore[assignment]


def _accept_expired_timestamp() -> None:
    """The update client no longer checks the final timestamp's expiry (a freeze attack)."""
    from tuf.ngclient._internal import trusted_metadata_set as tms

    tms.TrustedMetadataSet._check_final_timestamp = lambda self: None  # type: ignore[method-assign]


def _mutate_reports(mutate: Callable[[Any], None]) -> None:
    """Change every Report just before the agent serialises (and signs) it."""
    import metersync_generated.v1 as model
    from metersync import xml_edge

    real = xml_edge.to_bytes

    def to_bytes(obj: Any, **kw: Any) -> bytes:
        if isinstance(obj, model.Report):
            for dev in obj.device:
                mutate(dev)
        return real(obj, **kw)

    xml_edge.to_bytes = to_bytes  # type: ignore[assignment]


def break_agent(flaw: str) -> None:
    if flaw.startswith("mut:"):  # a one-line mutation of the reference (agent_mutations.py)
        from metersync_conformance.broken import agent_mutations

        return agent_mutations.apply(flaw[4:])
    import metersync_generated.v1 as model

    if flaw == "twin-counter":

        def twin(dev: Any) -> None:
            if dev.counter:
                dev.counter.append(copy.deepcopy(dev.counter[0]))

        _mutate_reports(twin)
    elif flaw == "wrong-unit":

        def unit(dev: Any) -> None:
            for c in dev.counter:
                if c.unit == model.CounterUnit.IMPRESSIONS:
                    c.unit = model.CounterUnit.SHEETS

        _mutate_reports(unit)
    elif flaw == "percent-3":

        def percent(dev: Any) -> None:
            for s in dev.supply:
                if s.level.raw == -3:
                    s.percent = Decimal(3)

        _mutate_reports(percent)
    elif flaw == "no-backoff":
        from metersync_agent import sender  # the send stage of the pipeline

        def next_delay(
            attempt: int, retry_after: float | None, rng: Any = None, **kw: Any
        ) -> float:
            return float(retry_after) if retry_after else 0.3

        sender.next_delay = next_delay  # type: ignore[assignment]
    elif flaw == "listen":
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.bind(("127.0.0.1", 0))
        srv.listen()

        def serve() -> None:
            while True:
                conn, _ = srv.accept()
                conn.close()

        threading.Thread(target=serve, daemon=True, name="broken-listener").start()
    elif flaw == "expired-ok":
        _accept_expired_timestamp()
    elif flaw == "sign-base64":
        import base64

        from metersync_agent import enrollment

        real_sign = enrollment.AgentIdentity.sign

        def sign(self: Any, data: bytes) -> str:
            if b"<Report" in data[:200]:
                data = base64.encodebytes(data)  # the text in the mail, not the report
            return real_sign(self, data)

        enrollment.AgentIdentity.sign = sign  # type: ignore[method-assign]
    elif flaw == "channel-post":
        from metersync_agent.channel import ChannelResources

        real_serve = ChannelResources._serve

        async def serve(self: Any, req: Any) -> Any:
            req.method = "GET"  # whatever was asked, act on it
            return await real_serve(self, req)

        ChannelResources._serve = serve  # type: ignore[method-assign]
    elif flaw == "no-exclude":
        from metersync_agent.targets import TargetSet

        real_parse = TargetSet.parse.__func__  # type: ignore[attr-defined]

        def parse(cls: Any, include: Any, exclude: Any = ()) -> Any:
            return real_parse(cls, include, [])

        TargetSet.parse = classmethod(parse)  # type: ignore[method-assign, assignment]
    elif flaw == "foreign-receipt":
        from metersync_agent import transport_http
        from metersync_agent.backoff import Delivered, RetryLater

        real_interpret = transport_http.interpret

        def interpret(status: int, answer: bytes, *args: Any, **kw: Any) -> Any:
            out = real_interpret(status, answer, *args, **kw)
            if isinstance(out, RetryLater) and "a Receipt for message" in out.reason:
                return Delivered()
            return out

        transport_http.interpret = interpret  # type: ignore[assignment]
    elif flaw == "unbounded":
        _unbounded_downloads()
    elif flaw == "licence-early":
        import datetime as dt

        from xsdata.models.datatype import XmlDateTime

        from metersync import updates

        real_check = updates.check_licence

        def check_licence(lic: Any, product: str, agent_id: Any, now: dt.datetime) -> None:
            lic.not_before = XmlDateTime.from_datetime(now - dt.timedelta(days=1))
            real_check(lic, product, agent_id, now)

        updates.check_licence = check_licence  # type: ignore[assignment]
    elif flaw == "ignores-max-devices":
        from metersync_agent.service import AgentService

        AgentService._licensed_devices = lambda self: None  # type: ignore[method-assign]
    elif flaw == "update-hurry":
        from metersync_agent import updating

        updating.next_check_delay = lambda interval, rng: interval / 3  # type: ignore[assignment]
    elif flaw == "no-walk-cap":
        from metersync_agent import poller

        real_poll = poller.poll_device

        async def poll_device(*args: Any, **kw: Any) -> Any:
            return await real_poll(*args, **{**kw, "max_varbinds": 10**9})

        poller.poll_device = poll_device  # type: ignore[assignment]
    elif flaw == "twin-reported":
        _report_twins_twice()
    elif flaw == "smtp-code-ignored":
        from metersync_agent import transport_smtp
        from metersync_agent.backoff import Refused

        real_classify = transport_smtp.classify_reply

        def classify_reply(code: int, text: str, stage: str) -> Any:
            if stage == "data" and 500 <= code < 600:
                return Refused(code, f"SMTP_{code}", text)
            return real_classify(code, text, stage)

        transport_smtp.classify_reply = classify_reply  # type: ignore[assignment]
    elif flaw == "fresh-kept":
        from metersync_agent import service

        real_fresh = service.AgentService.fresh

        async def fresh(self: Any, device_key: str) -> Any:
            snap = await real_fresh(self, device_key)
            for e in self.state.devices.values():
                if (
                    e.last_snapshot is not None
                    and e.last_snapshot.identity.device_key == device_key
                ):
                    e.last_snapshot = snap  # the channel's read becomes the device's state
            return snap

        service.AgentService.fresh = fresh  # type: ignore[method-assign]
    elif flaw in ("tls-noverify", "tls-old", "no-client-cert"):
        _break_agent_tls(flaw)
    elif flaw in ("smtp-plain-auth", "smtp-noverify"):
        _break_agent_smtp(flaw)
    elif flaw in SENSES_FLAWS:
        break_agent_senses(flaw)
    else:
        raise SystemExit(f"unknown agent flaw {flaw!r}; known: {', '.join(AGENT_FLAWS)}")


def _report_twins_twice() -> None:
    """Keep every answered snapshot of a cycle, and put a key seen again into another report
    of the same cycle (so no report holds a key twice: only MS-ID-8 is broken)."""
    from metersync_agent import service

    real_one = service.one_snapshot_per_key
    real_store = service.AgentService._store

    def one_snapshot_per_key(snapshots: list[Any]) -> tuple[list[Any], int]:
        kept, dropped = real_one(snapshots)
        again = [
            s
            for s in snapshots
            if service.classify(s) != "failed" and all(s is not k for k in kept)
        ]
        return kept + again, dropped

    async def store(self: Any, cycle: Any, snapshots: list[Any]) -> None:
        batches: list[list[Any]] = []
        for snap in snapshots:
            key = snap.identity.device_key
            free = [b for b in batches if all(s.identity.device_key != key for s in b)]
            if free:
                free[0].append(snap)
            else:
                batches.append([snap])
        for batch in batches or [[]]:
            await real_store(self, cycle, batch)

    service.one_snapshot_per_key = one_snapshot_per_key  # type: ignore[assignment]
    service.AgentService._store = store  # type: ignore[method-assign]


def _break_agent_tls(flaw: str) -> None:
    """The manager's TLS context (HTTP and channel both take it from ssl_context)."""
    import ssl
    import warnings

    from metersync_agent import transport_http

    real_context = transport_http.ssl_context

    def ssl_context(ca_bundle: Any, client_certificate: Any, state_dir: Any = None) -> Any:
        if flaw == "no-client-cert":
            client_certificate = None
        ctx = real_context(ca_bundle, client_certificate, state_dir)
        if flaw == "tls-noverify":
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif flaw == "tls-old":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
                ctx.minimum_version = ssl.TLSVersion.TLSv1
        return ctx

    transport_http.ssl_context = ssl_context  # type: ignore[assignment]


def _break_agent_smtp(flaw: str) -> None:
    import smtplib
    import ssl

    from metersync_agent.transport_smtp import SmtpTransport

    if flaw == "smtp-noverify":

        def context(self: Any) -> ssl.SSLContext:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx

        SmtpTransport.context = context  # type: ignore[method-assign]
        return
    # smtp-plain-auth: a relay without STARTTLS is used in plain text, login and all.
    real_has, real_starttls = smtplib.SMTP.has_extn, smtplib.SMTP.starttls

    def has_extn(self: smtplib.SMTP, opt: str) -> bool:
        return True if opt.lower() == "starttls" else real_has(self, opt)

    def starttls(self: smtplib.SMTP, *args: Any, **kw: Any) -> tuple[int, bytes]:
        if not real_has(self, "starttls"):
            return (220, b"not offered: carrying on in plain text")
        return real_starttls(self, *args, **kw)

    smtplib.SMTP.has_extn = has_extn  # type: ignore[method-assign]
    smtplib.SMTP.starttls = starttls  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] not in ("manager", "agent"):
        print(__doc__, file=sys.stderr)
        return 2
    role, flaws, rest = argv[0], argv[1].split("+"), argv[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if role == "manager":
        for flaw in flaws:
            break_manager(flaw)
        from metersync import cli

        return cli.main(["manager", *rest])
    for flaw in flaws:
        break_agent(flaw)
    from metersync_agent import service

    return service.main(rest)


if __name__ == "__main__":
    sys.exit(main())
