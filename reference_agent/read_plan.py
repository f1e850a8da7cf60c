"""The read plan of one poll: which scalars to GET and which columns to stream, sans I/O.

    plan = plan_columns(chosen_profiles)        # walked tables narrowed to their used columns
    memory = ReadMemory()                        # one per SNMP client, kept across cycles
    hints = memory.rows(host, port)              # the previous cycle's rows per column
    memory.remember(host, port, rows, chosen)    # after the read

A walk that is a whole table the standard profile describes (`[tables.*]`: entry and
columns) is read as just the columns the mapper uses; every other walk is read as it is.
The memory keeps, per device, the rows each column had and which profiles applied, so the
next cycle sizes max-repetitions to the table and GETs the profiles' scalars in the first
PDU (the credential probe's).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from .profiles import Profile, plan_reads

__all__ = ["ReadMemory", "plan_columns"]

Oid = tuple[int, ...]


def _columns(walk: Oid, std: Profile) -> list[Oid] | None:
    for t in std.tables.values():
        entry = t["entry"]
        if entry[: len(walk)] == walk:  # the walk is the table (or its entry)
            return [(*entry, c) for c in sorted(set(t["columns"].values()))]
    return None


def _covered(oid: Oid, subtrees: Iterable[Oid]) -> bool:
    return any(oid[: len(s)] == s for s in subtrees)


def plan_columns(profiles: Iterable[Profile]) -> tuple[list[Oid], list[Oid]]:
    """(columns to walk, scalars to GET) for the chosen profiles."""
    profiles = list(profiles)
    std = next((p for p in profiles if p.name == "standard"), None)
    walks, _ = plan_reads(profiles)
    out: list[Oid] = []
    for w in walks:
        cols = _columns(w, std) if std is not None else None
        out += cols if cols is not None else [w]
    # walks inside a narrowed table that are not one of its used columns: read as they are
    tables = [w for w in walks if std is not None and _columns(w, std) is not None]
    out += [
        o
        for p in profiles
        for o in p.walks
        if _covered(o, tables) and not _covered(o, out) and _columns(o, std) is None  # type: ignore[arg-type]
    ]
    columns, _ = plan_reads([Profile(name="plan", walks=tuple(out))])
    gets = [g for p in profiles for g in p.gets if not _covered(g, columns)]
    return columns, list(dict.fromkeys(gets))


class ReadMemory:
    """Per device (host, port): rows per column and the chosen profiles' names, bounded."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._rows: OrderedDict[tuple[str, int], tuple[dict[Oid, int], tuple[str, ...]]] = (
            OrderedDict()
        )

    def rows(self, host: str, port: int) -> dict[Oid, int]:
        got = self._rows.get((host, port))
        return dict(got[0]) if got else {}

    def profiles(self, host: str, port: int) -> tuple[str, ...]:
        got = self._rows.get((host, port))
        return got[1] if got else ()

    def remember(self, host: str, port: int, rows: dict[Oid, int], profiles: Iterable[str]) -> None:
        key = (host, port)
        self._rows[key] = (dict(rows), tuple(profiles))
        self._rows.move_to_end(key)
        while len(self._rows) > self.limit:
            self._rows.popitem(last=False)
