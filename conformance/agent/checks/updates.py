"""Checks of class Agent-Update, judged from the update phase (update_harness): the exit codes
and output of the vendor's update command per step, the feed server's request log, and the
licence state and software version in the agent's reports.

The judges of one update run (`judge_*`) serve the manager's checks too
(manager/updates.py): they look only at the steps and what each fetched."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from metersync_conformance.agent.harness import AgentContext
from metersync_conformance.peers.feed import (
    AUTO_LICENCE,
    CHECK_INTERVAL,
    CHECKS_WANTED,
    SCHEDULE_SLACK,
    VALID_LICENCE,
    Step,
    UpdateRun,
    checks_in,
    receive_slack,
)
from metersync_conformance.registry import (
    Finding,
    Status,
    check,
    excerpt_of,
    fail,
    not_tested,
    ok,
)

UPDATE = ("Agent-Update",)
# Licences reach an agent only through its feed (MS-UPD-20), so the Agent-Core licence rules are
# judged from the same update phase: with --update-command, whatever classes are claimed.
LICENCES = ("Agent-Core", "Agent-Update")


def _run(ctx: AgentContext) -> Any:
    return ctx.update


def _missing(ctx: AgentContext) -> Finding | None:
    run = _run(ctx)
    if run is None:
        return not_tested(
            "no --update-command was given, so no update phase ran (licences reach an agent "
            "only through its feed)"
        )
    if run.error:
        return fail(f"the update phase could not run: {run.error}")
    return None


def _refused(step: Step | None, code: int, what: str) -> Finding:
    if step is None:
        return fail(f"the step '{what}' did not run")
    ev = {"excerpt": excerpt_of(step.output, 1200)}
    if step.exit_code == 0:
        return fail(
            f"{what}: the update command succeeded",
            expected=f"refusal {code}",
            actual="exit 0",
            **ev,
        )
    if str(code) not in step.output:
        return fail(
            f"{what}: refused, but the error code {code} is not in the output",
            expected=str(code),
            actual=f"exit {step.exit_code}",
            **ev,
        )
    return ok(f"{what}: refused with {code} (exit {step.exit_code})")


def _refusal_check(ctx: AgentContext, step: str, code: int, what: str) -> list[Finding]:
    miss = _missing(ctx)
    return [miss] if miss else [_refused(_run(ctx).step(step), code, what)]


# --- judges of one run, for agent and manager alike -----------------------------------------


def judge_refusal(run: UpdateRun, step: str, code: int, what: str) -> Finding:
    return _refused(run.step(step), code, what)


def _exit0(run: UpdateRun, name: str, what: str) -> Finding | None:
    s = run.step(name)
    if s is None:
        return fail(f"the step '{name}' did not run")
    if s.exit_code != 0:
        return fail(
            f"{what}: the update command failed",
            expected="exit 0",
            actual=f"exit {s.exit_code}",
            excerpt=excerpt_of(s.output, 1200),
        )
    return None


_META = ("root.json", "timestamp.json", "snapshot.json", "targets.json")


def _order(fetched: list[str]) -> list[str]:
    """The fetched paths as roles in first-fetch order: root, timestamp, …, target."""
    out: list[str] = []
    for path in fetched:
        role = "target" if path.startswith("/targets/") else None
        for name in _META:
            if path.startswith("/metadata/") and path.endswith(name):
                role = name.removesuffix(".json")
                break
        if role and role not in out:
            out.append(role)
    return out


def judge_workflow(run: UpdateRun) -> list[Finding]:
    """MS-UPD-2/3: root, timestamp, snapshot, targets, then targets; stop at a failed check."""
    bad = _exit0(run, "valid", "a valid feed")
    if bad:
        return [bad]
    valid = run.step("valid")
    assert valid is not None
    want = ["root", "timestamp", "snapshot", "targets", "target"]
    got = _order(valid.fetched)
    out = []
    if got != want:
        out.append(
            fail(
                "the valid update did not fetch TUF metadata in the client workflow's order",
                expected=" → ".join(want),
                actual=" → ".join(got),
                excerpt="\n".join(valid.fetched),
            )
        )
    else:
        out.append(ok("metadata fetched root → timestamp → snapshot → targets, then targets"))
    stops = {"bad-root": "root", "self-root": "root", "expired-ts": "timestamp"}
    stops["rollback"] = "timestamp"
    for name, last in stops.items():
        s = run.step(name)
        if s is None:
            out.append(fail(f"the step '{name}' did not run"))
            continue
        if s.exit_code == 0:  # not refused at all: its own rule's check says so
            continue
        roles = _order(s.fetched)
        beyond = roles[roles.index(last) + 1 :] if last in roles else roles
        if beyond:
            out.append(
                fail(
                    f"{name}: the client went on after the {last} metadata failed",
                    "MS-UPD-3",
                    expected=f"nothing after {last}",
                    actual=", ".join(beyond),
                    excerpt="\n".join(s.fetched),
                )
            )
    if len(out) == 1:
        out.append(ok("each refused step fetched nothing after the metadata that failed"))
    return out


def judge_valid_staged(run: UpdateRun) -> Finding:
    """MS-UPD-3: the valid step exits 0 and downloads the new software target."""
    bad = _exit0(run, "valid", "new software and a licence")
    if bad:
        return bad
    target = "/targets/" + run.targets["valid"]
    valid = run.step("valid")
    if valid is None or target not in valid.fetched:
        return fail("the valid new software was not downloaded", expected=target)
    return ok(f"the valid software {target} was downloaded and the command exited 0")


def judge_not_fetched(run: UpdateRun, name: str, keys: tuple[str, ...], what: str) -> Finding:
    bad = _exit0(run, name, what)
    if bad:
        return bad
    s = run.step(name)
    assert s is not None
    taken = [p for k in keys if (p := "/targets/" + run.targets[k]) in s.fetched]
    if taken:
        return fail(f"{what}: downloaded", expected="not fetched", actual=", ".join(taken))
    return ok(f"{what}: not downloaded, command exited 0")


def judge_rotation(run: UpdateRun) -> list[Finding]:
    """MS-UPD-10: a root not signed by the trusted root's keys is refused; a rotation applied
    one version at a time."""
    out = [_refused(run.step("self-root"), 6001, "a new root signed only by its own new key")]
    bad = _exit0(run, "rotated", "roots v2 and v3, each signed by the old and the new keys")
    if bad:
        return [*out, bad]
    s = run.step("rotated")
    assert s is not None
    a, b = run.targets["root-a"], run.targets["root-b"]
    if a not in s.fetched or b not in s.fetched or s.fetched.index(a) > s.fetched.index(b):
        out.append(
            fail(
                "the rotated roots were not fetched one version at a time",
                expected=f"{a} then {b}",
                excerpt="\n".join(s.fetched),
            )
        )
    else:
        out.append(ok("roots v2 and v3 were fetched in turn and accepted (exit 0)"))
    return out


def judge_kept(run: UpdateRun) -> Finding:
    """MS-UPD-18: after the refusals, the next command still works from the version it had."""
    bad = _exit0(run, "kept", "the update after the refused ones")
    if bad:
        return bad
    s = run.step("kept")
    target = "/targets/" + run.targets["kept"]
    if s is None or target not in s.fetched:
        return fail(
            "after the refusals, a version newer than the installed one was not downloaded "
            "(was the refused version taken as installed?)",
            expected=target,
            excerpt="\n".join(s.fetched) if s else None,
        )
    return ok(f"after the refusals the next command installed {target} (exit 0)")


# --- agent checks ------------------------------------------------------------------------------


@check("MS-UPD-4", "MS-UPD-5", classes=UPDATE, role="agent")
async def update_bad_root_signature_refused(ctx: AgentContext) -> list[Finding]:
    """A root signed by a key the trusted root does not hold is refused with 6001."""
    return _refusal_check(ctx, "bad-root", 6001, "root v2 signed by an untrusted key")


@check("MS-UPD-6", classes=UPDATE, role="agent")
async def update_rollback_refused(ctx: AgentContext) -> list[Finding]:
    """An older timestamp than the one already trusted is refused with 6002."""
    miss = _missing(ctx)
    if miss:
        return [miss]
    fresh = _run(ctx).step("fresh")
    if fresh is None or fresh.exit_code != 0:
        return [
            fail(
                "the agent did not accept a fresh, valid timestamp before the rollback",
                excerpt=fresh.output if fresh else None,
            )
        ]
    return [_refused(_run(ctx).step("rollback"), 6002, "timestamp rolled back one version")]


@check("MS-UPD-7", classes=UPDATE, role="agent")
async def update_expired_timestamp_refused(ctx: AgentContext) -> list[Finding]:
    """An expired timestamp (freeze attack) is refused with 6003."""
    return _refusal_check(ctx, "expired-ts", 6003, "expired timestamp")


@check("MS-UPD-8", classes=UPDATE, role="agent")
async def update_tampered_target_refused(ctx: AgentContext) -> list[Finding]:
    """A target whose bytes differ from the signed hash is refused with 6004."""
    return _refusal_check(ctx, "tampered", 6004, "tampered software target")


@check("MS-UPD-21", classes=LICENCES, role="agent")
async def update_foreign_and_expired_licences_refused(ctx: AgentContext) -> list[Finding]:
    """Licences for the manager or another agent are refused with 6005; an expired one and
    one not valid yet with 6006; none of them is reported as the licence the agent runs under."""
    miss = _missing(ctx)
    if miss:
        return [miss]
    run = _run(ctx)
    out = [
        _refused(run.step("foreign-lic"), 6005, "licences for the manager or another agent"),
        _refused(run.step("expired-lic"), 6006, "an expired licence and one not valid yet"),
    ]
    t0 = run.started or 0.0
    # Until the "valid" step starts (the end of the step before it): the valid licence can be
    # installed, and reported by the running agent, before the valid step's command exits.
    before = run.step("expired-lic")
    valid_at = before.t if before and run.step("valid") else float("inf")
    wrong = [
        r for r in ctx.rec.accepted_reports() if t0 <= r.t < valid_at and _state(r)[0] == "valid"
    ]
    if wrong:
        out.append(fail("a refused licence was reported as valid", excerpt=wrong[0].body))
    return out


def _state(report: Any) -> tuple[str, str | None, Any, Any]:
    lic = report.obj.agent_status.licence
    state = lic.state.value if hasattr(lic.state, "value") else str(lic.state)
    return state, lic.licence_id, lic.not_after, lic.max_devices


@check("MS-UPD-3", "MS-UPD-20", classes=UPDATE, role="agent")
async def update_valid_feed_installed(ctx: AgentContext) -> list[Finding]:
    """A valid feed is installed by the command, and the licence shows in agentStatus."""
    miss = _missing(ctx)
    if miss:
        return [miss]
    run = _run(ctx)
    step = run.step("valid")
    if step is None or step.exit_code != 0:
        return [
            fail(
                "the update command did not install a valid feed",
                expected="exit 0",
                actual=f"exit {step.exit_code if step else None}",
                excerpt=step.output if step else None,
            )
        ]
    after = [r for r in ctx.rec.accepted_reports() if r.t > step.t]
    shown = [r for r in after if _state(r)[:2] in {("valid", VALID_LICENCE)}]
    if not shown:
        last = after[-1].body if after else None
        return [
            fail(
                "no report after the install shows the licence as valid",
                "MS-UPD-20",
                expected=f"licence valid {VALID_LICENCE}",
                excerpt=last,
            )
        ]
    _, _, not_after, max_devices = _state(shown[0])
    findings = [ok("the valid software and licence were installed (exit 0)", "MS-UPD-3")]
    want = run.licence_not_after
    got = not_after.to_datetime() if not_after is not None else None
    if max_devices != run.max_devices or got is None or abs((got - want).total_seconds()) > 1:
        findings.append(
            fail(
                "agentStatus/licence does not carry notAfter and maxDevices",
                "MS-UPD-20",
                expected=f"{want.isoformat()} {run.max_devices}",
                actual=f"{not_after} {max_devices}",
                excerpt=shown[0].body,
            )
        )
    else:
        findings.append(ok(f"reports show licence {VALID_LICENCE} valid", "MS-UPD-20"))
    return findings


@check("MS-UPD-18", classes=UPDATE, role="agent")
async def update_refusals_keep_what_runs(ctx: AgentContext) -> list[Finding]:
    """After the refused updates the agent keeps its software and its valid licence."""
    miss = _missing(ctx)
    if miss:
        return [miss]
    run = _run(ctx)
    last = run.step("bad-root")
    if last is None:
        return [fail("the update steps did not all run")]
    before = [r for r in ctx.rec.accepted_reports() if r.t < (run.started or 0)]
    until = run.auto_started or float("inf")  # then the agent restarts in automatic mode
    after = [r for r in ctx.rec.accepted_reports() if last.t < r.t < until]
    if not after or not before:
        return [fail("no report before or after the update steps to compare")]
    v0 = before[-1].obj.agent_status.software.version
    v1 = after[-1].obj.agent_status.software.version
    state = _state(after[-1])[:2]
    if state != ("valid", VALID_LICENCE):
        return [
            fail(
                "after refused updates the installed licence is no longer reported valid",
                expected=f"valid {VALID_LICENCE}",
                actual=str(state),
                excerpt=after[-1].body,
            )
        ]
    if v1 != v0:
        return [
            fail("the running software version changed without a restart", expected=v0, actual=v1)
        ]
    return [ok(f"still running {v0} with licence {VALID_LICENCE} after six refused updates")]


@check("MS-UPD-1", "MS-UPD-13", classes=UPDATE, role="agent")
async def update_manual_mode_fetches_nothing(ctx: AgentContext) -> list[Finding]:
    """In manual mode the agent reports updateMode manual and never calls the feed itself."""
    miss = _missing(ctx)
    if miss:
        return [miss]
    run = _run(ctx)
    until = run.auto_started or float("inf")  # then the agent is re-provisioned: automatic
    modes = {r.obj.agent_status.update_mode for r in ctx.rec.accepted_reports() if r.t < until}
    names = {m.value if hasattr(m, "value") else str(m) for m in modes}
    out = []
    if names != {"manual"}:
        out.append(
            fail(
                "agentStatus/updateMode is not the provisioned mode",
                "MS-UPD-1",
                expected="manual",
                actual=", ".join(sorted(names)),
            )
        )
    else:
        out.append(ok("every report says updateMode manual, as provisioned", "MS-UPD-1"))
    if run.requests_before:
        out.append(
            fail(
                "the agent fetched from the feed in manual mode without a command",
                "MS-UPD-13",
                actual=", ".join(run.requests_before[:5]),
            )
        )
    else:
        out.append(ok("no request reached the feed before the first update command", "MS-UPD-13"))
    return out


def _judged(ctx: AgentContext, judge: Any) -> list[Finding]:
    miss = _missing(ctx)
    if miss:
        return [miss]
    got = judge(_run(ctx))
    return [got] if isinstance(got, Finding) else got


@check("MS-UPD-2", "MS-UPD-3", classes=UPDATE, role="agent")
async def update_client_workflow_order(ctx: AgentContext) -> list[Finding]:
    """The update command follows the TUF workflow's order and stops at a failed check."""
    return _judged(ctx, judge_workflow)


@check("MS-UPD-12", classes=UPDATE, role="agent")
async def update_foreign_targets_ignored(ctx: AgentContext) -> list[Finding]:
    """Newer software for the other role or another platform is not downloaded."""
    keys = ("other-product", "other-platform")
    return _judged(ctx, lambda r: judge_not_fetched(r, "foreign", keys, "foreign software"))


@check("MS-UPD-17", classes=UPDATE, role="agent")
async def update_no_silent_downgrade(ctx: AgentContext) -> list[Finding]:
    """Software older than the installed version is not installed without an explicit command."""
    what = "software older than the installed version"
    return _judged(ctx, lambda r: judge_not_fetched(r, "downgrade", ("downgrade",), what))


@check("MS-UPD-10", classes=UPDATE, role="agent")
async def update_root_rotation(ctx: AgentContext) -> list[Finding]:
    """A root rotation is accepted one version at a time, only cross-signed."""
    return _judged(ctx, judge_rotation)


@check("MS-UPD-18", classes=UPDATE, role="agent")
async def update_retried_after_refusals(ctx: AgentContext) -> list[Finding]:
    """After the refusals the next command updates from the version the agent kept."""
    return _judged(ctx, judge_kept)


# --- download bounds and update modes: judges for agent and manager alike ---------------------


def judge_bounded(run: UpdateRun) -> list[Finding]:
    """MS-UPD-9: an endless timestamp and an oversize target were not read past their bound,
    were refused with 6004, and the next command still worked."""
    slack, why = receive_slack()
    out: list[Finding] = []
    cases = (
        ("endless-ts", "an endless timestamp.json (no listed length)"),
        ("long-target", "a target served longer than its listed length"),
    )
    for name, what in cases:
        s = run.step(name)
        if s is None or name not in run.bounds:
            out.append(fail(f"the step '{name}' did not run"))
            continue
        path, bound = run.bounds[name]
        taken = [n for p, n in run.server.sent if p == path]
        ev = {"excerpt": excerpt_of(s.output, 1200)}
        if not taken:
            out.append(fail(f"{what}: never requested, so the bound was not shown", **ev))
        elif max(taken) > bound + slack:
            out.append(
                fail(
                    f"{what}: the client read past the bound",
                    expected=f"at most {bound} B (+ a slack of {why})",
                    actual=f"{max(taken)} B taken before it closed",
                    **ev,
                )
            )
        elif (refused := _refused(s, 6004, what)).status is not Status.PASS:
            out.append(refused)  # exit 0, or no 6004 in the output (MS-UPD-9 names 6004)
        else:
            out.append(
                ok(
                    f"{what}: refused with 6004 (exit {s.exit_code}) after {max(taken)} B; "
                    f"bound {bound} B, allowing {slack} B ({why})"
                )
            )
    kept = _exit0(run, "kept", "the update after the oversize downloads")
    if kept:
        out.append(kept)
    return out


def judge_schedule(log: list[tuple[float, str]], interval: float) -> Finding:
    """MS-UPD-14: checks every `interval` s plus at most 10 %, from the feed log's times."""
    checks = checks_in(log)
    if len(checks) < CHECKS_WANTED:
        return fail(
            f"fewer than {CHECKS_WANTED} checks of the feed in automatic mode",
            expected=f"a check every {interval} s (+ at most 10 %)",
            actual=f"{len(checks)} check(s)",
            excerpt="\n".join(p for _, p in log[:40]),
        )
    gaps = []
    for (s0, e0), (s1, _) in zip(checks, checks[1:], strict=False):
        gaps.append((s1 - s0, s1 - e0))
    # Start to start at least the interval; from the end of one check to the start of the next
    # at most the interval + 10 %; both with SCHEDULE_SLACK for the processes' own latency.
    low, high = interval - SCHEDULE_SLACK, 1.1 * interval + SCHEDULE_SLACK
    text = ", ".join(f"{a:.2f} s (after the end {b:.2f} s)" for a, b in gaps)
    bad = [(a, b) for a, b in gaps if a < low or b > high]
    if bad:
        return fail(
            "the feed was not checked every checkInterval with at most 10 % delay",
            expected=f"{interval} s start to start or more, at most {1.1 * interval:.2f} s after "
            f"the previous check (± {SCHEDULE_SLACK} s)",
            actual=text,
        )
    return ok(f"{len(checks)} checks of the feed, {text}, for a checkInterval of {interval} s")


def judge_newest_fetched(log: list[tuple[float, str]], targets: dict[str, str]) -> list[Finding]:
    """MS-UPD-14: in automatic mode the newest software and the licence were downloaded."""
    fetched = {p for _, p in log}
    out = []
    for key, what in (("auto-newest", "the newest software"), ("auto-licence", "the licence")):
        path = "/targets/" + targets[key]
        if path in fetched:
            out.append(ok(f"automatic mode downloaded {what} ({path})"))
        else:
            out.append(
                fail(
                    f"automatic mode did not download {what}",
                    expected=path,
                    excerpt="\n".join(sorted(fetched)),
                )
            )
    return out


# --- agent checks: bounds, automatic mode, maxDevices -----------------------------------------


@check("MS-UPD-9", classes=UPDATE, role="agent")
async def update_downloads_bounded(ctx: AgentContext) -> list[Finding]:
    """An endless timestamp and an oversize target are not read past their bound, are refused,
    and the agent keeps its licence."""
    miss = _missing(ctx)
    if miss:
        return [miss]
    run = _run(ctx)
    out = judge_bounded(run)
    last = run.step("long-target")
    until = run.auto_started or float("inf")
    after = [r for r in ctx.rec.accepted_reports() if last and last.t < r.t < until]
    if last is not None and after and _state(after[-1])[:2] != ("valid", VALID_LICENCE):
        out.append(
            fail(
                "after the oversize downloads the installed licence is no longer reported valid",
                expected=f"valid {VALID_LICENCE}",
                actual=str(_state(after[-1])[:2]),
                excerpt=after[-1].body,
            )
        )
    return out


@check("MS-UPD-1", "MS-UPD-14", classes=UPDATE, role="agent", timeout=120)
async def update_automatic_mode(ctx: AgentContext) -> list[Finding]:
    """Provisioned in automatic mode, the agent reports it, checks the feed every checkInterval
    (+ at most 10 %) and installs the newest software and the licence."""
    miss = _missing(ctx)
    if miss:
        return [miss]
    run = _run(ctx)
    if run.auto_started is None:
        return [not_tested("the automatic phase did not run")]
    out = [
        judge_schedule(run.auto_log, CHECK_INTERVAL),
        *judge_newest_fetched(run.auto_log, run.targets),
    ]
    out = [replace(f, requirement="MS-UPD-14") for f in out]
    during = [r for r in ctx.rec.accepted_reports() if r.t > run.auto_started]
    modes = {str(getattr(m, "value", m)) for m in (r.obj.agent_status.update_mode for r in during)}
    if modes != {"automatic"}:
        out.append(
            fail(
                "agentStatus/updateMode does not say automatic after the re-provisioning",
                "MS-UPD-1",
                expected="automatic",
                actual=", ".join(sorted(modes)) or "no report",
            )
        )
    else:
        out.append(ok("reports say updateMode automatic, as re-provisioned", "MS-UPD-1"))
    shown = [r for r in during if _state(r)[1] == AUTO_LICENCE]
    if not shown:
        out.append(
            fail(
                "no report in automatic mode names the licence the feed offered",
                "MS-UPD-14",
                expected=f"agentStatus/licence {AUTO_LICENCE} (issued last, valid longest)",
                excerpt=during[-1].body if during else None,
            )
        )
    else:
        out.append(ok(f"reports name the licence {AUTO_LICENCE} installed in automatic mode",
                      "MS-UPD-14"))  # fmt: skip
    return out


@check("MS-UPD-22", classes=("Agent-Core",), role="agent")
async def update_licence_max_devices_respected(ctx: AgentContext) -> list[Finding]:
    """With a licence for the N devices it monitors, a newly discovered printer is not
    monitored: reports keep exactly the N devices it had."""
    miss = _missing(ctx)
    if miss:
        return [miss]
    lim = ctx.licence_limit
    if lim is None:
        return [not_tested("the licence_limit phase did not run")]
    until = _run(ctx).auto_started or float("inf")  # then a restart and another licence
    after = [r for r in ctx.rec.accepted_reports() if lim.t_on < r.t < until]
    under = [
        r
        for r in after
        if _state(r)[0] in ("valid", "expiring") and _state(r)[3] == lim.max_devices
    ]
    if not under:
        return [
            not_tested(
                f"no report shows a licence with maxDevices {lim.max_devices} in force after the "
                "update (see MS-UPD-3, MS-UPD-20)",
                excerpt=after[-1].body if after else None,
            )
        ]
    counted = [r for r in under if lim.extra in _keys(r) or len(r.obj.device) > lim.max_devices]
    if counted:
        r = counted[0]
        return [
            fail(
                "a newly discovered printer was monitored beyond the licence's maxDevices",
                expected=f"at most {lim.max_devices}: {', '.join(sorted(lim.kept))}",
                actual=", ".join(sorted(_keys(r))),
                excerpt=r.body,
            )
        ]
    settled = [r for r in under if r.t > lim.settled]
    if not settled:
        return [fail("no report after the new printer had time to be discovered and polled")]
    lost = [r for r in settled if _keys(r) != lim.kept]
    if lost:
        r = lost[0]
        return [
            fail(
                "the devices monitored before the new printer appeared are not all kept",
                expected=", ".join(sorted(lim.kept)),
                actual=", ".join(sorted(_keys(r))),
                excerpt=r.body,
            )
        ]
    return [
        ok(
            f"{len(settled)} report(s) after {lim.extra} appeared keep exactly the "
            f"{len(lim.kept)} device(s) of the licence's maxDevices {lim.max_devices}"
        )
    ]


def _keys(report: Any) -> set[str]:
    return {d.identity.device_key for d in report.obj.device}
