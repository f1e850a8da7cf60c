"""Several subtrees (table columns) walked together: one GETBULK stream, fallbacks per column.

    await walk_columns(session, [col_a, col_b, ...], result, hints={col_a: 4}, cap=64)

Each GETBULK carries one varbind per still-open column and max-repetitions sized from the row
count expected for those columns (`hints`, e.g. the previous cycle's; else `default_rows`), so
a table of R rows and C columns costs about C*(R+1)/cap PDUs instead of one walk per column.
Anything unusual for a column (endOfMibView inside it, a non-increasing OID, an error status
for the PDU) hands that column to the session's checked single walk, resumed where it was, so
every rule of `SnmpSession.walk` (genErr search, loop check, cap) still holds; a PDU that gets
no answer (a value the device cannot encode silences it all) hands its columns on likewise.
SNMPv1 has no GETBULK: its columns are walked one by one.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import snmp_codec as codec
from .snmp import Oid, SnmpSession, WalkResult, _Budget, _store_odd, oid_str

__all__ = ["walk_columns"]

_TOO_BIG = 1
_PLAIN = frozenset((int, bytes, str))


class _Cursor:
    __slots__ = ("count", "last", "rows", "subtree")

    def __init__(self, subtree: Oid, rows: int) -> None:
        self.subtree = subtree
        self.last = subtree
        self.count = 0
        self.rows = rows  # rows expected in all

    def reps(self) -> int:
        left = self.rows - self.count
        return (left if left > 0 else max(self.rows, 4)) + 1  # +1: the varbind past the end


async def walk_columns(
    session: SnmpSession,
    columns: list[Oid],
    into: WalkResult,
    *,
    hints: Mapping[Oid, int] | None = None,
    cap: int = 64,
    max_repetitions: int = 25,
    default_rows: int = 8,
    max_varbinds: int = 5000,
) -> dict[Oid, int]:
    """Walk every column into `into`; returns the rows read per column (the next hints)."""
    hints = hints or {}
    cursors = [_Cursor(tuple(c), hints.get(tuple(c), default_rows)) for c in columns]
    if session.credential.version == "1":
        for c in cursors:
            before = into.varbinds
            await session.walk(c.subtree, into, max_varbinds)
            c.count = into.varbinds - before
        return {c.subtree: c.count for c in cursors}
    active = list(cursors)
    delegated: list[_Cursor] = []
    try:
        while active:
            group, reps = _group(active, cap)
            reps = min(reps, max_repetitions)  # MS-SNMP-11: at most 25 rows per request
            ind, status, _, vbs = await session._request(
                codec.GET_BULK, [c.last for c in group], into, reps
            )
            if ind is not None and len(group) > 1:
                # one bad object can silence the whole PDU: each column on its own finds it
                delegated += group
                active = [c for c in active if c not in group]
                continue
            if ind is not None:
                for c in active:
                    into.problem(c.last, ind[0], f"walk of {oid_str(c.subtree)} stopped: {ind[1]}")
                active = []
                break
            if status == _TOO_BIG and cap > len(group):
                cap = max(len(group), cap // 2)
                continue
            if status:
                delegated += group
                active = [c for c in active if c not in group]
                continue
            done = _apply(group, vbs, into, max_varbinds, delegated)
            active = [c for c in active if c not in done]
    except _Budget:
        for c in active:
            into.problem(c.last, "budget-exceeded", session._budget_msg())
        return {c.subtree: c.count for c in cursors}
    for c in delegated:
        before = into.varbinds
        await session.walk(c.subtree, into, max(1, max_varbinds - c.count), start=c.last)
        c.count += into.varbinds - before
    return {c.subtree: c.count for c in cursors}


def _group(active: list[_Cursor], cap: int) -> tuple[list[_Cursor], int]:
    """The columns of the next PDU (in order, while columns x repetitions fit in cap)."""
    group: list[_Cursor] = []
    reps = 1
    for c in active:
        r = max(reps, c.reps())
        if group and (len(group) + 1) * r > cap:
            break
        group.append(c)
        reps = r
    return group, max(1, min(reps, cap // len(group)))


def _apply(
    group: list[_Cursor],
    vbs: list[tuple[Oid, codec.Value]],
    into: WalkResult,
    max_varbinds: int,
    delegated: list[_Cursor],
) -> set[_Cursor]:
    """Store one answer's varbinds per column; the columns that are finished (or handed on)."""
    n = len(group)
    done: set[_Cursor] = set()
    values = into.values
    for i, (oid, value) in enumerate(vbs):
        c = group[i % n]
        if c in done:
            continue
        sub = c.subtree
        if value is codec.END_OF_MIB_VIEW or oid <= c.last:
            done.add(c)
            if c.last != sub:  # inside the column: the single walk decides what it means
                delegated.append(c)
            continue
        if oid[: len(sub)] != sub:
            done.add(c)
            continue
        if c.count >= max_varbinds:
            into.problem(oid, "walk-cap", f"walk of {oid_str(sub)} stopped at {max_varbinds}")
            done.add(c)
            continue
        c.last = oid
        c.count += 1
        into.varbinds += 1
        if value.__class__ in _PLAIN:
            values[oid] = value  # type: ignore[assignment]
        else:
            _store_odd(oid, value, into)
    if not vbs:
        done.update(group)
    return done
