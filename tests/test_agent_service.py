"""Rules of the agent's poll cycle that need no server (sans-IO)."""

from __future__ import annotations

from xsdata.models.datatype import XmlDateTime

import metersync_generated.v1 as model
from metersync_agent.service import admit, one_snapshot_per_key


def snap(key: str, ip: str, *, silent: bool) -> model.DeviceSnapshot:
    errors = (
        [model.CollectionError(code=model.CollectionErrorCode.UNREACHABLE, message="no answer")]
        if silent
        else []
    )
    return model.DeviceSnapshot(
        polled_at=XmlDateTime.from_string("2026-11-28T08:00:00Z"),
        identity=model.DeviceIdentity(device_key=key, ip_address=ip),
        status=None if silent else model.DeviceStatusInfo(),
        collection_error=errors,
    )


def test_a_moved_printer_is_reported_once_under_its_key() -> None:
    old = snap("sn:hp:cnb1", "127.0.0.2", silent=True)
    new = snap("sn:hp:cnb1", "127.0.0.3", silent=False)
    other = snap("sn:kyocera:v1", "127.0.0.4", silent=True)  # really silent: still reported
    kept, dropped = one_snapshot_per_key([old, new, other])
    assert [s.identity.ip_address for s in kept] == ["127.0.0.3", "127.0.0.4"]
    assert dropped == 1


def test_a_printer_on_two_addresses_is_reported_once() -> None:
    first = snap("sn:hp:cnb1", "127.0.0.2", silent=False)
    second = snap("sn:hp:cnb1", "127.0.0.3", silent=False)
    kept, dropped = one_snapshot_per_key([first, second])
    assert kept == [first] and dropped == 0


def test_a_licence_keeps_the_devices_monitored_before_new_ones() -> None:
    monitored = dict.fromkeys(["sn:b", "sn:c"])
    # "sn:a" is new and comes first in the cycle (its address sorts first): it is refused.
    assert admit(monitored, {}, ["sn:a", "sn:b", "sn:c"], 2) == {"sn:a"}
    assert list(monitored) == ["sn:b", "sn:c"]
    assert admit(monitored, {}, ["sn:a", "sn:d"], 3) == {"sn:d"}  # room for one more
    assert admit(monitored, {}, ["sn:d"], None) == set()  # no licence in force: no limit


def test_after_a_restart_the_devices_monitored_before_come_first() -> None:
    monitored: dict[str, None] = {}
    before = {"sn:b": 0, "sn:c": 1}  # monitored.json
    assert admit(monitored, before, ["sn:a", "sn:b", "sn:c"], 2) == {"sn:a"}
    assert list(monitored) == ["sn:b", "sn:c"]
