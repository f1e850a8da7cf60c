"""Releases side by side and the supervisor (spec 16.1.1, MS-UPD-24…29), with real wheels built
from copies of this source, served by the signed feed, run as real processes.

0.2.0 is good; 0.3.0 exits at start. The agent runs under the supervisor with no manager, so
its reports stay in the outbox: across each switch every report stored before is still there
with its sequence and reportId, and sequences go on without a gap or a reuse."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from metersync import releases as rel
from metersync.feed import Feed, FeedServer

REPO = Path(__file__).resolve().parents[1]
NOWHERE = [SimpleNamespace(host="127.0.0.1", port=9)]
BROKEN = '\nraise SystemExit("this release is broken on purpose")\n'


def _source_copy(dest: Path, version: str, broken: bool) -> Path:
    files = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for name in files:
        src = REPO / name
        if src.is_file() and not name.startswith(("tests/", "bench/")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    py = dest / "pyproject.toml"
    py.write_text(py.read_text().replace('version = "0.1.0"', f'version = "{version}"', 1))
    init = dest / "metersync/__init__.py"
    text = init.read_text().replace('"0.1.0"', f'"{version}"')
    init.write_text(text + (BROKEN if broken else ""))
    return dest


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, bytes]:
    """Two wheels, built once per module, in parallel."""
    base = tmp_path_factory.mktemp("wheels")
    jobs = {}
    for version, broken in (("0.2.0", False), ("0.3.0", True)):
        src = _source_copy(base / f"src-{version}", version, broken)
        out = base / f"out-{version}"
        cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)]
        jobs[version] = (subprocess.Popen(cmd), out)
    built = {}
    for version, (proc, out) in jobs.items():
        assert proc.wait() == 0, f"building {version} failed"
        (wheel,) = out.glob("*.whl")
        built[version] = wheel.read_bytes()
    return built


def _wait(what: str, predicate, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _reports(state: Path) -> dict[int, tuple[str, bytes]]:
    db = sqlite3.connect(f"file:{state / 'outbox.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT sequence, report_id, body FROM report").fetchall()
    finally:
        db.close()
    return {seq: (rid, body) for seq, rid, body in rows}


def _kept(before: dict[int, tuple[str, bytes]], after: dict[int, tuple[str, bytes]]) -> None:
    """Nothing lost or renumbered; new sequences follow without a gap."""
    assert {s: r for s, (r, _) in before.items()} == {
        s: r for s, (r, _) in after.items() if s in before
    }
    assert sorted(after) == list(range(min(after), max(after) + 1))


def _status(state: Path) -> dict:
    return rel.read_json(state / "releases/status.json") or {}


def _publish(feed: Feed, wheels: dict[str, bytes], v: str, product: str = "agent") -> None:
    name = f"metersync-{v}-py3-none-any.whl"  # pip needs a wheel's own file name
    feed.add_software(wheels[v], product=product, version=v, platform="python", filename=name)


def _update(prov: Path, state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "metersync.cli", "agent", "update", "--config", str(prov)]
    return subprocess.run(
        [*cmd, "--state-dir", str(state), *extra], capture_output=True, text=True, cwd=state
    )


def test_agent_switches_to_a_good_release_and_rolls_back_a_broken_one(tmp_path, wheels) -> None:
    from metersync_conformance.agent.harness import provisioning

    feed = Feed.create(tmp_path / "feed")
    state = tmp_path / "state"
    (state / "releases").mkdir(parents=True)  # the supervisor's layout: activation is on
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    with FeedServer(feed.path) as server:
        prov = tmp_path / "p.xml"
        xml = provisioning(
            "http://127.0.0.1:9",
            NOWHERE,
            feed_url=server.url,
            trusted_root=feed.trusted_root().decode(),
        )
        prov.write_bytes(xml)
        sup = subprocess.Popen(
            [sys.executable, "-m", "metersync.supervisor", "--state-dir", str(state),
             "--window", "60", "--poll", "0.2", "--",
             "agent", "run", "--config", str(prov), "--state-dir", str(state)],
            cwd=tmp_path, env=env,
        )  # fmt: skip
        try:
            _wait("the base install healthy", lambda: _status(state).get("healthy") == "base")
            before = _wait("a stored report", lambda: _reports(state))
            assert not any(b"0.2.0" in body for _, body in before.values())

            _publish(feed, wheels, "0.2.0")
            done = _update(prov, state, "--install")
            assert done.returncode == 0, done.stderr
            assert "0.2.0 is current" in done.stdout
            assert os.readlink(state / "releases/current") == "0.2.0"
            _wait("0.2.0 healthy", lambda: _status(state).get("healthy") == "0.2.0")
            health = rel.read_json(state / "releases/health.json")
            assert health["version"] == "0.2.0"

            def newer() -> bool:
                fresh = [body for s, (_, body) in _reports(state).items() if s not in before]
                return any(b"0.2.0" in body for body in fresh)

            _wait("a report by 0.2.0", newer)
            mid = _reports(state)
            _kept(before, mid)

            _publish(feed, wheels, "0.3.0")
            done = _update(prov, state, "--install")
            assert done.returncode == 0, done.stderr
            _wait("the rollback", lambda: _status(state).get("code") == 6007)
            st = _status(state)
            assert st["failed"] == "0.3.0" and st["running"] == "0.2.0", st
            assert "exited" in st["reason"]
            assert os.readlink(state / "releases/current") == "0.2.0"
            assert "0.3.0" in rel.quarantined(state)
            # Quarantined: not activated again until a newer release appears.
            again = _update(prov, state, "--install")
            assert "no staged version newer" in again.stdout, again.stdout
            _wait("0.2.0 healthy again", lambda: rel.read_json(state / "releases/health.json"))
            _kept(
                mid,
                _wait(
                    "a later report", lambda: max(_reports(state)) > max(mid) and _reports(state)
                ),
            )
        finally:
            sup.send_signal(signal.SIGTERM)
            assert sup.wait(60) == 0
    _kept(before, _reports(state))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_manager_switches_and_rolls_back(tmp_path, wheels) -> None:
    """`manager serve` under the supervisor: 0.2.0 answers /healthz after the switch, 0.3.0 is
    rolled back to it with 6007; the store is the same throughout (MS-UPD-16)."""
    import urllib.request

    feed = Feed.create(tmp_path / "feed")
    data = tmp_path / "data"
    (data / "releases").mkdir(parents=True)
    root = tmp_path / "root.json"
    root.write_bytes(feed.trusted_root())
    bind = f"127.0.0.1:{_free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    sup = subprocess.Popen(
        [sys.executable, "-m", "metersync.supervisor", "--state-dir", str(data), "--window", "60",
         "--poll", "0.2", "--", "manager", "serve", "--bind", bind, "--data-dir", str(data)],
        cwd=tmp_path, env=env,
    )  # fmt: skip
    with FeedServer(feed.path) as server:
        cmd = [sys.executable, "-m", "metersync.cli", "manager", "update", "--install"]
        cmd += ["--feed-url", server.url, "--trusted-root", str(root), "--data-dir", str(data)]
        cmd += ["--keep", "2"]
        try:
            _wait("the base install healthy", lambda: _status(data).get("healthy") == "base")
            _publish(feed, wheels, "0.2.0", "manager")
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
            assert done.returncode == 0 and "0.2.0 is current" in done.stdout, done.stderr
            _wait("0.2.0 healthy", lambda: _status(data).get("healthy") == "0.2.0")
            with urllib.request.urlopen(f"http://{bind}/healthz", timeout=10) as r:
                assert r.status == 200
            _publish(feed, wheels, "0.3.0", "manager")
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
            assert done.returncode == 0, done.stderr
            _wait("the rollback", lambda: _status(data).get("code") == 6007)
            assert _status(data)["failed"] == "0.3.0" and _status(data)["running"] == "0.2.0"
            assert os.readlink(data / "releases/current") == "0.2.0"
            assert rel.built_versions(data) == ["0.2.0", "0.3.0"]  # --keep 2: none pruned
            _wait("0.2.0 healthy again", lambda: rel.read_json(data / "releases/health.json"))
        finally:
            sup.send_signal(signal.SIGTERM)
            assert sup.wait(60) == 0


def _fake_release(state: Path, version: str) -> None:
    d = state / "releases" / version
    d.mkdir(parents=True)
    (d / "release.json").write_text(json.dumps({"version": version}))


def test_activate_rollback_and_prune(tmp_path) -> None:
    """The switch keeps the replaced version as previous and at most KEEP versions,
    never removing current or previous (MS-UPD-25); --rollback swaps them back."""
    for v in ("0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.10.0"):
        _fake_release(tmp_path, v)
    rel.activate(tmp_path, "0.2.0", keep=10)
    rel.activate(tmp_path, "0.1.0", keep=2)  # older: the pinned ones survive the prune
    assert rel.link_target(tmp_path, "current") == "0.1.0"
    assert rel.link_target(tmp_path, "previous") == "0.2.0"
    assert rel.built_versions(tmp_path) == ["0.1.0", "0.2.0", "0.4.0", "0.10.0"]
    assert rel.release_command(tmp_path, back=True) == 0  # update --rollback
    assert rel.link_target(tmp_path, "current") == "0.2.0"
    assert rel.link_target(tmp_path, "previous") == "0.1.0"
    (tmp_path / "releases/previous").unlink()
    assert rel.release_command(tmp_path, back=True) == 1  # nothing to roll back to
    with pytest.raises(rel.ReleaseError, match="not built"):
        rel.activate(tmp_path, "9.9.9")
    with pytest.raises(rel.ReleaseError, match="not staged"):
        rel.build(tmp_path, "0.5.0")
