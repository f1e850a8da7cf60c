"""The update phase of a run (classes Agent-Update, Manager-Update): the harness attacks a feed.

The harness creates a TUF feed (metersync/feed.py) and serves it on loopback. An agent is
provisioned with its URL and root in `manual` mode; a manager's update command gets them as
placeholders (`{feed_url}`, `{trusted_root}`: a root.json file, `{data_dir}`). The vendor's
update command runs once per step, the feed mutated before each step and restored after:

    foreign-lic  agent: a licence bound to another agent only;
                 manager: an agent's licence published as a manager target → refused, 6005
    expired-lic  a licence whose notAfter has passed                       → refused, 6006
    valid        new software + a licence for this implementation          → installed (exit 0)
    foreign      newer software for the other role and for another platform → not fetched
    downgrade    software older than the installed version                 → not fetched
    tampered     a newer software target whose bytes were changed          → refused, 6004
    expired-ts   a timestamp whose expiry has passed                       → refused, 6003
    fresh        a newer timestamp (the client now trusts it)              → exit 0
    rollback     the older timestamp served again                          → refused, 6002
    bad-root     root v2 signed by a key the trusted root lacks            → refused, 6001
    self-root    root v2 with a new root key, signed only by that new key  → refused, 6001
    rotated      roots v2 and v3, each signed by the old and the new keys  → exit 0, both fetched
    kept         software between the installed and the refused versions   → fetched (exit 0)

The command must exit 0 when it installed or had nothing to do, non-zero when it refused, and
print the error code of a refusal. The feed server's request log tells what each step fetched.
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
KEPT_VERSION = "9999.0.5"  # newer than NEW_VERSION, older than the refused TAMPERED_VERSION
TAMPERED_VERSION = "9999.1.0"
DOWNGRADE_VERSION = "9998.0.0"  # older than NEW_VERSION once that is installed
FOREIGN_VERSION = "9999.9.0"
FOREIGN_PLATFORM = "conformance-foreign-platform"
VALID_LICENCE = "conformance-valid"
MAX_DEVICES = 500
STEP_TIMEOUT = 60.0


@dataclass
class Step:
    name: str
    t: float
    exit_code: int | None
    output: str
    fetched: list[str] = field(default_factory=list)  # feed paths requested during the step


@dataclass
class UpdateRun:
    feed: Feed
    server: FeedServer
    platform: str
    product: str = "agent"
    started: float | None = None  # when the first update command ran
    requests_before: list[str] = field(default_factory=list)
    steps: dict[str, Step] = field(default_factory=dict)
    agent_id: str | None = None
    licence_not_after: dt.datetime | None = None
    targets: dict[str, str] = field(default_factory=dict)  # what -> target path
    error: str | None = None

    def step(self, name: str) -> Step | None:
        return self.steps.get(name)


def start_feed(work: Path, platform: str, product: str = "agent") -> UpdateRun:
    feed = Feed.create(work / "feed")
    server = FeedServer(feed.path)
    server.__enter__()
    return UpdateRun(feed, server, platform, product)


def command_argv(template: str, provisioning: Path, state_dir: Path) -> list[str]:
    text = template.replace("{provisioning}", shlex.quote(str(provisioning)))
    text = text.replace("{state_dir}", shlex.quote(str(state_dir)))
    text = text.replace("{python}", shlex.quote(sys.executable))
    return shlex.split(text)


def manager_argv(template: str, feed_url: str, trusted_root: Path, data_dir: Path) -> list[str]:
    text = template.replace("{feed_url}", shlex.quote(feed_url))
    text = text.replace("{trusted_root}", shlex.quote(str(trusted_root)))
    text = text.replace("{data_dir}", shlex.quote(str(data_dir)))
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


def _rotate_root(feed: Feed, *, keep_old: bool) -> Path:
    """Root n+1 with a new root key; signed by the old and new keys, or by the new one only."""
    md = feed.load("root")
    root = md.signed
    old, new = feed.signer("root"), new_signer()
    for keyid in list(root.roles["root"].keyids):
        root.revoke_key(keyid, "root")
    root.add_key(new.public_key, "root")
    root.version += 1
    root.expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=365)
    path = feed.metadata_dir / f"{root.version}.root.json"
    feed._write("root", root, signers=[old, new] if keep_old else [new], version_file=True)
    if keep_old:
        feed._write_key("root", new)
    return path


async def run_steps(run: UpdateRun, argv: list[str], agent_id: str | None, log: Path) -> None:
    feed, product = run.feed, run.product
    other_product = "manager" if product == "agent" else "agent"
    bound = [agent_id] if product == "agent" and agent_id else []
    run.agent_id = agent_id
    run.requests_before = list(run.server.requests)
    run.started = time.monotonic()

    async def step(name: str) -> Step:
        n = len(run.server.requests)
        code, out = await _run(argv, log)
        s = Step(name, time.monotonic(), code, out, list(run.server.requests[n:]))
        run.steps[name] = s
        return s

    def software(version: str, platform: str | None = None, prod: str | None = None) -> str:
        data = f"conformance artifact {version}\n".encode()
        return feed.add_software(
            data,
            product=prod or product,
            version=version,
            platform=platform or run.platform,
            filename="artifact",
        )

    now = dt.datetime.now(dt.UTC)
    if product == "agent":
        other = make_licence("conformance-other", agent_ids=[str(uuid.uuid4())])
        foreign = feed.add_licence(other)
    else:  # the signed document says agent, the target's custom data says manager
        data = make_licence("conformance-other", product="agent")
        foreign = feed._add_target(
            "licences/conformance-other.xml", data, {"kind": "licence", "product": product}
        )
    await step("foreign-lic")
    feed.remove_target(foreign)
    old = make_licence(
        "conformance-expired",
        product=product,
        agent_ids=bound,
        not_before=now - dt.timedelta(days=400),
        not_after=now - dt.timedelta(days=1),
    )
    expired = feed.add_licence(old)
    await step("expired-lic")
    feed.remove_target(expired)

    run.targets["valid"] = software(NEW_VERSION)
    run.licence_not_after = (now + dt.timedelta(days=200)).replace(microsecond=0)
    feed.add_licence(
        make_licence(
            VALID_LICENCE,
            product=product,
            agent_ids=bound,
            not_after=run.licence_not_after,
            max_devices=MAX_DEVICES,
        )
    )
    await step("valid")

    run.targets["other-product"] = software(FOREIGN_VERSION, prod=other_product)
    run.targets["other-platform"] = software(FOREIGN_VERSION + ".1", platform=FOREIGN_PLATFORM)
    await step("foreign")
    feed.remove_target(run.targets["other-product"])
    feed.remove_target(run.targets["other-platform"])
    run.targets["downgrade"] = software(DOWNGRADE_VERSION)
    await step("downgrade")
    feed.remove_target(run.targets["downgrade"])

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
    selfsigned = _rotate_root(feed, keep_old=False)
    await step("self-root")
    selfsigned.unlink()
    (feed.metadata_dir / "root.json").write_bytes(root)
    run.targets["root-a"] = "/metadata/" + _rotate_root(feed, keep_old=True).name
    run.targets["root-b"] = "/metadata/" + _rotate_root(feed, keep_old=True).name
    await step("rotated")

    run.targets["kept"] = software(KEPT_VERSION)
    await step("kept")


def stop_feed(run: UpdateRun) -> None:
    run.server.__exit__(None, None, None)
