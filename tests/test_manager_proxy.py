"""The reverse-proxy middleware (MS-OPS-1, MS-OPS-2, MS-OPS-3) without a proxy process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from metersync_manager.app import with_server
from metersync_manager.channel import _raw_path
from metersync_manager.proxy import RootPath, TrustedProxies, parse_networks


def _mw() -> TrustedProxies:
    return TrustedProxies(None, parse_networks(["10.0.0.0/8", "::1"]))


@pytest.mark.parametrize(
    ("peer", "headers", "want"),
    [
        ("203.0.113.9", {b"x-forwarded-for": b"198.51.100.1"}, ("203.0.113.9", None)),  # untrusted
        ("10.1.1.1", {b"x-forwarded-for": b"198.51.100.1"}, ("198.51.100.1", None)),
        # the right-most untrusted hop wins: a client cannot prepend an address of its choice
        (
            "10.1.1.1",
            {b"x-forwarded-for": b"6.6.6.6, 198.51.100.1, 10.2.2.2"},
            ("198.51.100.1", None),
        ),
        ("::1", {b"forwarded": b'for="[2001:db8::7]:4711";proto=https'}, ("2001:db8::7", "https")),
        ("10.1.1.1", {b"forwarded": b"for=192.0.2.60:8080, for=10.3.3.3"}, ("192.0.2.60", None)),
        (
            "10.1.1.1",
            {b"x-forwarded-for": b"junk, 198.51.100.1", b"x-forwarded-proto": b"https"},
            ("198.51.100.1", "https"),
        ),  # fmt: skip
        ("10.1.1.1", {b"x-forwarded-for": b"198.51.100.1, junk"}, ("10.1.1.1", None)),
        ("10.1.1.1", {}, ("10.1.1.1", None)),
    ],
)
def test_client_address(peer: str, headers: dict[bytes, bytes], want: tuple[Any, Any]) -> None:
    assert _mw().client(peer, headers) == want


def _through(mw_factory: Any, scope: dict[str, Any]) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def app(s: dict[str, Any], receive: Any, send: Any) -> None:
        seen.update(s)

    asyncio.run(mw_factory(app)(scope, None, None))
    return seen


def test_scope_rewritten_only_for_trusted_peers() -> None:
    nets = parse_networks(["127.0.0.1"])
    base = {"type": "http", "headers": [(b"x-forwarded-for", b"192.0.2.1")], "scheme": "http"}
    got = _through(lambda a: TrustedProxies(a, nets), {**base, "client": ("127.0.0.1", 5)})
    assert got["client"] == ("192.0.2.1", 5)
    got = _through(lambda a: TrustedProxies(a, nets), {**base, "client": ("127.0.0.2", 5)})
    assert got["client"] == ("127.0.0.2", 5)
    ws = {**base, "type": "websocket", "client": ("127.0.0.1", 5)}
    ws["headers"] = [(b"x-forwarded-proto", b"https")]
    assert _through(lambda a: TrustedProxies(a, nets), ws)["scheme"] == "wss"


@pytest.mark.parametrize("sent", ["/v1/channel", "/metersync/v1/channel"])
def test_root_path_and_the_signed_path(sent: str) -> None:
    scope = {"type": "websocket", "path": sent, "raw_path": sent.encode()}
    got = _through(lambda a: RootPath(a, "/metersync/"), scope)
    assert (got["root_path"], got["path"]) == ("/metersync", "/metersync/v1/channel")
    # whether the proxy stripped the prefix or not, the signature covers what the agent sent
    assert _raw_path(got, "") == "/metersync/v1/channel"
    assert _raw_path({"raw_path": b"/v1/channel?x=1"}, "") == "/v1/channel"


def test_openapi_server_replaced() -> None:
    text = (
        "openapi: 3.1.0\nservers:\n  - url: http://127.0.0.1:8470\n    description: x\npaths: {}\n"
    )
    out = with_server(text, 'https://dealer.example/metersync/"')
    assert out == (
        'openapi: 3.1.0\nservers:\n  - url: "https://dealer.example/metersync/%22"\n'
        "    description: this manager\npaths: {}\n"
    )
