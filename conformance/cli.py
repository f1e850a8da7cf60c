"""`metersync conformance …`: certify a manager or an agent, and show check coverage.

    metersync conformance manager --url URL --token-command "CMD" [--classes …] [--junit F]
                                  [--smtp HOST:PORT]   (with --classes …,Manager-SMTP)
                                  [--update-command "CMD {feed_url} {trusted_root} {data_dir}"]
                                  [--manager-command "CMD … {mode} {check_interval} {port} …"]
    metersync conformance agent --command "… {provisioning} … {state_dir} …" [--walks DIR] …
    metersync conformance coverage

Exit codes: 0 conformant for what was tested; 1 a MUST requirement of a claimed class failed;
2 the harness could not run (bad arguments, nothing to test); 3 the run is incomplete: harness
errors (ERROR verdicts) or interrupted (Ctrl-C: the results so far are still written).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from metersync.requirements import CLASSES, load_requirements
from metersync_conformance import coverage
from metersync_conformance.registry import Check, Status, Verdict, fold, run_checks, select
from metersync_conformance.report.results import Run, summary, write_outputs

MANAGER_DEFAULT = "Manager-Core,Manager-HTTP"
AGENT_DEFAULT = "Agent-Core,Agent-HTTP"


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="conformance_cmd", metavar="MODE")

    def common(p: argparse.ArgumentParser, default_classes: str) -> None:
        p.add_argument(
            "--classes",
            default=default_classes,
            help=f"conformance classes claimed, comma-separated (default {default_classes})",
        )
        p.add_argument("--junit", type=Path, help="write JUnit XML here")
        p.add_argument("--html", type=Path, help="write the HTML certification report here")
        p.add_argument("--vendor", default="unknown")
        p.add_argument("--product", default="unknown")
        p.add_argument("--version", default="unknown")
        p.add_argument("--only", default="", help="run only checks whose name contains this")
        p.add_argument("--quiet", action="store_true", help="no per-check progress")

    m = sub.add_parser("manager", help="certify a manager: the harness plays agents")
    m.add_argument("--url", required=True, help="the manager's base URL")
    m.add_argument(
        "--token-command", required=True, help="a shell command printing a fresh enrollment token"
    )
    m.add_argument(
        "--api-token-command",
        help="a shell command printing an operator token for the /api/v1 API (MS-HTTP-18; "
        "sent as Authorization: Bearer); needed by the Manager-HTTP and Manager-Channel checks",
    )
    m.add_argument(
        "--revoke-command",
        help="a shell command revoking an agent; {agent_id} is replaced (MS-SEC-9)",
    )
    m.add_argument(
        "--reenroll-command",
        help="a shell command printing a re-enrollment token for {agent_id} (MS-SEC-8)",
    )
    m.add_argument("--cacert", type=Path, help="CA certificate(s) to trust for an https URL")
    m.add_argument(
        "--openapi", type=Path, help="the manager's OpenAPI document (default: the spec's)"
    )
    m.add_argument(
        "--openapi-examples",
        type=int,
        default=5,
        help="generated requests per read operation (default 5)",
    )
    m.add_argument("--smtp", help="HOST:PORT of the manager's SMTP server (Manager-SMTP)")
    m.add_argument(
        "--channel-command",
        help="Manager-Channel: a shell command making the manager send GET {path} to the agent "
        "{agent_id} over its channel (default: the reference's operator API "
        "GET {url}/api/v1/agents/{agent_id}/channel?path={path})",
    )
    m.add_argument(
        "--update-command",
        help="with Manager-Update: the manager's manual update command; {feed_url}, "
        "{trusted_root} (a root.json file), {data_dir} and {python} are replaced; exit 0 when "
        "it installed or had nothing to do, non-zero with the 6001–6006 code printed when it "
        "refused",
    )
    m.add_argument(
        "--update-platform",
        default="any",
        help="the platform string of software targets the manager installs (default any)",
    )
    m.add_argument(
        "--manager-command",
        help="with Manager-Update: how to start a second instance of the manager, in update "
        "mode {mode} (manual or automatic) with {check_interval} s between checks, the feed "
        "{feed_url} and {trusted_root}, state in {data_dir}, listening on 127.0.0.1:{port}; "
        "the harness stops it with SIGTERM (MS-UPD-1, MS-UPD-13, MS-UPD-14)",
    )
    common(m, MANAGER_DEFAULT)
    m.set_defaults(func=cmd_manager)

    a = sub.add_parser("agent", help="certify an agent: the harness plays printers and manager")
    a.add_argument(
        "--command",
        required=True,
        help="how to start the agent; {provisioning} and {state_dir} are replaced",
    )
    a.add_argument(
        "--walks", type=Path, help="a directory of <name>.snmprec recordings with <name>.truth.toml"
    )
    a.add_argument("--keep", type=Path, help="keep the run's files (messages, logs) here")
    a.add_argument(
        "--update-command",
        help="the agent's manual update command (same placeholders); exit 0 when it installed "
        "or had nothing to do, non-zero with the 6001–6006 code printed when it refused. Needed "
        "for Agent-Update, and for the Agent-Core licence rules (MS-UPD-21, MS-UPD-22): "
        "licences reach an agent only through its feed",
    )
    a.add_argument(
        "--update-platform",
        default="any",
        help="the platform string of software targets the agent installs (default any)",
    )
    common(a, AGENT_DEFAULT)
    a.set_defaults(func=cmd_agent)

    c = sub.add_parser("coverage", help="requirements without an automatic check, per class")
    c.set_defaults(func=cmd_coverage)
    parser.set_defaults(func=lambda _a: (parser.print_help(), 2)[1])


def parse_classes(text: str, role: str) -> list[str]:
    classes = [c.strip() for c in text.split(",") if c.strip()]
    bad = [c for c in classes if c not in CLASSES]
    if bad:
        raise SystemExit(f"unknown class(es) {', '.join(bad)}; known: {', '.join(CLASSES)}")
    wrong_role = [c for c in classes if not c.lower().startswith(role)]
    if wrong_role:
        raise SystemExit(f"{', '.join(wrong_role)} are not {role} classes")
    return classes


def _progress(quiet: bool, seen: list[Verdict] | None = None):  # type: ignore[no-untyped-def]
    """Prints a line per check done (unless quiet) and keeps its verdicts in `seen`."""

    def show(chk: Check, verdicts: list[Verdict], label: str = "") -> None:
        if seen is not None:
            seen.extend(verdicts)
        if quiet:
            return
        st = {v.status for v in verdicts}
        words = ((Status.FAIL, "FAIL"), (Status.ERROR, "ERR"), (Status.PASS, "pass"))
        word = next((w for status, w in words if status in st), "n/t")
        secs = max((v.seconds for v in verdicts), default=0.0)
        print(
            f"  {word:<4} {f'[{label}] ' if label else ''}{chk.name} "
            f"({', '.join(chk.requirements)}) {secs:.1f}s",
            file=sys.stderr,
            flush=True,
        )

    show.labelled = True  # type: ignore[attr-defined]  # takes the scenario's label
    return show


def interruptible(run: object, seen: list[Verdict]) -> tuple[list[Verdict], float, bool]:
    """asyncio.run(run) → (verdicts, seconds, interrupted). On Ctrl-C, the verdicts of the
    checks that finished (`seen`, filled by the progress callback), so results are written."""
    start = time.monotonic()
    try:
        verdicts, secs = asyncio.run(run)  # type: ignore[arg-type]
        return verdicts, secs, False
    except KeyboardInterrupt:
        print("interrupted: writing the results of the checks that finished", file=sys.stderr)
        return list(seen), time.monotonic() - start, True


def finish(run: Run, args: argparse.Namespace) -> int:
    print(summary(run, color=sys.stdout.isatty()))
    write_outputs(run, args.junit, args.html)
    return run.exit_code


async def run_manager(
    url: str,
    token_command: str,
    classes: list[str],
    *,
    openapi: Path | None = None,
    openapi_examples: int = 5,
    only: str = "",
    skip: tuple[str, ...] = (),
    requirements: tuple[str, ...] = (),
    progress: object = None,
    smtp: str | None = None,
    channel_command: str | None = None,
    revoke_command: str | None = None,
    reenroll_command: str | None = None,
    api_token_command: str | None = None,
    cacert: Path | None = None,
    update_command: str | None = None,
    update_platform: str = "any",
    manager_command: str | None = None,
) -> tuple[list[Verdict], float]:
    from metersync_conformance.manager.core import ManagerContext

    checks = [c for c in select("manager", classes) if only in c.name and c.name not in skip]
    if requirements:  # only the checks of these requirements
        checks = [c for c in checks if set(c.requirements) & set(requirements)]
    # Failed enrollments block this address for a minute: near the end. The answer audits
    # look at everything sent before them: last.
    late = ("failed_enrollments_limited", "answers_audit", "every_answer_is_a_metersync_document")
    checks.sort(key=lambda c: late.index(c.name) + 1 if c.name in late else 0)
    ctx = ManagerContext(
        url=url,
        token_command=token_command,
        openapi=openapi,
        openapi_examples=openapi_examples,
        smtp=smtp,
        channel_command=channel_command,
        revoke_command=revoke_command,
        reenroll_command=reenroll_command,
        api_token_command=api_token_command,
        cacert=cacert,
        update_command=update_command,
        update_platform=update_platform,
        manager_command=manager_command,
    )
    start = time.monotonic()
    try:
        verdicts = await run_checks(checks, ctx, progress)  # type: ignore[arg-type]
    finally:
        await ctx.aclose()
    return verdicts, time.monotonic() - start


def build_run(
    role: str, classes: list[str], verdicts: list[Verdict], seconds: float, **meta: str
) -> Run:
    results = fold(verdicts, load_requirements(), classes, coverage.NOT_IMPLEMENTED)
    return Run(
        role=role,
        classes=classes,
        results=results,
        seconds=seconds,
        not_implemented=coverage.NOT_IMPLEMENTED,
        **meta,
    )


def cmd_manager(args: argparse.Namespace) -> int:
    classes = parse_classes(args.classes, "manager")
    seen: list[Verdict] = []
    verdicts, secs, interrupted = interruptible(
        run_manager(
            args.url,
            args.token_command,
            classes,
            openapi=args.openapi,
            openapi_examples=args.openapi_examples,
            only=args.only,
            progress=_progress(args.quiet, seen),
            smtp=args.smtp,
            channel_command=args.channel_command,
            revoke_command=args.revoke_command,
            reenroll_command=args.reenroll_command,
            api_token_command=args.api_token_command,
            cacert=args.cacert,
            update_command=args.update_command,
            update_platform=args.update_platform,
            manager_command=args.manager_command,
        ),
        seen,
    )
    run = build_run(
        "manager",
        classes,
        verdicts,
        secs,
        vendor=args.vendor,
        product=args.product,
        version=args.version,
        target=args.url,
    )
    run.interrupted = interrupted
    return finish(run, args)


def cmd_agent(args: argparse.Namespace) -> int:
    from metersync_conformance.agent.harness import SOFTWARE, run_all

    classes = parse_classes(args.classes, "agent")
    seen: list[Verdict] = []
    verdicts, secs, interrupted = interruptible(
        run_all(
            args.command,
            classes,
            walks=args.walks,
            keep=args.keep,
            only=args.only,
            progress=_progress(args.quiet, seen),
            update_command=args.update_command,
            update_platform=args.update_platform,
        ),
        seen,
    )
    # what the command line does not say, the agent's Enrollment does
    named = {k: getattr(args, k) for k in ("vendor", "product", "version")}
    meta = {k: SOFTWARE.get(k, v) if v == "unknown" else v for k, v in named.items()}
    run = build_run("agent", classes, verdicts, secs, target=args.command, **meta)
    run.interrupted = interrupted
    return finish(run, args)


def cmd_coverage(args: argparse.Namespace) -> int:
    print(coverage.render(coverage.compute()))
    return 0
