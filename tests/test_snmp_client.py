"""SnmpClient against real snmpsim responders (no mocks)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from metersync.snmpsim import SnmpSimulator, V3User, write_snmprec
from metersync_agent.snmp import Credential, SnmpClient, SnmpError, WalkResult, parse_oid

SYS = "1.3.6.1.2.1.1"
PRT = "1.3.6.1.2.1.43"
COL = "1.3.6.1.2.1.43.10.2.1"  # prtMarkerTable
PRINTER = [
    f"{SYS}.1.0|4|ACME LaserWriter 9000",
    f"{SYS}.2.0|6|1.3.6.1.4.1.99999.1",
    f"{SYS}.3.0|67|123456",
    f"{SYS}.5.0|4|lw9000",
    "1.3.6.1.2.1.4.20.1.1.10.0.0.7|64|10.0.0.7",
    f"{PRT}.5.1.1.16.1|4|ACME",
    f"{COL}.4.1.1|65|104857",
    f"{COL}.4.1.2|65|2048",
    f"{COL}.5.1.1|2|1",
    f"{COL}.5.1.2|2|3",
    f"{PRT}.11.1.1.6.1.1|4x|546f6e657220ff",
    f"{PRT}.11.1.1.9.1.1|2|-3",
    "1.3.6.1.4.1.99999.1.1.0|70|18446744073709551615",
    "1.3.6.1.6.3.10.2.1.3.0|2|42",  # something after, so walks end by leaving their subtree
]

# Variation modules loaded by the responder from tmp_path (see STACK-NOTES: loops need one).
LOOPBACK_MODULE = '''
from pyasn1.type import univ

def init(**context):
    pass

def variate(oid, tag, value, **context):
    """A GETNEXT landing here answers with the earlier OID given as this line's value."""
    if not context["nextFlag"] and not context["exactMatch"]:
        return context["origOid"], tag, context["errorStatus"]
    return univ.ObjectIdentifier(value), "2", 7

def shutdown(**context):
    pass
'''
ENDLESS_MODULE = '''
from pyasn1.type import univ

def init(**context):
    pass

def variate(oid, tag, value, **context):
    """An endless, always increasing column under this (subtree) line."""
    if not context["nextFlag"] and not context["exactMatch"]:
        return context["origOid"], tag, context["errorStatus"]
    base, req = tuple(oid), tuple(context["origOid"])
    inside = len(req) > len(base) and req[: len(base)] == base
    nxt = req[:-1] + (req[-1] + 1,) if inside else base + (1,)
    return univ.ObjectIdentifier(nxt), "65", nxt[-1]

def shutdown(**context):
    pass
'''
SYS_ID = f"{SYS}.2.0|6|1.3.6.1.4.1.99999.1"
V3_SHA_AES = V3User("shaaes", "authkey-sha-1", "privkey-aes-1", "SHA", "AES")
V3_MD5_DES = V3User("md5des", "authkey-md5-1", "privkey-des-1", "MD5", "DES")
V3_SHA512_AES256 = V3User("sha512", "authkey-sha512", "privkey-aes256", "SHA512", "AES256")


def o(text: str) -> tuple[int, ...]:
    return parse_oid(text)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("snmp")
    data, mods = root / "data", root / "variation"
    mods.mkdir()
    (mods / "loopback.py").write_text(LOOPBACK_MODULE)
    (mods / "endless.py").write_text(ENDLESS_MODULE)
    write_snmprec(data / "public.snmprec", PRINTER)
    write_snmprec(data / "second.snmprec", [SYS_ID, f"{SYS}.5.0|4|second"])
    write_snmprec(
        data / "loop.snmprec",
        [SYS_ID, f"{COL}.4.1.1|2|1", f"{COL}.4.1.2|2|2", f"{COL}.5.1.1|2:loopback|{COL}.4.1.1"],
    )
    write_snmprec(data / "endless.snmprec", [SYS_ID, "1.3.6.1.4.1.99999.5|:endless|x"])
    write_snmprec(
        data / "generr.snmprec",
        [
            SYS_ID,
            f"{COL}.4.1.1|65|11",
            f"{COL}.4.1.2|65|12",
            f"{COL}.5.1.1|2:error|op=any,status=generror",
            f"{COL}.5.1.2|2|4",
            f"{COL}.6.1.1|2|5",
        ],
    )
    write_snmprec(
        data / "corrupt.snmprec",
        [
            SYS_ID,
            f"{COL}.4.1.1|65|11",
            f"{COL}.4.1.2|5|",  # NULL instead of a counter
            f"{COL}.5.1.1|65|6git3159",  # not a number: the responder cannot encode it
            f"{COL}.5.1.2|2|4",
            f"{COL}.6.1.1|2|5",
        ],
    )
    users = [V3_SHA_AES, V3_MD5_DES, V3_SHA512_AES256]
    with SnmpSimulator(data, v3_users=users, variation_modules_dir=mods) as s:
        yield s


def run(coro):
    return asyncio.run(coro)


async def read(sim, creds, subtrees, *, client=None, budget=10.0, max_varbinds=5000, **kw):
    own = client is None
    client = client or SnmpClient(**kw)
    host, port = sim.address
    result = WalkResult()
    try:
        session = await client.open_session(host, port, creds, budget)
        async with session:
            for sub in subtrees:
                await session.walk(o(sub), result, max_varbinds=max_varbinds)
        return session, result
    finally:
        if own:
            client.close()


@pytest.mark.parametrize("version", ["1", "2c"])
def test_walk_reads_every_value_with_its_type(sim, version):
    session, r = run(read(sim, [Credential(version, community="public")], [SYS, PRT, "1.3.6.1.4"]))
    assert session.credential.version == version
    assert r.problems == []
    v = r.values
    assert v[o(f"{SYS}.1.0")] == b"ACME LaserWriter 9000"
    assert v[o(f"{SYS}.2.0")] == "1.3.6.1.4.1.99999.1"
    assert v[o(f"{SYS}.3.0")] == 123456
    assert v[o(f"{COL}.4.1.1")] == 104857
    assert v[o(f"{PRT}.11.1.1.6.1.1")] == b"Toner \xff"
    assert v[o(f"{PRT}.11.1.1.9.1.1")] == -3
    if version == "2c":  # Counter64 does not exist in SNMPv1
        assert v[o("1.3.6.1.4.1.99999.1.1.0")] == 2**64 - 1
    assert o("1.3.6.1.2.1.4.20.1.1.10.0.0.7") not in v  # outside the subtrees asked for
    assert r.varbinds == len(v)
    if version == "2c":
        assert r.pdus == 3  # GETBULK: one PDU per subtree here
    else:  # GETNEXT: one per value and one per subtree end
        assert r.pdus == len(v) + 3


def test_get_returns_values_and_leaves_missing_out(sim):
    async def go():
        client = SnmpClient()
        host, port = sim.address
        try:
            for version in ("1", "2c"):
                s = await client.open_session(host, port, [Credential(version)])
                r = WalkResult()
                await s.get(
                    [o(f"{SYS}.5.0"), o(f"{SYS}.9.0"), o("1.3.6.1.2.1.4.20.1.1.10.0.0.7")], r
                )
                s.close()
                assert r.values == {
                    o(f"{SYS}.5.0"): b"lw9000",
                    o("1.3.6.1.2.1.4.20.1.1.10.0.0.7"): "10.0.0.7",
                }
        finally:
            client.close()

    run(go())


@pytest.mark.parametrize("user", [V3_SHA_AES, V3_MD5_DES, V3_SHA512_AES256], ids=lambda u: u.name)
def test_v3_auth_priv(sim, user):
    cred = Credential(
        "3", user=user.name, auth_protocol=user.auth_proto, auth_key=user.auth_key,
        priv_protocol=user.priv_proto, priv_key=user.priv_key, context="public",
    )  # fmt: skip
    session, r = run(read(sim, [cred], [PRT]))
    assert session.credential == cred
    assert r.values[o(f"{COL}.4.1.2")] == 2048
    assert r.problems == []


def test_wrong_v3_key_is_auth_failure_not_silence(sim):
    bad = Credential(
        "3", user="shaaes", auth_protocol="SHA", auth_key="wrong-key-123",
        priv_protocol="AES", priv_key="privkey-aes-1", context="public",
    )  # fmt: skip
    unknown = Credential("3", user="nobody", auth_protocol="SHA", auth_key="whatever-1")
    for cred in (bad, unknown):
        t0 = time.monotonic()
        with pytest.raises(SnmpError) as exc:
            run(read(sim, [cred], [SYS], timeout=1.0, retries=1))
        assert exc.value.code == "auth-failure", exc.value
        assert time.monotonic() - t0 < 1.5  # answered by a USM report, not by waiting


def test_wrong_community_is_unreachable_within_budget(sim):
    t0 = time.monotonic()
    with pytest.raises(SnmpError) as exc:
        # four silent tries of 2 s each would take 8 s; the budget cuts that to 1 s
        run(
            read(sim, [Credential("2c", community="nope")], [SYS], budget=1.0, timeout=2, retries=3)
        )
    assert exc.value.code == "unreachable"
    assert time.monotonic() - t0 < 2.5


def test_credentials_tried_in_order_and_remembered(sim):
    async def go():
        client = SnmpClient(timeout=0.5, retries=0)
        creds = [Credential("2c", community="nope"), Credential("2c", community="second"),
                 Credential("2c", community="public")]  # fmt: skip
        host, port = sim.address
        try:
            t0 = time.monotonic()
            s = await client.open_session(host, port, creds)
            first = time.monotonic() - t0
            s.close()
            assert s.credential.community == "second"  # first that works, in list order
            assert client.known_credential(host, port) == creds[1]
            t0 = time.monotonic()
            s = await client.open_session(host, port, creds)
            again = time.monotonic() - t0
            s.close()
            assert s.credential.community == "second"
            assert first >= 0.4 and again < 0.3  # the silent one was skipped the second time
        finally:
            client.close()

    run(go())


@pytest.mark.parametrize("version", ["1", "2c"])
def test_looping_device_ends_with_walk_loop(sim, version):
    _, r = run(read(sim, [Credential(version, community="loop")], [PRT], timeout=1))
    assert [p.code for p in r.problems] == ["walk-loop"]
    assert r.values == {o(f"{COL}.4.1.1"): 1, o(f"{COL}.4.1.2"): 2}


@pytest.mark.parametrize("version", ["1", "2c"])
def test_endless_table_is_capped(sim, version):
    _, r = run(
        read(
            sim, [Credential(version, community="endless")], ["1.3.6.1.4.1.99999"], max_varbinds=120
        )
    )
    assert [p.code for p in r.problems] == ["walk-cap"]
    assert len(r.values) == 120
    assert r.values[o("1.3.6.1.4.1.99999.5.120")] == 120


@pytest.mark.parametrize("version", ["1", "2c"])
def test_generr_mid_walk_keeps_values_and_steps_past(sim, version):
    _, r = run(read(sim, [Credential(version, community="generr")], [PRT], timeout=1))
    assert [p.code for p in r.problems] == ["gen-err"]
    assert r.values[o(f"{COL}.4.1.1")] == 11
    assert r.values[o(f"{COL}.4.1.2")] == 12
    assert o(f"{COL}.5.1.1") not in r.values
    assert r.values[o(f"{COL}.6.1.1")] == 5  # read after stepping past the failing object


@pytest.mark.parametrize("version", ["1", "2c"])
def test_corrupt_values_are_reported_and_skipped(sim, version):
    _, r = run(read(sim, [Credential(version, community="corrupt")], [PRT], timeout=1))
    assert r.values[o(f"{COL}.4.1.1")] == 11
    assert o(f"{COL}.4.1.2") not in r.values  # NULL is not a value
    assert r.values[o(f"{COL}.6.1.1")] == 5  # the walk went on past the corrupt counter
    codes = {(p.code, p.oid) for p in r.problems}
    assert ("decode-error", f"{COL}.4.1.2") in codes
    assert all(p.code == "decode-error" for p in r.problems)
    assert len(r.problems) >= 2


@pytest.fixture
def slow_sim(tmp_path: Path):
    # delay blocks the responder's event loop: a slow device gets its own (short-lived) process
    data = tmp_path
    rows = [SYS_ID] + [f"{COL}.4.1.{i}|65|{i}" for i in range(1, 4)]
    rows += [f"{COL}.4.1.{i}|65:delay|value={i},wait=700" for i in range(4, 12)]
    write_snmprec(data / "public.snmprec", rows)
    with SnmpSimulator(data) as s:
        yield s


@pytest.mark.parametrize("version", ["1", "2c"])
def test_slow_device_exceeds_budget_with_partial_data(slow_sim, version):
    t0 = time.monotonic()
    _, r = run(
        read(slow_sim, [Credential(version)], [PRT], budget=2.0, timeout=3, retries=0,
             max_repetitions=2)
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    assert [p.code for p in r.problems] == ["budget-exceeded"]
    assert {o(f"{COL}.4.1.{i}") for i in (1, 2, 3)} <= r.values.keys()
    assert len(r.values) < 11
    assert elapsed < 3.0


# --- additions: GETBULK overshoot onto a failing object, and the v1/v2c transport -------------


@pytest.mark.parametrize("version", ["1", "2c"])
def test_generr_past_the_end_of_the_subtree_is_not_a_problem(sim, version):
    # COL.4 ends at 4.1.2; the next object (5.1.1) fails, but it is outside the walked column
    _, r = run(read(sim, [Credential(version, community="generr")], [f"{COL}.4"], timeout=1))
    assert r.problems == []
    assert r.values == {o(f"{COL}.4.1.1"): 11, o(f"{COL}.4.1.2"): 12}
    # the same object inside the walked subtree is still reported
    _, r = run(read(sim, [Credential(version, community="generr")], [f"{COL}.5"], timeout=1))
    assert [(p.code, p.oid) for p in r.problems] == [("gen-err", f"{COL}.5")]


class FakeDevice(asyncio.DatagramProtocol):
    """A loopback SNMP v2c device built on snmp_codec; `answer(msg)` returns packets to send."""

    def __init__(self, answer):
        self.answer = answer
        self.requests = []
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        from metersync_agent import snmp_codec as codec

        msg = codec.decode_message(data)
        self.requests.append(msg)
        for packet in self.answer(msg):
            self.transport.sendto(packet, addr)


def _reply(msg, varbinds, *, community=b"public", rid=None):
    from metersync_agent import snmp_codec as codec

    return codec.encode_message(
        msg.version, community, codec.RESPONSE, msg.request_id if rid is None else rid, 0, 0,
        varbinds,
    )  # fmt: skip


async def _with_device(answer, body):
    loop = asyncio.get_running_loop()
    device = FakeDevice(answer)
    transport, _ = await loop.create_datagram_endpoint(lambda: device, local_addr=("127.0.0.1", 0))
    try:
        return await body(transport.get_extra_info("sockname")[1], device)
    finally:
        transport.close()


def test_answers_not_matching_the_request_are_ignored():
    from metersync_agent import snmp_codec as codec

    sys_oid = codec.encode_oid(o("1.3.6.1.4.1.99999.1"))

    def answer(msg):
        good = [(o(f"{SYS}.2.0"), sys_oid)]
        yield _reply(msg, [(o(f"{SYS}.2.0"), codec.encode_octet_string(b"spoof"))], rid=1)
        yield _reply(msg, [(o(f"{SYS}.2.0"), codec.encode_octet_string(b"x"))], community=b"no")
        yield _reply(msg, good)[:-3]  # truncated: dropped, the next one counts
        yield _reply(msg, good)

    async def body(port, device):
        client = SnmpClient(timeout=1.0, retries=0)
        try:
            s = await client.open_session("127.0.0.1", port, [Credential("2c")])
            r = WalkResult()
            await s.get([o(f"{SYS}.2.0")], r)
            s.close()
            return r
        finally:
            client.close()

    r = run(_with_device(answer, body))
    assert r.values == {o(f"{SYS}.2.0"): "1.3.6.1.4.1.99999.1"}
    assert r.problems == []


def test_a_lost_request_is_retried_and_a_broken_answer_is_a_decode_error():
    from metersync_agent import snmp_codec as codec

    seen: dict[int, int] = {}

    def answer(msg):
        seen[msg.request_id] = seen.get(msg.request_id, 0) + 1
        if msg.pdu_type == codec.GET:
            if seen[msg.request_id] == 1:
                return  # the first try is lost; the retry (same request-id) is answered
            yield _reply(msg, [(o(f"{SYS}.2.0"), codec.encode_oid(o("1.3.6.1.4.1.9")))])
        else:
            yield _reply(msg, [(o(f"{PRT}.5.1.1.16.1"), codec.encode_octet_string(b"A"))])[:-1]

    async def body(port, device):
        client = SnmpClient(timeout=0.3, retries=1)
        try:
            s = await client.open_session("127.0.0.1", port, [Credential("2c")])
            r = WalkResult()
            await s.walk(o(PRT), r)
            s.close()
            return r, device.requests
        finally:
            client.close()

    r, requests = run(_with_device(answer, body))
    assert [m.pdu_type for m in requests] == [codec.GET] * 2 + [codec.GET_BULK] * 2
    assert requests[0].request_id == requests[1].request_id
    assert [p.code for p in r.problems] == ["decode-error"]
    assert "undecodable answer" in r.problems[0].message
    assert r.pdus == 1  # the walk's one request (the GET went to a probe result)


def test_concurrent_first_callers_share_one_socket(sim):
    async def go():
        loop = asyncio.get_running_loop()
        made = []
        real = loop.create_datagram_endpoint

        async def counting(*a, **kw):
            made.append(1)
            await asyncio.sleep(0.05)  # let every first caller arrive while it is being made
            return await real(*a, **kw)

        loop.create_datagram_endpoint = counting  # type: ignore[method-assign]
        client = SnmpClient(timeout=2.0)
        try:
            results = await asyncio.gather(
                *(read(sim, [Credential("2c")], [SYS], client=client) for _ in range(8))
            )
        finally:
            client.close()
        return made, results

    made, results = run(go())
    assert len(made) == 1
    assert all(r.values and not r.problems for _, r in results)
