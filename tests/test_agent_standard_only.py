"""`run --profiles standard`: the reference agent as a standard-profile-only agent (issue 15)."""

from __future__ import annotations

import pytest

from metersync_agent.profiles import ProfileError, load_profiles, only_profiles


def test_standard_only_keeps_the_standard_profile_alone() -> None:
    profiles = load_profiles()
    assert len(profiles) > 1
    for names in (["standard"], []):
        applied = [p.name for p in only_profiles(profiles, names) if not p.key_only]
        assert applied == ["standard"]


def test_named_profiles_are_kept_with_standard_and_unknown_names_refused() -> None:
    profiles = load_profiles()
    other = next(p.name for p in profiles if p.name != "standard")
    applied = {p.name for p in only_profiles(profiles, [other]) if not p.key_only}
    assert applied == {"standard", other}
    with pytest.raises(ProfileError, match="no profile named nosuch"):
        only_profiles(profiles, ["nosuch"])


def _table_3_2() -> dict[str, list[str]]:
    """Table 3-2 of the spec: sysObjectID prefix -> its serial objects ('sysDescr' for a
    pattern over sysDescr), in order."""
    import re
    from pathlib import Path

    spec = (Path(__file__).resolve().parents[1] / "spec/metersync.md").read_text("utf-8")
    table = spec.split("Table 3-2 — ", 1)[1].split("\n\n", 2)[1]
    rows = {}
    for line in table.splitlines()[2:]:
        prefix, objects = (c.strip() for c in line.strip("|").split("|", 1))
        rows[prefix] = [
            "sysDescr" if part.strip().startswith("sysDescr") else oid[0]
            for part in re.split(r"^|; then ", objects)
            if part
            for oid in [re.findall(r"1\.3\.6\.1\.4\.1(?:\.\d+)+", part)]
        ]
    return rows


def test_table_3_2_names_exactly_the_serial_objects_of_the_profiles() -> None:
    """The key's vendor serial objects are normative (spec 3.1, MS-ID-9): a profile that reads
    a serial from another object, or a row no profile reads, breaks keys across agents."""
    want = {}
    for p in load_profiles():
        if p.name == "standard" or not p.serial:
            continue
        for e in p.enterprises:
            want[".".join(map(str, e))] = [
                ".".join(map(str, s.oid)) if s.oid is not None else "sysDescr" for s in p.serial
            ]
    assert _table_3_2() == want


def test_standard_only_still_reads_the_key_serials_but_applies_no_vendor_profile() -> None:
    profiles = only_profiles(load_profiles(), ["standard"])
    vendors = [p for p in profiles if p.name != "standard"]
    assert vendors and all(p.key_only and p.serial for p in vendors)
    assert all(not (p.counters or p.model or p.console or p.probes) for p in vendors)
