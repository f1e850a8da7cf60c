"""Each device's newest snapshot in one row (`device_state`), for pages over the whole fleet.

Ingest upserts it in the report's own transaction, from the rows it stores anyway; an older
snapshot arriving late never replaces a newer one. A supply is summarised as what a person
reads on a bar: a percentage only where the level defines one (both meanings exact and the
capacity above 0, MS-DEV-17), otherwise the level's meaning (someRemaining, unknown, other).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from metersync_manager import models as m

LOW_PERCENT = 10.0  # a consumable at or below this is low
FULL_PERCENT = 90.0  # a receptacle (waste toner) at or above this is nearly full
RECEPTACLE = "receptacleThatIsFilled"


def percent(s: Mapping[str, Any]) -> float | None:
    """The supply's level in percent, only where it is defined (MS-DEV-17)."""
    if s.get("percent_x100") is not None:
        return s["percent_x100"] / 100
    lvl, cap = s["level_raw"], s["max_raw"]
    exact = s["level_meaning"] == "exact" and s["max_meaning"] == "exact"
    if exact and cap > 0 and 0 <= lvl <= cap:
        return round(100 * lvl / cap, 2)
    return None


def is_low(p: float | None, receptacle: bool) -> bool:
    if p is None:
        return False
    return p >= FULL_PERCENT if receptacle else p <= LOW_PERCENT


def supply_summary(s: Mapping[str, Any]) -> dict[str, Any]:
    """One supply as the fleet table draws it (short keys: the row is kept per device)."""
    p = percent(s)
    receptacle = s.get("supply_class") == RECEPTACLE
    return {
        "name": s.get("description") or s.get("colour") or s.get("type") or f"supply {s['idx']}",
        "colour": s.get("colour"),
        "meaning": s["level_meaning"],
        "percent": p,
        "level": s["level_raw"],
        "max": s["max_raw"] if s["max_meaning"] == "exact" else None,
        "receptacle": receptacle,
        "low": is_low(p, receptacle),
    }


def values(
    device_key: str,
    reading_id: int,
    reading: Mapping[str, Any],
    supplies: Iterable[Mapping[str, Any]],
    n_alerts: int,
) -> dict[str, Any]:
    summary = [supply_summary(s) for s in sorted(supplies, key=lambda s: s["idx"])]
    return {
        "device_key": device_key,
        "reading_id": reading_id,
        "polled_at": reading["polled_at"],
        "device_status": reading.get("device_status"),
        "printer_status": reading.get("printer_status"),
        "error_flags": reading.get("error_flags"),
        "supplies": json.dumps(summary, separators=(",", ":")),
        "low_supplies": sum(1 for x in summary if x["low"]),
        "alerts": n_alerts,
    }


def upsert(insert: Callable[[Any], Any]) -> Any:
    """The statement ingest runs: a newer (or equal) snapshot replaces the row."""
    stmt = insert(m.device_state)
    exc = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["device_key"],
        set_={c.name: exc[c.name] for c in m.device_state.columns if c.name != "device_key"},
        where=exc.polled_at >= m.device_state.c.polled_at,
    )


def apply(conn: Connection, statement: Any, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(statement, list(rows))


def backfill(conn: Connection, batch: int = 2000) -> None:
    """Fill device_state from the stored readings (the migration to schema 7)."""
    r, d = m.readings.c, m.devices.c
    conn.execute(m.device_state.delete())  # recomputed whole, also over a partial earlier fill
    keys = list(conn.execute(select(d.device_key).order_by(d.device_key)).scalars())
    for start in range(0, len(keys), batch):
        rows = []
        for key in keys[start : start + batch]:
            rd = conn.execute(  # the columns of schema 7 (the step that runs this)
                select(r.id, r.polled_at, r.device_status, r.printer_status, r.error_flags)
                .where(r.device_key == key, r.disposition == "applied")
                .order_by(r.polled_at.desc(), r.id.desc())
                .limit(1)
            ).first()
            if rd is None:
                continue
            sup = conn.execute(
                select(m.supplies).where(m.supplies.c.reading_id == m.rows_of(m.supplies, rd))
            ).mappings()
            a = m.alerts.c
            n = conn.execute(select(a.idx).where(a.reading_id == m.rows_of(m.alerts, rd))).all()
            rows.append(values(key, rd.id, rd._mapping, list(sup), len(n)))
        if rows:
            conn.execute(m.device_state.insert(), rows)
