"""The safe XML edge: bytes in, validated generated objects out, and back (MS-XML-*).

Every MeterSync document passes through `parse_message` on receipt, in this order, each step
refusing with its own error code: size (1003), encoding (1009), forbidden constructs (1002:
any DOCTYPE, entity reference other than the five predefined ones and character references,
or processing instruction), well-formedness (1001), depth (1004), namespace (1006), message
type (1007), XSD validation (1008). Entities are never expanded and nothing is fetched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from lxml import etree
from xsdata.formats.dataclass.context import XmlContext
from xsdata.formats.dataclass.parsers import XmlParser
from xsdata.formats.dataclass.parsers.handlers import LxmlEventHandler
from xsdata.formats.dataclass.serializers import XmlSerializer
from xsdata.formats.dataclass.serializers.config import SerializerConfig

import metersync_generated.v1 as model
import metersync_spec
from metersync.errors import ProtocolError

NAMESPACE = metersync_spec.NAMESPACE
PROTOCOL_VERSION = "1.0"
MEDIA_TYPE = "application/vnd.metersync+xml"  # MS-HTTP-3: every document over HTTP
MAX_BYTES = 16 * 1024 * 1024  # MS-LIM-1: 16 MiB per document
MAX_DEPTH = 32  # MS-LIM-2: element nesting, root = 1

# Root element → generated class. Every message and channel resource of v1.
MESSAGES: dict[str, type] = {
    "Report": model.Report,
    "Enrollment": model.Enrollment,
    "Receipt": model.Receipt,
    "Error": model.Error,
    "ChannelRequest": model.ChannelRequest,
    "ChannelResponse": model.ChannelResponse,
    "AgentStatus": model.AgentStatus,
    "DeviceList": model.DeviceList,
    "Device": model.Device,
    "Licence": model.Licence,
    "Provisioning": model.Provisioning,
}

_METERSYNC_NS = re.compile(r"^urn:metersync:v(\d+)$")
# One pass over the bytes finds what must be refused, skipping comments and CDATA, whose
# content is text. The XML declaration at offset 0 is the only processing-instruction form allowed.
_SCAN = re.compile(
    rb"<!\[CDATA\[.*?(?:\]\]>|\Z)|<!--.*?(?:-->|\Z)"
    rb"|(?P<doctype><!DOCTYPE)|(?P<entity_decl><!ENTITY)|(?P<pi><\?)"
    rb"|(?P<ref>&(?!(?:lt|gt|amp|quot|apos);)[A-Za-z_:][-A-Za-z0-9._:]{0,60};)",
    re.DOTALL,
)
_XML_DECL = re.compile(rb"^<\?xml[^>]*\?>")
_DECL_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""")
_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


@dataclass(frozen=True)
class Message:
    """A received document: its root element name, the generated object and its bytes."""

    kind: str
    obj: Any
    raw: bytes


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        # libxml2's own caps (10 MB text nodes) would refuse documents under our size limit
        # (MS-LIM-1); size and depth are bounded by check_bytes and _too_deep instead.
        huge_tree=True,
        remove_comments=True,
        remove_pis=False,
        collect_ids=False,
    )


@cache
def schema() -> etree.XMLSchema:
    """The whole v1 schema, compiled once per process (never fetched from the network)."""
    doc = etree.parse(str(metersync_spec.XSD_DIR / "metersync.xsd"), _parser())
    return etree.XMLSchema(doc)


@cache
def _context() -> XmlContext:
    return XmlContext()


_too_deep = etree.XPath("(/" + "/".join(["*"] * (MAX_DEPTH + 1)) + ")[1]")


def _line_of(data: bytes, offset: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, offset) + 1
    return line, offset - (data.rfind(b"\n", 0, offset) + 1) + 1


def check_bytes(data: bytes, max_bytes: int = MAX_BYTES) -> None:
    """Refuse, before any parsing, what is too large, not UTF-8, or carries forbidden constructs."""
    if len(data) > max_bytes:
        raise ProtocolError(
            "DOCUMENT_TOO_LARGE", f"the document has {len(data)} bytes; the limit is {max_bytes}"
        )
    for bom, name in _BOMS.items():
        if data.startswith(bom):
            raise ProtocolError("UNSUPPORTED_ENCODING", f"the document is {name}; send UTF-8")
    decl = _XML_DECL.match(data.lstrip(b"\xef\xbb\xbf"))
    if decl:
        enc = _DECL_ENCODING.search(decl.group(0))
        if enc and enc.group(1).decode().lower().replace("_", "-") not in ("utf-8", "utf8"):
            raise ProtocolError(
                "UNSUPPORTED_ENCODING",
                f"the XML declaration says encoding {enc.group(1).decode()!r}; send UTF-8",
                line=1,
            )
    start = len(decl.group(0)) + (3 if data.startswith(b"\xef\xbb\xbf") else 0) if decl else 0
    for m in _suspects(data, start):
        kind = m.lastgroup
        if kind is None:
            continue
        line, column = _line_of(data, m.start())
        what = {
            "doctype": "a DOCTYPE declaration",
            "entity_decl": "an ENTITY declaration",
            "pi": "a processing instruction",
            "ref": f"the entity reference {m.group(0).decode('utf-8', 'replace')!r}",
        }[kind]
        raise ProtocolError(
            "FORBIDDEN_XML_CONSTRUCT",
            f"{what} is not allowed in a MeterSync document",
            line=line,
            column=column,
        )


_MARKERS = (b"<!", b"<?", b"&")


def _suspects(data: bytes, start: int) -> Iterator[re.Match[bytes]]:
    """_SCAN's matches, tried only where `<!`, `<?` or `&` occurs (bytes.find is ~15x faster
    than running the regex over every byte of a large report)."""
    nxt = [data.find(m, start) for m in _MARKERS]
    while True:
        pos = min((p for p in nxt if p >= 0), default=-1)
        if pos < 0:
            return
        m = _SCAN.match(data, pos)
        end = m.end() if m is not None and m.end() > pos else pos + 1
        if m is not None:
            yield m
        nxt = [
            data.find(mk, end) if 0 <= p < end else p  # -1: that marker occurs no more
            for mk, p in zip(_MARKERS, nxt, strict=True)
        ]


def parse_tree(data: bytes, max_bytes: int = MAX_BYTES) -> etree._Element:
    """Bytes → a well-formed, shallow lxml element in a MeterSync namespace (no schema yet)."""
    check_bytes(data, max_bytes)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        line, column = exc.position if exc.position else (None, None)
        text = exc.msg or str(exc)
        if "depth" in text.lower():
            raise ProtocolError(
                "DOCUMENT_TOO_DEEP",
                f"elements nest deeper than {MAX_DEPTH} levels",
                line=line,
                column=column,
            ) from None
        raise ProtocolError("MALFORMED_XML", text, line=line, column=column) from None
    deep = _too_deep(root)
    if deep:  # MS-XML-11: where the nesting first goes too deep
        raise ProtocolError(
            "DOCUMENT_TOO_DEEP",
            f"elements nest deeper than {MAX_DEPTH} levels",
            line=deep[0].sourceline,
            element=etree.QName(deep[0]).localname,
        )
    qname = etree.QName(root)
    ns_match = _METERSYNC_NS.match(qname.namespace or "")
    if qname.namespace != NAMESPACE:
        what = (
            f"MeterSync major version {ns_match.group(1)}"
            if ns_match
            else f"namespace {qname.namespace!r}"
            if qname.namespace
            else "no namespace"
        )
        raise ProtocolError(
            "UNSUPPORTED_VERSION",
            f"the root element {qname.localname} is in {what}; "
            f"this receiver implements {NAMESPACE}",
            line=root.sourceline,
            element=qname.localname,
        )
    if qname.localname not in MESSAGES:
        raise ProtocolError(
            "UNKNOWN_MESSAGE",
            f"{qname.localname} is not a MeterSync v1 message",
            line=root.sourceline,
            element=qname.localname,
        )
    return root


def validate_tree(root: etree._Element) -> None:
    """Refuse with SCHEMA_VIOLATION at the first XSD error, naming its line and element."""
    xsd = schema()
    if xsd.validate(root):
        return
    err = xsd.error_log[0]
    raise ProtocolError(
        "SCHEMA_VIOLATION",
        _short_schema_message(err.message),
        line=err.line,
        column=err.column or None,
        element=_readable_path(root, err.path),
    )


def _short_schema_message(message: str) -> str:
    return re.sub(r"\{urn:metersync:v1\}", "", message)


def _readable_path(root: etree._Element, path: str | None) -> str | None:
    """/*/*[6]/*[3] (what libxml2 gives) → /Report/device[1]/counter[3]."""
    if not path:
        return None
    try:
        found = root.getroottree().xpath(path)
    except etree.XPathError:
        return path
    if not found or not isinstance(found[0], etree._Element):
        return path
    steps = []
    node = found[0]
    while node is not None:
        name = etree.QName(node).localname
        parent = node.getparent()
        if parent is None:
            steps.append(name)
        else:
            same = [c for c in parent if isinstance(c.tag, str) and c.tag == node.tag]
            steps.append(f"{name}[{same.index(node) + 1}]")
        node = parent
    return "/" + "/".join(reversed(steps))


def parse_message(
    data: bytes, *, expect: tuple[str, ...] | None = None, max_bytes: int = MAX_BYTES
) -> Message:
    """Bytes → a validated generated object. Raises ProtocolError with the spec's code."""
    root = parse_tree(data, max_bytes)
    kind = etree.QName(root).localname
    if expect is not None and kind not in expect:
        raise ProtocolError(
            "UNKNOWN_MESSAGE",
            f"this endpoint accepts {', '.join(expect)}, not {kind}",
            line=root.sourceline,
            element=kind,
        )
    validate_tree(root)
    parser = XmlParser(context=_context(), handler=LxmlEventHandler)
    obj = parser.parse(root, MESSAGES[kind])
    return Message(kind=kind, obj=obj, raw=data)


def to_bytes(obj: Any, *, pretty: bool = False, validate: bool = True) -> bytes:
    """A generated object → UTF-8 XML bytes, validated against the XSD before it leaves."""
    config = SerializerConfig(indent="  " if pretty else None, xml_declaration=True)
    text = XmlSerializer(context=_context(), config=config).render(obj, ns_map={None: NAMESPACE})
    data = text.encode("utf-8")
    if validate:
        validate_tree(etree.fromstring(data, _parser()))
    return data


def error_message(exc: ProtocolError) -> model.Error:
    """The generated Error message for a refusal."""
    location = None
    if exc.line is not None or exc.element:
        column = exc.column or None  # 1-based: libxml2's 0 means "unknown", never sent
        location = model.ErrorLocation(line=exc.line or None, column=column, element=exc.element)
    return model.Error(
        version=PROTOCOL_VERSION,
        code=exc.code,
        name=exc.name,
        message=exc.message[:1024],
        requirement=exc.requirement,
        location=location,
        message_id=exc.message_id,
        retry_after=exc.retry_after,
    )
