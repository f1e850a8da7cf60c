"""The update phase of an agent run (class Agent-Update): the harness runs a feed and attacks it.

The harness creates a TUF feed (metersync/feed.py), serves it on loopback and provisions the
agent with its URL and root in `manual` mode. After the baseline it runs the vendor's update
command (`--update-command`, the same placeholders as `--command`) once per step, mutating the
feed before each step and restoring it after:

    other-agent   a licence bound to another agent only           → refused, 6005
    expired-lic   a licence whose notAfter has passed              → refused, 6006
    valid         new software + a licence for this agent          → installed (exit 0)
    tampered      a newer software target whose bytes were changed → refused, 6004
    expired-ts    a timestamp whose expiry has passed              → refused, 6003
    fresh         a newer timestamp (the client now trusts it)     → exit 0
    rollback      the older timestamp served again                 → refused, 6002
    bad-root      root v2 signed by a key the trusted root lacks   → refused, 6001

The command must exit 0 when it installed or had nothing to do, non-zero when it refused, and
print the error code of a refusal. The running agent's reports show the licence state and its
software version throughout.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shlex
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from metersync.feed import Feed, FeedServer, make_licence, new_signer

NEW_VERSION = "9999.0.0"  # newer than any real version under dotted comparison
TAMPERED_VERSION = "9999.1.0"
VALID_LICENCE = "conformance-valid"
MAX_DEVICES = 500
STEP_TIMEOUT = 60.0


@dataclass
class Step:
    name: str
    t: float
    exit_code: int | None
    output: str


@dataclass
class UpdateRun:
    feed: Feed
    server: FeedServer
    platform: str
    started: float | None = None  # when the first update command ran
    requests_before: list[str] = field(default_factory=list)
    steps: dict[str, Step] = field(default_factory=dict)
    agent_id: str | None = None
    licence_not_after: dt.datetime | None = None
    error: str | None = None

    def step(self, name: str) -> Step | None:
        return self.steps.get(name)


def start_feed(work: Path, platform: str) -> UpdateRun:
    feed = Feed.create(work / "feed")
    server = FeedServer(feed.path)
    server.__enter__()
    return UpdateRun(feed, server, platform)


def command_argv(template: str, provisioning: Path, state_dir: Path) -> list[str]:
    text = template.replace("{provisioning}", shlex.quote(str(provisioning)))
    text = text.replace("{state_dir}", shlex.quote(str(state_dir)))
    text = text.replace("{python}", shlex.quote(sys.executable))
    return shlex.split(text)


async def _run(argv: list[str], log: Path) -> tuple[int | None, str]:
    def go() -> tuple[int | None, str]:
        try:
            p = subprocess.run(
                argv, capture_output=True, timeout=STEP_TIMEOUT, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"") + (exc.stderr or b"")
            return None, out.decode("utf-8", "replace") + "\n(timed out)"
        return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")

    code, out = await asyncio.to_thread(go)
    with log.open("a") as f:
        f.write(f"$ {shlex.join(argv)}\n{out}\n(exit {code})\n")
    return code, out


async def run_steps(run: UpdateRun, argv: list[str], agent_id: str, log: Path) -> None:
    feed = run.feed
    run.agent_id = agent_id
    run.requests_before = list(run.server.requests)
    run.started = time.monotonic()

    async def step(name: str) -> Step:
        code, out = await _run(argv, log)
        s = Step(name, time.monotonic(), code, out)
        run.steps[name] = s
        return s

    def software(version: str) -> str:
        data = f"conformance artifact {version}\n".encode()
        return feed.add_software(
            data, product="agent", version=version, platform=run.platform, filename="artifact"
        )

    other = feed.add_licence(make_licence("conformance-other", agent_ids=[str(uuid.uuid4())]))
    await step("other-agent")
    feed.remove_target(other)
    now = dt.datetime.now(dt.UTC)
    old = make_licence(
        "conformance-expired",
        agent_ids=[agent_id],
        not_before=now - dt.timedelta(days=400),
        not_after=now - dt.timedelta(days=1),
    )
    expired = feed.add_licence(old)
    await step("expired-lic")
    feed.remove_target(expired)

    software(NEW_VERSION)
    run.licence_not_after = (now + dt.timedelta(days=200)).replace(microsecond=0)
    feed.add_licence(
        make_licence(
            VALID_LICENCE,
            agent_ids=[agent_id],
            not_after=run.licence_not_after,
            max_devices=MAX_DEVICES,
        )
    )
    await step("valid")

    tampered = software(TAMPERED_VERSION)
    path = feed.targets_dir / tampered
    path.write_bytes(path.read_bytes().replace(b"conformance", b"CONFORMANCE"))
    await step("tampered")
    feed.remove_target(tampered)

    feed.publish(timestamp_expires=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    await step("expired-ts")
    feed.publish()

    older = (feed.metadata_dir / "timestamp.json").read_bytes()
    feed.publish()
    await step("fresh")
    (feed.metadata_dir / "timestamp.json").write_bytes(older)
    await step("rollback")
    feed.publish()

    root = (feed.metadata_dir / "root.json").read_bytes()
    bad = feed.new_root(signers=[new_signer()])
    await step("bad-root")
    bad.unlink()
    (feed.metadata_dir / "root.json").write_bytes(root)


def stop_feed(run: UpdateRun) -> None:
    run.server.__exit__(None, None, None)
