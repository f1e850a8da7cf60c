from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from xsdata.models.datatype import XmlDateTime

from metersync_generated.v1.common import (
    Extensions,
    SoftwareInfo,
)

__NAMESPACE__ = "urn:metersync:v1"


class Capability(Enum):
    """
    An optional feature the agent implements (its conformance classes
    beyond Agent-Core).
    """

    HTTP = "http"
    SMTP = "smtp"
    CHANNEL_WEBSOCKET = "channel-websocket"
    CHANNEL_LONGPOLL = "channel-longpoll"
    UPDATE = "update"
    SNMPV3 = "snmpv3"
    TRAP = "trap"


@dataclass(kw_only=True)
class ErrorLocation:
    """
    Where in the refused document the problem is: line and column, both
    1-based (a sender that does not know the column omits it: 0 is no
    column), and the path of the element.
    """

    line: None | int = field(
        default=None,
        metadata={
            "type": "Attribute",
        },
    )
    column: None | int = field(
        default=None,
        metadata={
            "type": "Attribute",
        },
    )
    element: None | str = field(
        default=None,
        metadata={
            "type": "Attribute",
            "max_length": 1024,
        },
    )


class ReceiptStatus(Enum):
    """
    accepted: stored now; duplicate: stored before, nothing stored now.
    """

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


class SignatureAlgorithm(Enum):
    """
    Signature algorithms of this version: ed25519 only (MS-SEC-4).
    """

    ED25519 = "ed25519"


@dataclass(kw_only=True)
class ErrorInfo:
    """
    The content of an Error.

    :ivar code:
    :ivar name:
    :ivar message:
    :ivar requirement:
    :ivar location:
    :ivar message_id: The id of the refused message, when it could be
        read.
    :ivar retry_after: Seconds the sender waits before it tries again
        (also sent as the Retry-After header over HTTP).
    :ivar extensions:
    :ivar version:
    """

    code: int = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "min_inclusive": 1000,
            "max_inclusive": 9999,
        }
    )
    name: str = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "pattern": r"[A-Z][A-Z0-9_]{1,63}",
        }
    )
    message: str = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 1024,
        }
    )
    requirement: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "pattern": r"MS-[A-Z]+-[0-9]+",
        },
    )
    location: None | ErrorLocation = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    message_id: None | str = field(
        default=None,
        metadata={
            "name": "messageId",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "pattern": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        },
    )
    retry_after: None | int = field(
        default=None,
        metadata={
            "name": "retryAfter",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    extensions: None | Extensions = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    version: str = field(
        metadata={
            "type": "Attribute",
            "pattern": r"1\.[0-9]{1,3}",
        }
    )


@dataclass(kw_only=True)
class PublicKey:
    """
    The agent's signature public key: for ed25519, the 32 raw key bytes in
    base64 (MS-SEC-4).
    """

    value: bytes = field(
        default=b"",
        metadata={
            "format": "base64",
        },
    )
    algorithm: SignatureAlgorithm = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class Receipt:
    """
    The manager's acknowledgement of an Enrollment or a Report (MS-DEL-3).
    status "duplicate" means the message id was already stored: the sender
    treats it exactly as "accepted".
    """

    class Meta:
        namespace = "urn:metersync:v1"

    message_id: str = field(
        metadata={
            "name": "messageId",
            "type": "Element",
            "pattern": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        }
    )
    agent_id: str = field(
        metadata={
            "name": "agentId",
            "type": "Element",
            "pattern": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        }
    )
    status: ReceiptStatus = field(
        metadata={
            "type": "Element",
        }
    )
    received_at: XmlDateTime = field(
        metadata={
            "name": "receivedAt",
            "type": "Element",
        }
    )
    devices_stored: None | int = field(
        default=None,
        metadata={
            "name": "devicesStored",
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


@dataclass(kw_only=True)
class Enrollment:
    """
    The agent's hello (MS-SEC-1..8): its id, software, capabilities and
    public key, authorised by a one-time enrollment token.

    The manager answers with a Receipt or an Error.
    """

    class Meta:
        namespace = "urn:metersync:v1"

    message_id: str = field(
        metadata={
            "name": "messageId",
            "type": "Element",
            "pattern": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        }
    )
    agent_id: str = field(
        metadata={
            "name": "agentId",
            "type": "Element",
            "pattern": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        }
    )
    created_at: XmlDateTime = field(
        metadata={
            "name": "createdAt",
            "type": "Element",
        }
    )
    token: str = field(
        metadata={
            "type": "Element",
            "pattern": r"[A-Za-z0-9_\-]{16,128}",
        }
    )
    software: SoftwareInfo = field(
        metadata={
            "type": "Element",
        }
    )
    hostname: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "max_length": 255,
        },
    )
    capability: list[Capability] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "max_occurs": 32,
        },
    )
    public_key: PublicKey = field(
        metadata={
            "name": "publicKey",
            "type": "Element",
        }
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


@dataclass(kw_only=True)
class Error(ErrorInfo):
    """
    A refusal, from a manager to an agent or from an agent over the channel
    (MS-ERR-1): a numbered code, a message a person can act on, and where
    possible the requirement and the place in the document.
    """

    class Meta:
        namespace = "urn:metersync:v1"
