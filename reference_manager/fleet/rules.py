"""Alert rules, sans-IO: from a subject's state to the conditions that hold now.

A rule gives `Condition`s; the lifecycle (lifecycle.py) turns their appearance and
disappearance into opened, updated and resolved alerts. Settings: code defaults (`DEFAULTS`),
overridden by the dealer's defaults (customer "*"), overridden by the customer's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from metersync_manager.fleet.forecast import Forecast, Life

CRITICAL, WARNING, INFO = "critical", "warning", "info"

DEFAULTS: dict[str, dict[str, Any]] = {
    "supply-low": {"enabled": True, "threshold": 10, "leadDays": 7},
    "supply-unknown": {"enabled": True, "hours": 72},
    "device-silent": {"enabled": True, "intervals": 3},
    "agent-silent": {"enabled": True, "intervals": 3},
    "agent-outbox": {"enabled": True, "queueDepth": 100},
    "licence": {"enabled": True, "missing": False},  # missing: alert agents without one
    "printer-error": {"enabled": True},
    "counter-reset": {"enabled": True, "hours": 24},
    "replaced-early": {"enabled": True, "threshold": 20, "hours": 168},
    "ownership-conflict": {"enabled": True, "hours": 24},
    "webhook-failing": {"enabled": True},
}
RULES = tuple(DEFAULTS)
DEVICE_RULES = (
    "supply-low",
    "supply-unknown",
    "printer-error",
    "counter-reset",
    "replaced-early",
    "ownership-conflict",
)
# Rules of events: an alert holds while its event is younger than the rule's hours.
EVENT_RULES = ("counter-reset", "replaced-early", "ownership-conflict")

# hrPrinterDetectedErrorState flags and prtAlertCode names worth a service call.
ERROR_FLAGS = {
    "noPaper": CRITICAL,
    "noToner": CRITICAL,
    "doorOpen": CRITICAL,
    "jammed": CRITICAL,
    "offline": CRITICAL,
    "serviceRequested": CRITICAL,
    "inputTrayMissing": WARNING,
    "outputTrayMissing": WARNING,
    "markerSupplyMissing": CRITICAL,
    "outputFull": WARNING,
    "inputTrayEmpty": WARNING,
    "overduePreventMaint": WARNING,
}
ALERT_CODES = {
    "jam": CRITICAL,
    "doorOpen": CRITICAL,
    "coverOpen": CRITICAL,
    "interlockOpen": CRITICAL,
    "inputMediaSupplyEmpty": CRITICAL,
    "inputMediaTrayMissing": WARNING,
    "markerTonerEmpty": CRITICAL,
    "markerSupplyMissing": CRITICAL,
    "markerInkEmpty": CRITICAL,
    "serviceRequested": CRITICAL,
    "outputMediaTrayFull": WARNING,
    "markerWasteTonerReceptacleFull": WARNING,
    "markerWasteInkReceptacleFull": WARNING,
    "fuserOverTemperature": CRITICAL,
    "fuserUnderTemperature": WARNING,
}
EVENT_KINDS = {
    "counter-reset": ("reset", "swap-in", "swap-out"),
    "ownership-conflict": ("conflict",),
}


def settings_for(rule: str, stored: Mapping[tuple[str, str], Mapping[str, Any]], customer: str):
    """The effective settings of a rule for a customer."""
    out = dict(DEFAULTS[rule])
    out.update(stored.get(("*", rule), {}))
    out.update(stored.get((customer, rule), {}))
    return out


@dataclass(frozen=True)
class Condition:
    rule: str
    subject_kind: str
    subject_id: str
    key: str
    severity: str
    title: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def ident(self) -> tuple[str, str, str, str]:
        return (self.rule, self.subject_kind, self.subject_id, self.key)


@dataclass
class SupplyState:
    idx: int
    description: str | None
    part_number: str | None
    level: float | None  # percent, None for -2/-3
    meaning: str
    known_at: datetime | None  # when a level was last read
    first_at: datetime  # the oldest read of this supply in the history
    forecast: Forecast
    ended: list[Life] = field(default_factory=list)  # lives that ended (replacements)


@dataclass
class DeviceState:
    device_key: str
    customer_id: str
    error_flags: list[str]
    printer_alerts: list[dict[str, Any]]
    supplies: list[SupplyState]
    events: list[dict[str, Any]]  # device_events rows: kind, at, agent_id, detail


def device_conditions(dev: DeviceState, now: datetime, setting: Any) -> list[Condition]:
    """Conditions of the DEVICE_RULES; `setting(rule)` gives a rule's effective settings."""
    out: list[Condition] = []
    on = {r: setting(r) for r in DEVICE_RULES}
    for s in dev.supplies:
        if on["supply-low"]["enabled"]:
            out += _supply_low(dev.device_key, s, on["supply-low"])
        if on["supply-unknown"]["enabled"]:
            out += _supply_unknown(dev.device_key, s, now, on["supply-unknown"])
        if on["replaced-early"]["enabled"]:
            out += _replaced_early(dev.device_key, s, now, on["replaced-early"])
    if on["printer-error"]["enabled"]:
        out += _printer_errors(dev)
    for rule in ("counter-reset", "ownership-conflict"):
        if on[rule]["enabled"]:
            out += _events(dev, rule, now, on[rule])
    return out


def _supply_name(s: SupplyState) -> str:
    return s.description or f"supply {s.idx}"


def _supply_low(key: str, s: SupplyState, cfg: Mapping[str, Any]) -> Iterable[Condition]:
    days = s.forecast.days
    level = s.forecast.level if s.forecast.level is not None else s.level
    low = level is not None and level <= cfg["threshold"]
    soon = days is not None and days <= cfg["leadDays"]
    if not (low or soon):
        return []
    empty = (level is not None and level <= 0) or (days is not None and days <= 1)
    what = f"{days:.0f} days to empty" if days is not None else f"{level:.0f} %"
    return [
        Condition(
            "supply-low",
            "device",
            key,
            str(s.idx),
            CRITICAL if empty else WARNING,
            f"{_supply_name(s)}: {what}",
            {
                "supply": s.idx,
                "description": s.description,
                "partNumber": s.part_number,
                "level": s.level,
                "forecast": s.forecast.as_dict(),
            },
        )
    ]


def _supply_unknown(
    key: str, s: SupplyState, now: datetime, cfg: Mapping[str, Any]
) -> Iterable[Condition]:
    if s.level is not None:
        return []
    since = s.known_at or s.first_at
    if now - since < timedelta(hours=cfg["hours"]):
        return []
    return [
        Condition(
            "supply-unknown",
            "device",
            key,
            str(s.idx),
            INFO,
            f"{_supply_name(s)}: level {s.meaning} for {(now - since).days} days",
            {"supply": s.idx, "meaning": s.meaning, "lastKnownAt": _iso(s.known_at)},
        )
    ]


def _replaced_early(
    key: str, s: SupplyState, now: datetime, cfg: Mapping[str, Any]
) -> Iterable[Condition]:
    out = []
    for life in s.ended:
        if life.end_level is None or life.ended_at is None:
            continue
        if life.end_level < cfg["threshold"] or now - life.ended_at >= timedelta(
            hours=cfg["hours"]
        ):
            continue
        summary = {k: _iso(v) if isinstance(v, datetime) else v for k, v in life.summary().items()}
        out.append(
            Condition(
                "replaced-early",
                "device",
                key,
                f"{s.idx}@{_iso(life.ended_at)}",
                WARNING,
                f"{_supply_name(s)} replaced at {life.end_level:.0f} %",
                {"supply": s.idx, "at": _iso(life.ended_at), "life": summary},
            )
        )
    return out


def _printer_errors(dev: DeviceState) -> Iterable[Condition]:
    out = []
    for flag in dev.error_flags:
        if flag in ERROR_FLAGS:
            out.append(
                Condition(
                    "printer-error",
                    "device",
                    dev.device_key,
                    f"flag:{flag}",
                    ERROR_FLAGS[flag],
                    f"printer reports {flag}",
                    {"source": "hrPrinterDetectedErrorState", "flag": flag},
                )
            )
    for a in dev.printer_alerts:
        sev = ALERT_CODES.get(a["code"]) or (CRITICAL if a["severity"] == "critical" else None)
        if sev is None:
            continue
        out.append(
            Condition(
                "printer-error",
                "device",
                dev.device_key,
                f"alert:{a['code']}:{a.get('group') or ''}{a.get('group_index') or ''}",
                sev,
                f"printer alert {a['code']}"
                + (f": {a['description']}" if a.get("description") else ""),
                {"source": "prtAlertTable", **a},
            )
        )
    return out


def _events(
    dev: DeviceState, rule: str, now: datetime, cfg: Mapping[str, Any]
) -> Iterable[Condition]:
    window = timedelta(hours=cfg["hours"])
    newest: dict[str, dict[str, Any]] = {}
    for e in dev.events:
        fresh = e["kind"] in EVENT_KINDS[rule] and now - e["at"] < window
        if fresh and (e["kind"] not in newest or e["at"] > newest[e["kind"]]["at"]):
            newest[e["kind"]] = e
    return [
        Condition(
            rule,
            "device",
            dev.device_key,
            kind,
            WARNING,
            f"{'counter ' + kind if rule == 'counter-reset' else 'ownership conflict'}",
            {
                "event": kind,
                "at": _iso(e["at"]),
                "agentId": e.get("agent_id"),
                "detail": e["detail"],
            },
        )
        for kind, e in sorted(newest.items())
    ]


def event_still_holds(rule: str, evidence: Mapping[str, Any], now: datetime, cfg: Any) -> bool:
    """An event alert's condition, from its evidence alone (the timer's check)."""
    at = evidence.get("at")
    if not at:
        return False
    when = datetime.fromisoformat(at.rstrip("Z"))
    return now - when < timedelta(hours=cfg["hours"])


@dataclass
class AgentState:
    agent_id: str
    customer_id: str
    last_seen_at: datetime | None
    interval: timedelta | None
    queue_depth: int | None
    dropped_reports: int | None
    licence_state: str | None
    revoked: bool


def agent_conditions(a: AgentState, now: datetime, setting: Any) -> list[Condition]:
    out: list[Condition] = []
    if a.revoked:
        return out
    silent = setting("agent-silent")
    if silent["enabled"] and a.interval is not None and a.last_seen_at is not None:
        quiet = now - a.last_seen_at
        if quiet > silent["intervals"] * a.interval:
            out.append(
                Condition(
                    "agent-silent",
                    "agent",
                    a.agent_id,
                    "",
                    CRITICAL,
                    f"agent silent for {int(quiet.total_seconds() // 60)} min",
                    {
                        "lastSeenAt": _iso(a.last_seen_at),
                        "intervalSeconds": a.interval.total_seconds(),
                    },
                )
            )
    box = setting("agent-outbox")
    if box["enabled"] and a.queue_depth is not None and a.queue_depth >= box["queueDepth"]:
        out.append(
            Condition(
                "agent-outbox",
                "agent",
                a.agent_id,
                "queue",
                WARNING,
                f"agent outbox holds {a.queue_depth} reports",
                {"queueDepth": a.queue_depth},
            )
        )
    if box["enabled"] and a.dropped_reports:
        out.append(
            Condition(
                "agent-outbox",
                "agent",
                a.agent_id,
                "dropped",
                CRITICAL,
                f"agent dropped {a.dropped_reports} reports",
                {"droppedReports": a.dropped_reports},
            )
        )
    lic = setting("licence")
    bad = ("expiring", "expired", "invalid", *(("missing",) if lic["missing"] else ()))
    if lic["enabled"] and a.licence_state in bad:
        out.append(
            Condition(
                "licence",
                "agent",
                a.agent_id,
                "",
                WARNING if a.licence_state == "expiring" else CRITICAL,
                f"agent licence {a.licence_state}",
                {"licenceState": a.licence_state},
            )
        )
    return out


def device_silent(
    device_key: str, flag_reason: str | None, last_complete: datetime | None
) -> Condition:
    what = "only partial reads" if flag_reason == "partial" else "no reads"
    return Condition(
        "device-silent",
        "device",
        device_key,
        "",
        WARNING,
        f"device: {what}",
        {"reason": flag_reason, "lastCompleteAt": _iso(last_complete)},
    )


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else dt.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
