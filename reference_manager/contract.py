"""Contract meters: how a customer's billed meters are composed of counters.

A definition is a name and terms, each a counter kind (optionally of one source) with a
positive integer weight: `mono = print-mono + copy-mono`, `a3 = 2 * large-format`. Stored as
data per customer; customer "*" holds the dealer's defaults, which a customer's own definition
of the same name replaces. Validated on entry (`parse_terms`).

For one device interval of the export, a term takes the device's counter of that kind (and
source): when several match, the Printer-MIB one (source "standard") if any, else the first by
source and OID, and the meter says `ambiguous`; when none matches, the meter is `incomplete`
and bills only what it found.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select

from metersync_generated.v1 import CounterKind
from metersync_manager import models as m

DEALER_DEFAULTS = "*"
NAME = re.compile(r"[a-z][a-z0-9-]{0,63}")
KINDS = {k.value for k in CounterKind}
_TERM = re.compile(r"^\s*(?:(\d+)\s*\*\s*)?([a-z][a-z-]*)(?:@([a-z][a-z0-9-]*))?\s*$")


class ContractError(ValueError):
    """A definition that cannot be stored."""


def parse_terms(text: str) -> list[dict[str, Any]]:
    """`"print-mono + copy-mono"`, `"2*large-format"`, `"total@standard"` → terms."""
    terms = []
    for part in text.split("+"):
        found = _TERM.match(part)
        if not found:
            raise ContractError(f"term {part.strip()!r}: write [WEIGHT*]KIND[@SOURCE]")
        weight, kind, source = found.groups()
        if kind not in KINDS:
            raise ContractError(f"term {part.strip()!r}: {kind!r} is not a counter kind")
        w = int(weight or 1)
        if not 1 <= w <= 1000:
            raise ContractError(f"term {part.strip()!r}: the weight must be 1 to 1000")
        terms.append({"kind": kind, "source": source, "weight": w})
    if not terms:
        raise ContractError("a contract meter needs at least one term")
    return terms


def describe(terms: list[dict[str, Any]]) -> str:
    return " + ".join(
        ("" if t["weight"] == 1 else f"{t['weight']}*")
        + t["kind"]
        + (f"@{t['source']}" if t.get("source") else "")
        for t in terms
    )


def define(conn: Connection, customer_id: str, name: str, text: str, now: datetime) -> None:
    if not NAME.fullmatch(name):
        raise ContractError(f"meter name {name!r}: lower-case letters, digits and hyphens")
    terms = parse_terms(text)
    c = m.contract_meters.c
    conn.execute(delete(m.contract_meters).where(c.customer_id == customer_id, c.name == name))
    conn.execute(
        m.contract_meters.insert().values(
            customer_id=customer_id, name=name, terms=json.dumps(terms), updated_at=now
        )
    )


def remove(conn: Connection, customer_id: str, name: str) -> bool:
    c = m.contract_meters.c
    done = conn.execute(
        delete(m.contract_meters).where(c.customer_id == customer_id, c.name == name)
    )
    return bool(done.rowcount)


def definitions(conn: Connection, customers: set[str]) -> dict[str, dict[str, list[Any]]]:
    """customer → meter name → terms, with the dealer's defaults filled in."""
    c = m.contract_meters.c
    rows = conn.execute(
        select(c.customer_id, c.name, c.terms).where(
            c.customer_id.in_(sorted(customers | {DEALER_DEFAULTS}))
        )
    ).all()
    defaults = {r.name: json.loads(r.terms) for r in rows if r.customer_id == DEALER_DEFAULTS}
    out: dict[str, dict[str, list[Any]]] = {}
    for cust in customers:
        own = {r.name: json.loads(r.terms) for r in rows if r.customer_id == cust}
        out[cust] = {**defaults, **own}
    return out


def listing(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    defs = definitions(conn, {customer_id})[customer_id]
    return [{"name": n, "terms": describe(t)} for n, t in sorted(defs.items())]


def _pick(lines: list[dict[str, Any]], term: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
    found = [
        x
        for x in lines
        if x["kind"] == term["kind"] and (not term.get("source") or x["source"] == term["source"])
    ]
    if not found:
        return None, False
    found.sort(key=lambda x: (x["source"] != "standard", x["source"], x["oid"], x["label"] or ""))
    return found[0], len(found) > 1


def compose(
    seg: Any, lines: list[dict[str, Any]], meters: dict[str, dict[str, list[Any]]]
) -> list[dict[str, Any]]:
    """The contract-meter lines of one device interval from its counter lines."""
    out = []
    for name, terms in sorted(meters.get(seg.customer_id, {}).items()):
        parts, missing, ambiguous = [], [], False
        for term in terms:
            line, several = _pick(lines, term)
            ambiguous |= several
            if line is None:
                missing.append(describe([term]))
            else:
                parts.append((term["weight"], line))
        if not parts:
            continue
        first = parts[0][1]
        out.append(
            {
                "type": "meter",
                **{k: first[k] for k in ("customerId", "siteId", "site", "deviceKey")},
                **{k: first[k] for k in ("serialNumber", "model", "segment")},
                "meter": name,
                "terms": describe(terms),
                "unit": first["unit"],
                "start": {
                    "polledAt": min(p["start"]["polledAt"] for _, p in parts),
                    "value": sum(w * p["start"]["value"] for w, p in parts),
                },
                "end": {
                    "polledAt": max(p["end"]["polledAt"] for _, p in parts),
                    "value": sum(w * p["end"]["value"] for w, p in parts),
                },
                "usage": sum(w * p["usage"] for w, p in parts),
                "resets": [z for _, p in parts for z in p["resets"]],
                "startInPeriod": any(p["startInPeriod"] for _, p in parts),
                "stale": all(p["stale"] for _, p in parts),
                "startGapSeconds": _worst(p["startGapSeconds"] for _, p in parts),
                "endGapSeconds": _worst(p["endGapSeconds"] for _, p in parts),
                "complete": not missing and all(p["complete"] for _, p in parts),
                "ambiguous": ambiguous,
                "missingTerms": missing,
            }
        )
    return out


def _worst(values: Any) -> int | None:
    vals = list(values)
    return None if any(v is None for v in vals) else max(vals)
