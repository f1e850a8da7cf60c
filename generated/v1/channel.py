from __future__ import annotations

from dataclasses import dataclass, field

from xsdata.models.datatype import XmlDateTime

from metersync_generated.v1.common import Extensions
from metersync_generated.v1.device import Device
from metersync_generated.v1.exchange import Error
from metersync_generated.v1.report import AgentStatus

__NAMESPACE__ = "urn:metersync:v1"


@dataclass(kw_only=True)
class DeviceSummary:
    """
    One line of the device list.
    """

    device_key: str = field(
        metadata={
            "name": "deviceKey",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "pattern": r"(sn|mac|sys):[!-~]{1,250}",
        }
    )
    ip_address: str = field(
        metadata={
            "name": "ipAddress",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "pattern": r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])|[0-9a-fA-F:.]{2,45}",
        }
    )
    vendor: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    model: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    serial_number: None | str = field(
        default=None,
        metadata={
            "name": "serialNumber",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    last_polled_at: None | XmlDateTime = field(
        default=None,
        metadata={
            "name": "lastPolledAt",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    last_poll_complete: None | bool = field(
        default=None,
        metadata={
            "name": "lastPollComplete",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )


@dataclass(kw_only=True)
class ChannelRequest:
    """
    A request the manager sends over a channel the agent opened (MS-CH-5).

    The envelope can carry any method so that an agent can refuse what is
    not GET with error 5001 (MS-CH-7).
    """

    class Meta:
        namespace = "urn:metersync:v1"

    request_id: str = field(
        metadata={
            "name": "requestId",
            "type": "Element",
            "pattern": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        }
    )
    method: str = field(
        metadata={
            "type": "Element",
            "pattern": r"[A-Z]{1,16}",
        }
    )
    path: str = field(
        metadata={
            "type": "Element",
            "pattern": r"/[!-~]{0,511}",
        }
    )
    created_at: XmlDateTime = field(
        metadata={
            "name": "createdAt",
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
class DeviceList:
    """
    The channel resource /devices (MS-CH-11): every device the agent
    monitors, with its last poll.
    """

    class Meta:
        namespace = "urn:metersync:v1"

    device: list[DeviceSummary] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "max_occurs": 100000,
        },
    )


@dataclass(kw_only=True)
class ChannelBody:
    """
    Exactly one MeterSync document.
    """

    agent_status: None | AgentStatus = field(
        default=None,
        metadata={
            "name": "AgentStatus",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    device_list: None | DeviceList = field(
        default=None,
        metadata={
            "name": "DeviceList",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    device: None | Device = field(
        default=None,
        metadata={
            "name": "Device",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    error: None | Error = field(
        default=None,
        metadata={
            "name": "Error",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )


@dataclass(kw_only=True)
class ChannelResponse:
    """
    The agent's answer to one ChannelRequest (MS-CH-6): the request id, an
    HTTP-style status, and a body holding one MeterSync document
    (AgentStatus, DeviceList, Device or Error).
    """

    class Meta:
        namespace = "urn:metersync:v1"

    request_id: str = field(
        metadata={
            "name": "requestId",
            "type": "Element",
            "pattern": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        }
    )
    status: int = field(
        metadata={
            "type": "Element",
            "min_inclusive": 100,
            "max_inclusive": 599,
        }
    )
    body: ChannelBody = field(
        metadata={
            "type": "Element",
        }
    )
    version: str = field(
        metadata={
            "type": "Attribute",
            "pattern": r"1\.[0-9]{1,3}",
        }
    )
