"""Manager-Update against the reference `metersync manager update` and `serve`, and a broken one.

The harness serves a TUF feed on loopback and attacks it step by step (update_harness); the
manager's update command runs once per step. Meanwhile it starts the manager (`serve`) once in
manual and once in automatic mode, each against a feed server of its own. The update checks
need no manager under --url, so the URL and token command are never used. The runs go at once.

The broken manager carries four flaws, each breaking one rule (conformance/broken/): its
update command accepts an expired timestamp (MS-UPD-7) and reads downloads past their bound
(MS-UPD-9); its `serve` checks the feed in manual mode (MS-UPD-1, MS-UPD-13) and, in automatic
mode, every third of the interval (MS-UPD-14). A third, update-only run refuses over-long
downloads in time but with 6001 instead of 6004 (`length-code`): MS-UPD-9 alone must fail.
"""

from __future__ import annotations

import asyncio
import sys

import pytest
from test_conformance_agent import by_status, evidence

from metersync_conformance.cli import run_manager
from metersync_conformance.registry import Status, Verdict

ARGS = "update --feed-url {feed_url} --trusted-root {trusted_root} --data-dir {data_dir}"
REFERENCE = "{python} -m metersync.cli manager " + ARGS
SERVE = (
    "serve --data-dir {data_dir} --bind 127.0.0.1:{port} --update-mode {mode} "
    "--update-interval {check_interval} --feed-url {feed_url} --trusted-root {trusted_root}"
)
REFERENCE_SERVE = "{python} -m metersync.cli manager " + SERVE
BROKEN = "{python} -m metersync_conformance.broken manager expired-ok+unbounded -- " + ARGS
BROKEN_SERVE = "{python} -m metersync_conformance.broken manager update-hurry+manual-fetches -- "
BROKEN_SERVE += SERVE
WRONG_CODE = "{python} -m metersync_conformance.broken manager length-code -- " + ARGS
IDS = {"MS-UPD-1", "MS-UPD-2", "MS-UPD-3", "MS-UPD-4", "MS-UPD-5", "MS-UPD-6", "MS-UPD-7",
       "MS-UPD-8", "MS-UPD-9", "MS-UPD-10", "MS-UPD-12", "MS-UPD-13", "MS-UPD-14", "MS-UPD-17",
       "MS-UPD-18", "MS-UPD-21"}  # fmt: skip
# flaw -> the check it must fail (and the requirements of that check)
BROKEN_CHECKS = {
    "manager_update_expired_timestamp_refused": {"MS-UPD-7"},
    "manager_update_downloads_bounded": {"MS-UPD-9"},
    "manager_update_manual_mode_fetches_nothing": {"MS-UPD-1", "MS-UPD-13"},
    "manager_update_automatic_mode": {"MS-UPD-14"},
}


def _run(command: str | None, serve: str | None = None):  # type: ignore[no-untyped-def]
    return run_manager(
        "http://127.0.0.1:9",  # never contacted by the update checks
        "false",
        ["Manager-Update"],
        update_command=command,
        update_platform="python",
        manager_command=serve,
    )


async def _all() -> dict[str, list[Verdict]]:
    runs = {
        "reference": _run(REFERENCE, REFERENCE_SERVE),
        "broken": _run(BROKEN, BROKEN_SERVE),
        "length-code": _run(WRONG_CODE),
        "none": _run(None),
    }
    results = await asyncio.gather(*runs.values())
    return {name: v for name, (v, _) in zip(runs, results, strict=True)}


@pytest.fixture(scope="module")
def verdicts() -> dict[str, list[Verdict]]:
    return asyncio.run(_all())


def test_reference_manager_refuses_every_attack_and_stages_the_valid_version(
    verdicts: dict[str, list[Verdict]],
) -> None:
    ref = verdicts["reference"]
    print(evidence(ref), file=sys.stderr)
    assert by_status(ref, Status.FAIL) == set(), evidence(ref)
    assert by_status(ref, Status.PASS) == IDS


def test_broken_manager_caught_by_exactly_the_rules_its_flaws_break(
    verdicts: dict[str, list[Verdict]],
) -> None:
    got = verdicts["broken"]
    failed = {v.check for v in got if v.status is Status.FAIL}
    assert failed == set(BROKEN_CHECKS), evidence(got)
    for name, ids in BROKEN_CHECKS.items():
        assert {v.requirement for v in got if v.check == name and v.status is Status.FAIL} == ids
    assert by_status(got, Status.FAIL) == set().union(*BROKEN_CHECKS.values()), evidence(got)


def test_without_an_update_command_nothing_passes(verdicts: dict[str, list[Verdict]]) -> None:
    none = verdicts["none"]
    assert none and {v.status for v in none} == {Status.NOT_TESTED}


def test_over_long_download_refused_with_another_code_is_caught(
    verdicts: dict[str, list[Verdict]],
) -> None:
    got = verdicts["length-code"]
    failed = [v for v in got if v.status is Status.FAIL]
    assert {(v.check, v.requirement) for v in failed} == {
        ("manager_update_downloads_bounded", "MS-UPD-9")
    }, evidence(got)
    assert all("6004" in v.summary for v in failed), evidence(got)
