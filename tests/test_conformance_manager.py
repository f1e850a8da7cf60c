"""The conformance suite against managers: the reference passes, each broken one is caught.

Real processes on loopback: `metersync manager serve` (or the same with one flaw patched in,
conformance/broken/) on a free port, enrollment tokens from `metersync manager token create`,
and the harness playing agents over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from metersync_conformance.cli import build_run, run_manager
from metersync_conformance.registry import Status, Verdict

CLASSES = ["Manager-Core", "Manager-HTTP"]
PY = sys.executable


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def manager(
    tmp: Path, flaw: str | None = None, limits: tuple[str, ...] = ("--rate-limit", "120")
) -> Iterator[tuple[str, str]]:
    """(url, token command) of a manager process serving an SQLite file in tmp. By default a
    lower rate limit than the manager's default, so the rate check finds it in few requests."""
    port = _free_port()
    data = tmp / "manager"
    serve = ["serve", "--data-dir", str(data), "--bind", f"127.0.0.1:{port}", *limits]
    if flaw:
        argv = [PY, "-m", "metersync_conformance.broken", "manager", flaw, "--", *serve]
    else:
        argv = [PY, "-m", "metersync.cli", "manager", *serve]
    log = (tmp / "manager.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp / "manager.log").read_text())
            time.sleep(0.1)
        yield url, f"{PY} -m metersync.cli manager token create --data-dir {data}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def operator_commands(token_cmd: str) -> tuple[str, str]:
    """(revoke command, re-enrollment token command) for the manager of `token_cmd`."""
    data = token_cmd.rsplit("--data-dir ", 1)[1]
    revoke = f"{PY} -m metersync.cli manager agent revoke {{agent_id}} --data-dir {data}"
    return revoke, f"{token_cmd} --agent {{agent_id}}"


def api_token_command(token_cmd: str) -> str:
    """The operator-token command (MS-HTTP-18) for the manager of `token_cmd`."""
    data = token_cmd.rsplit("--data-dir ", 1)[1]
    return f"{PY} -m metersync.cli manager api-token create --data-dir {data}"


def failed(verdicts: list[Verdict]) -> set[str]:
    return {v.requirement for v in verdicts if v.status is Status.FAIL}


def test_reference_manager_conforms_via_cli(tmp_path: Path) -> None:
    """The whole command as a vendor runs it: exit 0, JUnit and HTML written, all PASS."""
    junit, html = tmp_path / "r.xml", tmp_path / "r.html"
    with manager(tmp_path) as (url, token_cmd):
        revoke, reenroll = operator_commands(token_cmd)
        done = subprocess.run(
            [PY, "-m", "metersync.cli", "conformance", "manager", "--url", url,
             "--token-command", token_cmd, "--junit", str(junit), "--html", str(html),
             "--revoke-command", revoke, "--reenroll-command", reenroll,
             "--api-token-command", api_token_command(token_cmd),
             "--vendor", "MeterSync", "--product", "reference-manager", "--version", "0.1.0",
             "--quiet", "--openapi-examples", "3"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FAIL " not in done.stdout
    for rid in ("MS-DEL-2", "MS-SEC-12", "MS-XML-4", "MS-LIM-1", "MS-HTTP-4", "MS-HTTP-17",
                "MS-HTTP-18", "MS-MSG-17", "MS-SEC-19", "MS-SEC-20",
                "MS-SEC-8", "MS-SEC-9", "MS-LIM-5", "MS-HTTP-9", "MS-DEL-6"):  # fmt: skip
        assert f"PASS       {rid} " in done.stdout, rid
    suite = ET.parse(junit).getroot()
    assert suite.get("failures") == "0"
    names = {tc.get("name", "").split()[0] for tc in suite.iter("testcase")}
    assert {"MS-DEL-2", "MS-SEC-16", "MS-ERR-1"} <= names
    page = html.read_text()
    assert "reference-manager" in page and "Manager-Core, Manager-HTTP" in page
    assert "<script" not in page and "http://" not in page.split("<body>")[0]


def test_reference_manager_at_the_strictest_limits_the_spec_allows(tmp_path: Path) -> None:
    """60 requests per agent per minute (MS-LIM-5) and 3 failed enrollments per address per
    minute (MS-LIM-6): the suite paces itself, spreads its agents over loopback addresses and
    honours Retry-After, so a conforming manager at those limits fails nothing."""
    strict = ("--rate-limit", "60", "--enroll-failures", "3")
    with manager(tmp_path, limits=strict) as (url, token_cmd):
        revoke, reenroll = operator_commands(token_cmd)
        verdicts, _ = asyncio.run(
            run_manager(url, token_cmd, CLASSES, openapi_examples=2,
                        revoke_command=revoke, reenroll_command=reenroll,
                        api_token_command=api_token_command(token_cmd))
        )  # fmt: skip
    bad = [(v.requirement, v.status, v.summary) for v in verdicts
           if v.status in (Status.FAIL, Status.ERROR)]  # fmt: skip
    assert not bad, bad
    passed = {v.requirement for v in verdicts if v.status is Status.PASS}
    assert {"MS-LIM-5", "MS-LIM-6", "MS-HTTP-9", "MS-SEC-8", "MS-DEV-29"} <= passed


def test_limits_below_the_spec_are_refused(tmp_path: Path) -> None:
    for option, value in (("--rate-limit", "59"), ("--enroll-failures", "2")):
        done = subprocess.run(
            [PY, "-m", "metersync.cli", "manager", "serve", "--data-dir", str(tmp_path),
             "--bind", "127.0.0.1:0", option, value],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2 and option in done.stderr, done.stderr


BROKEN = {
    "duplicates": {"MS-DEL-2"},
    # no signature check: a superseded key works too, even for readings after the rotation
    "forged": {"MS-SEC-12", "MS-SEC-8", "MS-SEC-20"},
    "doctype": {"MS-XML-4"},
    "ignores-revocation": {"MS-SEC-9"},
    "no-retry-after": {"MS-LIM-5", "MS-HTTP-9"},
    "any-api-token": {"MS-HTTP-18"},
    "stale-by-any-snapshot": {"MS-DEV-26"},
}
SHOULD_ONLY = {"stale-by-any-snapshot"}  # flaws that break only recommendations


@pytest.mark.parametrize("flaw", sorted(BROKEN))
def test_broken_manager_caught_by_exactly_its_requirement(tmp_path: Path, flaw: str) -> None:
    with manager(tmp_path, flaw) as (url, token_cmd):
        revoke, reenroll = operator_commands(token_cmd)
        verdicts, _ = asyncio.run(
            run_manager(url, token_cmd, CLASSES, skip=("read_api_matches_openapi",),
                        revoke_command=revoke, reenroll_command=reenroll,
                        api_token_command=api_token_command(token_cmd))
        )  # fmt: skip
    assert failed(verdicts) == BROKEN[flaw], [
        (v.requirement, v.summary, v.actual) for v in verdicts if v.status is Status.FAIL
    ]
    run = build_run("manager", CLASSES, verdicts, 0.0)
    assert run.exit_code == (0 if flaw in SHOULD_ONLY else 1)  # a SHOULD fails no claim
    bad = [v for v in verdicts if v.status is Status.FAIL]
    assert all(v.excerpt and "sent:" in v.excerpt for v in bad), "evidence carries the exchange"


# Manager-Channel, the harness holding the channel as the agent: the reference passes (and
# MS-CH-18, MS-ERR-3 among its passes), each broken manager fails exactly its requirement.
# The idle long-poll (30 s held) is left to test_channel.py, which runs every channel check.
CHANNEL_BROKEN: dict[str | None, set[str]] = {
    None: set(),
    "channel-reading": {"MS-CH-18"},
    "relays-status": {"MS-ERR-3"},
}


@pytest.mark.parametrize("flaw", list(CHANNEL_BROKEN), ids=lambda f: f or "reference")
def test_channel_checks_catch_exactly_their_flaw(tmp_path: Path, flaw: str | None) -> None:
    with manager(tmp_path, flaw) as (url, token_cmd):
        verdicts, _ = asyncio.run(
            run_manager(url, token_cmd, ["Manager-Channel"], skip=("long_poll_endpoints",),
                        api_token_command=api_token_command(token_cmd))
        )  # fmt: skip
    shown = [(v.requirement, v.status, v.summary, v.actual) for v in verdicts]
    assert failed(verdicts) == CHANNEL_BROKEN[flaw], shown
    passed = {v.requirement for v in verdicts if v.status is Status.PASS}
    assert {"MS-CH-18", "MS-ERR-3"} - CHANNEL_BROKEN[flaw] <= passed, shown
