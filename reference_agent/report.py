"""The report stage of the agent's pipeline (discover → poll → map → report/outbox → send).

Pure: a cycle's snapshots and the outbox's context in, signed report bytes out; plus the
cycle bookkeeping (one snapshot per device key, the licence's device admission).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xsdata.models.datatype import XmlDateTime

import metersync_generated.v1 as model
from metersync import xml_edge
from metersync_agent import enrollment
from metersync_agent.config import Settings
from metersync_agent.enrollment import AgentIdentity, now_xml
from metersync_agent.identity import flag_decreased, series_name
from metersync_agent.outbox import EnqueueContext, ReportBytes

log = logging.getLogger("metersync.agent")

FAILED_CODES = {"unreachable", "auth-failure"}
MONITORED_FILE = "monitored.json"  # device keys in the order first monitored (MS-UPD-22)


def _xml_time(ts: float) -> Any:
    when = dt.datetime.fromtimestamp(ts, dt.UTC).replace(microsecond=0)
    return XmlDateTime.from_datetime(when)


@dataclass
class CycleResult:
    started: float
    finished: float
    snapshots: list[model.DeviceSnapshot]
    failed: int = 0
    partial: int = 0


def classify(snap: model.DeviceSnapshot) -> str:
    """'failed' (nothing read), 'partial' (read, with collection errors) or 'ok'."""
    codes = {e.code.value for e in snap.collection_error}
    if codes & FAILED_CODES and not snap.counter and not snap.supply and snap.status is None:
        return "failed"
    return "partial" if codes else "ok"


def one_snapshot_per_key(
    snapshots: list[model.DeviceSnapshot],
) -> tuple[list[model.DeviceSnapshot], int]:
    """One snapshot per device key in a cycle (MS-MSG-10, MS-ID-6, MS-ID-8): a device that
    answered at its new address drops the silent snapshot of its old one, and a device seen
    at two addresses is reported once. Returns the snapshots and how many silent ones went."""
    answered = {s.identity.device_key for s in snapshots if classify(s) != "failed"}
    kept: list[model.DeviceSnapshot] = []
    seen: set[str] = set()
    dropped_silent = 0
    for snap in snapshots:
        key = snap.identity.device_key
        silent = classify(snap) == "failed"
        if key in seen or (silent and key in answered):
            dropped_silent += silent
            continue
        seen.add(key)
        kept.append(snap)
    return kept, dropped_silent


def admit(
    monitored: dict[str, None], previous: dict[str, int], keys: list[str], limit: int | None
) -> set[str]:
    """Add a cycle's answering device keys to `monitored` (MS-UPD-22) while there is room:
    those monitored already, then those monitored before a restart (by their rank), then new
    ones in the cycle's order. Returns the keys refused."""
    order = {k: i for i, k in enumerate(monitored)}

    def rank(key: str) -> tuple[int, int]:
        if key in order:
            return 0, order[key]
        return (1, previous[key]) if key in previous else (2, 0)

    refused: set[str] = set()
    for key in sorted(dict.fromkeys(keys), key=rank):
        if key in monitored:
            continue
        if limit is not None and len(monitored) >= limit:
            refused.add(key)
        else:
            monitored[key] = None
    return refused


def load_monitored(state_dir: Path) -> dict[str, int]:
    """The device keys monitored before, with their rank (MS-UPD-22: they come first)."""
    try:
        keys = json.loads((state_dir / MONITORED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): i for i, k in enumerate(keys)} if isinstance(keys, list) else {}


def save_monitored(state_dir: Path, keys: list[str]) -> None:
    tmp = state_dir / f".{MONITORED_FILE}.tmp"
    tmp.write_text(json.dumps(keys))
    os.replace(tmp, state_dir / MONITORED_FILE)


def status_info(
    settings: Settings,
    started_at: float,
    queue_depth: int,
    oldest_queued_at: float | None,
    dropped_reports: int,
    cycle: CycleResult | None,
    licence: model.LicenceState | None = None,
    traps: model.TrapStats | None = None,
    storage_full_since: float | None = None,
) -> model.AgentStatusInfo:
    """AgentStatusInfo (MS-MSG-12): in every report, and the channel's /status (MS-MSG-14)."""
    last_cycle = None
    if cycle is not None:
        last_cycle = model.CycleStats(
            started_at=_xml_time(cycle.started),
            finished_at=_xml_time(cycle.finished),
            devices_polled=len(cycle.snapshots),
            devices_failed=cycle.failed,
            devices_partial=cycle.partial,
        )
    return model.AgentStatusInfo(
        software=enrollment.SOFTWARE,
        started_at=_xml_time(started_at),
        queue_depth=queue_depth,
        oldest_queued_at=None if oldest_queued_at is None else _xml_time(oldest_queued_at),
        dropped_reports=dropped_reports,
        storage_full_since=None if storage_full_since is None else _xml_time(storage_full_since),
        last_cycle=last_cycle,
        licence=licence or model.LicenceState(state=model.LicenceStateName.MISSING),
        channel_enabled=settings.channel_enabled,
        update_mode=model.UpdateMode(settings.update_mode),
        traps=traps,  # with the trap receiver on (MS-TRAP-6)
    )


def build_report(
    ctx: EnqueueContext,
    identity: AgentIdentity,
    settings: Settings,
    started_at: float,
    cycle: CycleResult | None,
    snapshots: list[model.DeviceSnapshot],
    licence: model.LicenceState | None = None,
    traps: model.TrapStats | None = None,
) -> ReportBytes:
    """The signed Report for these snapshots, with counter decreases flagged (MS-DEV-13)."""
    keep: list[tuple[str, str, str, int]] = []
    for snap in snapshots:
        key = snap.identity.device_key
        previous = {
            (kind, oid): v for (k, kind, oid), v in ctx.previous_counters.items() if k == key
        }
        for c in flag_decreased(snap.counter, previous):
            log.warning(
                "counter decreased on %s: %s %s %d → %d (flagged, not billed as usage)",
                key,
                c.kind.value,
                c.oid,
                c.previous,
                c.value,
            )
        keep += [(key, series_name(c), c.oid, c.value) for c in snap.counter]
    report_id = str(uuid.uuid4())
    report = model.Report(
        version=xml_edge.PROTOCOL_VERSION,
        report_id=report_id,
        agent_id=identity.agent_id,
        sequence=ctx.sequence,
        sequence_epoch=ctx.sequence_epoch if ctx.sequence_epoch > 1 else None,  # MS-DEL-21
        created_at=now_xml(),
        agent_status=status_info(
            settings,
            started_at,
            ctx.queue_depth,
            ctx.oldest_queued_at,
            ctx.dropped_reports,
            cycle,
            licence,
            traps,
        ),
        device=snapshots,
    )
    body = xml_edge.to_bytes(report)  # validated against the XSD before it is stored
    return ReportBytes(report_id, body, identity.sign(body), keep)
