"""Poll a folder of third-party recordings through one real snmpsim responder (test helper)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import metersync_generated.v1 as model
from metersync.snmpsim import SnmpSimulator
from metersync_agent.poller import poll_device
from metersync_agent.profiles import load_profiles
from metersync_agent.snmp import Credential, SnmpClient


def poll_recordings(
    source: Path, names: list[str], data: Path, timeout: float
) -> dict[str, model.DeviceSnapshot]:
    """Copy `names` from `source` into `data` (read at test time only), serve them with snmpsim
    (community = file name) and poll each once with the reference agent."""
    for name in names:
        shutil.copy(source / f"{name}.snmprec", data / f"{name}.snmprec")
    profiles = load_profiles()

    async def run(host: str, port: int) -> dict[str, model.DeviceSnapshot]:
        client = SnmpClient(timeout=timeout, retries=0)
        try:
            out = {}
            for name in names:
                creds = [Credential("2c", community=name)]
                out[name] = await poll_device(client, host, port, creds, profiles, 10.0)
            return out
        finally:
            client.close()

    with SnmpSimulator(data) as sim:
        return asyncio.run(run(*sim.address))
