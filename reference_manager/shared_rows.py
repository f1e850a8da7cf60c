"""Readings that repeat the previous values store no rows (schema 13).

A printer read hourly mostly reports the counters, supplies, alerts and collection errors of
its previous read. Ingest digests each child-row list of a snapshot; when the device's newest
stored rows of that kind have the same digest (`device_rowsets`), the reading stores none and
refers to the reading that holds them (`readings.<kind>_of`). Every query reads a reading's
rows through `models.rows_of`, so it gets exactly the rows it would have had.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, select

from metersync_manager import models as m
from metersync_manager.extract import DeviceRows

# child table → the DeviceRows attribute holding its rows
ITEMS = {"counters": "counters", "supplies": "supplies", "alerts": "alerts"}
ITEMS["collection_errors"] = "errors"


def digest(items: list[dict[str, Any]]) -> str:
    raw = json.dumps(items, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def plan(conn: Connection, devs: list[DeviceRows]) -> dict[str, dict[str, tuple[str, int | None]]]:
    """Per device and child table: the digest of its rows and the reading already holding
    equal rows (None: store them). Empty lists are neither stored nor shared."""
    g = m.device_rowsets.c
    known = {
        (r.device_key, r.kind): (r.digest, r.reading_id)
        for r in conn.execute(
            select(g.device_key, g.kind, g.digest, g.reading_id).where(
                g.device_key.in_(sorted({x.device_key for x in devs}))
            )
        )
    }
    out: dict[str, dict[str, tuple[str, int | None]]] = {}
    for x in devs:
        per: dict[str, tuple[str, int | None]] = {}
        for table, attr in ITEMS.items():
            items = getattr(x, attr)
            if not items:
                continue
            d = digest(items)
            kind = m.SHARED_ROWS[table][0]
            seen = known.get((x.device_key, kind))
            per[table] = (d, seen[1] if seen is not None and seen[0] == d else None)
        out[x.device_key] = per
    return out


def refs(per: dict[str, tuple[str, int | None]]) -> dict[str, int | None]:
    """The readings columns of one snapshot."""
    out: dict[str, int | None] = {}
    for table, kind_table in m.SHARED_ROWS.items():
        found = per.get(table)
        out[f"{kind_table[0]}_of"] = None if found is None else found[1]
    return out


def remember(
    conn: Connection,
    upsert: Callable[..., Any],
    stored: list[tuple[str, str, str, int]],
) -> None:
    """Record (device, table, digest, reading id) of rows just stored as the device's newest."""
    if not stored:
        return
    conn.execute(
        upsert,
        [
            {"device_key": k, "kind": m.SHARED_ROWS[t][0], "digest": d, "reading_id": rid}
            for k, t, d, rid in stored
        ],
    )


def upsert_statement(insert: Callable[..., Any]) -> Any:
    stmt = insert(m.device_rowsets)
    return stmt.on_conflict_do_update(
        index_elements=["device_key", "kind"],
        set_={"digest": stmt.excluded.digest, "reading_id": stmt.excluded.reading_id},
    )
