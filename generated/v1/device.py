from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum

from xsdata.models.datatype import XmlDateTime

from metersync_generated.v1.common import Extensions

__NAMESPACE__ = "urn:metersync:v1"


@dataclass(kw_only=True)
class AlertCode:
    """
    prtAlertCode: the number read in raw, and its PrtAlertCodeTC name as
    content when it has one (for example "jam", "markerTonerEmpty").
    """

    value: str = field(
        default="",
        metadata={
            "pattern": r"[a-zA-Z][a-zA-Z0-9]{0,63}",
        },
    )
    raw: int = field(
        metadata={
            "type": "Attribute",
        }
    )


class AlertGroup(Enum):
    """
    prtAlertGroup (PrtAlertGroupTC) by name: the table the alert's location
    refers to.
    """

    OTHER = "other"
    HOST_RESOURCES_MIBSTORAGE_TABLE = "hostResourcesMIBStorageTable"
    HOST_RESOURCES_MIBDEVICE_TABLE = "hostResourcesMIBDeviceTable"
    GENERAL_PRINTER = "generalPrinter"
    COVER = "cover"
    LOCALIZATION = "localization"
    INPUT = "input"
    OUTPUT = "output"
    MARKER = "marker"
    MARKER_SUPPLIES = "markerSupplies"
    MARKER_COLORANT = "markerColorant"
    MEDIA_PATH = "mediaPath"
    CHANNEL = "channel"
    INTERPRETER = "interpreter"
    CONSOLE_DISPLAY_BUFFER = "consoleDisplayBuffer"
    CONSOLE_LIGHTS = "consoleLights"
    ALERT = "alert"
    FIN_DEVICE = "finDevice"
    FIN_SUPPLY = "finSupply"
    FIN_SUPPLY_MEDIA_INPUT = "finSupplyMediaInput"
    FIN_ATTRIBUTE = "finAttribute"
    UNRECOGNISED = "unrecognised"


class AlertSeverity(Enum):
    """
    prtAlertSeverityLevel by name.
    """

    OTHER = "other"
    CRITICAL = "critical"
    WARNING = "warning"
    WARNING_BINARY_CHANGE_EVENT = "warningBinaryChangeEvent"
    UNRECOGNISED = "unrecognised"


class AlertTrainingLevel(Enum):
    """
    prtAlertTrainingLevel by name: who should act on the alert.
    """

    OTHER = "other"
    UNKNOWN = "unknown"
    UNTRAINED = "untrained"
    TRAINED = "trained"
    FIELD_SERVICE = "fieldService"
    MANAGEMENT = "management"
    NO_INTERVENTION_REQUIRED = "noInterventionRequired"
    UNRECOGNISED = "unrecognised"


class CollectionErrorCode(Enum):
    """
    Why part of a device could not be read (MS-DEV-30).

    :cvar TIMEOUT: No answer within the request timeout and retries.
    :cvar UNREACHABLE: The device did not answer any credential.
    :cvar AUTH_FAILURE: SNMPv3 authentication or privacy failed (wrong
        user, key or protocol).
    :cvar GEN_ERR: The device answered genErr or another SNMP error
        status.
    :cvar NO_SUCH_OBJECT: An object the profile needs is missing.
    :cvar WALK_LOOP: The device returned an OID that did not increase;
        the walk was stopped.
    :cvar WALK_CAP: A table was longer than the per-walk cap; the walk
        was stopped.
    :cvar BUDGET_EXCEEDED: The per-device time budget ran out; what was
        read is kept.
    :cvar DECODE_ERROR: A value had the wrong type or could not be
        decoded.
    :cvar INCONSISTENT: Values contradict each other (for example a
        level above its capacity).
    :cvar OTHER: Anything else; the message says what.
    """

    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    AUTH_FAILURE = "auth-failure"
    GEN_ERR = "gen-err"
    NO_SUCH_OBJECT = "no-such-object"
    WALK_LOOP = "walk-loop"
    WALK_CAP = "walk-cap"
    BUDGET_EXCEEDED = "budget-exceeded"
    DECODE_ERROR = "decode-error"
    INCONSISTENT = "inconsistent"
    OTHER = "other"


class CounterAnomaly(Enum):
    """
    Why a counter must not be billed as usage against its previous value:
    it went down (a reset, a board swap or a different device at the same
    key).
    """

    DECREASED = "decreased"


class CounterKind(Enum):
    """
    What a counter counts (MS-DEV-10).

    A closed list; a vendor counter outside it is reported as 'other' with
    its vendor label.

    :cvar TOTAL: All impressions the engine produced, every function and
        colour (prtMarkerLifeCount of the main marker, or a vendor
        total).
    :cvar MONO: Monochrome impressions, every function.
    :cvar COLOUR: Colour impressions, every function (full, two and
        single colour).
    :cvar FULL_COLOUR: Full-colour impressions.
    :cvar TWO_COLOUR: Two-colour impressions.
    :cvar SINGLE_COLOUR: Single-colour impressions.
    :cvar PRINT: Impressions of print jobs.
    :cvar PRINT_MONO: Monochrome print impressions.
    :cvar PRINT_COLOUR: Colour print impressions.
    :cvar COPY: Impressions of copy jobs.
    :cvar COPY_MONO: Monochrome copy impressions.
    :cvar COPY_COLOUR: Colour copy impressions.
    :cvar FAX: Impressions of received faxes printed.
    :cvar FAX_SENT: Pages sent by fax.
    :cvar LIST: Impressions of reports and lists the device printed for
        itself.
    :cvar SCAN: All scanned originals.
    :cvar SCAN_COPY: Originals scanned for copying.
    :cvar SCAN_FAX: Originals scanned for faxing.
    :cvar SCAN_SEND: Originals scanned to network, e-mail or storage.
    :cvar DUPLEX: Duplex (two-sided) sheets or impressions, as the unit
        says.
    :cvar SIMPLEX: Simplex (one-sided) sheets or impressions.
    :cvar LARGE_FORMAT: Large-format (A3/ledger or larger) impressions.
    :cvar LARGE_FORMAT_MONO: Large-format monochrome impressions.
    :cvar LARGE_FORMAT_COLOUR: Large-format colour impressions.
    :cvar POWER_ON: prtMarkerPowerOnCount: impressions since the device
        was last powered on.
    :cvar OTHER: A vendor counter outside this list; its label attribute
        says what it is.
    """

    TOTAL = "total"
    MONO = "mono"
    COLOUR = "colour"
    FULL_COLOUR = "full-colour"
    TWO_COLOUR = "two-colour"
    SINGLE_COLOUR = "single-colour"
    PRINT = "print"
    PRINT_MONO = "print-mono"
    PRINT_COLOUR = "print-colour"
    COPY = "copy"
    COPY_MONO = "copy-mono"
    COPY_COLOUR = "copy-colour"
    FAX = "fax"
    FAX_SENT = "fax-sent"
    LIST = "list"
    SCAN = "scan"
    SCAN_COPY = "scan-copy"
    SCAN_FAX = "scan-fax"
    SCAN_SEND = "scan-send"
    DUPLEX = "duplex"
    SIMPLEX = "simplex"
    LARGE_FORMAT = "large-format"
    LARGE_FORMAT_MONO = "large-format-mono"
    LARGE_FORMAT_COLOUR = "large-format-colour"
    POWER_ON = "power-on"
    OTHER = "other"


class CounterUnit(Enum):
    """
    The unit a counter counts in: prtMarkerCounterUnit
    (PrtMarkerCounterUnitTC) names, or a vendor unit mapped onto them.
    """

    TEN_THOUSANDTHS_OF_INCHES = "tenThousandthsOfInches"
    MICROMETERS = "micrometers"
    CHARACTERS = "characters"
    LINES = "lines"
    IMPRESSIONS = "impressions"
    SHEETS = "sheets"
    DOT_ROW = "dotRow"
    HOURS = "hours"
    FEET = "feet"
    METERS = "meters"
    UNRECOGNISED = "unrecognised"


class CoverStatus(Enum):
    """
    prtCoverStatus (PrtCoverStatusTC) by name.
    """

    OTHER = "other"
    UNKNOWN = "unknown"
    COVER_OPEN = "coverOpen"
    COVER_CLOSED = "coverClosed"
    INTERLOCK_OPEN = "interlockOpen"
    INTERLOCK_CLOSED = "interlockClosed"
    UNRECOGNISED = "unrecognised"


@dataclass(kw_only=True)
class DeviceIdentity:
    """
    Who the device is. deviceKey is derived from what survives an IP change
    (MS-ID-1..MS-ID-6); the IP address is where it was found this time,
    never its identity.

    :ivar device_key:
    :ivar vendor:
    :ivar model:
    :ivar serial_number:
    :ivar mac_address:
    :ivar ip_address:
    :ivar port:
    :ivar hostname:
    :ivar sys_object_id:
    :ivar sys_descr:
    :ivar sys_name:
    :ivar firmware:
    :ivar location:
    :ivar contact:
    :ivar uptime: sysUpTime in hundredths of a second, as read.
    """

    device_key: str = field(
        metadata={
            "name": "deviceKey",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "pattern": r"(sn|mac|sys):[!-~]{1,250}",
        }
    )
    vendor: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    model: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    serial_number: None | str = field(
        default=None,
        metadata={
            "name": "serialNumber",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    mac_address: list[str] = field(
        default_factory=list,
        metadata={
            "name": "macAddress",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 16,
            "pattern": r"[0-9a-f]{2}(:[0-9a-f]{2}){5}",
        },
    )
    ip_address: str = field(
        metadata={
            "name": "ipAddress",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "pattern": r"((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])|[0-9a-fA-F:.]{2,45}",
        }
    )
    port: None | int = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    hostname: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    sys_object_id: None | str = field(
        default=None,
        metadata={
            "name": "sysObjectId",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 512,
            "pattern": r"[0-2](\.(0|[1-9][0-9]*))+",
        },
    )
    sys_descr: None | str = field(
        default=None,
        metadata={
            "name": "sysDescr",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 1024,
        },
    )
    sys_name: None | str = field(
        default=None,
        metadata={
            "name": "sysName",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    firmware: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    location: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    contact: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    uptime: None | int = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )


class DeviceStatus(Enum):
    """
    hrDeviceStatus (RFC 2790) by name.
    """

    UNKNOWN = "unknown"
    RUNNING = "running"
    WARNING = "warning"
    TESTING = "testing"
    DOWN = "down"
    UNRECOGNISED = "unrecognised"


class ErrorStateFlag(Enum):
    """
    One bit of hrPrinterDetectedErrorState (RFC 2790, RFC 3805 section
    2.2.13.4), bit 0 first.
    """

    LOW_PAPER = "lowPaper"
    NO_PAPER = "noPaper"
    LOW_TONER = "lowToner"
    NO_TONER = "noToner"
    DOOR_OPEN = "doorOpen"
    JAMMED = "jammed"
    OFFLINE = "offline"
    SERVICE_REQUESTED = "serviceRequested"
    INPUT_TRAY_MISSING = "inputTrayMissing"
    OUTPUT_TRAY_MISSING = "outputTrayMissing"
    MARKER_SUPPLY_MISSING = "markerSupplyMissing"
    OUTPUT_NEAR_FULL = "outputNearFull"
    OUTPUT_FULL = "outputFull"
    INPUT_TRAY_EMPTY = "inputTrayEmpty"
    OVERDUE_PREVENT_MAINT = "overduePreventMaint"


class InputType(Enum):
    """
    prtInputType by name.
    """

    OTHER = "other"
    UNKNOWN = "unknown"
    SHEET_FEED_AUTO_REMOVABLE_TRAY = "sheetFeedAutoRemovableTray"
    SHEET_FEED_AUTO_NON_REMOVABLE_TRAY = "sheetFeedAutoNonRemovableTray"
    SHEET_FEED_MANUAL = "sheetFeedManual"
    CONTINUOUS_ROLL = "continuousRoll"
    CONTINUOUS_FAN_FOLD = "continuousFanFold"
    UNRECOGNISED = "unrecognised"


class OutputType(Enum):
    """
    prtOutputType by name.
    """

    OTHER = "other"
    UNKNOWN = "unknown"
    REMOVABLE_BIN = "removableBin"
    UN_REMOVABLE_BIN = "unRemovableBin"
    CONTINUOUS_ROLL_DEVICE = "continuousRollDevice"
    MAIL_BOX = "mailBox"
    CONTINUOUS_FAN_FOLD = "continuousFanFold"
    UNRECOGNISED = "unrecognised"


class PrinterStatus(Enum):
    """
    hrPrinterStatus (RFC 2790) by name.
    """

    OTHER = "other"
    UNKNOWN = "unknown"
    IDLE = "idle"
    PRINTING = "printing"
    WARMUP = "warmup"
    UNRECOGNISED = "unrecognised"


class RawMeaning(Enum):
    """
    The Printer-MIB meaning of a raw level or capacity (RFC 3805): exact
    when the value is a quantity; other (-1), unknown (-2), someRemaining
    (-3, level only: at least one unit remains); invalid for any other
    negative number.
    """

    EXACT = "exact"
    OTHER = "other"
    UNKNOWN = "unknown"
    SOME_REMAINING = "someRemaining"
    INVALID = "invalid"


class SnmpVersion(Enum):
    """
    The SNMP version the device was read with.
    """

    VALUE_1 = "1"
    VALUE_2C = "2c"
    VALUE_3 = "3"


class SupplyClass(Enum):
    """
    prtMarkerSuppliesClass: whether the supply is used up (toner) or filled
    (waste toner box).
    """

    OTHER = "other"
    SUPPLY_THAT_IS_CONSUMED = "supplyThatIsConsumed"
    RECEPTACLE_THAT_IS_FILLED = "receptacleThatIsFilled"
    UNRECOGNISED = "unrecognised"


class SupplyType(Enum):
    """
    prtMarkerSuppliesType (RFC 3805 PrtMarkerSuppliesTypeTC) by name; plus
    maintenanceKit, a MeterSync name for vendor maintenance kits
    (MS-DEV-14); 'unrecognised' when the device sent a number outside the
    MIB's list (the raw attribute keeps it).
    """

    OTHER = "other"
    UNKNOWN = "unknown"
    TONER = "toner"
    WASTE_TONER = "wasteToner"
    INK = "ink"
    INK_CARTRIDGE = "inkCartridge"
    INK_RIBBON = "inkRibbon"
    WASTE_INK = "wasteInk"
    OPC = "opc"
    DEVELOPER = "developer"
    FUSER_OIL = "fuserOil"
    SOLID_WAX = "solidWax"
    RIBBON_WAX = "ribbonWax"
    WASTE_WAX = "wasteWax"
    FUSER = "fuser"
    CORONA_WIRE = "coronaWire"
    FUSER_OIL_WICK = "fuserOilWick"
    CLEANER_UNIT = "cleanerUnit"
    FUSER_CLEANING_PAD = "fuserCleaningPad"
    TRANSFER_UNIT = "transferUnit"
    TONER_CARTRIDGE = "tonerCartridge"
    FUSER_OILER = "fuserOiler"
    WATER = "water"
    WASTE_WATER = "wasteWater"
    GLUE_WATER_ADDITIVE = "glueWaterAdditive"
    WASTE_PAPER = "wastePaper"
    BINDING_SUPPLY = "bindingSupply"
    BANDING_SUPPLY = "bandingSupply"
    STITCHING_WIRE = "stitchingWire"
    SHRINK_WRAP = "shrinkWrap"
    PAPER_WRAP = "paperWrap"
    STAPLES = "staples"
    INSERTS = "inserts"
    COVERS = "covers"
    MATTE_TONER = "matteToner"
    MATTE_INK = "matteInk"
    MAINTENANCE_KIT = "maintenanceKit"
    UNRECOGNISED = "unrecognised"


class SupplyUnit(Enum):
    """
    prtMarkerSuppliesSupplyUnit (PrtMarkerSuppliesSupplyUnitTC) by name:
    the unit of a supply's level and max capacity.
    """

    OTHER = "other"
    UNKNOWN = "unknown"
    TEN_THOUSANDTHS_OF_INCHES = "tenThousandthsOfInches"
    MICROMETERS = "micrometers"
    IMPRESSIONS = "impressions"
    SHEETS = "sheets"
    HOURS = "hours"
    THOUSANDTHS_OF_OUNCES = "thousandthsOfOunces"
    TENTHS_OF_GRAMS = "tenthsOfGrams"
    HUNDRETHS_OF_FLUID_OUNCES = "hundrethsOfFluidOunces"
    TENTHS_OF_MILLILITERS = "tenthsOfMilliliters"
    FEET = "feet"
    METERS = "meters"
    ITEMS = "items"
    PERCENT = "percent"
    UNRECOGNISED = "unrecognised"


class TrapPdu(Enum):
    """
    trap (unconfirmed: SNMPv1 Trap or SNMPv2 Trap PDU) or inform
    (InformRequest, acknowledged).
    """

    TRAP = "trap"
    INFORM = "inform"


class TrapValueType(Enum):
    """
    The SNMP type of a varbind value.
    """

    INTEGER = "integer"
    UNSIGNED = "unsigned"
    COUNTER = "counter"
    TIMETICKS = "timeticks"
    OID = "oid"
    IP_ADDRESS = "ipAddress"
    TEXT = "text"
    HEX = "hex"
    MASKED = "masked"
    OTHER = "other"


@dataclass(kw_only=True)
class CollectionError:
    """
    Something the agent could not read (MS-DEV-30): the OID or subtree, a
    code, and a message a person can act on.

    The rest of the snapshot holds what was read.
    """

    oid: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 512,
            "pattern": r"[0-2](\.(0|[1-9][0-9]*))+",
        },
    )
    code: CollectionErrorCode = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    message: str = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 1024,
        }
    )


@dataclass(kw_only=True)
class Counter:
    """
    A page or usage counter (MS-DEV-10..13): the value exactly as read,
    what it counts (kind), in which unit, and the OID it came from.

    A counter lower than the last one sent for the same device, kind and
    OID carries anomaly="decreased" with the previous value: it is a reset
    or a swap, never negative usage.

    :ivar value:
    :ivar kind:
    :ivar unit:
    :ivar oid:
    :ivar source: The profile that mapped the counter: "standard" for
        Printer-MIB, or a vendor profile name.
    :ivar label: The vendor's own name of the counter, where it has one.
    :ivar marker: prtMarkerIndex, for Printer-MIB marker counters.
    :ivar anomaly:
    :ivar previous: With anomaly: the value last reported.
    """

    value: int = field()
    kind: CounterKind = field(
        metadata={
            "type": "Attribute",
        }
    )
    unit: CounterUnit = field(
        metadata={
            "type": "Attribute",
        }
    )
    oid: str = field(
        metadata={
            "type": "Attribute",
            "max_length": 512,
            "pattern": r"[0-2](\.(0|[1-9][0-9]*))+",
        }
    )
    source: str = field(
        metadata={
            "type": "Attribute",
            "pattern": r"[a-z][a-z0-9\-]{0,63}",
        }
    )
    label: None | str = field(
        default=None,
        metadata={
            "type": "Attribute",
            "max_length": 255,
        },
    )
    marker: None | int = field(
        default=None,
        metadata={
            "type": "Attribute",
        },
    )
    anomaly: None | CounterAnomaly = field(
        default=None,
        metadata={
            "type": "Attribute",
        },
    )
    previous: None | int = field(
        default=None,
        metadata={
            "type": "Attribute",
        },
    )


@dataclass(kw_only=True)
class DetectedErrorState:
    """
    hrPrinterDetectedErrorState decoded (MS-DEV-8): every bit that is set
    becomes a flag; raw keeps the octets as read, in hexadecimal, including
    bits this version does not name.
    """

    flag: list[ErrorStateFlag] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 16,
        },
    )
    raw: bytes = field(
        metadata={
            "type": "Attribute",
            "format": "base16",
        }
    )


@dataclass(kw_only=True)
class RawAlertGroup:
    """
    prtAlertGroup by name, with the number read in raw.
    """

    value: AlertGroup = field()
    raw: int = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class RawAlertSeverity:
    """
    prtAlertSeverityLevel by name, with the number read in raw.
    """

    value: AlertSeverity = field()
    raw: int = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class RawAlertTrainingLevel:
    """
    prtAlertTrainingLevel by name, with the number read in raw.
    """

    value: AlertTrainingLevel = field()
    raw: int = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class RawCoverStatus:
    """
    prtCoverStatus by name, with the number read in raw.
    """

    value: CoverStatus = field()
    raw: int = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class RawDeviceStatus:
    """
    hrDeviceStatus of the printer row: the name, with the number read in
    raw.
    """

    value: DeviceStatus = field()
    raw: int = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class RawInputType:
    """
    prtInputType by name, with the number read in raw.
    """

    value: InputType = field()
    raw: int = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class RawLevel:
    """
    A level or capacity exactly as the device reported it (raw, may be
    negative) with its Printer-MIB meaning, and the OID it was read from
    (MS-DEV-15).
    """

    raw: int = field(
        metadata={
            "type": "Attribute",
        }
    )
    meaning: RawMeaning = field(
        metadata={
            "type": "Attribute",
        }
    )
    oid: None | str = field(
        default=None,
        metadata={
            "type": "Attribute",
            "max_length": 512,
            "pattern": r"[0-2](\.(0|[1-9][0-9]*))+",
        },
    )


@dataclass(kw_only=True)
class RawOutputType:
    """
    prtOutputType by name, with the number read in raw.
    """

    value: OutputType = field()
    raw: int = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class RawPrinterStatus:
    """
    hrPrinterStatus: the name, with the number read in raw.
    """

    value: PrinterStatus = field()
    raw: int = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class RawSupplyClass:
    """
    prtMarkerSuppliesClass by name, with the number read in raw.
    """

    value: SupplyClass = field()
    raw: int = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class RawSupplyType:
    """
    prtMarkerSuppliesType by name, with the number read in raw (0 for
    vendor supplies that have no number).
    """

    value: SupplyType = field()
    raw: int = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class RawSupplyUnit:
    """
    prtMarkerSuppliesSupplyUnit by name, with the number read in raw.
    """

    value: SupplyUnit = field()
    raw: int = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class TrapVarbind:
    """
    A varbind of a notification: its OID, and its value as text (numbers in
    decimal, OIDs dotted, octet strings as UTF-8 text or, when not text,
    hexadecimal with the type hex).

    Text values are masked as alertDescription (MS-PRIV-2).
    """

    value: str = field(
        default="",
        metadata={
            "max_length": 1024,
        },
    )
    oid: str = field(
        metadata={
            "type": "Attribute",
            "max_length": 512,
            "pattern": r"[0-2](\.(0|[1-9][0-9]*))+",
        }
    )
    type_value: TrapValueType = field(
        metadata={
            "name": "type",
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class Alert:
    """
    One prtAlertTable row (MS-DEV-22): severity, training level, group and
    location, code, description and the sysUpTime at which it was raised.

    :ivar severity:
    :ivar training_level:
    :ivar group:
    :ivar group_index:
    :ivar location:
    :ivar code:
    :ivar description:
    :ivar time: prtAlertTime: sysUpTime, in hundredths of a second, when
        the alert was added.
    :ivar index:
    """

    severity: RawAlertSeverity = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    training_level: None | RawAlertTrainingLevel = field(
        default=None,
        metadata={
            "name": "trainingLevel",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    group: None | RawAlertGroup = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    group_index: None | int = field(
        default=None,
        metadata={
            "name": "groupIndex",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    location: None | int = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    code: AlertCode = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    description: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 1024,
        },
    )
    time: None | int = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    index: int = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class Cover:
    """
    One prtCoverTable row (MS-DEV-33): a cover or interlock and whether it
    is open.
    """

    description: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 1024,
        },
    )
    status: RawCoverStatus = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    index: int = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class DeviceStatusInfo:
    """
    The device's state at poll time, from HOST-RESOURCES-MIB and the
    Printer-MIB console.

    :ivar device_status:
    :ivar printer_status:
    :ivar detected_error_state:
    :ivar console_line: prtConsoleDisplayBufferText rows in index order,
        trailing blanks removed.
    """

    device_status: None | RawDeviceStatus = field(
        default=None,
        metadata={
            "name": "deviceStatus",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    printer_status: None | RawPrinterStatus = field(
        default=None,
        metadata={
            "name": "printerStatus",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    detected_error_state: None | DetectedErrorState = field(
        default=None,
        metadata={
            "name": "detectedErrorState",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    console_line: list[str] = field(
        default_factory=list,
        metadata={
            "name": "consoleLine",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 64,
            "max_length": 1024,
        },
    )


@dataclass(kw_only=True)
class InputTray:
    """
    One prtInputTable row (MS-DEV-20): a paper source with its media and
    raw levels.

    :ivar name:
    :ivar type_value:
    :ivar description:
    :ivar media_name:
    :ivar media_dim_feed:
    :ivar media_dim_xfeed:
    :ivar level:
    :ivar max_capacity:
    :ivar status: prtInputStatus (PrtSubUnitStatusTC bits) as read.
    :ivar index:
    """

    name: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    type_value: None | RawInputType = field(
        default=None,
        metadata={
            "name": "type",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    description: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 1024,
        },
    )
    media_name: None | str = field(
        default=None,
        metadata={
            "name": "mediaName",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    media_dim_feed: None | int = field(
        default=None,
        metadata={
            "name": "mediaDimFeed",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    media_dim_xfeed: None | int = field(
        default=None,
        metadata={
            "name": "mediaDimXFeed",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    level: None | RawLevel = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    max_capacity: None | RawLevel = field(
        default=None,
        metadata={
            "name": "maxCapacity",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    status: None | int = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    index: int = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class OutputTray:
    """
    One prtOutputTable row (MS-DEV-32): an output bin with its raw capacity
    and remaining capacity.

    :ivar name:
    :ivar type_value:
    :ivar description:
    :ivar remaining_capacity: prtOutputRemainingCapacity as read, with
        its meaning (Table 4-2).
    :ivar max_capacity:
    :ivar status: prtOutputStatus (PrtSubUnitStatusTC bits) as read.
    :ivar index:
    """

    name: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    type_value: None | RawOutputType = field(
        default=None,
        metadata={
            "name": "type",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    description: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 1024,
        },
    )
    remaining_capacity: None | RawLevel = field(
        default=None,
        metadata={
            "name": "remainingCapacity",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    max_capacity: None | RawLevel = field(
        default=None,
        metadata={
            "name": "maxCapacity",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    status: None | int = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    index: int = field(
        metadata={
            "type": "Attribute",
        }
    )


@dataclass(kw_only=True)
class Supply:
    """
    One prtMarkerSuppliesTable row, or a vendor supply (MS-DEV-14..19):
    what it is, the raw level and raw max capacity exactly as read with
    their meanings, and a percentage only where it is defined: both
    meanings exact, capacity above zero, level not above capacity
    (MS-DEV-17).

    A percentage is never invented from -3 or clipped from 150 %.

    :ivar supply_class:
    :ivar type_value:
    :ivar colour: prtMarkerColorantValue of the supply's colorant (for
        example "black", "cyan"), as read.
    :ivar description:
    :ivar part_number:
    :ivar serial_number:
    :ivar unit:
    :ivar level:
    :ivar max_capacity:
    :ivar percent:
    :ivar index: prtMarkerSuppliesIndex, or the vendor table's index.
    :ivar marker:
    :ivar source:
    """

    supply_class: None | RawSupplyClass = field(
        default=None,
        metadata={
            "name": "supplyClass",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    type_value: RawSupplyType = field(
        metadata={
            "name": "type",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    colour: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    description: None | str = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 1024,
        },
    )
    part_number: None | str = field(
        default=None,
        metadata={
            "name": "partNumber",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    serial_number: None | str = field(
        default=None,
        metadata={
            "name": "serialNumber",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_length": 255,
        },
    )
    unit: None | RawSupplyUnit = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    level: RawLevel = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    max_capacity: RawLevel = field(
        metadata={
            "name": "maxCapacity",
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    percent: None | Decimal = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "min_inclusive": Decimal("0"),
            "max_inclusive": Decimal("100"),
            "fraction_digits": 2,
        },
    )
    index: int = field(
        metadata={
            "type": "Attribute",
        }
    )
    marker: None | int = field(
        default=None,
        metadata={
            "type": "Attribute",
        },
    )
    source: str = field(
        metadata={
            "type": "Attribute",
            "pattern": r"[a-z][a-z0-9\-]{0,63}",
        }
    )


@dataclass(kw_only=True)
class TrapEvent:
    """
    One trap or inform accepted from the device (MS-TRAP-5): when it
    arrived, how, its notification OID (snmpTrapOID.0; for SNMPv1 traps the
    RFC 3584 translation) and its other varbinds.
    """

    varbind: list[TrapVarbind] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 64,
        },
    )
    received_at: XmlDateTime = field(
        metadata={
            "name": "receivedAt",
            "type": "Attribute",
        }
    )
    snmp_version: SnmpVersion = field(
        metadata={
            "name": "snmpVersion",
            "type": "Attribute",
        }
    )
    pdu: TrapPdu = field(
        metadata={
            "type": "Attribute",
        }
    )
    trap_oid: str = field(
        metadata={
            "name": "trapOid",
            "type": "Attribute",
            "max_length": 512,
            "pattern": r"[0-2](\.(0|[1-9][0-9]*))+",
        }
    )


@dataclass(kw_only=True)
class DeviceSnapshot:
    """
    Everything an agent read from one device in one poll (MS-DEV-1):
    identity, status, counters, supplies, input and output trays, covers,
    alerts, and the errors met while reading.

    A snapshot is complete only when collectionError is absent.

    :ivar identity:
    :ivar status:
    :ivar counter:
    :ivar supply:
    :ivar input_tray:
    :ivar output_tray:
    :ivar cover:
    :ivar alert:
    :ivar collection_error:
    :ivar trap: Traps and informs accepted from the device since its
        previous snapshot (MS-TRAP-5), oldest first.
    :ivar extensions:
    :ivar polled_at: When the poll started, with a time zone (MS-DEV-2).
    :ivar duration_ms: How long the poll took, in milliseconds.
    :ivar snmp_version: The SNMP version the device answered.
    :ivar profiles: Space-separated names of the mapping profiles
        applied (for example "standard hp").
    :ivar interval: Seconds until the agent's next scheduled poll of
        this device, as scheduled when the snapshot was taken (MS-
        TRAP-10); absent: schedule/pollInterval.
    :ivar masked: The fields masked in this snapshot and how (MS-
        PRIV-6), for example "ipAddress:hash contact:drop".
    """

    identity: DeviceIdentity = field(
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        }
    )
    status: None | DeviceStatusInfo = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    counter: list[Counter] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 1000,
        },
    )
    supply: list[Supply] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 1000,
        },
    )
    input_tray: list[InputTray] = field(
        default_factory=list,
        metadata={
            "name": "inputTray",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 256,
        },
    )
    output_tray: list[OutputTray] = field(
        default_factory=list,
        metadata={
            "name": "outputTray",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 256,
        },
    )
    cover: list[Cover] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 256,
        },
    )
    alert: list[Alert] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 1000,
        },
    )
    collection_error: list[CollectionError] = field(
        default_factory=list,
        metadata={
            "name": "collectionError",
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 1000,
        },
    )
    trap: list[TrapEvent] = field(
        default_factory=list,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
            "max_occurs": 100,
        },
    )
    extensions: None | Extensions = field(
        default=None,
        metadata={
            "type": "Element",
            "namespace": "urn:metersync:v1",
        },
    )
    polled_at: XmlDateTime = field(
        metadata={
            "name": "polledAt",
            "type": "Attribute",
        }
    )
    duration_ms: None | int = field(
        default=None,
        metadata={
            "name": "durationMs",
            "type": "Attribute",
        },
    )
    snmp_version: None | SnmpVersion = field(
        default=None,
        metadata={
            "name": "snmpVersion",
            "type": "Attribute",
        },
    )
    profiles: None | str = field(
        default=None,
        metadata={
            "type": "Attribute",
        },
    )
    interval: None | int = field(
        default=None,
        metadata={
            "type": "Attribute",
        },
    )
    masked: list[str] = field(
        default_factory=list,
        metadata={
            "type": "Attribute",
            "tokens": True,
        },
    )


@dataclass(kw_only=True)
class Device(DeviceSnapshot):
    """
    A device snapshot as a document of its own: the channel resources
    /devices/{key} and /devices/{key}/fresh (MS-CH-12).
    """

    class Meta:
        namespace = "urn:metersync:v1"
