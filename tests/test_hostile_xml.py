"""The hostile corpus: each attack gets its precise error, quickly and with bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metersync.errors import ProtocolError
from metersync.xml_edge import MAX_BYTES, MAX_DEPTH, parse_message

REPO = Path(__file__).resolve().parents[1]
REPORT = (REPO / "spec/examples/valid/report.xml").read_text()
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
NS = 'xmlns="urn:metersync:v1"'


def _nested(depth: int) -> bytes:
    """A valid report whose extension nests vendor elements `depth` levels below extensions."""
    inner = '<v:a xmlns:v="urn:example:vendor">' + "<v:a>" * (depth - 1) + "</v:a>" * depth
    return REPORT.replace("</Report>", f"<extensions>{inner}</extensions></Report>").encode()


def _doc(prolog: str, body: str) -> bytes:
    return f"{HEAD}{prolog}<Report {NS}>{body}</Report>".encode()


CORPUS: dict[str, tuple[bytes, str]] = {
    "external entity (file)": (
        _doc('<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>', "&x;"),
        "FORBIDDEN_XML_CONSTRUCT",
    ),
    "external entity (network)": (
        _doc('<!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]>', "&x;"),
        "FORBIDDEN_XML_CONSTRUCT",
    ),
    "parameter entity": (
        _doc('<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>', ""),
        "FORBIDDEN_XML_CONSTRUCT",
    ),
    "external DTD": (
        f'{HEAD}<!DOCTYPE Report SYSTEM "http://127.0.0.1:9/r.dtd"><Report {NS}/>'.encode(),
        "FORBIDDEN_XML_CONSTRUCT",
    ),
    "billion laughs": (
        (REPO / "spec/examples/invalid/billion-laughs.xml").read_bytes(),
        "FORBIDDEN_XML_CONSTRUCT",
    ),
    "quadratic blowup": (
        (
            f'{HEAD}<!DOCTYPE r [<!ENTITY a "{"x" * 50_000}">]><Report {NS}>'
            + "&a;" * 20_000
            + "</Report>"
        ).encode(),
        "FORBIDDEN_XML_CONSTRUCT",
    ),
    "undeclared entity": (
        REPORT.replace("<sysName>NPI1A2B3C", "<sysName>&x;").encode(),
        "FORBIDDEN_XML_CONSTRUCT",
    ),
    "XSLT processing instruction": (
        REPORT.replace(
            "<Report ", '<?xml-stylesheet href="http://127.0.0.1:9/x.xsl"?><Report '
        ).encode(),
        "FORBIDDEN_XML_CONSTRUCT",
    ),
    "processing instruction inside": (
        REPORT.replace("<sequence>", "<?php system('id'); ?><sequence>").encode(),
        "FORBIDDEN_XML_CONSTRUCT",
    ),
    "XInclude": (
        REPORT.replace(
            "</Report>",
            '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
            'href="/etc/passwd" parse="text"/></Report>',
        ).encode(),
        "SCHEMA_VIOLATION",
    ),
    "10,000-deep nesting": (_nested(10_000), "DOCUMENT_TOO_DEEP"),
    "wrong namespace": (REPORT.replace(NS, 'xmlns="urn:evil"').encode(), "UNSUPPORTED_VERSION"),
    "no namespace": (REPORT.replace(f" {NS}", "").encode(), "UNSUPPORTED_VERSION"),
    "out-of-range value": (
        REPORT.replace("<queueDepth>0<", "<queueDepth>99999999999<").encode(),
        "SCHEMA_VIOLATION",
    ),
    "negative unsigned": (
        REPORT.replace("<sequence>42<", "<sequence>-5<").encode(),
        "SCHEMA_VIOLATION",
    ),
    "truncated": (REPORT.encode()[:1500], "MALFORMED_XML"),
    "empty body": (b"", "MALFORMED_XML"),
    "invalid UTF-8": (
        REPORT.encode().replace(b"copy room", b"copy \xff\xfe room"),
        "MALFORMED_XML",
    ),
    "NUL byte": (REPORT.encode().replace(b"copy room", b"copy \x00 room"), "MALFORMED_XML"),
    "UTF-16": (
        REPORT.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16"),
        "UNSUPPORTED_ENCODING",
    ),
    "UTF-32": (REPORT.encode("utf-32"), "UNSUPPORTED_ENCODING"),
    "two root elements": ((REPORT + "<Report/>").encode(), "MALFORMED_XML"),
    "not a message": (f"{HEAD}<Device2 {NS}/>".encode(), "UNKNOWN_MESSAGE"),
    "oversize attribute": (
        REPORT.replace('durationMs="412"', f'durationMs="412" x="{"A" * 2_000_000}"').encode(),
        "SCHEMA_VIOLATION",
    ),
}


@pytest.mark.parametrize("name", sorted(CORPUS), ids=str)
def test_hostile_document_is_refused_precisely(name: str) -> None:
    data, expected = CORPUS[name]
    started = time.perf_counter()
    with pytest.raises(ProtocolError) as caught:
        parse_message(data)
    elapsed = time.perf_counter() - started
    assert caught.value.name == expected, str(caught.value)
    assert caught.value.message, "an error must say what is wrong"
    assert elapsed < 5, f"{name} took {elapsed:.1f} s"  # a generous bound: no blow-up


def test_markup_inside_cdata_and_comments_is_text_not_refused() -> None:
    text = REPORT.replace(
        "<location>2nd floor, copy room</location>",
        "<!-- <!DOCTYPE x> &fake; <?pi?> --><location><![CDATA[<!DOCTYPE &x; <?y?>]]></location>",
    )
    message = parse_message(text.encode())
    assert message.obj.device[0].identity.location == "<!DOCTYPE &x; <?y?>"


def test_depth_limit_is_exact() -> None:
    # Report + extensions + (MAX_DEPTH - 2) vendor levels = MAX_DEPTH: accepted; one more is not.
    assert parse_message(_nested(MAX_DEPTH - 2)).kind == "Report"
    with pytest.raises(ProtocolError, match="DOCUMENT_TOO_DEEP"):
        parse_message(_nested(MAX_DEPTH - 1))


_PROBE = textwrap.dedent(
    """
    import json, resource, sys, time
    from metersync.errors import ProtocolError
    from metersync.xml_edge import parse_message
    data = sys.stdin.buffer.read()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    try:
        parse_message(data)
        name = None
    except ProtocolError as e:
        name = e.name
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"name": name, "s": time.perf_counter() - t, "grew_kb": peak - base}))
    """
)


@pytest.mark.parametrize(
    ("label", "make", "expected"),
    [
        ("100 MB body", lambda: b"<Report>" + b"A" * 100 * 1024 * 1024, "DOCUMENT_TOO_LARGE"),
        ("10,000-deep nesting", lambda: _nested(10_000), "DOCUMENT_TOO_DEEP"),
        ("billion laughs", lambda: CORPUS["billion laughs"][0], "FORBIDDEN_XML_CONSTRUCT"),
        ("quadratic blowup", lambda: CORPUS["quadratic blowup"][0], "FORBIDDEN_XML_CONSTRUCT"),
    ],
)
def test_memory_stays_bounded(label: str, make, expected: str) -> None:
    data = make()
    assert label != "100 MB body" or len(data) > MAX_BYTES
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], input=data, capture_output=True, timeout=120, check=True
    )
    result = json.loads(out.stdout)
    assert result["name"] == expected
    # Nothing beyond the input already in memory: growth under 32 MB whatever the attack.
    assert result["grew_kb"] < 32 * 1024, result


_PIECES = [
    "<a>", "</a>", "text", "&amp;", "&lt;", "&#65;", "&x;", "<!-- c -->", "<!--", "-->",
    "<![CDATA[", "]]>", "<!DOCTYPE", "<!ENTITY", "<?pi?>", "&", "<!", "<?", "\n",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=30))
def test_fast_scan_finds_what_a_full_regex_scan_finds(pieces: list[str]) -> None:
    from metersync.xml_edge import _SCAN, _suspects

    data = "".join(pieces).encode()
    full = next((m for m in _SCAN.finditer(data) if m.lastgroup), None)
    fast = next((m for m in _suspects(data, 0) if m.lastgroup), None)
    assert (full and (full.start(), full.lastgroup)) == (fast and (fast.start(), fast.lastgroup))
