"""Checks of class Agent-Update, judged from the update phase (update_harness): the exit codes
and output of the vendor's update command per step, the feed server's request log, and the
licence state and software version in the agent's reports.

The judges of one update run (`judge_*`) serve the manager's checks too
(manager_update_checks.py): they look only at the steps and what each fetched."""

from __future__ import annotations

from typing import Any

from metersync_conformance.agent_harness import AgentContext
from metersync_conformance.registry import Finding, check, excerpt_of, fail, not_tested, ok
from metersync_conformance.update_harness import MAX_DEVICES, VALID_LICENCE, Step, UpdateRun

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


@check("MS-UPD-21", classes=UPDATE, role="agent")
async def update_foreign_and_expired_licences_refused(ctx: AgentContext) -> list[Finding]:
    """A licence for another agent is refused with 6005, an expired one with 6006."""
    miss = _missing(ctx)
    if miss:
        return [miss]
    run = _run(ctx)
    out = [
        _refused(run.step("foreign-lic"), 6005, "licence bound to another agent"),
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
