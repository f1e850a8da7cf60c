# ruff: noqa: E501  (the table holds source lines exactly as the reference writes them)
"""One-line mutations of the reference agent: defects an independent agent is likely to ship,
each breaking one MUST of Agent-Core (used as `broken agent mut:NAME`), like the manager's in
mutations.py. `catches` names the requirement whose checks must FAIL for the mutant.
"""

from __future__ import annotations

from metersync_conformance.broken.mutations import Mutation

IDENT, MAPPER, OUTBOX, ENROL, HTTP = (
    "metersync_agent.identity",
    "metersync_agent.mapper",
    "metersync_agent.outbox",
    "metersync_agent.enrollment",
    "metersync_agent.transport_http",
)

AGENT_MUTATIONS: dict[str, Mutation] = {
    # Section 3.1: the serial keeps its case (sn:lexmark:4600234567AB).
    "key-case": Mutation(
        IDENT,
        '    text = "".join(serial.strip().strip("\\x00").strip().lower().split())',
        '    text = "".join(serial.strip().strip("\\x00").strip().split())',
        "MS-ID-3",
    ),
    # Table 3-1 ignored: every vendor is ent<N> (sn:ent641:… for a Lexmark).
    "no-vendor-tokens": Mutation(
        IDENT,
        '    return VENDOR_TOKENS.get(number, f"ent{number}")',
        '    return f"ent{number}"',
        "MS-ID-2",
    ),
    # A level above its capacity passes silently: no collectionError `inconsistent`.
    "over-capacity-silent": Mutation(
        MAPPER, "        if maximum > 0 and level > maximum:", "        if False:", "MS-DEV-16"
    ),
    # Sequence numbers start at 0.
    "sequence-from-0": Mutation(
        OUTBOX,
        "    ('next_sequence', 1), ('dropped_reports', 0), ('delivered_reports', 0),",
        "    ('next_sequence', 0), ('dropped_reports', 0), ('delivered_reports', 0),",
        "MS-DEL-5",
    ),
    # -3 "some remaining" read as unknown (Table 4-2).
    "some-remaining-unknown": Mutation(
        MAPPER,
        "        return RawMeaning.SOME_REMAINING",
        "        return RawMeaning.UNKNOWN",
        "MS-DEV-15",
    ),
    # The signature covers the document plus a line feed, not its exact bytes.
    "sign-other-bytes": Mutation(
        ENROL,
        "        return signing.sign(self.key, data, self.agent_id)",
        '        return signing.sign(self.key, data + b"\\n", self.agent_id)',
        "MS-HTTP-7",
    ),
    # Percentages rounded up, not half away from zero (33.333… → 33.34).
    "percent-rounded-up": Mutation(
        MAPPER,
        '    return (Decimal(level) * 100 / Decimal(maximum)).quantize(Decimal("0.01"), ROUND_HALF_UP)',
        '    return (Decimal(level) * 100 / Decimal(maximum)).quantize(Decimal("0.01"), "ROUND_UP")',
        "MS-DEV-17",
    ),
    # -1 "other" read as unknown (Table 4-2).
    "other-unknown": Mutation(
        MAPPER, "        return RawMeaning.OTHER", "        return RawMeaning.UNKNOWN", "MS-DEV-15"
    ),
    # -3 in maxCapacity read as someRemaining, a meaning defined for levels only (Table 4-2).
    "capacity-some-remaining": Mutation(
        MAPPER, "    if raw == -3 and level:", "    if raw == -3:", "MS-DEV-15"
    ),
    # The serial number reported normalised, not as read.
    "serial-lower-case": Mutation(
        MAPPER,
        "        serial_number=serial,",
        "        serial_number=serial.lower() if serial else None,",
        "MS-DEV-9",
    ),
    # A supply's index taken from the row's first index (hrDeviceIndex), not prtMarkerSuppliesIndex.
    "supply-index-first": Mutation(
        MAPPER,
        "            index=idx[-1],\n            source=d.std.name,",
        "            index=idx[0],\n            source=d.std.name,",
        "MS-DEV-14",
    ),
    # `profiles` without `standard`, although the Printer-MIB was read.
    "standard-unnamed": Mutation(
        MAPPER,
        '        profiles=" ".join(p.name for p in profiles if not p.key_only),',
        '        profiles=" ".join(p.name for p in profiles if not p.key_only and p.name != "standard"),',
        "MS-DEV-4",
    ),
    # Documents labelled application/xml, not the MeterSync media type.
    "plain-xml-type": Mutation(
        HTTP,
        '        headers = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE, **extra}',
        '        headers = {"Content-Type": "application/xml", "Accept": CONTENT_TYPE, **extra}',
        "MS-HTTP-3",
    ),
    # A gzip body sent without Content-Encoding: gzip.
    "gzip-unlabelled": Mutation(
        HTTP, '            headers["Content-Encoding"] = "gzip"', "            pass", "MS-HTTP-6"
    ),
    # polledAt without a time zone (a naive local clock).
    "polled-at-naive": Mutation(
        MAPPER,
        "        polled_at=XmlDateTime.from_datetime(when),",
        "        polled_at=XmlDateTime.from_datetime(when.replace(tzinfo=None)),",
        "MS-DEV-2",
    ),
    # A supply's level read from its capacity column.
    "level-from-capacity": Mutation(
        MAPPER,
        "            level=_level(level, level_oid, level=True),",
        "            level=_level(maximum, level_oid, level=True),",
        "MS-DEV-15",
    ),
    # Supply units named from the wrong textual convention.
    "supply-unit-misnamed": Mutation(
        MAPPER,
        '                value=_enum(SupplyUnit, d.std.enum("supply_unit", unit_raw)), raw=unit_raw',
        '                value=_enum(SupplyUnit, d.std.enum("counter_unit", unit_raw)), raw=unit_raw',
        "MS-DEV-6",
    ),
    # The Enrollment does not declare the http capability although the agent reports over HTTP.
    "no-http-capability": Mutation(ENROL, "    model.Capability.HTTP,\n", "", "MS-CONF-6"),
}


def apply(name: str) -> None:
    from metersync_conformance.broken import mutations

    mutations.apply(name, AGENT_MUTATIONS)
