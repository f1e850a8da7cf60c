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
    endless-ts   timestamp.json streams for ever                           → refused, 6004, ≤ bound
    long-target  newer software served longer than its listed length       → refused, 6004, ≤ length
    kept         software between the installed and the refused versions   → fetched (exit 0)

The licence steps also offer a licence for the wrong product and one not valid yet. The agent
harness sets `max_devices` (the valid licence's maxDevices) to the number of printers the agent
monitors, then checks that a newly discovered printer is not monitored (MS-UPD-22).

The command must exit 0 when it installed or had nothing to do, non-zero when it refused, and
print the error code of a refusal. The feed server's request log tells what each step fetched.

Update modes (MS-UPD-1, MS-UPD-13, MS-UPD-14): an agent is re-provisioned in `automatic` mode
with a short `checkInterval` (agent_harness); a manager is started by `--manager-command`
(`run_manager_mode`) once in each mode against a feed of its own, and the feed server's log
(request times) shows whether and how often it checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from metersync.feed import Feed, FeedServer, make_licence, new_signer

NEW_VERSION = "9999.0.0"  # newer than any real version under dotted comparison
KEPT_VERSION = "9999.0.5"  # newer than NEW_VERSION, older than the refused TAMPERED_VERSION
TAMPERED_VERSION = "9999.1.0"
DOWNGRADE_VERSION = "9998.0.0"  # older than NEW_VERSION once that is installed
FOREIGN_VERSION = "9999.9.0"
LONG_VERSION = "9999.2.0"  # newer than KEPT_VERSION: refused, it must not count as installed
AUTO_OLDER, AUTO_NEWEST = "9999.4.0", "9999.5.0"  # offered together in automatic mode
FOREIGN_PLATFORM = "conformance-foreign-platform"
VALID_LICENCE = "conformance-valid"
AUTO_LICENCE = "conformance-automatic"  # issued last, valid longest: the one to run under
MAX_DEVICES = 500
STEP_TIMEOUT = 60.0
# MS-UPD-9: the spec's bound for root and timestamp without a listed length.
METADATA_BOUND = 512 * 1024
# Oversize downloads are paced, a chunk every PAUSE s (≈ 6 MB/s): a client that reads them
# never has more than a chunk waiting, so the kernel does not grow its receive buffer past the
# initial size, and what the server sent stays close to what the client read.
CHUNK = 32 * 1024
PAUSE = 0.005
READ_SIZE = 512 * 1024  # the read size allowed to a client that checks its count per read
# Automatic mode: checkInterval (the XSD's Seconds has no minimum) and the run's length.
CHECK_INTERVAL = 3
CHECKS_WANTED = 3  # two intervals to measure
SCHEDULE_SLACK = 0.5  # s of process and thread scheduling allowed beyond the 10 % jitter
MANUAL_SECONDS = 2 * CHECK_INTERVAL + 2  # how long a manager in manual mode is watched


def receive_slack() -> tuple[int, str]:
    """Bytes the server may have sent past a client's bound when the client closes: one read
    of the client (tuf reads 400,000 B at a time) + twice the initial receive buffer the
    kernel gives a socket (net.ipv4.tcp_rmem default; room for growth under load) + this
    server's send buffer (Linux doubles SO_SNDBUF) + one chunk; and how, for the evidence."""
    try:
        rmem = int(Path("/proc/sys/net/ipv4/tcp_rmem").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        rmem = 128 * 1024  # Linux's default
    send = 2 * FeedServer.SEND_BUFFER
    slack = READ_SIZE + 2 * rmem + send + CHUNK
    why = (
        f"{slack // 1024} KiB: a read of {READ_SIZE // 1024} KiB + 2 × receive buffer "
        f"{rmem // 1024} KiB (tcp_rmem default; the stream is paced at {CHUNK // 1024} KiB per "
        f"{PAUSE * 1000:g} ms) + send buffer {send // 1024} KiB + chunk {CHUNK // 1024} KiB"
    )
    return slack, why


def oversize_stream(prefix: bytes, bound: int) -> Iterator[bytes]:
    """`prefix`, then paced filler to twice the slack past `bound` (an "endless" file that
    still ends, so that a client without a bound is caught rather than left reading)."""
    slack, _ = receive_slack()
    total = bound + 2 * slack
    yield prefix
    sent = len(prefix)
    filler = b" " * CHUNK
    while sent < total:
        time.sleep(PAUSE)
        yield filler
        sent += CHUNK


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
    max_devices: int = MAX_DEVICES  # of the valid licence
    bounds: dict[str, tuple[str, int]] = field(default_factory=dict)  # step -> (path, bound)
    # Automatic mode (agent): the feed log from the agent's start in that mode, and when.
    auto_log: list[tuple[float, str]] = field(default_factory=list)
    auto_started: float | None = None
    auto_ended: float | None = None

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
    # The signed document names the other product, the target's custom data this one.
    data = make_licence("conformance-product", product=other_product, agent_ids=bound)
    foreign = [
        feed._add_target(
            "licences/conformance-product.xml", data, {"kind": "licence", "product": product}
        )
    ]
    if product == "agent":
        other = make_licence("conformance-other", agent_ids=[str(uuid.uuid4())])
        foreign.append(feed.add_licence(other))
    await step("foreign-lic")
    for name in foreign:
        feed.remove_target(name)
    old = make_licence(
        "conformance-expired",
        product=product,
        agent_ids=bound,
        not_before=now - dt.timedelta(days=400),
        not_after=now - dt.timedelta(days=1),
    )
    early = make_licence(
        "conformance-early",
        product=product,
        agent_ids=bound,
        not_before=now + dt.timedelta(days=100),
        not_after=now + dt.timedelta(days=150),
    )
    expired = [feed.add_licence(old), feed.add_licence(early)]
    await step("expired-lic")
    for name in expired:
        feed.remove_target(name)

    run.targets["valid"] = software(NEW_VERSION)
    run.licence_not_after = (now + dt.timedelta(days=200)).replace(microsecond=0)
    feed.add_licence(
        make_licence(
            VALID_LICENCE,
            product=product,
            agent_ids=bound,
            not_after=run.licence_not_after,
            max_devices=run.max_devices,
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

    stream = "/metadata/timestamp.json"
    run.bounds["endless-ts"] = (stream, METADATA_BOUND)
    run.server.streams[stream] = lambda: oversize_stream(
        b'{"signed": {"padding": "', METADATA_BOUND
    )
    await step("endless-ts")
    del run.server.streams[stream]
    long = software(LONG_VERSION)
    stream, listed = "/targets/" + long, (feed.targets_dir / long).stat().st_size
    run.targets["long"] = long
    run.bounds["long-target"] = (stream, listed)
    body = (feed.targets_dir / long).read_bytes()
    run.server.streams[stream] = lambda: oversize_stream(body, listed)
    await step("long-target")
    del run.server.streams[stream]
    feed.remove_target(long)

    run.targets["kept"] = software(KEPT_VERSION)
    await step("kept")


def stop_feed(run: UpdateRun) -> None:
    run.server.__exit__(None, None, None)


# --- update modes -----------------------------------------------------------------------------


def publish_automatic(feed: Feed, product: str, agent_id: str | None) -> dict[str, str]:
    """Two newer software versions and a licence, for a client in automatic mode: it must
    install the newest and the licence (MS-UPD-14). Returns what -> target path."""
    now = dt.datetime.now(dt.UTC)
    out = {}
    for key, version in (("auto-older", AUTO_OLDER), ("auto-newest", AUTO_NEWEST)):
        data = f"conformance artifact {version}\n".encode()
        out[key] = feed.add_software(
            data, product=product, version=version, platform="any", filename="artifact"
        )
    lic = make_licence(
        AUTO_LICENCE,
        product=product,
        agent_ids=[agent_id] if product == "agent" and agent_id else [],
        not_after=now + dt.timedelta(days=300),
        max_devices=MAX_DEVICES,
    )
    out["auto-licence"] = feed.add_licence(lic)
    return out


_ROOT_PROBE = re.compile(r"/metadata/\d+\.root\.json")


def checks_in(log: list[tuple[float, str]]) -> list[tuple[float, float]]:
    """The feed log as checks, (first, last request time): the TUF workflow (MS-UPD-3) starts
    each check by asking for the next root version, so a root probe after other requests
    starts a new check."""
    out: list[tuple[float, float]] = []
    after_probe = False
    for t, path in sorted(log):
        probe = bool(_ROOT_PROBE.fullmatch(path.split("?")[0]))
        if not out or (probe and not after_probe):
            out.append((t, t))
        else:
            out[-1] = (out[-1][0], t)
        after_probe = probe
    return out


@dataclass
class ModeRun:
    """A manager started by `--manager-command` in one update mode, watched from the feed."""

    mode: str
    log: list[tuple[float, str]]
    started: float
    stopped: float
    exit_code: int | None  # None: still running when the harness stopped it
    output: str
    targets: dict[str, str] = field(default_factory=dict)


def serve_argv(template: str, **values: str) -> list[str]:
    text = template
    for key, value in {**values, "python": sys.executable}.items():
        text = text.replace("{" + key + "}", shlex.quote(value))
    return shlex.split(text)


async def run_manager_mode(
    feed: Feed, template: str, mode: str, work: Path, targets: dict[str, str]
) -> ModeRun:
    """Start the manager in `mode` with its own feed server; watch it for MANUAL_SECONDS
    (manual) or until CHECKS_WANTED checks (automatic, at most a generous while); stop it."""
    from metersync_conformance.peers.manager import free_tcp_port

    data = work / f"data-{mode}"
    data.mkdir(parents=True, exist_ok=True)
    root = work / "root.json"
    root.write_bytes(feed.trusted_root())
    log_path = work / f"manager-{mode}.log"
    with FeedServer(feed.path) as server:
        argv = serve_argv(
            template,
            feed_url=server.url,
            trusted_root=str(root),
            data_dir=str(data),
            mode=mode,
            check_interval=str(CHECK_INTERVAL),
            port=str(free_tcp_port()),
        )
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        started = time.monotonic()
        limit = MANUAL_SECONDS if mode == "manual" else (CHECKS_WANTED + 2) * CHECK_INTERVAL * 1.1
        while proc.poll() is None and time.monotonic() - started < limit:
            if mode == "automatic" and len(checks_in(server.log)) >= CHECKS_WANTED:
                break
            await asyncio.sleep(0.2)
        stopped = time.monotonic()
        code = proc.poll()
        if code is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await asyncio.to_thread(proc.wait, 5)
        log = list(server.log)
    output = log_path.read_text(errors="replace")
    return ModeRun(mode, log, started, stopped, code, output, dict(targets))


async def run_manager_modes(template: str, work: Path) -> dict[str, ModeRun]:
    """Manual and automatic, at once, each against its own server of one feed."""
    feed = Feed.create(work / "modes-feed")
    targets = publish_automatic(feed, "manager", None)
    runs = await asyncio.gather(
        *(run_manager_mode(feed, template, m, work, targets) for m in ("manual", "automatic"))
    )
    return {r.mode: r for r in runs}
