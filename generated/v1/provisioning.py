from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from metersync_generated.v1.common import Extensions
from metersync_generated.v1.report import UpdateMode

__NAMESPACE__ = "urn:metersync:v1"


@dataclass(kw_only=True)
class AdaptivePolling:
    """
    Adaptive polling (MS-TRAP-7..10): off unless enabled is true.

    A device in an alert state, with a supply low or falling fast, or busy,
    is polled more often, never more often than minInterval and within
    pduBudget; an idle device less often, never less often than
    maxInterval.

    :ivar min_interval:
    :ivar max_interval:
    :ivar pdu_budget: SNMP request PDUs per minute the agent may spend,
        over all the devices it polls (its site), on reads earlier than
        schedule/pollInterval; default 600.
    :ivar enabled:
    """

    min_interval: None | int = field(
        default=None,
        metadata={
            "name": "minInterval",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    max_interval: None | int = field(
        default=None,
        metadata={
            "name": "maxInterval",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    pdu_budget: None | int = field(
        default=None,
        metadata={
            "name": "pduBudget",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    enabled: bool = field(
        metadata={
            "type": "Attribute",
        }
    )


class AuthProtocol(Enum):
    """
    SNMPv3 authentication protocols.
    """

    MD5 = "MD5"
    SHA = "SHA"
    SHA224 = "SHA224"
    SHA256 = "SHA256"
    SHA384 = "SHA384"
    SHA512 = "SHA512"


@dataclass(kw_only=True)
class ChannelSettings:
    """
    Bidirectional mode (MS-CH-1): off unless enabled is true.

    The agent opens the channel to the manager; it never listens.
    """

    enabled: bool = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class CommunityCredential:
    """
    An SNMPv1 or v2c community.
    """

    community: str = field(
        metadata={
            "type": "Attribute",
            "max_length": 255,
        }
    )


@dataclass(kw_only=True)
class HttpTransport:
    """
    The HTTP(S) binding's settings.
    """

    timeout: None | int = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    gzip: None | bool = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    enabled: bool = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class ManagerEndpoint:
    """
    The manager the agent enrolls with and reports to.

    :ivar url: The manager's base URL (http or https); the binding's
        paths are appended (MS-HTTP-1).
    :ivar enrollment_token:
    :ivar ca_bundle: PEM certificates the agent trusts for the manager,
        instead of the system's.
    :ivar client_certificate: PEM certificate and key for TLS client
        authentication, when the manager asks for one.
    :ivar proxy: An HTTP proxy URL; HTTPS goes through it with CONNECT.
    """

    url: str = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    enrollment_token: str = field(
        metadata={
            "name": "enrollmentToken",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "pattern": r"[A-Za-z0-9_\-]{16,128}",
        }
    )
    ca_bundle: None | str = field(
        default=None,
        metadata={
            "name": "caBundle",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    client_certificate: None | str = field(
        default=None,
        metadata={
            "name": "clientCertificate",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    proxy: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )


class MaskMode(Enum):
    """
    keep: as read; drop: left out; hash: replaced by its keyed hash
    (MS-PRIV-3).
    """

    KEEP = "keep"
    DROP = "drop"
    HASH = "hash"


@dataclass(kw_only=True)
class OutboxSettings:
    """
    Outbox retention limits (MS-DEL-13): beyond them the oldest unsent
    reports are dropped and counted in droppedReports.
    """

    max_reports: None | int = field(
        default=None,
        metadata={
            "name": "maxReports",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    max_age_days: None | int = field(
        default=None,
        metadata={
            "name": "maxAgeDays",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    max_bytes: None | int = field(
        default=None,
        metadata={
            "name": "maxBytes",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )


class PrivProtocol(Enum):
    """
    SNMPv3 privacy protocols.
    """

    DES = "DES"
    AES = "AES"
    AES192 = "AES192"
    AES256 = "AES256"


@dataclass(kw_only=True)
class Schedule:
    """
    When the agent works (MS-PRV-4): poll and discovery intervals, a random
    jitter on each, and a random delay at start so that a fleet does not
    call in at once after a power cut.
    """

    poll_interval: int = field(
        metadata={
            "name": "pollInterval",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    discovery_interval: int = field(
        metadata={
            "name": "discoveryInterval",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    jitter: None | int = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    start_delay_max: None | int = field(
        default=None,
        metadata={
            "name": "startDelayMax",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )


class SmtpSecurity(Enum):
    """
    none (loopback and tests only), starttls, or implicit tls.
    """

    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


@dataclass(kw_only=True)
class SnmpSettings:
    """
    Limits of SNMP polling (MS-SNMP-6..9).
    """

    timeout: None | Decimal = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    retries: None | int = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    device_budget: None | int = field(
        default=None,
        metadata={
            "name": "deviceBudget",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    concurrency: None | int = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )


@dataclass(kw_only=True)
class Targets:
    """
    Where to look for printers (MS-PRV-3): include and exclude lists, each
    entry an address, a host name, a range a.b.c.d-a.b.c.e or a CIDR block,
    with an optional :port (default 161).
    """

    include: list[str] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "min_occurs": 1,
            "max_occurs": 10000,
            "pattern": r"[A-Za-z0-9.\-:/\[\]]{1,255}",
        },
    )
    exclude: list[str] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 10000,
            "pattern": r"[A-Za-z0-9.\-:/\[\]]{1,255}",
        },
    )


@dataclass(kw_only=True)
class PrivacySettings:
    """
    Per-field masking (MS-PRIV-1..7), applied before a snapshot is stored
    in the outbox: keep (as read, the default), drop (left out) or hash (a
    keyed hash with a secret of the agent's own, so that one device stays
    one device).

    :ivar ip_address:
    :ivar mac_address:
    :ivar hostname: identity/hostname and identity/sysName.
    :ivar contact:
    :ivar location:
    :ivar console_text:
    :ivar alert_description: alert/description, and the text values of
        trap varbinds.
    """

    ip_address: None | MaskMode = field(
        default=None,
        metadata={
            "name": "ipAddress",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    mac_address: None | MaskMode = field(
        default=None,
        metadata={
            "name": "macAddress",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    hostname: None | MaskMode = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    contact: None | MaskMode = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    location: None | MaskMode = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    console_text: None | MaskMode = field(
        default=None,
        metadata={
            "name": "consoleText",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    alert_description: None | MaskMode = field(
        default=None,
        metadata={
            "name": "alertDescription",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )


@dataclass(kw_only=True)
class SmtpTransport:
    """
    The SMTP binding's settings: the relay to hand reports to and the
    manager's mailbox.

    :ivar host:
    :ivar port:
    :ivar security:
    :ivar ca_bundle: PEM certificates the agent trusts for the relay
        (STARTTLS or implicit TLS), instead of the system's (MS-SMTP-8).
    :ivar username:
    :ivar password:
    :ivar from_value:
    :ivar to:
    :ivar fallback_after:
    :ivar enabled:
    """

    host: str = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        }
    )
    port: int = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    security: SmtpSecurity = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    ca_bundle: None | str = field(
        default=None,
        metadata={
            "name": "caBundle",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    username: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    password: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    from_value: str = field(
        metadata={
            "name": "from",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        }
    )
    to: str = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        }
    )
    fallback_after: None | int = field(
        default=None,
        metadata={
            "name": "fallbackAfter",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    enabled: bool = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class UpdateSettings:
    """
    Where and how the agent updates its software and licences (MS-UPD-1).

    :ivar feed_url:
    :ivar check_interval:
    :ivar trusted_root: The feed's initial trusted TUF root metadata
        (the text of a root.json), provisioned out of band (MS-UPD-4);
        without it, the root shipped with the software.
    :ivar mode:
    """

    feed_url: None | str = field(
        default=None,
        metadata={
            "name": "feedUrl",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    check_interval: None | int = field(
        default=None,
        metadata={
            "name": "checkInterval",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    trusted_root: None | str = field(
        default=None,
        metadata={
            "name": "trustedRoot",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    mode: UpdateMode = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class UsmCredential:
    """
    An SNMPv3 user (RFC 3414 USM): noAuthNoPriv without keys, authNoPriv
    with an auth key, authPriv with both.
    """

    user: str = field(
        metadata={
            "type": "Attribute",
            "max_length": 255,
        }
    )
    auth_protocol: None | AuthProtocol = field(
        default=None,
        metadata={
            "name": "authProtocol",
            "type": "Attribute",
        },
    )
    auth_key: None | str = field(
        default=None,
        metadata={
            "name": "authKey",
            "type": "Attribute",
            "max_length": 255,
        },
    )
    priv_protocol: None | PrivProtocol = field(
        default=None,
        metadata={
            "name": "privProtocol",
            "type": "Attribute",
        },
    )
    priv_key: None | str = field(
        default=None,
        metadata={
            "name": "privKey",
            "type": "Attribute",
            "max_length": 255,
        },
    )
    context: None | str = field(
        default=None,
        metadata={
            "type": "Attribute",
            "max_length": 255,
        },
    )


@dataclass(kw_only=True)
class SnmpCredentials:
    """
    SNMP credentials, tried in document order per device; the first that
    answers is remembered for that device (MS-SNMP-4).
    """

    v1: list[CommunityCredential] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 64,
        },
    )
    v2c: list[CommunityCredential] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 64,
        },
    )
    v3: list[UsmCredential] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 64,
        },
    )


@dataclass(kw_only=True)
class Transports:
    """
    How reports travel: HTTP(S) POST, SMTP, or both (HTTP first, SMTP when
    HTTP has failed for smtpFallbackAfter seconds).
    """

    http: None | HttpTransport = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    smtp: None | SmtpTransport = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )


@dataclass(kw_only=True)
class TrapUsmCredential(UsmCredential):
    """
    An SNMPv3 user for notifications.

    Informs are authenticated with the receiver's own engine; a v3 trap
    needs the sending device's snmpEngineID (engineId, hexadecimal), as RFC
    3414 makes the sender authoritative.
    """

    engine_id: None | bytes = field(
        default=None,
        metadata={
            "name": "engineId",
            "type": "Attribute",
            "format": "base16",
        },
    )


@dataclass(kw_only=True)
class TrapCredentials:
    """
    Communities (v1, v2c) and USM users (v3) a trap or inform must carry to
    be accepted (MS-TRAP-3).
    """

    v1: list[CommunityCredential] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 64,
        },
    )
    v2c: list[CommunityCredential] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 64,
        },
    )
    v3: list[TrapUsmCredential] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 64,
        },
    )


@dataclass(kw_only=True)
class TrapSettings:
    """
    The SNMP trap receiver (MS-TRAP-1): off unless enabled is true.

    It faces the printers only: it binds UDP on address and port (default
    162) and accepts traps and informs from the devices the agent polls,
    with the credentials below (default: the communities and USM users of
    Provisioning/credentials). It is never an endpoint for the manager.

    :ivar address: The agent host's LAN address the receiver binds to
        (one address, never a wildcard chosen by the agent).
    :ivar port:
    :ivar credentials:
    :ivar min_interval: At most one trap-triggered read of a device per
        this many seconds (MS-TRAP-4); default 60.
    :ivar enabled:
    """

    address: str = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "pattern": r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])|[0-9a-fA-F:.]{2,45}",
        }
    )
    port: None | int = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    credentials: None | TrapCredentials = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    min_interval: None | int = field(
        default=None,
        metadata={
            "name": "minInterval",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    enabled: bool = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class Provisioning:
    """
    Agent provisioning (MS-PRV-1): everything an agent needs to run, in one
    document every conforming agent accepts (MS-PRV-2).

    The conformance suite configures agents under test through it. It holds
    secrets: store it readable by the agent only (MS-PRV-6).
    """

    class Meta:
        namespace = "urn:metersync:v1"

    manager: ManagerEndpoint = field(
        metadata={
            "type": "Element",
        }
    )
    transports: Transports = field(
        metadata={
            "type": "Element",
        }
    )
    targets: Targets = field(
        metadata={
            "type": "Element",
        }
    )
    credentials: SnmpCredentials = field(
        metadata={
            "type": "Element",
        }
    )
    schedule: Schedule = field(
        metadata={
            "type": "Element",
        }
    )
    snmp: None | SnmpSettings = field(
        default=None,
        metadata={
            "type": "Element",
        },
    )
    channel: ChannelSettings = field(
        metadata={
            "type": "Element",
        }
    )
    updates: UpdateSettings = field(
        metadata={
            "type": "Element",
        }
    )
    outbox: None | OutboxSettings = field(
        default=None,
        metadata={
            "type": "Element",
        },
    )
    traps: None | TrapSettings = field(
        default=None,
        metadata={
            "type": "Element",
        },
    )
    adaptive_polling: None | AdaptivePolling = field(
        default=None,
        metadata={
            "name": "adaptivePolling",
            "type": "Element",
        },
    )
    privacy: None | PrivacySettings = field(
        default=None,
        metadata={
            "type": "Element",
        },
    )
    extensions: None | Extensions = field(
        default=None,
        metadata={
            "type": "Element",
        },
    )
    version: str = field(
        metadata={
            "type": "Attribute",
            "pattern": r"1\.[0-9]{1,3}",
        }
    )
