"""How the suite turns checks into verdicts: a check's failure to run is a verdict of its own
requirements (FAIL when the implementation caused it, ERROR when the harness did), never a
crash; the results show per-class counts and the duration; Ctrl-C still writes them.

No processes: checks here are small functions registered for the test and removed after.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from metersync.requirements import load_requirements
from metersync_conformance import registry
from metersync_conformance.registry import REGISTRY, Status, check, fold, ok, run_check
from metersync_conformance.report.results import Run, html, junit, summary

CLASSES = ["Manager-Core", "Manager-HTTP"]
TOKEN = "conformanceToken0123456789abcdef"


@pytest.fixture
def checks() -> Iterator[dict[str, registry.Check]]:
    before = dict(REGISTRY)
    yield REGISTRY
    REGISTRY.clear()
    REGISTRY.update(before)


def _ids(cls: str, n: int) -> list[str]:
    return [r.id for r in load_requirements() if cls in r.classes and not r.manual][:n]


async def _raise(exc: BaseException) -> list[registry.Finding]:
    raise exc


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (httpx.ConnectError("refused"), Status.FAIL),
        (ConnectionResetError("reset by peer"), Status.FAIL),
        (ExceptionGroup("probe", [httpx.ReadError("x"), EOFError()]), Status.FAIL),
        (registry.PeerError("enrollment refused"), Status.FAIL),
        (KeyError("a harness bug"), Status.ERROR),
        (ExceptionGroup("probe", [httpx.ReadError("x"), TypeError("bug")]), Status.ERROR),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_an_exception_is_a_verdict_of_the_checks_requirements(
    checks: dict[str, registry.Check], exc: BaseException, status: Status
) -> None:
    ids = _ids("Manager-Core", 2)

    @check(*ids, classes=("Manager-Core",), role="manager")
    async def raising_check(ctx: object) -> list[registry.Finding]:
        return await _raise(exc)

    verdicts = asyncio.run(run_check(checks["raising_check"], None))
    assert [v.requirement for v in verdicts] == ids
    assert {v.status for v in verdicts} == {status}
    assert type(exc).__name__ in verdicts[0].summary


def _run(verdicts: list[registry.Verdict], **kw: object) -> Run:
    results = fold(verdicts, load_requirements(), CLASSES)
    return Run("manager", CLASSES, results, seconds=75.0, **kw)  # type: ignore[arg-type]


def test_results_per_class_with_errors_apart(checks: dict[str, registry.Check]) -> None:
    core, http = _ids("Manager-Core", 3), _ids("Manager-HTTP", 1)

    @check(core[0], classes=("Manager-Core",), role="manager")
    async def passing(ctx: object) -> registry.Finding:
        return ok("fine")

    @check(core[1], http[0], classes=CLASSES, role="manager")
    async def buggy(ctx: object) -> list[registry.Finding]:
        return await _raise(AttributeError("harness bug"))

    verdicts = [v for name in ("passing", "buggy") for v in asyncio.run(run_check(checks[name], 0))]
    run = _run(verdicts)
    assert run.exit_code == 3 and "INCOMPLETE" in run.verdict  # harness errors fail the run
    per = run.per_class()
    assert per["Manager-Core"]["PASS"] == 1 and per["Manager-Core"]["ERROR"] >= 1
    assert per["Manager-HTTP"]["ERROR"] >= 1
    text = summary(run)
    assert "Manager-Core " in text and "Manager-HTTP " in text and "harness errors" in text
    assert "1 min 15 s" in text
    suite = ET.fromstring(junit(run))
    assert int(suite.get("errors", "0")) == run.counts["ERROR"] >= 2
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["class.Manager-Core.pass"] == "1" and props["duration"] == "75.0"
    assert suite.find(".//testcase/error") is not None
    page = html(run)
    assert "Harness errors" in page and "1 min 15 s" in page and "b-ERROR" in page


def test_an_implementation_failure_outranks_a_harness_error(
    checks: dict[str, registry.Check],
) -> None:
    rid = _ids("Manager-Core", 1)[0]

    @check(rid, classes=("Manager-Core",), role="manager")
    async def failing(ctx: object) -> list[registry.Finding]:
        return [registry.fail("wrong code")]

    @check(rid, classes=("Manager-Core",), role="manager")
    async def broken_harness(ctx: object) -> list[registry.Finding]:
        return []  # no verdict at all: a harness bug

    names = ("failing", "broken_harness")
    verdicts = [v for n in names for v in asyncio.run(run_check(checks[n], 0))]
    assert {v.status for v in verdicts} == {Status.FAIL, Status.ERROR}
    run = _run(verdicts)
    assert run.exit_code == 1 and run.verdict == "NOT CONFORMANT"


def test_ctrl_c_still_writes_the_results(tmp_path: Path) -> None:
    """SIGINT during a run against a manager that never answers: the checks that finished
    (none here) are written, JUnit says interrupted, exit 3."""
    server = textwrap.dedent(
        """
        import socket, time
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(50)
        print(s.getsockname()[1], flush=True)
        conns = []
        while True:
            c, _ = s.accept(); conns.append(c)  # accepts, never answers
        """
    )
    silent = subprocess.Popen([sys.executable, "-c", server], stdout=subprocess.PIPE, text=True)
    try:
        port = int(silent.stdout.readline())  # type: ignore[union-attr]
        junit_path = tmp_path / "r.xml"
        run = subprocess.Popen(
            [sys.executable, "-m", "metersync.cli", "conformance", "manager",
             "--url", f"http://127.0.0.1:{port}", "--token-command", f"echo {TOKEN}",
             "--junit", str(junit_path), "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            run.wait(6)
        except subprocess.TimeoutExpired:
            os.kill(run.pid, signal.SIGINT)
        out, err = run.communicate(timeout=60)
    finally:
        silent.kill()
        silent.wait()
    assert run.returncode == 3, out[-2000:] + err[-2000:]
    assert "interrupted" in err and "INCOMPLETE (interrupted" in out
    props = {p.get("name"): p.get("value") for p in ET.parse(junit_path).iter("property")}
    assert props["interrupted"] == "true"
