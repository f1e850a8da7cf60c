"""Checks of class Agent-Update, judged from the update phase (update_harness): the exit codes
and output of the vendor's update command per step, the feed server's request log, and the
licence state and software version in the agent's reports."""

from __future__ import annotations

from typing import Any

from metersync_conformance.agent_harness import AgentContext
from metersync_conformance.registry import Finding, check, excerpt_of, fail, not_tested, ok
from metersync_conformance.update_harness import MAX_DEVICES, VALID_LICENCE, Step

UPDATE = ("Agent-Update",)


def _run(ctx: AgentContext) -> Any:
    return ctx.update


def _missing(ctx: AgentContext) -> Finding | None:
    run = _run(ctx)
    if run is None:
        return not_tested("no --update-command was given, so no update phase ran")
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


@check("MS-UPD-5", classes=UPDATE, role="agent")
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


@check("MS-UPD-21", classes=UPDATE, role="agent")
async def update_foreign_and_expired_licences_refused(ctx: AgentContext) -> list[Finding]:
    """A licence for another agent is refused with 6005, an expired one with 6006."""
    miss = _missing(ctx)
    if miss:
        return [miss]
    run = _run(ctx)
    out = [
        _refused(run.step("other-agent"), 6005, "licence bound to another agent"),
        _refused(run.step("expired-lic"), 6006, "expired licence"),
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
    if max_devices != MAX_DEVICES or got is None or abs((got - want).total_seconds()) > 1:
        findings.append(
            fail(
                "agentStatus/licence does not carry notAfter and maxDevices",
                "MS-UPD-20",
                expected=f"{want.isoformat()} {MAX_DEVICES}",
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
    after = [r for r in ctx.rec.accepted_reports() if r.t > last.t]
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
    modes = {r.obj.agent_status.update_mode for r in ctx.rec.accepted_reports()}
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
