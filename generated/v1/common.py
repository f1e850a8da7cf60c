from __future__ import annotations

from dataclasses import dataclass, field

__NAMESPACE__ = "urn:metersync:v1"


@dataclass(kw_only=True)
class Extensions:
    """
    An extension point: elements of any namespace other than MeterSync's,
    validated laxly, that a receiver which does not know them ignores
    (MS-VER-4).
    """

    other_element: list[object] = field(
        default_factory=list,
        metadata={
            "type": "Wildcard",
            "namespace": "##other",
        },
    )


@dataclass(kw_only=True)
class SoftwareInfo:
    """
    What an implementation is: its vendor, product name and version, as
    shown in a certification report.
    """

    vendor: str = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        }
    )
    product: str = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        }
    )
    version: str = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        }
    )
