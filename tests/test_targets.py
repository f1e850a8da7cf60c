"""Target parsing and lazy expansion."""

from __future__ import annotations

import itertools

import pytest

from metersync_agent.targets import TargetError, TargetSet, parse_target


def test_single_address_hostname_and_port():
    assert list(TargetSet.parse(["10.0.0.7"])) == [("10.0.0.7", 161)]
    assert list(TargetSet.parse(["10.0.0.7:1161"])) == [("10.0.0.7", 1161)]
    assert list(TargetSet.parse(["printer-3.example.com"])) == [("printer-3.example.com", 161)]
    assert list(TargetSet.parse(["printer:162"], default_port=1)) == [("printer", 162)]


def test_ranges():
    assert [h for h, _ in TargetSet.parse(["10.0.0.1-10.0.0.4"])] == [
        "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4",
    ]  # fmt: skip
    assert len(list(TargetSet.parse(["10.0.0.250-10.0.1.5"]))) == 12  # crosses an octet
    assert [h for h, _ in TargetSet.parse(["10.0.0.1-3:1161"])] == [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
    ]


def test_cidr_skips_network_and_broadcast():
    hosts = [h for h, _ in TargetSet.parse(["10.0.0.0/22"])]
    assert len(hosts) == 1022
    assert hosts[0] == "10.0.0.1" and hosts[-1] == "10.0.3.254"
    assert [h for h, _ in TargetSet.parse(["10.0.0.8/31"])] == ["10.0.0.8", "10.0.0.9"]
    assert [h for h, _ in TargetSet.parse(["10.0.0.5/32"])] == ["10.0.0.5"]


def test_exclusions_and_duplicates():
    ts = TargetSet.parse(
        ["10.0.0.0/29", "10.0.0.3", "10.0.0.9"], exclude=["10.0.0.2", "10.0.0.4-5", "10.0.0.9:1161"]
    )
    assert [h for h, _ in ts] == ["10.0.0.1", "10.0.0.3", "10.0.0.6", "10.0.0.9"]
    ts = TargetSet.parse(["10.0.0.9:1161", "host"], exclude=["10.0.0.9:1161", "HOST"])
    assert list(ts) == []


def test_expansion_is_lazy():
    ts = TargetSet.parse(["10.0.0.0/8"])
    assert ts.upper_bound() == 2**24 - 2
    assert list(itertools.islice(ts, 2)) == [("10.0.0.1", 161), ("10.0.0.2", 161)]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "10.0.0.300",
        "10.0.0.5-10.0.0.1",
        "10.0.0.1-300",
        "10.0.0.0/33",
        "h:0",
        "h:x",
        "a b",
        "::1",
    ],
)
def test_bad_targets_are_rejected(bad):
    with pytest.raises(TargetError):
        parse_target(bad)
