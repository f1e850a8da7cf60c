"""Checks of class Manager-Update: the harness serves a TUF feed and attacks it (update_harness).

The vendor's update command (`--update-command`) runs once per step with `{feed_url}`,
`{trusted_root}` (a root.json file the harness writes), `{data_dir}` (a fresh directory for
the manager's update state) and `{python}` replaced. The steps run once, at the first check
that needs them; every check judges them from the exit codes, the printed error codes and the
feed server's request log (what each step downloaded).

With `--manager-command` the harness also starts the manager itself, at the same time as the
steps, once in each update mode (`{mode}`: manual, automatic; `{check_interval}` s; `{port}`
on 127.0.0.1; `{feed_url}`, `{trusted_root}`, `{data_dir}` as above), each against its own
server of a feed holding newer software and a licence: in manual mode the feed must see no
request (MS-UPD-13), in automatic mode a check every interval plus at most 10 % that downloads
the newest software and the licence (MS-UPD-14); the two together show that the mode is a
setting of the manager (MS-UPD-1).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from metersync_conformance.agent.checks import updates as uc
from metersync_conformance.manager.core import ManagerContext
from metersync_conformance.peers.feed import (
    CHECK_INTERVAL,
    ModeRun,
    UpdateRun,
    manager_argv,
    run_manager_modes,
    run_steps,
    start_feed,
    stop_feed,
)
from metersync_conformance.registry import Finding, check, excerpt_of, fail, not_tested, ok

UPDATE = ("Manager-Update",)
RUN_TIMEOUT = 900.0


async def update_run(ctx: ManagerContext) -> UpdateRun | None:
    """The steps against the manager's update command and the runs of the manager in its two
    modes, at once, once per context."""
    async with ctx.update_lock:
        if ctx.modes is not None:
            return ctx.update
        work = Path(tempfile.mkdtemp(prefix="metersync-manager-update-"))
        try:
            await asyncio.gather(_steps(ctx, work / "steps"), _modes(ctx, work / "modes"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return ctx.update


async def _steps(ctx: ManagerContext, work: Path) -> None:
    if not ctx.update_command:
        return
    work.mkdir(parents=True)
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
    ctx.update = run


async def _modes(ctx: ManagerContext, work: Path) -> None:
    ctx.modes = {}
    if not ctx.manager_command:
        return
    work.mkdir(parents=True)
    try:
        ctx.modes = await run_manager_modes(ctx.manager_command, work)
    except Exception as exc:  # the harness could not build the feed or start the command
        ctx.modes_error = f"{type(exc).__name__}: {exc}"


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


@check("MS-UPD-9", classes=UPDATE, role="manager", timeout=RUN_TIMEOUT)
async def manager_update_downloads_bounded(ctx: ManagerContext) -> list[Finding]:
    """An endless timestamp and an oversize target are not read past their bound and are
    refused; the next command still works."""
    return await _judged(ctx, uc.judge_bounded)


NO_COMMAND = "no --manager-command was given: the harness cannot start the manager in a mode"


async def _mode(ctx: ManagerContext, mode: str) -> tuple[ModeRun | None, Finding | None]:
    """The run of the manager in `mode`, or why there is none (a finding)."""
    await update_run(ctx)
    if not ctx.manager_command:
        return None, not_tested(NO_COMMAND)
    if ctx.modes_error:
        return None, fail(f"the manager could not be run in its update modes: {ctx.modes_error}")
    run = ctx.modes.get(mode)
    if run is None:
        return None, fail(f"the manager was not run in {mode} mode")
    if run.exit_code is not None:
        return run, fail(
            f"the manager started in {mode} mode exited with {run.exit_code} after "
            f"{run.stopped - run.started:.1f} s, before the harness stopped it",
            excerpt=excerpt_of(run.output, 1500),
        )
    return run, None


@check("MS-UPD-1", "MS-UPD-13", classes=UPDATE, role="manager", timeout=RUN_TIMEOUT)
async def manager_update_manual_mode_fetches_nothing(ctx: ManagerContext) -> list[Finding]:
    """Started in manual mode the manager never calls the feed, in automatic mode it does; the
    operator's update command runs the full TUF workflow."""
    manual, bad = await _mode(ctx, "manual")
    out: list[Finding] = []
    if manual is None or bad is not None:
        out.append(bad or not_tested(NO_COMMAND))
    elif manual.log:
        out.append(
            fail(
                "the manager fetched from the feed in manual mode without a command",
                actual=", ".join(p for _, p in manual.log[:5]),
            )
        )
    else:
        secs = manual.stopped - manual.started
        out.append(ok(f"in manual mode no request reached the feed in {secs:.1f} s", "MS-UPD-13"))
        auto, bad = await _mode(ctx, "automatic")
        if auto is not None and bad is None and not auto.log:
            out.append(
                fail(
                    "in automatic mode the manager never called the feed either: the mode is "
                    "not a setting that changes anything",
                    "MS-UPD-1",
                )
            )
        elif auto is not None and bad is None:
            out.append(ok("the mode is the manager's own setting: manual fetched nothing, "
                          "automatic checked the feed", "MS-UPD-1"))  # fmt: skip
    run = ctx.update
    if run is None:
        out.append(not_tested("no --update-command: the operator's command was not run",
                              "MS-UPD-13"))  # fmt: skip
    elif run.error:
        out.append(fail(f"the update phase could not run: {run.error}", "MS-UPD-13"))
    else:
        out += [replace(f, requirement="MS-UPD-13") for f in uc.judge_workflow(run)]
    return out


@check("MS-UPD-14", classes=UPDATE, role="manager", timeout=RUN_TIMEOUT)
async def manager_update_automatic_mode(ctx: ManagerContext) -> list[Finding]:
    """In automatic mode the manager checks the feed every interval (+ at most 10 %) and
    downloads the newest software and its licence."""
    auto, bad = await _mode(ctx, "automatic")
    if auto is None or bad is not None:
        return [bad or not_tested(NO_COMMAND)]
    return [
        uc.judge_schedule(auto.log, CHECK_INTERVAL),
        *uc.judge_newest_fetched(auto.log, auto.targets),
    ]
