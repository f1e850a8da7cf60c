from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from xsdata.models.datatype import XmlDateTime

from metersync_generated.v1.common import (
    Extensions,
    SoftwareInfo,
)
from metersync_generated.v1.device import DeviceSnapshot

__NAMESPACE__ = "urn:metersync:v1"


@dataclass(kw_only=True)
class CycleStats:
    """
    What the last completed poll cycle did.
    """

    started_at: XmlDateTime = field(
        metadata={
            "name": "startedAt",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    finished_at: XmlDateTime = field(
        metadata={
            "name": "finishedAt",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    devices_polled: int = field(
        metadata={
            "name": "devicesPolled",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    devices_failed: int = field(
        metadata={
            "name": "devicesFailed",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    devices_partial: int = field(
        metadata={
            "name": "devicesPartial",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )


class LicenceStateName(Enum):
    """
    valid; expiring (within 30 days); expired; missing (no licence
    installed); invalid (a licence failed verification).
    """

    VALID = "valid"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    MISSING = "missing"
    INVALID = "invalid"


@dataclass(kw_only=True)
class TrapStats:
    """
    Notifications the trap receiver handled since the agent started
    (MS-TRAP-6): accepted (from a device the agent polls, with valid
    credentials), unknownSource and badCredentials (counted and dropped),
    and triggeredReads (immediate reads the accepted ones caused,
    MS-TRAP-4).
    """

    address: str = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "pattern": r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])|[0-9a-fA-F:.]{2,45}",
        }
    )
    port: int = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    accepted: int = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    unknown_source: int = field(
        metadata={
            "name": "unknownSource",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    bad_credentials: int = field(
        metadata={
            "name": "badCredentials",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    triggered_reads: int = field(
        metadata={
            "name": "triggeredReads",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )


class UpdateMode(Enum):
    """
    How software and licence updates are installed (MS-UPD-1): manually, on
    a command, or automatically, on a schedule.
    """

    MANUAL = "manual"
    AUTOMATIC = "automatic"


@dataclass(kw_only=True)
class LicenceState:
    """
    The state of the licence the agent runs under (MS-UPD-20).
    """

    state: LicenceStateName = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    licence_id: None | str = field(
        default=None,
        metadata={
            "name": "licenceId",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    not_after: None | XmlDateTime = field(
        default=None,
        metadata={
            "name": "notAfter",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    max_devices: None | int = field(
        default=None,
        metadata={
            "name": "maxDevices",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )


@dataclass(kw_only=True)
class AgentStatusInfo:
    """
    The agent's own health at report time (MS-MSG-12): software, queue, the
    last poll cycle, what retention dropped, and the licence state.

    :ivar software:
    :ivar started_at:
    :ivar queue_depth: Reports waiting in the outbox, this one excluded.
    :ivar oldest_queued_at:
    :ivar dropped_reports: Reports the outbox retention limits removed
        unsent since the agent was installed (MS-DEL-14). Zero unless
        the manager was unreachable beyond the limits.
    :ivar storage_full_since: While the agent's storage refuses new
        reports (a full disk, MS-DEL-20): when that began. Absent
        otherwise. No report can be stored meanwhile, so it is seen on
        the channel's /status (MS-CH-10); what was lost shows afterwards
        in droppedReports and the sequence gap.
    :ivar last_cycle:
    :ivar licence:
    :ivar channel_enabled:
    :ivar update_mode:
    :ivar traps: With the trap receiver on (MS-TRAP-6): what it received
        since the agent started.
    :ivar extensions:
    """

    software: SoftwareInfo = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    started_at: XmlDateTime = field(
        metadata={
            "name": "startedAt",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    queue_depth: int = field(
        metadata={
            "name": "queueDepth",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    oldest_queued_at: None | XmlDateTime = field(
        default=None,
        metadata={
            "name": "oldestQueuedAt",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    dropped_reports: int = field(
        metadata={
            "name": "droppedReports",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    storage_full_since: None | XmlDateTime = field(
        default=None,
        metadata={
            "name": "storageFullSince",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    last_cycle: None | CycleStats = field(
        default=None,
        metadata={
            "name": "lastCycle",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    licence: LicenceState = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    channel_enabled: bool = field(
        metadata={
            "name": "channelEnabled",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    update_mode: UpdateMode = field(
        metadata={
            "name": "updateMode",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    traps: None | TrapStats = field(
        default=None,
        metadata={
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


@dataclass(kw_only=True)
class AgentStatus(AgentStatusInfo):
    """
    The agent's status as a document of its own: the channel resource
    /status (MS-CH-10).
    """

    class Meta:
        namespace = "urn:metersync:v1"

    agent_id: str = field(
        metadata={
            "name": "agentId",
            "type": "Attribute",
            "pattern": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        }
    )


@dataclass(kw_only=True)
class Report:
    """
    A report (MS-MSG-10): a batch of device snapshots from one agent.
    reportId makes delivery idempotent (MS-DEL-2); sequence orders an
    agent's reports (MS-DEL-5).

    :ivar report_id:
    :ivar agent_id:
    :ivar sequence: Per-agent sequence number, starting at 1 and
        increasing by one for each report the agent creates (MS-DEL-5).
        Reports may arrive out of order.
    :ivar sequence_epoch: The agent's sequence epoch (MS-DEL-21): absent
        means 1. An agent that lost its outbox starts a new, higher
        epoch whose sequence numbers start again at 1; a manager
        computes missing sequences per epoch.
    :ivar created_at: When the agent created the report (not when it was
        sent); with a time zone.
    :ivar agent_status:
    :ivar device:
    :ivar extensions:
    :ivar version:
    """

    class Meta:
        namespace = "urn:metersync:v1"

    report_id: str = field(
        metadata={
            "name": "reportId",
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
    sequence: int = field(
        metadata={
            "type": "Element",
        }
    )
    sequence_epoch: None | int = field(
        default=None,
        metadata={
            "name": "sequenceEpoch",
            "type": "Element",
        },
    )
    created_at: XmlDateTime = field(
        metadata={
            "name": "createdAt",
            "type": "Element",
        }
    )
    agent_status: AgentStatusInfo = field(
        metadata={
            "name": "agentStatus",
            "type": "Element",
        }
    )
    device: list[DeviceSnapshot] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "max_occurs": 10000,
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
