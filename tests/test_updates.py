"""Updates and licences (spec chapter 16): a real TUF feed on disk, served over loopback HTTP,
read by the update client (tuf ngclient) as the agent and the manager use it.

Each attack is refused with its code and installs nothing; a valid update is staged; licence
states follow the table of 16.2; manual mode fetches nothing without the command."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from metersync import updates
from metersync.feed import Feed, FeedServer, make_licence, new_signer
from metersync.updates import UpdateClient, licence_state

AGENT = "11111111-2222-4333-8444-555555555555"
OTHER = "99999999-2222-4333-8444-555555555555"
NOW = dt.datetime.now(dt.UTC)
NOWHERE = [SimpleNamespace(host="127.0.0.1", port=9)]  # no printer answers there


@pytest.fixture
def feed(tmp_path: Path) -> Feed:
    f = Feed.create(tmp_path / "feed")
    f.add_software(
        b"agent 0.2.0",
        product="agent",
        version="0.2.0",
        platform="python",
        filename="metersync-0.2.0.whl",
    )
    return f


@pytest.fixture
def server(feed: Feed):
    with FeedServer(feed.path) as srv:
        yield srv


def client(state: Path, feed: Feed, srv: FeedServer, product: str = "agent") -> UpdateClient:
    return UpdateClient(
        state,
        srv.url,
        feed.trusted_root(),
        product=product,
        running_version="0.1.0",
        agent_id=AGENT if product == "agent" else None,
    )


def snapshot(state: Path) -> dict[str, bytes]:
    """Everything installed: staged software and licences (the TUF cache excluded)."""
    out = {}
    for sub in ("updates", "licences"):
        for p in sorted((state / sub).rglob("*")) if (state / sub).exists() else []:
            if p.is_file() and p.name != "status.json":
                out[str(p.relative_to(state))] = p.read_bytes()
    return out


def test_valid_update_is_staged_and_licence_installed(tmp_path, feed, server) -> None:
    feed.add_licence(make_licence("L-1", agent_ids=[AGENT], max_devices=25))
    state = tmp_path / "state"
    c = client(state, feed, server)
    check = c.run(install=False)  # --check downloads no target
    assert check.ok and "agent/0.2.0/metersync-0.2.0.whl" in check.available
    assert not [r for r in server.requests if r.startswith("/targets/")]
    assert snapshot(state) == {}
    out = c.run(install=True)
    assert out.ok, out.error
    record = json.loads((state / "updates/0.2.0/installed.json").read_text())
    assert record["version"] == "0.2.0" and record["previous"] == "0.1.0"
    assert (state / "updates/0.2.0/metersync-0.2.0.whl").read_bytes() == b"agent 0.2.0"
    info = licence_state(state, "agent", AGENT)
    assert (info.state, info.licence_id, info.max_devices) == ("valid", "L-1", 25)
    assert "restart" in updates.describe(out, c, True)
    # Nothing newer now: a second run installs nothing.
    again = client(state, feed, server).run(install=True)
    assert again.ok and again.installed == []


def _refused(state: Path, feed: Feed, srv: FeedServer, code: int) -> None:
    before = snapshot(state)
    out = client(state, feed, srv).run(install=True)
    assert out.code == code, out.error
    assert snapshot(state) == before  # nothing installed (MS-UPD-15, MS-UPD-18)
    assert updates.read_status(state)["code"] == code  # recorded (MS-UPD-18)


def test_tampered_target_is_refused_6004(tmp_path, feed, server) -> None:
    path = feed.targets_dir / "agent/0.2.0/metersync-0.2.0.whl"
    path.write_bytes(b"agent 0.2.0 with a backdoor")
    _refused(tmp_path / "state", feed, server, 6004)
    assert not list((tmp_path / "state" / "updates").glob("*/*.whl"))


def test_wrong_root_signature_is_refused_6001(tmp_path, feed, server) -> None:
    feed.new_root(signers=[new_signer()])  # root v2 signed by a key nobody trusts
    _refused(tmp_path / "state", feed, server, 6001)


def test_rolled_back_metadata_is_refused_6002(tmp_path, feed, server) -> None:
    state = tmp_path / "state"
    old = (feed.metadata_dir / "timestamp.json").read_bytes()
    feed.publish()
    assert client(state, feed, server).run(install=False).ok  # trusts the newer timestamp
    (feed.metadata_dir / "timestamp.json").write_bytes(old)
    _refused(state, feed, server, 6002)


def test_expired_timestamp_is_refused_6003(tmp_path, feed, server) -> None:
    feed.publish(timestamp_expires=NOW - dt.timedelta(minutes=5))
    _refused(tmp_path / "state", feed, server, 6003)


def test_licence_for_another_agent_6005_and_expired_6006(tmp_path, feed, server) -> None:
    state = tmp_path / "state"
    feed.add_licence(make_licence("L-other", agent_ids=[OTHER]))
    _refused(state, feed, server, 6005)
    assert licence_state(state, "agent", AGENT).state == "invalid"
    feed.remove_target("licences/L-other.xml")
    old = make_licence(
        "L-old", not_before=NOW - dt.timedelta(days=400), not_after=NOW - dt.timedelta(days=1)
    )
    feed.add_licence(old)
    _refused(state, feed, server, 6006)
    assert licence_state(state, "agent", AGENT).state == "expired"
    # A manager licence is not for the agent either.
    feed.remove_target("licences/L-old.xml")
    feed.add_licence(make_licence("L-mgr", product="manager"))
    assert client(state, feed, server).run(install=True).installed == [
        "agent/0.2.0/metersync-0.2.0.whl"
    ]  # no licence for an agent in the feed: nothing refused, the manager's is not looked at
    out = client(tmp_path / "mgr", feed, server, product="manager").run(install=True)
    assert out.installed == ["licences/L-mgr.xml"]
    assert licence_state(tmp_path / "mgr", "manager", None).state == "valid"


def test_licence_states(tmp_path) -> None:
    state = tmp_path / "s"
    assert licence_state(state, "agent", AGENT).state == "missing"
    (state / "licences").mkdir(parents=True)
    soon = make_licence("L-soon", not_after=NOW + dt.timedelta(days=10))
    (state / "licences" / "L-soon.xml").write_bytes(soon)
    assert licence_state(state, "agent", AGENT).state == "expiring"
    later = make_licence("L-later", agent_ids=[AGENT], not_after=NOW + dt.timedelta(days=90))
    (state / "licences" / "L-later.xml").write_bytes(later)
    info = licence_state(state, "agent", AGENT)
    assert (info.state, info.licence_id) == ("valid", "L-later")
    assert licence_state(state, "agent", AGENT, NOW + dt.timedelta(days=100)).state == "expired"
    assert licence_state(state, "agent", OTHER).state == "expiring"  # L-soon is unbound


def test_downgrade_only_on_command(tmp_path, feed, server) -> None:
    state = tmp_path / "state"
    feed.add_software(
        b"agent 0.0.9",
        product="agent",
        version="0.0.9",
        platform="any",
        filename="metersync-0.0.9.whl",
    )
    feed.add_software(b"mgr", product="manager", version="9.0", platform="python", filename="m")
    feed.add_software(b"win", product="agent", version="9.0", platform="windows", filename="w")
    assert client(state, feed, server).run(install=True).installed == [
        "agent/0.2.0/metersync-0.2.0.whl"  # newest for this product and platform (MS-UPD-12)
    ]
    out = client(state, feed, server).run(install=True, version="0.0.9")
    assert out.installed == [] and "allow-downgrade" in out.notes[0]
    out = client(state, feed, server).run(install=True, version="0.0.9", allow_downgrade=True)
    assert out.installed == ["agent/0.0.9/metersync-0.0.9.whl"]


def test_feed_url_must_be_https_unless_loopback(tmp_path, feed) -> None:
    with pytest.raises(updates.UpdateError, match="https"):
        UpdateClient(
            tmp_path,
            "http://feed.example.com",
            feed.trusted_root(),
            product="agent",
            running_version="0.1.0",
        )


def test_agent_manual_mode_fetches_nothing_and_update_command(tmp_path, feed, server) -> None:
    """The agent service in manual mode never calls the feed; `agent update` does, and its
    report then carries the licence (MS-UPD-13, MS-UPD-20)."""
    from metersync import cli
    from metersync_agent import enrollment, service, updating
    from metersync_agent.config import load_provisioning_bytes
    from metersync_conformance.agent.harness import provisioning

    feed.add_licence(make_licence("L-7", max_devices=7))
    state = tmp_path / "state"
    identity = enrollment.load_or_create_identity(state)
    root = feed.trusted_root().decode()
    for mode in ("manual", "automatic"):
        xml = provisioning(
            "http://127.0.0.1:9",
            NOWHERE,
            mode=mode,
            feed_url=server.url,
            trusted_root=root,
            check_interval=60,
        )
        settings = load_provisioning_bytes(xml)
        assert settings.update_mode == mode and settings.update_trusted_root == root
    manual = load_provisioning_bytes(
        provisioning("http://127.0.0.1:9", NOWHERE, feed_url=server.url, trusted_root=root)
    )

    automatic = load_provisioning_bytes(
        provisioning(
            "http://127.0.0.1:9",
            NOWHERE,
            mode="automatic",
            feed_url=server.url,
            trusted_root=root,
            check_interval=10,
        )
    )

    async def run_briefly(settings, state_dir: Path, seconds: float) -> None:
        svc = service.AgentService(settings, state_dir, poll=None)
        task = asyncio.create_task(svc.run())
        await asyncio.sleep(seconds)
        svc.stop.set()
        await task

    asyncio.run(run_briefly(manual, state, 1.0))
    assert server.requests == []  # manual mode: nothing fetched without the command
    auto_state = tmp_path / "auto"
    asyncio.run(run_briefly(automatic, auto_state, 1.6))  # first check within 10 % of 10 s
    assert server.requests and (auto_state / "licences/L-7.xml").exists()
    server.requests.clear()
    prov = tmp_path / "p.xml"
    prov.write_bytes(
        provisioning("http://127.0.0.1:9", NOWHERE, feed_url=server.url, trusted_root=root)
    )
    argv = ["agent", "update", "--config", str(prov), "--state-dir", str(state)]
    assert cli.main([*argv, "--check"]) == 0
    assert snapshot(state) == {}
    assert cli.main(argv) == 0
    assert (state / "updates/0.2.0/installed.json").exists()
    lic = updating.licence_for_report(state, identity.agent_id)
    assert (lic.state.value, lic.licence_id, lic.max_devices) == ("valid", "L-7", 7)
    # A refused update exits 1 and keeps everything.
    feed.publish(timestamp_expires=NOW - dt.timedelta(minutes=1))
    assert cli.main(argv) == 1
    # The automatic schedule's delays stay within 10 % of the interval (MS-UPD-14).
    rng = random.Random(7)
    delays = [updating.next_check_delay(100.0, rng) for _ in range(200)]
    assert min(delays) >= 100.0 and max(delays) <= 110.0


def test_feed_command_line(tmp_path) -> None:
    from metersync import cli

    d = tmp_path / "feed"
    art = tmp_path / "a.whl"
    art.write_bytes(b"x")
    lic = tmp_path / "l.xml"
    lic.write_bytes(make_licence("L-cli"))
    assert cli.main(["feed", "init", str(d), "--timestamp-days", "0.5"]) == 0
    assert cli.main(["feed", "init", str(d)]) == 2  # refuses to overwrite a feed
    assert cli.main(["feed", "add", str(d), "software", str(art), "--version", "1.0"]) == 0
    assert cli.main(["feed", "add", str(d), "licence", str(lic)]) == 0
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"<Licence/>")
    assert cli.main(["feed", "add", str(d), "licence", str(bad)]) == 2
    assert cli.main(["feed", "publish", str(d)]) == 0
    assert set(Feed.open(d).targets()) == {"agent/1.0/a.whl", "licences/L-cli.xml"}
    assert (d / "keys/root.pem").stat().st_mode & 0o077 == 0
    shutil.rmtree(d)
