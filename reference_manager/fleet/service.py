"""The fleet's background work in a serving manager: evaluate, tick, deliver.

One asyncio task: evaluate the readings after the cursor until none are left, run the timer
rules every `tick`, deliver due notifications, sleep `poll`. Blocking database work runs in
threads. An error is logged and retried at the next round: the loop never dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from metersync_manager.fleet import lifecycle
from metersync_manager.fleet.evaluate import Evaluator
from metersync_manager.fleet.notify import NotifyConfig, Sender
from metersync_manager.store import Store

log = logging.getLogger("metersync.manager.fleet")


@dataclass(frozen=True)
class FleetConfig:
    enabled: bool = True
    poll: float = 1.0  # seconds between looks for new readings and due notifications
    tick: float = 60.0  # seconds between runs of the timer rules
    settle: int = lifecycle.SETTLE
    notify: NotifyConfig = field(default_factory=NotifyConfig)


class FleetService:
    def __init__(self, store: Store, config: FleetConfig, clock: Any) -> None:
        self.config = config
        self.evaluator = Evaluator(store, clock, settle=config.settle)
        self.sender = Sender(store, config.notify, clock)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self) -> None:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="metersync-fleet")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None
        await self.sender.close()

    async def round(self, tick: bool) -> None:
        while await asyncio.to_thread(self.evaluator.step):
            pass
        if tick:
            await asyncio.to_thread(self.evaluator.tick)
        await self.sender.run_once()

    async def _loop(self) -> None:
        last_tick = 0.0
        while not self._stop.is_set():
            due = time.monotonic() - last_tick >= self.config.tick
            try:
                await self.round(due)
                if due:
                    last_tick = time.monotonic()
            except Exception:
                log.exception("fleet evaluation or delivery failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.poll)
