"""Broken agents of the senses run (traps, adaptive polling, privacy), one flaw each:

`trap-wildcard` (the receiver binds 0.0.0.0: MS-TRAP-1), `trap-any-source` (takes traps from
addresses it does not poll, for its first device: MS-TRAP-3), `trap-v1-ignored` (drops SNMPv1
traps: MS-TRAP-2), `trap-flood` (every trap triggers a read: MS-TRAP-4), `trap-no-read` (no
trap triggers a read: MS-TRAP-4), `trap-forgotten` (accepted traps never reach a snapshot:
MS-TRAP-5), `no-trap-stats` (no agentStatus/traps: MS-TRAP-6), `adaptive-hurry` (ignores
minInterval: MS-TRAP-7), `adaptive-lazy` (ignores maxInterval: MS-TRAP-8), `no-pdu-budget`
(early reads whatever the budget: MS-TRAP-9), `interval-untold` (never says its interval:
MS-TRAP-10), `privacy-leak` (keeps the console text whatever its mode: MS-PRIV-1),
`privacy-unkeyed` (hashes with an empty key: MS-PRIV-3), `key-masked` (hashes the device key
too: MS-PRIV-5), `masked-unlisted` (an empty `masked`: MS-PRIV-6), `masks-readings` (drops the
counters under masking: MS-PRIV-7).
"""

from __future__ import annotations

import dataclasses
from typing import Any

SENSES_FLAWS = (
    "trap-wildcard",
    "trap-any-source",
    "trap-v1-ignored",
    "trap-flood",
    "trap-no-read",
    "trap-forgotten",
    "no-trap-stats",
    "adaptive-hurry",
    "adaptive-lazy",
    "no-pdu-budget",
    "interval-untold",
    "privacy-leak",
    "privacy-unkeyed",
    "key-masked",
    "masked-unlisted",
    "masks-readings",
)


def break_agent_senses(flaw: str) -> None:
    from metersync_agent import privacy, scheduling, service, traps

    if flaw == "trap-wildcard":
        real_start = traps.TrapReceiver.start

        async def start(self: Any) -> None:
            self.config = dataclasses.replace(self.config, address="0.0.0.0")
            await real_start(self)

        traps.TrapReceiver.start = start  # type: ignore[method-assign]
    elif flaw == "trap-any-source":
        real_entries = service.AgentService._entries_at

        def entries_at(self: Any, ip: str) -> Any:
            found = real_entries(self, ip)
            return found or [e for e in self.state.devices.values() if not e.unlicensed][:1]

        service.AgentService._entries_at = entries_at  # type: ignore[method-assign]
    elif flaw == "trap-v1-ignored":
        real_class = traps._receiver_class

        def receiver_class() -> Any:
            base = real_class()

            class V2Only(base):  # type: ignore[misc, valid-type]
                def process_pdu(self, snmp: Any, mp_model: int, *args: Any) -> None:
                    if mp_model != 0:
                        super().process_pdu(snmp, mp_model, *args)

            return V2Only

        traps._receiver_class = receiver_class  # type: ignore[assignment]
    elif flaw in ("trap-flood", "trap-no-read"):
        flood = flaw == "trap-flood"

        def trigger(self: Any, key: Any, now: float) -> bool:
            return flood

        scheduling.Scheduler.trigger = trigger  # type: ignore[method-assign]
    elif flaw == "trap-forgotten":
        real_finish = service.AgentService._finish

        def finish(self: Any, e: Any, snap: Any, interval: float) -> Any:
            self.pending_traps.clear()
            return real_finish(self, e, snap, interval)

        service.AgentService._finish = finish  # type: ignore[method-assign]
    elif flaw == "no-trap-stats":
        traps.TrapReceiver.stats = lambda self: None  # type: ignore[method-assign]
    elif flaw in ("adaptive-hurry", "adaptive-lazy"):
        real_interval = scheduling.Adaptive.interval

        def interval(self: Any, base: float, mood: str) -> float:
            if flaw == "adaptive-hurry" and mood in (scheduling.ATTENTION, scheduling.BUSY):
                return base / 20  # well below minInterval (and its batching allowance)
            if flaw == "adaptive-lazy" and mood == scheduling.IDLE:
                return base * 3  # beyond maxInterval
            return real_interval(self, base, mood)

        scheduling.Adaptive.interval = interval  # type: ignore[method-assign]
    elif flaw == "no-pdu-budget":
        scheduling.PduBudget.allow = lambda self, pdus, at: True  # type: ignore[method-assign]
    elif flaw == "interval-untold":
        real_finish = service.AgentService._finish

        def untold(self: Any, e: Any, snap: Any, interval: float) -> Any:
            out = real_finish(self, e, snap, interval)
            out.interval = None
            return out

        service.AgentService._finish = untold  # type: ignore[method-assign]
    else:
        _break_masking(flaw, privacy)


def _break_masking(flaw: str, privacy: Any) -> None:
    real_apply = privacy.Masking.apply
    if flaw == "privacy-unkeyed":
        privacy.load_secret = lambda state_dir: b""
        return
    if flaw == "privacy-leak":

        def apply(self: Any, snap: Any) -> Any:
            lines = list(snap.status.console_line) if snap.status else []
            out = real_apply(self, snap)
            if out.status is not None:
                out.status.console_line = lines
            return out

    elif flaw == "key-masked":

        def apply(self: Any, snap: Any) -> Any:
            out = real_apply(self, snap)
            key = out.identity.device_key
            out.identity.device_key = key[:3] + self.text("deviceKey", key)
            return out

    elif flaw == "masked-unlisted":

        def apply(self: Any, snap: Any) -> Any:
            out = real_apply(self, snap)
            out.masked = []
            return out

    elif flaw == "masks-readings":

        def apply(self: Any, snap: Any) -> Any:
            out = real_apply(self, snap)
            out.counter = []
            return out

    else:
        raise SystemExit(f"unknown agent flaw {flaw!r}")
    privacy.Masking.apply = apply
