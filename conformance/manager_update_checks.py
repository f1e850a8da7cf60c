"""Checks of class Manager-Update: the harness serves a TUF feed and attacks it (update_harness).

The vendor's update command (`--update-command`) runs once per step with `{feed_url}`,
`{trusted_root}` (a root.json file the harness writes), `{data_dir}` (a fresh directory for
the manager's update state) and `{python}` replaced. The steps run once, at the first check
that needs them; every check judges them from the exit codes, the printed error codes and the
feed server's request log (what each step downloaded).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from metersync_conformance import update_checks as uc
from metersync_conformance.manager_checks import ManagerContext
from metersync_conformance.registry import Finding, check, fail, not_tested
from metersync_conformance.update_harness import (
    UpdateRun,
    manager_argv,
    run_steps,
    start_feed,
    stop_feed,
)

UPDATE = ("Manager-Update",)
RUN_TIMEOUT = 900.0


async def update_run(ctx: ManagerContext) -> UpdateRun | None:
    """The steps against the manager's update command, run once per context."""
    async with ctx.update_lock:
        if ctx.update is not None or not ctx.update_command:
            return ctx.update
        work = Path(tempfile.mkdtemp(prefix="metersync-manager-update-"))
        run = start_feed(work, ctx.update_platform, product="manager")
        try:
            root = work / "root.json"
            root.write_bytes(run.feed.trusted_root())
            (work / "data").mkdir()
            argv = manager_argv(ctx.update_command, run.server.url, root, work / "data")
            await run_steps(run, argv, None, work / "update.log")
        except Exception as exc:  # a feed the harness could not build or mutate
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            stop_feed(run)
            shutil.rmtree(work, ignore_errors=True)
        ctx.update = run
        return run


async def _judged(ctx: ManagerContext, judge: Any) -> list[Finding]:
    run = await update_run(ctx)
    if run is None:
        return [not_tested("no --update-command was given, so no update phase ran")]
    if run.error:
        return [fail(f"the update phase could not run: {run.error}")]
    got = judge(run)
    return [got] if isinstance(got, Finding) else list(got)


@check("MS-UPD-4", "MS-UPD-5", classes=UPDATE, role="manager", timeout=RUN_TIMEOUT)
async def manager_update_bad_root_refused(ctx: ManagerContext) -> list[Finding]:
    """A root signed by a key the trusted root does not hold is refused with 6001."""
    return await _judged(
        ctx, lambda r: uc.judge_refusal(r, "bad-root", 6001, "root v2 signed by an untrusted key")
    )


@check("MS-UPD-6", classes=UPDATE, role="manager", timeout=RUN_TIMEOUT)
async def manager_update_rollback_refused(ctx: ManagerContext) -> list[Finding]:
    """An older timestamp than the one already trusted is refused with 6002."""

    def judge(run: UpdateRun) -> list[Finding]:
        fresh = run.step("fresh")
        if fresh is None or fresh.exit_code != 0:
            return [fail("a fresh, valid timestamp was not accepted before the rollback")]
        return [uc.judge_refusal(run, "rollback", 6002, "timestamp rolled back one version")]

    return await _judged(ctx, judge)


@check("MS-UPD-7", classes=UPDATE, role="manager", timeout=RUN_TIMEOUT)
async def manager_update_expired_timestamp_refused(ctx: ManagerContext) -> list[Finding]:
    """An expired timestamp (freeze attack) is refused with 6003."""
    return await _judged(
        ctx, lambda r: uc.judge_refusal(r, "expired-ts", 6003, "expired timestamp")
    )


@check("MS-UPD-8", classes=UPDATE, role="manager", timeout=RUN_TIMEOUT)
async def manager_update_tampered_target_refused(ctx: ManagerContext) -> list[Finding]:
    """A target whose bytes differ from the signed hash is refused with 6004."""
    return await _judged(
        ctx, lambda r: uc.judge_refusal(r, "tampered", 6004, "tampered software target")
    )


@check("MS-UPD-21", classes=UPDATE, role="manager", timeout=RUN_TIMEOUT)
async def manager_update_foreign_and_expired_licences_refused(
    ctx: ManagerContext,
) -> list[Finding]:
    """An agent's licence is refused with 6005, an expired one with 6006."""
    return await _judged(
        ctx,
        lambda r: [
            uc.judge_refusal(r, "foreign-lic", 6005, "a licence for the agent product"),
            uc.judge_refusal(r, "expired-lic", 6006, "expired licence"),
        ],
    )


@check("MS-UPD-3", classes=UPDATE, role="manager", timeout=RUN_TIMEOUT)
async def manager_update_valid_version_staged(ctx: ManagerContext) -> list[Finding]:
    """New software and a licence in a valid feed are downloaded and installed (exit 0)."""
    return await _judged(ctx, uc.judge_valid_staged)


@check("MS-UPD-2", "MS-UPD-3", classes=UPDATE, role="manager", timeout=RUN_TIMEOUT)
async def manager_update_client_workflow_order(ctx: ManagerContext) -> list[Finding]:
    """The update command follows the TUF workflow's order and stops at a failed check."""
    return await _judged(ctx, uc.judge_workflow)


@check("MS-UPD-12", classes=UPDATE, role="manager", timeout=RUN_TIMEOUT)
async def manager_update_foreign_targets_ignored(ctx: ManagerContext) -> list[Finding]:
    """Newer software for the agent or another platform is not downloaded."""
    keys = ("other-product", "other-platform")
    return await _judged(
        ctx, lambda r: uc.judge_not_fetched(r, "foreign", keys, "foreign software")
    )


@check("MS-UPD-17", classes=UPDATE, role="manager", timeout=RUN_TIMEOUT)
async def manager_update_no_silent_downgrade(ctx: ManagerContext) -> list[Finding]:
    """Software older than the installed version is not installed without an explicit command."""
    what = "software older than the installed version"
    return await _judged(ctx, lambda r: uc.judge_not_fetched(r, "downgrade", ("downgrade",), what))


@check("MS-UPD-10", classes=UPDATE, role="manager", timeout=RUN_TIMEOUT)
async def manager_update_root_rotation(ctx: ManagerContext) -> list[Finding]:
    """A root rotation is accepted one version at a time, only cross-signed."""
    return await _judged(ctx, uc.judge_rotation)


@check("MS-UPD-18", classes=UPDATE, role="manager", timeout=RUN_TIMEOUT)
async def manager_update_retried_after_refusals(ctx: ManagerContext) -> list[Finding]:
    """After the refusals the manager keeps its version and the next command updates from it."""
    return await _judged(ctx, uc.judge_kept)
