"""The console's device search: each device's identity cut into lower-case terms.

`device_terms` holds, per device, its key, serial, current IP, model, sysName and hostname,
lower-cased, each from the start of every word on (words begin after a space, ':', '/', '_',
'.' or '-': "hp laserjet m404" gives "hp laserjet m404", "laserjet m404" and "m404"). A
search for "q" is the prefix range `q <= term < q + U+FFFF` of the table's primary key: it
finds a device whose serial, IP, name or model has a word that *starts with* q ("sn0012",
"10.1.", "laserjet m4", "hp:b"), through one index, whatever the fleet's size (a substring
scan read every device; the middle of a word, "aserjet", is no longer found). Ingest
refreshes the terms of the devices a report changed, in the report's transaction; only terms
that changed are written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, or_, select

from metersync_manager import models as m

WORD = re.compile(r"[^\s:/_.-]+")  # where a word starts: after a separator
MAX_TERM = 255
TOP = "\uffff"  # above every character of a term in the byte order both databases compare in
d, t = m.devices.c, m.device_terms.c
COLUMNS = (d.device_key, d.serial_number, d.current_ip, d.model, d.sys_name, d.hostname)


def words(values: Iterable[str | None]) -> set[str]:
    """The terms of one device's identity values: each value from every word's start on."""
    out: set[str] = set()
    for v in values:
        low = (v or "").strip().lower()
        out.update(low[w.start() :][:MAX_TERM] for w in WORD.finditer(low))
        if low:
            out.add(low[:MAX_TERM])
    return out


def normalise(q: str) -> str:
    """A search box's text as a term prefix."""
    return q.strip().lower()[:MAX_TERM]


def matching(q: str) -> Any:
    """The keys of the devices with a term starting with q, as a subquery for IN (…)."""
    p = normalise(q)
    return select(t.device_key).where(t.term >= p, t.term < p + TOP)


def _identities(conn: Connection, keys: Sequence[str]) -> dict[str, set[str]]:
    rows = conn.execute(select(*COLUMNS).where(d.device_key.in_(keys)))
    return {r[0]: words(r) for r in rows}


def refresh(conn: Connection, keys: Sequence[str]) -> None:
    """Make the terms of these devices match their rows in `devices`."""
    if not keys:
        return
    want = _identities(conn, keys)
    have: dict[str, set[str]] = {}
    for term, key in conn.execute(select(t.term, t.device_key).where(t.device_key.in_(keys))):
        have.setdefault(key, set()).add(term)
    gone = [(w, k) for k in keys for w in have.get(k, set()) - want.get(k, set())]
    new = [
        {"term": w, "device_key": k}
        for k in keys
        for w in sorted(want.get(k, set()) - have.get(k, set()))
    ]
    for start in range(0, len(gone), 500):
        part = gone[start : start + 500]
        conn.execute(
            delete(m.device_terms).where(
                or_(*(and_(t.term == w, t.device_key == k) for w, k in part))
            )
        )
    if new:
        conn.execute(m.device_terms.insert(), new)


def backfill(conn: Connection, batch: int = 5000) -> None:
    """Every device's terms from `devices` (the migration to schema 12; the benchmark)."""
    conn.execute(delete(m.device_terms))
    last = ""
    while True:
        rows = conn.execute(
            select(*COLUMNS).where(d.device_key > last).order_by(d.device_key).limit(batch)
        ).all()
        if not rows:
            return
        conn.execute(
            m.device_terms.insert(),
            [{"term": w, "device_key": r[0]} for r in rows for w in sorted(words(r))],
        )
        last = rows[-1][0]
