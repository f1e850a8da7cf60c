"""`agent poll` explains what went wrong: error statuses by name, exit codes, hints."""

from __future__ import annotations

import asyncio
import socket

import pytest

from metersync.cli import main
from metersync.snmpsim import SnmpSimulator, write_snmprec
from metersync_agent.cli import EXIT_AUTH
from metersync_agent.snmp import Credential, SnmpClient, SnmpError, status_name

SYS_DESCR = "1.3.6.1.2.1.1.1.0|4|Linux box"
SYS_ID = "1.3.6.1.2.1.1.2.0"


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    data = tmp_path_factory.mktemp("cli-errors")
    write_snmprec(
        data / "refused.snmprec",
        [SYS_DESCR, f"{SYS_ID}|6:error|op=any,status=authorizationerror"],
    )
    write_snmprec(data / "server.snmprec", [SYS_DESCR, f"{SYS_ID}|6|1.3.6.1.4.1.8072.3.2.10"])
    with SnmpSimulator(data) as s:
        yield s


def poll(sim, community: str, capsys) -> tuple[int, str]:
    host, port = sim.address
    rc = main(["agent", "poll", f"{host}:{port}", "--community", community, "--timeout", "1"])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_authorization_error_is_named_and_exits_4(sim, capsys):
    rc, text = poll(sim, "refused", capsys)
    assert rc == EXIT_AUTH
    assert "authorizationError (16)" in text


def test_a_host_without_printer_mib_is_said_not_to_be_a_printer(sim, capsys):
    rc, text = poll(sim, "server", capsys)
    assert "not a printer" in text
    assert "<sysDescr>Linux box</sysDescr>" in text


def test_silent_authpriv_hints_at_the_privacy_key():
    quiet = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    quiet.bind(("127.0.0.1", 0))  # receives, never answers

    async def go():
        client = SnmpClient(timeout=0.3, retries=0)
        cred = Credential("3", user="u", auth_protocol="SHA", auth_key="authpass1",
                          priv_protocol="AES", priv_key="privpass1")  # fmt: skip
        try:
            await client.open_session(*quiet.getsockname(), [cred], budget=5.0)
        finally:
            client.close()

    try:
        with pytest.raises(SnmpError) as err:
            asyncio.run(go())
    finally:
        quiet.close()
    assert err.value.code == "unreachable"
    assert "wrong privacy key" in err.value.message


def test_every_v2_error_status_has_its_name():
    assert status_name(5) == "genErr (5)"
    assert status_name(18) == "inconsistentName (18)"
    assert "unknown" in status_name(99)


def test_discover_prints_progress_and_a_summary(sim, capsys):
    host, port = sim.address
    quiet = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    quiet.bind(("127.0.0.1", 0))
    try:
        targets = [f"{host}:{port}", f"127.0.0.1:{quiet.getsockname()[1]}"]
        args = ["--community", "server", "--timeout", "0.6", "--retries", "0"]
        rc = main(["agent", "discover", *targets, *args, "--progress-every", "0.2"])
    finally:
        quiet.close()
    err = capsys.readouterr().err
    assert rc == 0
    assert "progress: 1/2 addresses probed, 1 answered, 0 printers" in err
    assert "done: 2/2 addresses probed, 1 answered, 0 printers, 0 refused" in err


def test_several_credentials_are_tried_in_the_order_given():
    import argparse

    from metersync_agent.cli import _credential_args, _credentials

    p = argparse.ArgumentParser()
    _credential_args(p)
    creds = _credentials(p.parse_args(["--community", "private", "--community", "public"]))
    assert [(c.version, c.community) for c in creds] == [("2c", "private"), ("2c", "public")]
    assert [c.community for c in _credentials(p.parse_args([]))] == ["public"]
    v3 = _credentials(p.parse_args(["--user", "ops", "--community", "lab"]))
    assert [(c.version, c.user or c.community) for c in v3] == [("3", "ops"), ("2c", "lab")]
    v1 = _credentials(p.parse_args(["--snmp-version", "1", "--community", "a"]))
    assert [(c.version, c.community) for c in v1] == [("1", "a")]
