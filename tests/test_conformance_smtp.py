"""The conformance suite's SMTP checks: the reference manager (Manager-SMTP) passes them, the
reference agent provisioned with SMTP only passes them, an agent that signs the base64 text
instead of the report's bytes is caught by MS-SMTP-3 and nothing else, and one that takes every
5xx to the mail data as a refusal (ignoring a MeterSync code that means retry) by MS-SMTP-13."""

from __future__ import annotations

import asyncio
import sys

from test_conformance_agent import REFERENCE, broken, by_status, evidence
from test_manager_support import Server, free_port
from test_smtp import LoopThread

from metersync_conformance.agent.harness import run_agent
from metersync_conformance.cli import run_manager
from metersync_conformance.registry import Status
from metersync_manager.smtp_ingest import start_smtp
from metersync_manager.store import Store, sqlite_url

SMTP_IDS = {"MS-SMTP-4", "MS-SMTP-6", "MS-SMTP-7", "MS-SMTP-10", "MS-SMTP-11", "MS-SMTP-12"}


def test_reference_manager_passes_the_smtp_checks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "data"
    store = Store(sqlite_url(data))
    store.migrate()
    port = free_port()
    token = f"{sys.executable} -m metersync.cli manager token create --data-dir {data}"
    with LoopThread(lambda: start_smtp(store, "127.0.0.1", port)), Server(store) as http:
        verdicts, _ = asyncio.run(
            run_manager(http.url, token, ["Manager-SMTP"], smtp=f"127.0.0.1:{port}", only="smtp")
        )
    store.close()
    assert by_status(verdicts, Status.FAIL) == set(), evidence(verdicts)
    assert by_status(verdicts, Status.PASS) >= SMTP_IDS, evidence(verdicts)

    async def without_smtp():  # type: ignore[no-untyped-def]
        return await run_manager("http://127.0.0.1:9", "true", ["Manager-SMTP"], only="smtp")

    # Without --smtp the checks say NOT TESTED, never PASS.
    assert by_status(asyncio.run(without_smtp())[0], Status.PASS) == set()


CLASSES = ["Agent-Core", "Agent-SMTP"]


async def _agents():  # type: ignore[no-untyped-def]
    ref = run_agent(REFERENCE, CLASSES)
    bad = run_agent(broken("sign-base64"), CLASSES, phases=("baseline",))
    deaf = run_agent(broken("smtp-code-ignored"), CLASSES, phases=("baseline", "smtp_refusals"))
    (r, _), (b, _), (d, _) = await asyncio.gather(ref, bad, deaf)
    return r, b, d


def test_smtp_only_agent_and_ones_that_sign_the_base64_text_or_ignore_a_code() -> None:
    ref, bad, deaf = asyncio.run(_agents())
    assert by_status(ref, Status.FAIL) == set(), evidence(ref)
    for rid in ("MS-SMTP-1", "MS-SMTP-2", "MS-SMTP-3", "MS-SMTP-9", "MS-SMTP-13", "MS-SEC-1"):
        assert rid in by_status(ref, Status.PASS), (rid, evidence(ref))
    assert by_status(bad, Status.FAIL) == {"MS-SMTP-3"}, evidence(bad)
    assert by_status(deaf, Status.FAIL) == {"MS-SMTP-13"}, evidence(deaf)
