from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from xsdata.models.datatype import XmlDateTime

from metersync_generated.v1.common import Extensions

__NAMESPACE__ = "urn:metersync:v1"


class LicensedProduct(Enum):
    """
    The role the licence is for.
    """

    AGENT = "agent"
    MANAGER = "manager"


@dataclass(kw_only=True)
class Licence:
    """
    A licence document (MS-UPD-20): who may run which product, for how many
    devices, until when.

    It is a target of the update feed, so its integrity and authenticity
    come from the feed's signed metadata (MS-UPD-5); it is never trusted
    from anywhere else.

    :ivar licence_id:
    :ivar licensee:
    :ivar product:
    :ivar edition:
    :ivar issued_at:
    :ivar not_before:
    :ivar not_after:
    :ivar max_devices:
    :ivar agent_id: The agents the licence is bound to; none means any
        agent of the licensee.
    :ivar feature:
    :ivar extensions:
    :ivar version:
    """

    class Meta:
        namespace = "urn:metersync:v1"

    licence_id: str = field(
        metadata={
            "name": "licenceId",
            "type": "Element",
            "max_length": 255,
        }
    )
    licensee: str = field(
        metadata={
            "type": "Element",
            "max_length": 255,
        }
    )
    product: LicensedProduct = field(
        metadata={
            "type": "Element",
        }
    )
    edition: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "max_length": 255,
        },
    )
    issued_at: XmlDateTime = field(
        metadata={
            "name": "issuedAt",
            "type": "Element",
        }
    )
    not_before: XmlDateTime = field(
        metadata={
            "name": "notBefore",
            "type": "Element",
        }
    )
    not_after: XmlDateTime = field(
        metadata={
            "name": "notAfter",
            "type": "Element",
        }
    )
    max_devices: None | int = field(
        default=None,
        metadata={
            "name": "maxDevices",
            "type": "Element",
        },
    )
    agent_id: list[str] = field(
        default_factory=list,
        metadata={
            "name": "agentId",
            "type": "Element",
            "max_occurs": 10000,
            "pattern": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        },
    )
    feature: list[str] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "max_occurs": 64,
            "max_length": 255,
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
