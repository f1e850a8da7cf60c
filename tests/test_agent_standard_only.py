"""`run --profiles standard`: the reference agent as a standard-profile-only agent (issue 15)."""

from __future__ import annotations

import pytest

from metersync_agent.profiles import ProfileError, load_profiles, only_profiles


def test_standard_only_keeps_the_standard_profile_alone() -> None:
    profiles = load_profiles()
    assert len(profiles) > 1
    assert [p.name for p in only_profiles(profiles, ["standard"])] == ["standard"]
    assert [p.name for p in only_profiles(profiles, [])] == ["standard"]


def test_named_profiles_are_kept_with_standard_and_unknown_names_refused() -> None:
    profiles = load_profiles()
    other = next(p.name for p in profiles if p.name != "standard")
    assert {p.name for p in only_profiles(profiles, [other])} == {"standard", other}
    with pytest.raises(ProfileError, match="no profile named nosuch"):
        only_profiles(profiles, ["nosuch"])
