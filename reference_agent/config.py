"""The agent's configuration: the spec's Provisioning document → one plain settings object.

The Provisioning XML (MS-PRV-1) is the one configuration every conforming agent accepts; it is
parsed and validated at the safe XML edge like any message. A local TOML file is a friendlier
way to write the same thing: it is mapped onto the generated Provisioning model and then goes
the same way (serialised, validated, loaded), so both formats mean exactly the same.

    settings = load_config(Path("agent.xml"))     # or agent.toml
    settings.manager_url, settings.poll_interval, settings.credentials[0].describe()

Every default is in `DEFAULTS`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import metersync_generated.v1 as model
from metersync import xml_edge
from metersync.errors import ProtocolError
from metersync_agent.outbox import RetentionLimits
from metersync_agent.snmp import Credential

log = logging.getLogger("metersync.agent.config")

# The one place defaults live: the spec's Table 17-1 (and Table 5-1 for SNMP).
DEFAULTS: dict[str, Any] = {
    "http_timeout": 60,  # seconds per request (MS-HTTP-14)
    "gzip": False,
    "jitter": 0,  # seconds added at random to each poll cycle and discovery
    "start_delay_max": 0,  # random wait at start, so a fleet does not call in at once
    "snmp_timeout": 2.0,
    "snmp_retries": 1,
    "device_budget": 30,  # seconds one device's poll may take in all
    "snmp_concurrency": 50,
    "max_reports": 100_000,
    "max_age_days": 90,
    "max_bytes": 1024**3,  # 1 GiB
    "update_check_interval": 86_400,
    "smtp_fallback_after": 3600,  # seconds of HTTP failure before reports are also mailed
}
MAX_AGE_DAYS_LIMIT = 365  # MS-DEL-13


class ConfigError(ValueError):
    """A configuration that cannot be used (error 3001 or the XML edge's code), with the reason."""


@dataclass(frozen=True)
class Settings:
    """Everything the running agent needs, already defaulted and checked."""

    manager_url: str
    enrollment_token: str = field(repr=False)  # secrets never reach a log line (MS-SEC-14)
    ca_bundle: str | None  # PEM text; None: the system's trust store
    client_certificate: str | None = field(repr=False)  # PEM certificate + key
    proxy: str | None
    http_enabled: bool
    http_timeout: float
    gzip: bool
    targets_include: tuple[str, ...]
    targets_exclude: tuple[str, ...]
    credentials: tuple[Credential, ...] = field(repr=False)
    poll_interval: float
    discovery_interval: float
    jitter: float
    start_delay_max: float
    snmp_timeout: float
    snmp_retries: int
    device_budget: float
    snmp_concurrency: int
    channel_enabled: bool
    update_mode: str
    update_feed_url: str | None
    update_check_interval: float
    retention: RetentionLimits
    smtp_enabled: bool = False
    update_trusted_root: str | None = field(default=None, repr=False)  # root.json (MS-UPD-4)
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_security: str = "starttls"  # none (loopback only) / starttls / tls (MS-SMTP-8)
    smtp_ca_bundle: str | None = None  # PEM text for the relay; None: the system's trust store
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_from: str | None = None
    smtp_to: str | None = None
    smtp_fallback_after: float = DEFAULTS["smtp_fallback_after"]
    traps: Any = None  # traps.TrapConfig when the receiver is provisioned (chapter 19)
    adaptive: Any = None  # scheduling.Adaptive when adaptive polling is on (section 19.3)
    privacy: dict[str, str] = field(default_factory=dict)  # field -> drop | hash (chapter 20)
    provisioning: model.Provisioning | None = field(default=None, repr=False, compare=False)

    @property
    def reports_url(self) -> str:
        return self.manager_url.rstrip("/") + "/v1/reports"

    @property
    def enroll_url(self) -> str:
        return self.manager_url.rstrip("/") + "/v1/enroll"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _or(value: Any, key: str) -> Any:
    return DEFAULTS[key] if value is None else value


def _credential(kind: str, c: Any) -> Credential:
    if kind in ("v1", "v2c"):
        return Credential("1" if kind == "v1" else "2c", community=c.community)
    return Credential(
        "3",
        user=c.user,
        auth_protocol=c.auth_protocol.value if c.auth_protocol else None,
        auth_key=c.auth_key,
        priv_protocol=c.priv_protocol.value if c.priv_protocol else None,
        priv_key=c.priv_key,
        context=c.context or "",
    )


def _credentials(
    creds: model.SnmpCredentials, order: list[str] | None = None
) -> tuple[Credential, ...]:
    """The credentials, in document order when `order` (the element names, as written) is known.

    The generated model keeps v1, v2c and v3 in separate lists, so the order across kinds
    (MS-SNMP-4) comes from the document itself.
    """
    pools = {k: list(getattr(creds, k)) for k in ("v1", "v2c", "v3")}
    if order is None:
        order = ["v1"] * len(pools["v1"]) + ["v2c"] * len(pools["v2c"]) + ["v3"] * len(pools["v3"])
    return tuple(_credential(kind, pools[kind].pop(0)) for kind in order)


def _credential_order(raw: bytes) -> list[str]:
    root = xml_edge.parse_tree(raw)
    ns = f"{{{xml_edge.NAMESPACE}}}"
    container = root.find(f"{ns}credentials")
    if container is None:
        return []
    return [child.tag.removeprefix(ns) for child in container if isinstance(child.tag, str)]


def settings_from_provisioning(
    p: model.Provisioning, credential_order: list[str] | None = None
) -> Settings:
    """The generated Provisioning object (already valid against the XSD) → Settings."""
    http = p.transports.http
    smtp = p.transports.smtp
    http_enabled = bool(http and http.enabled)
    smtp_enabled = bool(smtp and smtp.enabled)
    if not http_enabled and not smtp_enabled:
        raise ConfigError("3001 INVALID_VALUE [MS-PRV-7]: transports: enable http, smtp or both")
    if smtp_enabled:
        assert smtp is not None
        _check_smtp(smtp)
    url = p.manager.url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"3001 INVALID_VALUE: manager/url must be an http(s) URL, not {url!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            f"3001 INVALID_VALUE [MS-HTTP-11]: manager/url {url!r} is plain http to a host that "
            "is not loopback; use https"
        )
    _check_pem("manager/caBundle", p.manager.ca_bundle)
    sched, snmp, outbox = p.schedule, p.snmp or model.SnmpSettings(), p.outbox
    outbox = outbox or model.OutboxSettings()
    creds = _credentials(p.credentials, credential_order)
    if not creds:
        raise ConfigError("credentials: at least one SNMP credential is needed")
    if outbox.max_age_days is not None and outbox.max_age_days > MAX_AGE_DAYS_LIMIT:
        raise ConfigError(
            f"3001 INVALID_VALUE [MS-DEL-13]: outbox/maxAgeDays is at most {MAX_AGE_DAYS_LIMIT}"
        )
    if sched.poll_interval <= 0 or sched.discovery_interval <= 0:
        raise ConfigError("schedule: pollInterval and discoveryInterval must be above zero")
    return Settings(
        manager_url=url,
        enrollment_token=p.manager.enrollment_token,
        ca_bundle=p.manager.ca_bundle,
        client_certificate=p.manager.client_certificate,
        proxy=p.manager.proxy,
        http_enabled=http_enabled,
        http_timeout=float(_or(http.timeout if http else None, "http_timeout")),
        gzip=bool(_or(http.gzip if http else None, "gzip")),
        targets_include=tuple(p.targets.include),
        targets_exclude=tuple(p.targets.exclude),
        credentials=creds,
        poll_interval=float(sched.poll_interval),
        discovery_interval=float(sched.discovery_interval),
        jitter=float(_or(sched.jitter, "jitter")),
        start_delay_max=float(_or(sched.start_delay_max, "start_delay_max")),
        snmp_timeout=float(_or(snmp.timeout, "snmp_timeout")),
        snmp_retries=int(_or(snmp.retries, "snmp_retries")),
        device_budget=float(_or(snmp.device_budget, "device_budget")),
        snmp_concurrency=max(1, int(_or(snmp.concurrency, "snmp_concurrency"))),
        channel_enabled=p.channel.enabled,
        update_mode=p.updates.mode.value,
        update_feed_url=p.updates.feed_url,
        update_check_interval=float(_or(p.updates.check_interval, "update_check_interval")),
        retention=RetentionLimits(
            max_reports=_or(outbox.max_reports, "max_reports"),
            max_age_days=_or(outbox.max_age_days, "max_age_days"),
            max_bytes=_or(outbox.max_bytes, "max_bytes"),
        ),
        smtp_enabled=smtp_enabled,
        update_trusted_root=p.updates.trusted_root,
        **_smtp_settings(smtp),
        **_senses(p, creds),
        provisioning=p,
    )


def _senses(p: model.Provisioning, creds: tuple[Credential, ...]) -> dict[str, Any]:
    """Provisioning traps, adaptivePolling and privacy (chapters 19, 20) -> settings."""
    from metersync_agent.privacy import modes_from_provisioning
    from metersync_agent.scheduling import Adaptive
    from metersync_agent.traps import TrapConfig

    traps = TrapConfig.from_provisioning(p, creds)
    if traps is not None and ipaddress.ip_address(traps.address).is_unspecified:
        raise ConfigError(
            f"3001 INVALID_VALUE [MS-TRAP-1]: traps/address {traps.address!r} is a wildcard; "
            "name the LAN address of this host the printers send to"
        )
    return {
        "traps": traps,
        "adaptive": Adaptive.from_provisioning(p, float(p.schedule.poll_interval)),
        "privacy": modes_from_provisioning(p),
    }


def _check_smtp(smtp: model.SmtpTransport) -> None:
    """MS-SMTP-8: TLS for every relay that is not loopback; a login only over TLS."""
    security = smtp.security.value
    if security == "none" and not _is_loopback(smtp.host):
        raise ConfigError(
            f"3001 INVALID_VALUE [MS-SMTP-8]: transports/smtp/security is none for the relay "
            f"{smtp.host!r}, which is not loopback; use starttls or tls"
        )
    if security == "none" and (smtp.username or smtp.password):
        raise ConfigError(
            "3001 INVALID_VALUE [MS-SMTP-8]: transports/smtp has a username or password but "
            "security none; a login is sent only over TLS (starttls or tls)"
        )
    if bool(smtp.username) != bool(smtp.password):
        raise ConfigError("transports/smtp: username and password go together")
    _check_pem("transports/smtp/caBundle", smtp.ca_bundle)


def _check_pem(where: str, pem: str | None) -> None:
    """A CA bundle must hold at least one certificate that ssl can load (error 3001)."""
    if not pem:
        return
    import ssl

    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"3001 INVALID_VALUE: {where} is not PEM certificates: {exc}") from None


def _smtp_settings(smtp: model.SmtpTransport | None) -> dict[str, Any]:
    if smtp is None:
        return {}
    return {
        "smtp_host": smtp.host,
        "smtp_port": int(smtp.port),
        "smtp_security": smtp.security.value,
        "smtp_ca_bundle": smtp.ca_bundle,
        "smtp_username": smtp.username,
        "smtp_password": smtp.password,
        "smtp_from": smtp.from_value,
        "smtp_to": smtp.to,
        "smtp_fallback_after": float(_or(smtp.fallback_after, "smtp_fallback_after")),
    }


def load_provisioning_bytes(data: bytes) -> Settings:
    """Provisioning XML bytes → Settings, through the safe edge (size, constructs, XSD)."""
    try:
        msg = xml_edge.parse_message(data, expect=("Provisioning",))
    except ProtocolError as exc:
        raise ConfigError(f"the provisioning document is refused: {exc}") from None
    return settings_from_provisioning(msg.obj, _credential_order(data))


# --- the friendlier TOML form -------------------------------------------------------------


def _section(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _text(section: dict[str, Any], key: str, base: Path) -> str | None:
    """A text given inline (`key`) or as a file path (`key_file`, relative to the TOML file)."""
    if section.get(key):
        return str(section[key])
    if section.get(f"{key}_file"):
        path = base / str(section[f"{key}_file"])
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read {key}_file {path}: {exc}") from None
    return None


def _pem(section: dict[str, Any], key: str, base: Path) -> str | None:
    """A PEM given inline (`key`) or as a file path (`key_file`, relative to the TOML file)."""
    if section.get(key):
        return str(section[key])
    if section.get(f"{key}_file"):
        path = base / str(section[f"{key}_file"])
        try:
            return path.read_text(encoding="ascii")
        except OSError as exc:
            raise ConfigError(f"cannot read {key}_file {path}: {exc}") from None
    return None


def _toml_credentials(
    entries: list[dict[str, Any]], usm: type = model.UsmCredential
) -> tuple[list[Any], list[Any], list[Any]]:
    """[[credentials]] entries -> the v1, v2c and v3 lists of the model (`usm`: the v3 type)."""
    v1: list[Any] = []
    v2c: list[Any] = []
    v3: list[Any] = []
    for c in entries:
        version = str(c.get("version", "2c")).lower().lstrip("v")
        if version in ("1", "2c"):
            item: Any = model.CommunityCredential(community=str(c.get("community", "public")))
            (v1 if version == "1" else v2c).append(item)
        elif version == "3":
            extra = {"engine_id": bytes.fromhex(c["engine_id"])} if c.get("engine_id") else {}
            item = usm(
                user=str(c["user"]),
                auth_protocol=model.AuthProtocol(c["auth_protocol"])
                if c.get("auth_protocol")
                else None,
                auth_key=c.get("auth_key"),
                priv_protocol=model.PrivProtocol(c["priv_protocol"])
                if c.get("priv_protocol")
                else None,
                priv_key=c.get("priv_key"),
                context=c.get("context"),
                **extra,
            )
            v3.append(item)
        else:
            raise ConfigError(f"credentials: unknown SNMP version {c.get('version')!r}")
    return v1, v2c, v3


def _toml_senses(doc: dict[str, Any]) -> dict[str, Any]:
    """[traps], [adaptive_polling] and [privacy] -> the Provisioning elements (chapters 19, 20)."""
    out: dict[str, Any] = {}
    if (t := doc.get("traps")) is not None:
        creds = None
        if t.get("credentials"):
            creds = model.TrapCredentials()
            creds.v1, creds.v2c, creds.v3 = _toml_credentials(
                t["credentials"], model.TrapUsmCredential
            )
        out["traps"] = model.TrapSettings(
            enabled=bool(t.get("enabled", True)),
            address=str(t["address"]),
            port=t.get("port"),
            credentials=creds,
            min_interval=t.get("min_interval"),
        )
    if (a := doc.get("adaptive_polling")) is not None:
        out["adaptive_polling"] = model.AdaptivePolling(
            enabled=bool(a.get("enabled", True)),
            min_interval=a.get("min_interval"),
            max_interval=a.get("max_interval"),
            pdu_budget=a.get("pdu_budget"),
        )
    if (priv := doc.get("privacy")) is not None:
        unknown = set(priv) - {"ip_address", "mac_address", "hostname", "contact", "location",
                               "console_text", "alert_description"}  # fmt: skip
        if unknown:
            raise ConfigError(f"[privacy]: unknown field(s) {', '.join(sorted(unknown))}")
        out["privacy"] = model.PrivacySettings(
            **{k: model.MaskMode(str(v)) for k, v in priv.items()}
        )
    return out


def provisioning_from_toml(doc: dict[str, Any], base: Path = Path(".")) -> model.Provisioning:
    """Map the TOML form onto the generated Provisioning model (validated later, at the edge).

    [manager] url, enrollment_token, ca_bundle | ca_bundle_file, client_certificate |
    client_certificate_file, proxy; [http] enabled, timeout, gzip; [targets] include, exclude;
    [[credentials]] version = "1" | "2c" | "3", community | user, auth_protocol, auth_key,
    priv_protocol, priv_key, context; [schedule] poll_interval, discovery_interval, jitter,
    start_delay_max; [snmp] timeout, retries, device_budget, concurrency; [channel] enabled;
    [updates] mode, feed_url, check_interval, trusted_root | trusted_root_file;
    [outbox] max_reports, max_age_days, max_bytes;
    [traps] enabled, address, port, min_interval, [[traps.credentials]] (as [[credentials]], v3
    with engine_id); [adaptive_polling] enabled, min_interval, max_interval, pdu_budget;
    [privacy] ip_address, mac_address, hostname, contact, location, console_text,
    alert_description = "keep" | "drop" | "hash";
    [smtp] enabled, host, port, security, ca_bundle | ca_bundle_file, username, password, from,
    to, fallback_after.
    """
    known = {"manager", "http", "smtp", "targets", "credentials", "schedule", "snmp", "channel"}
    known |= {"updates", "outbox", "traps", "adaptive_polling", "privacy"}
    unknown = set(doc) - known
    if unknown:
        raise ConfigError(f"unknown TOML section(s): {', '.join(sorted(unknown))}")
    m = _section(doc, "manager")
    http = _section(doc, "http")
    smtp = doc.get("smtp")
    targets = _section(doc, "targets")
    sched = _section(doc, "schedule")
    snmp = doc.get("snmp")
    outbox = doc.get("outbox")
    updates = _section(doc, "updates")
    try:
        creds = model.SnmpCredentials()
        entries = doc.get("credentials") or [{"version": "2c", "community": "public"}]
        creds.v1, creds.v2c, creds.v3 = _toml_credentials(entries)
        return model.Provisioning(
            version=xml_edge.PROTOCOL_VERSION,
            manager=model.ManagerEndpoint(
                url=str(m["url"]),
                enrollment_token=str(m["enrollment_token"]),
                ca_bundle=_pem(m, "ca_bundle", base),
                client_certificate=_pem(m, "client_certificate", base),
                proxy=m.get("proxy"),
            ),
            transports=model.Transports(
                http=model.HttpTransport(
                    enabled=bool(http.get("enabled", True)),
                    timeout=http.get("timeout"),
                    gzip=http.get("gzip"),
                ),
                smtp=None
                if smtp is None
                else model.SmtpTransport(
                    enabled=bool(smtp.get("enabled", True)),
                    host=str(smtp["host"]),
                    port=int(smtp.get("port", 25)),
                    security=model.SmtpSecurity(smtp.get("security", "starttls")),
                    ca_bundle=_pem(smtp, "ca_bundle", base),
                    username=smtp.get("username"),
                    password=smtp.get("password"),
                    from_value=str(smtp["from"]),
                    to=str(smtp["to"]),
                    fallback_after=smtp.get("fallback_after"),
                ),
            ),
            targets=model.Targets(
                include=[str(t) for t in targets.get("include", [])],
                exclude=[str(t) for t in targets.get("exclude", [])],
            ),
            credentials=creds,
            schedule=model.Schedule(
                poll_interval=int(sched.get("poll_interval", 900)),
                discovery_interval=int(sched.get("discovery_interval", 86_400)),
                jitter=sched.get("jitter"),
                start_delay_max=sched.get("start_delay_max"),
            ),
            snmp=None
            if snmp is None
            else model.SnmpSettings(
                timeout=None if snmp.get("timeout") is None else _decimal(snmp["timeout"]),
                retries=snmp.get("retries"),
                device_budget=snmp.get("device_budget"),
                concurrency=snmp.get("concurrency"),
            ),
            channel=model.ChannelSettings(enabled=bool(_section(doc, "channel").get("enabled"))),
            updates=model.UpdateSettings(
                mode=model.UpdateMode(updates.get("mode", "manual")),
                feed_url=updates.get("feed_url"),
                check_interval=updates.get("check_interval"),
                trusted_root=_text(updates, "trusted_root", base),
            ),
            outbox=None
            if outbox is None
            else model.OutboxSettings(
                max_reports=outbox.get("max_reports"),
                max_age_days=outbox.get("max_age_days"),
                max_bytes=outbox.get("max_bytes"),
            ),
            **_toml_senses(doc),
        )
    except KeyError as exc:
        raise ConfigError(f"missing TOML setting {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"bad TOML setting: {exc}") from None


def _decimal(value: Any) -> Any:
    from decimal import Decimal

    return Decimal(str(value))


def settings_from_toml_text(text: str, base: Path = Path(".")) -> Settings:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}") from None
    prov = provisioning_from_toml(doc, base)
    try:
        data = xml_edge.to_bytes(prov)  # the same path as the XML form: validated, then loaded
    except ProtocolError as exc:
        raise ConfigError(f"the TOML settings do not make a valid Provisioning: {exc}") from None
    settings = load_provisioning_bytes(data)
    # The model serialises v1, v2c, v3 in that order; keep the order the TOML file gives.
    return dataclasses.replace(
        settings, credentials=_credentials(prov.credentials, _toml_order(doc))
    )


def _toml_order(doc: dict[str, Any]) -> list[str]:
    entries = doc.get("credentials") or [{"version": "2c"}]
    return ["v" + str(c.get("version", "2c")).lower().lstrip("v") for c in entries]


def provisioning_bytes(settings: Settings) -> bytes:
    """The settings' Provisioning document as XML, credentials in the settings' order."""
    from lxml import etree

    assert settings.provisioning is not None
    root = etree.fromstring(xml_edge.to_bytes(settings.provisioning, pretty=True))
    ns = f"{{{xml_edge.NAMESPACE}}}"
    container = root.find(f"{ns}credentials")
    pools: dict[str, list[Any]] = {"v1": [], "v2c": [], "v3": []}
    for child in list(container):
        pools[etree.QName(child).localname].append(child)
        container.remove(child)
    for c in settings.credentials:
        container.append(pools["v" + c.version].pop(0))
    data = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    xml_edge.parse_message(data, expect=("Provisioning",))  # still valid
    return data


def load_config(path: Path | str) -> Settings:
    """Load Provisioning XML (*.xml) or the TOML form (*.toml); warn when others can read it."""
    path = Path(path)
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration {path}: {exc}") from None
    if mode & 0o077 and os.name == "posix":
        log.warning(
            "the configuration %s holds secrets and is readable by others (mode %o); "
            "chmod 600 it (MS-PRV-6)",
            path,
            mode & 0o777,
        )
    if path.suffix.lower() == ".toml":
        return settings_from_toml_text(data.decode("utf-8"), path.parent)
    return load_provisioning_bytes(data)
