"""The closed list of MeterSync error codes (spec chapter "Error codes", MS-ERR-*).

Errors are values: a `ProtocolError` carries the code, a message a person can act on, the
requirement it relates to and, where known, the place in the document. `to_model` turns it into
the generated `Error` message. A test keeps this table and the prose specification in step.
"""

from __future__ import annotations

from dataclasses import dataclass

VENDOR_RANGE = range(9000, 10000)


@dataclass(frozen=True)
class ErrorSpec:
    code: int
    name: str
    http_status: int
    requirement: str
    summary: str
    retry: bool = False  # the sender may send the same message again later


_SPECS = [
    # 1xxx: the document itself
    ErrorSpec(1001, "MALFORMED_XML", 400, "MS-XML-3", "The body is not well-formed XML."),
    ErrorSpec(
        1002,
        "FORBIDDEN_XML_CONSTRUCT",
        400,
        "MS-XML-4",
        "The document carries a DOCTYPE, an entity reference or a processing instruction.",
    ),
    ErrorSpec(1003, "DOCUMENT_TOO_LARGE", 413, "MS-LIM-1", "The document exceeds the size limit."),
    ErrorSpec(
        1004, "DOCUMENT_TOO_DEEP", 400, "MS-LIM-2", "Elements are nested beyond the depth limit."
    ),
    ErrorSpec(
        1005,
        "UNSUPPORTED_MEDIA_TYPE",
        415,
        "MS-HTTP-4",
        "The content type is not application/vnd.metersync+xml or application/xml.",
    ),
    ErrorSpec(
        1006,
        "UNSUPPORTED_VERSION",
        400,
        "MS-VER-2",
        "The root element's namespace is not a MeterSync major version this receiver implements.",
    ),
    ErrorSpec(
        1007,
        "UNKNOWN_MESSAGE",
        400,
        "MS-XML-6",
        "The root element is not a MeterSync message, or not one this endpoint accepts.",
    ),
    ErrorSpec(
        1008, "SCHEMA_VIOLATION", 400, "MS-XML-5", "The document is not valid against the XSD."
    ),
    ErrorSpec(
        1009, "UNSUPPORTED_ENCODING", 400, "MS-XML-2", "The document is not encoded in UTF-8."
    ),
    ErrorSpec(
        1010,
        "UNSUPPORTED_CONTENT_ENCODING",
        415,
        "MS-HTTP-6",
        "The Content-Encoding is neither identity nor gzip, or the gzip stream is broken.",
    ),
    # 2xxx: security
    ErrorSpec(2001, "SIGNATURE_MISSING", 401, "MS-SEC-10", "The message carries no signature."),
    ErrorSpec(2002, "UNKNOWN_AGENT", 401, "MS-SEC-11", "No enrolled agent has this id."),
    ErrorSpec(
        2003,
        "BAD_SIGNATURE",
        401,
        "MS-SEC-12",
        "The signature does not verify over the exact bytes of the message.",
    ),
    ErrorSpec(
        2004,
        "CLOCK_SKEW",
        400,
        "MS-SEC-15",
        "createdAt is outside the receiver's clock-skew window.",
    ),
    ErrorSpec(
        2005,
        "REPLAYED_MESSAGE",
        409,
        "MS-SEC-16",
        "The message id was seen before with different content.",
    ),
    ErrorSpec(
        2006,
        "INVALID_ENROLLMENT_TOKEN",
        403,
        "MS-SEC-2",
        "The enrollment token is unknown or expired.",
    ),
    ErrorSpec(
        2007,
        "ENROLLMENT_TOKEN_USED",
        403,
        "MS-SEC-2",
        "The enrollment token was already used by another agent.",
    ),
    ErrorSpec(2008, "AGENT_REVOKED", 403, "MS-SEC-9", "The agent's enrollment was revoked."),
    ErrorSpec(
        2009,
        "AGENT_MISMATCH",
        403,
        "MS-SEC-13",
        "The agentId in the document is not the agent that signed it.",
    ),
    ErrorSpec(
        2010,
        "AGENT_ALREADY_ENROLLED",
        409,
        "MS-SEC-7",
        "This agent id is enrolled with a different key.",
    ),
    # 3xxx: meaning
    ErrorSpec(
        3001,
        "INVALID_VALUE",
        422,
        "MS-DEV-17",
        "A value is valid against the XSD but breaks a rule of the prose specification.",
    ),
    ErrorSpec(
        3002,
        "LICENCE_EXCEEDED",
        403,
        "MS-UPD-22",
        "The report holds more devices than the licence allows.",
    ),
    # 4xxx: capacity (the sender retries later)
    ErrorSpec(
        4001,
        "RATE_LIMITED",
        429,
        "MS-LIM-5",
        "Too many requests; retry after the given time.",
        retry=True,
    ),
    ErrorSpec(
        4002,
        "SERVICE_UNAVAILABLE",
        503,
        "MS-DEL-8",
        "The receiver cannot store messages now; retry after the given time.",
        retry=True,
    ),
    ErrorSpec(
        4003,
        "INTERNAL_ERROR",
        500,
        "MS-DEL-8",
        "The receiver failed; nothing was stored; retry later.",
        retry=True,
    ),
    # 5xxx: the channel
    ErrorSpec(
        5001,
        "METHOD_NOT_ALLOWED",
        405,
        "MS-CH-7",  # and MS-HTTP-19
        "The method is not allowed: over the channel only GET; at the manager, a method a path "
        "of Table 8-1 does not serve.",
    ),
    ErrorSpec(
        5002,
        "RESOURCE_NOT_FOUND",
        404,
        "MS-CH-9",  # and MS-HTTP-19
        "No such resource: a channel path the agent does not serve, or a manager path under "
        "/v1/ that Table 8-1 does not list.",
    ),
    ErrorSpec(5003, "CHANNEL_DISABLED", 403, "MS-CH-1", "Bidirectional mode is off on this agent."),
    ErrorSpec(
        5004,
        "FRESH_READ_FAILED",
        504,
        "MS-CH-13",
        "A fresh read of the device did not finish within its budget.",
        retry=True,
    ),
    ErrorSpec(
        5005,
        "CHANNEL_BUSY",
        429,
        "MS-CH-14",
        "Too many channel requests are in progress.",
        retry=True,
    ),
    # 6xxx: updates and licences
    ErrorSpec(
        6001,
        "FEED_SIGNATURE_INVALID",
        400,
        "MS-UPD-5",
        "Update metadata is not signed by enough trusted keys.",
    ),
    ErrorSpec(
        6002,
        "FEED_ROLLBACK",
        400,
        "MS-UPD-6",
        "Update metadata is older than metadata already trusted.",
    ),
    ErrorSpec(
        6003, "FEED_EXPIRED", 400, "MS-UPD-7", "Update metadata has expired (freeze attack)."
    ),
    ErrorSpec(
        6004,
        "ARTIFACT_MISMATCH",
        400,
        "MS-UPD-8",  # and MS-UPD-9; an Error's requirement holds one id
        "A downloaded file's length or hash differs from the signed metadata, or a download "
        "does not end within its length bound.",
    ),
    ErrorSpec(
        6005,
        "LICENCE_INVALID",
        400,
        "MS-UPD-21",
        "A licence does not apply to this product or agent.",
    ),
    ErrorSpec(
        6006, "LICENCE_EXPIRED", 400, "MS-UPD-21", "A licence is outside its validity period."
    ),
    ErrorSpec(
        6007,
        "RELEASE_ROLLED_BACK",
        400,
        "MS-UPD-27",
        "A newly activated software version failed its health check; the previous version runs "
        "again and the failed one is quarantined.",
    ),
]

BY_CODE: dict[int, ErrorSpec] = {s.code: s for s in _SPECS}
BY_NAME: dict[str, ErrorSpec] = {s.name: s for s in _SPECS}


def retry_later(code: int, http_status: int) -> bool:
    """Whether the receiver of an Error retries later rather than taking it as a refusal: the
    Retry column of Table 13-1 for a known code; for an unknown one its thousand by Table 13-2
    (4000-4999 retry), and for 7000-9999 its HTTP status (429 and 5xx retry) (MS-ERR-3)."""
    known = BY_CODE.get(code)
    if known is not None:
        return known.retry
    if 4000 <= code <= 4999:
        return True
    if 7000 <= code <= 9999:
        return http_status == 429 or 500 <= http_status <= 599
    return False


class ProtocolError(Exception):
    """A refusal with a MeterSync error code; raise it at the edge, answer it as an Error."""

    def __init__(
        self,
        name: str,
        message: str,
        *,
        line: int | None = None,
        column: int | None = None,
        element: str | None = None,
        requirement: str | None = None,
        retry_after: int | None = None,
        message_id: str | None = None,
    ) -> None:
        self.spec = BY_NAME[name]
        self.message = message
        self.line = line
        self.column = column
        self.element = element
        self.requirement = requirement or self.spec.requirement
        self.retry_after = retry_after
        self.message_id = message_id
        super().__init__(str(self))

    @property
    def code(self) -> int:
        return self.spec.code

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def http_status(self) -> int:
        return self.spec.http_status

    def where(self) -> str:
        parts = []
        if self.line is not None:
            parts.append(f"line {self.line}" + (f", column {self.column}" if self.column else ""))
        if self.element:
            parts.append(f"element {self.element}")
        return "; ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{self.code} {self.name} [{self.requirement}]: {self.message}" + (
            f" ({where})" if where else ""
        )
