"""The manager's tables (SQLAlchemy Core) and their migrations.

Times are stored as UTC without a time zone, the same in SQLite and PostgreSQL. Counter values
(xs:unsignedLong) are stored offset-encoded in signed 64-bit columns: stored = value - 2^63
(`billing.enc`/`billing.dec`), in `counters` as in `counter_reads`.

Migrations: `schema_version` holds the applied version. A fresh database gets the tables of
this module and is stamped `SCHEMA_VERSION`; an older one runs the steps of `MIGRATIONS` above
its version, in order, in one transaction each. To change the schema: edit the tables here,
bump `SCHEMA_VERSION` and append a step that turns the previous version into this one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    inspect,
    select,
    text,
)

metadata = MetaData()

# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid; BigInteger elsewhere.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", DateTime, nullable=False),
)

agents = Table(
    "agents",
    metadata,
    Column("agent_id", String(36), primary_key=True),
    Column("public_key", String(64), nullable=False),
    Column("algorithm", String(16), nullable=False),
    Column("hostname", String(255)),
    Column("capabilities", String(255)),
    Column("software_vendor", String(255), nullable=False),
    Column("software_product", String(255), nullable=False),
    Column("software_version", String(255), nullable=False),
    Column("enrolled_at", DateTime, nullable=False),
    Column("last_seen_at", DateTime),
    Column("status_at", DateTime),  # createdAt of the report the status fields come from
    Column("queue_depth", BigInteger),
    Column("dropped_reports", BigInteger),
    Column("licence_state", String(16)),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("revoked_at", DateTime),
    # The customer and site the agent belongs to now (history: `assignments`).
    Column("customer_id", String(64), nullable=False, default="default", index=True),
    Column("site_id", BigInteger),
)

enrollment_tokens = Table(
    "enrollment_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 hex; the token is never stored
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("used_by", String(36)),
    Column("used_at", DateTime),
    Column("agent_id", String(36)),  # set: a re-enrollment token for this agent (MS-SEC-8)
    Column("customer_id", String(64), nullable=False, default="default"),
    Column("site_id", BigInteger),
)

# Keys an agent rotated away from (MS-SEC-8): they still verify reports created before
# `superseded_at`; the current key is agents.public_key.
agent_keys = Table(
    "agent_keys",
    metadata,
    Column("agent_id", String(36), ForeignKey("agents.agent_id"), nullable=False, index=True),
    Column("public_key", String(64), nullable=False),
    Column("superseded_at", DateTime, nullable=False),
)

reports = Table(
    "reports",
    metadata,
    # The primary key is the idempotency guarantee: two concurrent copies cannot both insert.
    Column("report_id", String(36), primary_key=True),
    Column("agent_id", String(36), ForeignKey("agents.agent_id"), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("received_at", DateTime, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    Column("devices", Integer, nullable=False),
    # agentStatus/lastCycle/startedAt: the agent's poll interval is learned from these (MS-DEV-26)
    Column("cycle_started_at", DateTime),
    # MS-DEL-21: a new epoch after the agent lost its outbox; sequences start again at 1
    Column("sequence_epoch", BigInteger, nullable=False, server_default=text("1")),
    Index("ix_reports_agent_sequence", "agent_id", "sequence"),
    Index("ix_reports_agent_cycle", "agent_id", "cycle_started_at"),
)

devices = Table(
    "devices",
    metadata,
    Column("device_key", String(255), primary_key=True),
    Column("vendor", String(255)),
    Column("model", String(255)),
    Column("serial_number", String(255)),
    Column("mac_addresses", Text),
    Column("hostname", String(255)),
    Column("sys_name", String(255)),
    Column("location", String(255)),
    Column("firmware", String(255)),
    Column("current_ip", String(64), nullable=False),
    Column("first_seen", DateTime, nullable=False),
    Column("last_seen", DateTime, nullable=False),
    Column("last_agent_id", String(36), nullable=False),
    Column("last_complete_at", DateTime),  # newest polledAt of a complete snapshot (MS-DEV-26)
    # Ownership (MS-OWN): the agent whose snapshots make the device's state and bill, and the
    # customer and site the device belongs to now (history: `assignments`).
    Column("owner_agent_id", String(36)),
    Column("customer_id", String(64), nullable=False, default="default", index=True),
    Column("site_id", BigInteger),
    Column("last_polled_at", DateTime),  # newest polledAt applied from the owner (MS-OWN-4)
)

device_ips = Table(
    "device_ips",
    metadata,
    Column("device_key", String(255), ForeignKey("devices.device_key"), primary_key=True),
    Column("ip", String(64), primary_key=True),
    Column("first_seen", DateTime, nullable=False),
    Column("last_seen", DateTime, nullable=False),
    Index("ix_device_ips_ip", "ip"),
)

readings = Table(
    "readings",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("report_id", String(36), ForeignKey("reports.report_id"), nullable=False),
    Column("device_key", String(255), ForeignKey("devices.device_key"), nullable=False),
    Column("agent_id", String(36), nullable=False),
    Column("polled_at", DateTime, nullable=False),
    Column("received_at", DateTime, nullable=False),
    Column("ip", String(64), nullable=False),
    Column("complete", Boolean, nullable=False),
    Column("duration_ms", BigInteger),
    Column("snmp_version", String(4)),
    Column("profiles", String(255)),
    Column("device_status", String(32)),
    Column("printer_status", String(32)),
    Column("error_flags", String(512)),
    # applied: the owner's snapshot, in order (state and bill); conflict: from an agent that
    # does not own the device; out-of-order: not newer than the owner's last (MS-OWN).
    Column("disposition", String(16), nullable=False, default="applied"),
    # Schema 13: the reading whose rows are this reading's counters, supplies, alerts and
    # collection errors, when they equal an earlier reading's of the device (NULL: its own
    # rows, or none). Queries join through `rows_of` (store and retention keep it whole).
    Column("counters_of", BigInteger),
    Column("supplies_of", BigInteger),
    Column("alerts_of", BigInteger),
    Column("errors_of", BigInteger),
    UniqueConstraint("report_id", "device_key", name="uq_readings_report_device"),
    Index("ix_readings_device_polled", "device_key", "polled_at"),
    Index("ix_readings_polled", "polled_at"),
)

counters = Table(
    "counters",
    metadata,
    Column("reading_id", _BigId, ForeignKey("readings.id"), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("oid", String(512), nullable=False),
    Column("source", String(64), nullable=False),
    Column("label", String(255)),
    Column("marker", BigInteger),
    Column("value", BigInteger, nullable=False),
    Column("anomaly", String(16)),
    Column("previous", BigInteger),
)

supplies = Table(
    "supplies",
    metadata,
    Column("reading_id", _BigId, ForeignKey("readings.id"), nullable=False, index=True),
    Column("idx", BigInteger, nullable=False),
    Column("marker", BigInteger),
    Column("source", String(64), nullable=False),
    Column("supply_class", String(32)),
    Column("type", String(32), nullable=False),
    Column("type_raw", Integer, nullable=False),
    Column("colour", String(255)),
    Column("description", Text),
    Column("part_number", String(255)),
    Column("serial_number", String(255)),
    Column("unit", String(32)),
    Column("level_raw", Integer, nullable=False),
    Column("level_meaning", String(16), nullable=False),
    Column("max_raw", Integer, nullable=False),
    Column("max_meaning", String(16), nullable=False),
    Column("percent_x100", Integer),  # hundredths of a percent, only where the agent sent one
)

alerts = Table(
    "alerts",
    metadata,
    Column("reading_id", _BigId, ForeignKey("readings.id"), nullable=False, index=True),
    Column("idx", BigInteger, nullable=False),
    Column("severity", String(32), nullable=False),
    Column("severity_raw", Integer, nullable=False),
    Column("training_level", String(32)),
    Column("grp", String(32)),
    Column("group_index", Integer),
    Column("location", Integer),
    Column("code", String(64), nullable=False),
    Column("code_raw", Integer, nullable=False),
    Column("description", Text),
    Column("time", BigInteger),
)

collection_errors = Table(
    "collection_errors",
    metadata,
    Column("reading_id", _BigId, ForeignKey("readings.id"), nullable=False, index=True),
    Column("oid", String(512)),
    Column("code", String(32), nullable=False),
    Column("message", Text, nullable=False),
)

# The rows a device's readings share (schema 13): per child table, the digest of the newest
# rows stored for the device and the reading that holds them; a new reading whose rows have
# this digest stores none and refers to that reading instead (readings.<kind>_of).
device_rowsets = Table(
    "device_rowsets",
    metadata,
    Column("device_key", String(255), primary_key=True),
    Column("kind", String(16), primary_key=True),  # counters | supplies | alerts | errors
    Column("digest", String(32), nullable=False),
    Column("reading_id", BigInteger, nullable=False),
)

# Retention (schema 13, metersync_manager.retention): per agent and sequence epoch, the
# highest sequence of the reports purged after the replay horizon, so that MS-DEL-6 counts
# no gap below the oldest report still stored.
report_floors = Table(
    "report_floors",
    metadata,
    Column("agent_id", String(36), primary_key=True),
    Column("sequence_epoch", BigInteger, primary_key=True),
    Column("through", BigInteger, nullable=False),
)

# child table → the readings column naming the reading that holds its rows
SHARED_ROWS = {
    "counters": ("counters", counters),
    "supplies": ("supplies", supplies),
    "alerts": ("alerts", alerts),
    "collection_errors": ("errors", collection_errors),
}


def rows_of(table: Table, reading: Any = None) -> Any:
    """The id of the reading holding `table`'s rows of a reading: a column expression over
    `readings` (joins), or a value for a fetched readings row."""
    kind = SHARED_ROWS[table.name][0]
    if reading is None:
        return func.coalesce(readings.c[f"{kind}_of"], readings.c.id)
    return getattr(reading, f"{kind}_of", None) or reading.id


# Mails refused by the SMTP binding: the manager never answers by mail, so the operator sees
# refusals here (MS-SMTP-5). Headers are kept only to help the operator find the mail.
mail_refusals = Table(
    "mail_refusals",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("received_at", DateTime, nullable=False, index=True),
    Column("code", Integer, nullable=False),
    Column("name", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("agent_id", String(255)),  # the signature's agent parameter, when readable
    Column("mail_from", String(255)),
    Column("subject", String(255)),
    Column("size", Integer, nullable=False),
)

# Operator tokens for the /api/v1 operator API (MS-HTTP-18); the token itself is never stored.
operator_tokens = Table(
    "operator_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # sha256 hex
    Column("name", String(255), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("revoked_at", DateTime),
    Column("role", String(32), nullable=False, default="dealer-admin"),  # metersync_manager.scope
    Column("customers", Text, nullable=False, default=""),  # space-separated customer ids
)

# --- tenancy ------------------------------------------------------------------------------

customers = Table(
    "customers",
    metadata,
    Column("customer_id", String(64), primary_key=True),  # a slug: scope.CUSTOMER_ID
    Column("name", String(255), nullable=False),
    Column("created_at", DateTime, nullable=False),
)

sites = Table(
    "sites",
    metadata,
    Column("site_id", _BigId, primary_key=True, autoincrement=True),
    Column("customer_id", String(64), ForeignKey("customers.customer_id"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("customer_id", "name", name="uq_sites_customer_name"),
)

# Who an agent or device belonged to, and when: a bill for a past period uses the assignment
# in force then. One open row (valid_to NULL) per subject.
assignments = Table(
    "assignments",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("subject", String(8), nullable=False),  # "agent" | "device"
    Column("subject_id", String(255), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("site_id", BigInteger),
    Column("owner_agent_id", String(36)),  # devices: the owning agent in this interval
    Column("valid_from", DateTime, nullable=False),
    Column("valid_to", DateTime),
    Column("reason", String(32), nullable=False),  # enrolled, first-report, moved, hand-over
    Column("by", String(255)),
    Index("ix_assignments_subject", "subject", "subject_id", "valid_from"),
    Index("ix_assignments_customer", "customer_id", "subject"),
)

# A device's history of events that are not readings: IP changes, swaps, resets, moves,
# hand-overs and ownership conflicts. `detail` is a JSON object.
device_events = Table(
    "device_events",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("device_key", String(255), nullable=False),
    Column("at", DateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("customer_id", String(64)),
    Column("site_id", BigInteger),
    Column("agent_id", String(36)),
    Column("detail", Text, nullable=False, default="{}"),
    Index("ix_device_events_device", "device_key", "at"),
    Index("ix_device_events_customer", "customer_id", "at"),
)

# --- billing (metersync_manager.billing) ---------------------------------------------------
#
# One counter series per device and counter identity (kind, unit, oid, source, label,
# marker). Usage is accumulated at ingest: each read stores `billed`, the series' usage from
# its first read up to this one (resets add nothing), so the usage of any period is the
# difference of two reads found by index. Values are xs:unsignedLong: stored as BIGINT
# offset by -2^63 (order-preserving and exact over the whole range, SQLite and PostgreSQL).

counter_series = Table(
    "counter_series",
    metadata,
    Column("series_id", _BigId, primary_key=True, autoincrement=True),
    Column("device_key", String(255), nullable=False),
    Column("series_key", String(40), nullable=False),  # billing.series_key of the identity
    Column("kind", String(32), nullable=False),
    Column("unit", String(32), nullable=False),
    Column("oid", String(512), nullable=False),
    Column("source", String(64), nullable=False),
    Column("label", String(255)),
    Column("marker", BigInteger),
    Column("first_polled_at", DateTime, nullable=False),
    Column("last_polled_at", DateTime, nullable=False),
    Column("last_value", BigInteger, nullable=False),
    Column("billed", BigInteger, nullable=False),
    UniqueConstraint("device_key", "series_key", name="uq_counter_series_key"),
)

counter_reads = Table(
    "counter_reads",
    metadata,
    Column("series_id", BigInteger, primary_key=True),
    Column("polled_at", DateTime, primary_key=True),
    Column("value", BigInteger, nullable=False),
    Column("billed", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

counter_resets = Table(
    "counter_resets",
    metadata,
    Column("series_id", BigInteger, nullable=False),
    Column("at", DateTime, nullable=False),
    Column("before", BigInteger, nullable=False),
    Column("after", BigInteger, nullable=False),
    Column("flagged", Boolean, nullable=False),  # the agent said anomaly="decreased"
    Index("ix_counter_resets_series_at", "series_id", "at"),
)

# Contract meters: how a customer's billed meters are composed of counters (customer "*":
# the dealer's defaults). `terms` is a JSON list of {"kind", "source"?, "weight"}.
contract_meters = Table(
    "contract_meters",
    metadata,
    Column("customer_id", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("terms", Text, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)


# --- the console (metersync_manager.console) ------------------------------------------------

# Operator accounts of the web console; a password is kept only as its argon2id hash.
console_users = Table(
    "console_users",
    metadata,
    Column("user_id", _BigId, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(32), nullable=False),  # metersync_manager.scope
    Column("customers", Text, nullable=False, default=""),  # space-separated customer ids
    Column("created_at", DateTime, nullable=False),
    Column("password_at", DateTime, nullable=False),
    Column("disabled_at", DateTime),
)

# Signed-in browsers: the cookie holds a random token, the table only its sha256.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", BigInteger, nullable=False, index=True),
    Column("csrf", String(64), nullable=False),  # the form token of this session
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)

# Sign-in attempts, for the login rate limit (per user name and per client address).
login_attempts = Table(
    "login_attempts",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False),
    Column("username", String(64), nullable=False),
    Column("address", String(64), nullable=False),
    Column("ok", Boolean, nullable=False),
    Index("ix_login_attempts_user", "username", "at"),
    Index("ix_login_attempts_address", "address", "at"),
)

# Each device's newest snapshot in one row (metersync_manager.device_state), kept by ingest in
# the report's transaction, so the fleet page never reads the readings tables.
device_state = Table(
    "device_state",
    metadata,
    Column("device_key", String(255), primary_key=True),
    Column("reading_id", BigInteger, nullable=False),
    Column("polled_at", DateTime, nullable=False),
    Column("device_status", String(32)),
    Column("printer_status", String(32)),
    Column("error_flags", String(512)),
    Column("supplies", Text, nullable=False, default="[]"),  # JSON, device_state.summary
    Column("low_supplies", Integer, nullable=False, default=0, index=True),
    Column("alerts", Integer, nullable=False, default=0, index=True),
)

# The console's search (schema 12): every device's identity cut into lower-case words, so a
# search is a prefix range of one index (`term >= q AND term < q + U+FFFF`), never a scan.
device_terms = Table(
    "device_terms",
    metadata,
    # byte order in PostgreSQL too (a language collation would break the prefix ranges)
    Column(
        "term", String(255).with_variant(String(255, collation="C"), "postgresql"), primary_key=True
    ),  # fmt: skip
    Column("device_key", String(255), primary_key=True),
    Index("ix_device_terms_device", "device_key"),
)

CONSOLE_INDEXES = (
    Index("ix_devices_agent_complete", devices.c.last_agent_id, devices.c.last_complete_at),
    Index("ix_devices_current_ip", devices.c.current_ip),
    Index("ix_devices_last_seen", devices.c.last_seen),
    Index("ix_devices_vendor", devices.c.vendor),
    Index("ix_devices_model", devices.c.model),
    Index("ix_devices_serial", devices.c.serial_number),
    Index("ix_devices_site", devices.c.site_id),
    Index("ix_device_state_status", device_state.c.device_status),
)


# --- fleet intelligence (metersync_manager.fleet) -------------------------------------------

# Alerts with a lifecycle: open → (acknowledged) → resolved. `open_key` is set while the alert
# is not resolved and unique: one open alert per rule and subject (deduplication).
fleet_alerts = Table(
    "fleet_alerts",
    metadata,
    Column("alert_id", _BigId, primary_key=True, autoincrement=True),
    Column("customer_id", String(64), nullable=False),
    Column("rule", String(32), nullable=False),
    Column("subject_kind", String(8), nullable=False),  # device | agent | webhook
    Column("subject_id", String(255), nullable=False),
    Column("key", String(255), nullable=False, default=""),  # supply index, error flag, code
    Column("open_key", String(600), unique=True),
    Column("state", String(16), nullable=False),  # open | acknowledged | resolved
    Column("severity", String(16), nullable=False),  # critical | warning | info
    Column("title", Text, nullable=False),
    Column("evidence", Text, nullable=False, default="{}"),  # JSON
    Column("opened_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("last_true_at", DateTime, nullable=False),
    Column("clear_count", Integer, nullable=False, default=0),  # evaluations seen clear
    Column("flaps", Integer, nullable=False, default=0),  # cleared, then back before resolving
    Column("acknowledged_at", DateTime),
    Column("acknowledged_by", String(255)),
    Column("resolved_at", DateTime),
    Column("resolved_by", String(255)),  # NULL: resolved automatically
    Index("ix_fleet_alerts_customer", "customer_id", "state", "opened_at"),
    Index("ix_fleet_alerts_subject", "subject_kind", "subject_id"),
    Index("ix_fleet_alerts_state", "state", "opened_at"),  # schema 12: the console's inbox
)

# Rule settings: customer_id "*" holds the dealer's defaults; a customer's row overrides them.
alert_settings = Table(
    "alert_settings",
    metadata,
    Column("customer_id", String(64), primary_key=True),
    Column("rule", String(32), primary_key=True),
    Column("settings", Text, nullable=False),  # JSON object
)

# Where notifications go: webhooks and e-mail recipients, per customer ("*": every customer).
notify_targets = Table(
    "notify_targets",
    metadata,
    Column("target_id", _BigId, primary_key=True, autoincrement=True),
    Column("customer_id", String(64), nullable=False),
    Column("kind", String(8), nullable=False),  # webhook | email
    Column("address", Text, nullable=False),  # URL or e-mail address
    Column("secret", String(128)),  # webhooks: the HMAC key
    Column("mode", String(16), nullable=False, default="immediate"),  # e-mail: or digest
    Column("digest_minutes", Integer, nullable=False, default=60),  # digest: one mail per this
    Column("events", String(255), nullable=False, default=""),  # space separated; "" = all
    Column("enabled", Boolean, nullable=False, default=True),
    Column("failures", Integer, nullable=False, default=0),  # consecutive
    Column("disabled_at", DateTime),
    Column("created_at", DateTime, nullable=False),
)

# The durable notification queue: written in the transaction that changed the alert, sent
# at least once; (target, event) is the receiver's idempotency key.
notifications = Table(
    "notifications",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("target_id", BigInteger, nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("payload", Text, nullable=False),  # JSON: the exact webhook body
    Column("state", String(8), nullable=False),  # pending | sent | dead
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", DateTime, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("sent_at", DateTime),
    Column("last_error", Text),
    UniqueConstraint("target_id", "event_id", name="uq_notifications_target_event"),
    Index("ix_notifications_due", "state", "next_at"),
)

# The newest forecast of each supply (the evaluator writes it; the API and console read it).
supply_forecasts = Table(
    "supply_forecasts",
    metadata,
    Column("device_key", String(255), primary_key=True),
    Column("idx", BigInteger, primary_key=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("computed_at", DateTime, nullable=False),
    Column("description", Text),
    Column("colour", String(255)),
    Column("part_number", String(255)),
    Column("level", Integer),  # the last level read, percent (None: -2/-3)
    Column("forecast", Text, nullable=False),  # JSON: fleet.forecast.Forecast.as_dict
    Column("lives", Text, nullable=False),  # JSON: the cartridge lives seen
    Column("life_started_at", DateTime),
    # schema 12: forecast.daysToEmpty as a column, for "running out" lists by index
    Column("days_to_empty", Float),
    Index("ix_supply_forecasts_days", "days_to_empty"),
    Index("ix_supply_forecasts_customer_days", "customer_id", "days_to_empty"),
)

# Supply orders: one per cartridge life (the unique constraint is the guarantee).
supply_orders = Table(
    "supply_orders",
    metadata,
    Column("order_id", _BigId, primary_key=True, autoincrement=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("device_key", String(255), nullable=False),
    Column("idx", BigInteger, nullable=False),
    Column("life_started_at", DateTime, nullable=False),
    Column("ordered_at", DateTime, nullable=False),
    Column("part_number", String(255)),
    Column("detail", Text, nullable=False),  # JSON: level, forecast, supply description
    UniqueConstraint("device_key", "idx", "life_started_at", name="uq_supply_orders_life"),
)

# The evaluator's durable position: the newest readings.id it has evaluated.
fleet_cursor = Table(
    "fleet_cursor",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

FLEET_TABLES = (
    fleet_alerts,
    alert_settings,
    notify_targets,
    notifications,
    supply_forecasts,
    supply_orders,
    fleet_cursor,
)

# Shared state of several manager processes on one PostgreSQL database (MS-OPS-5..7,
# metersync_manager.cluster); SQLite keeps it in the process. Times are epoch seconds of the
# database's clock, so every process counts on one clock.
rate_buckets = Table(  # MS-LIM-5: one token bucket per rate-limit key
    "rate_buckets",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("at", Float, nullable=False),
    Column("granted", Boolean, nullable=False),
)
enroll_failures = Table(  # MS-LIM-6: failed enrollments per client address
    "enroll_failures",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("address", String(64), nullable=False, index=True),
    Column("at", Float, nullable=False),
)
seen_signatures = Table(  # MS-CH-3: signatures accepted once, until they would be too old
    "seen_signatures",
    metadata,
    Column("signature", LargeBinary, primary_key=True),
    Column("until", Float, nullable=False, index=True),
)
manager_processes = Table(  # the live `manager serve` processes (a heartbeat each)
    "manager_processes",
    metadata,
    Column("process_id", String(32), primary_key=True),
    Column("heartbeat", Float, nullable=False),
)
channel_holders = Table(  # which process holds an agent's channel
    "channel_holders",
    metadata,
    Column("agent_id", String(36), primary_key=True),
    Column("process_id", String(32), nullable=False),
    Column("transport", String(16), nullable=False),
    Column("at", Float, nullable=False),
)
channel_relay = Table(  # requests, answers and responses passed between processes
    "channel_relay",
    metadata,
    Column("relay_id", String(36), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("body", LargeBinary, nullable=True),
    Column("at", Float, nullable=False),
)
CLUSTER_TABLES = (
    rate_buckets,
    enroll_failures,
    seen_signatures,
    manager_processes,
    channel_holders,
    channel_relay,
)

SCHEMA_VERSION = 13


def _v2_mail_refusals(conn: Connection) -> None:
    mail_refusals.create(conn, checkfirst=True)


def _v3_key_rotation(conn: Connection) -> None:
    """Key rotation: tokens bound to an agent, and the agents' superseded keys."""
    conn.execute(text("ALTER TABLE enrollment_tokens ADD COLUMN agent_id VARCHAR(36)"))
    agent_keys.create(conn)


def _v4_operator_tokens(conn: Connection) -> None:
    operator_tokens.create(conn, checkfirst=True)


def _v5_staleness(conn: Connection) -> None:
    """MS-DEV-26: cycle starts of reports (none for older reports) and each device's newest
    complete snapshot, taken from the readings already stored."""
    conn.execute(text("ALTER TABLE reports ADD COLUMN cycle_started_at TIMESTAMP"))
    conn.execute(
        text("CREATE INDEX ix_reports_agent_cycle ON reports (agent_id, cycle_started_at)")
    )
    conn.execute(text("ALTER TABLE devices ADD COLUMN last_complete_at TIMESTAMP"))
    conn.execute(
        text(
            "UPDATE devices SET last_complete_at = (SELECT max(r.polled_at) FROM readings r "
            "WHERE r.device_key = devices.device_key AND r.complete)"
        )
    )


def _v6_tenancy(conn: Connection) -> None:
    """Customers, sites, ownership and scoped operator tokens; everything that existed
    belongs to the customer "default", and every existing operator token is a dealer admin."""
    for table in (customers, sites, assignments, device_events, counter_series, counter_reads):
        table.create(conn, checkfirst=True)
    for table in (counter_resets, contract_meters):
        table.create(conn, checkfirst=True)
    conn.execute(
        text("ALTER TABLE readings ADD COLUMN disposition VARCHAR(16) NOT NULL DEFAULT 'applied'")
    )
    for table in ("agents", "devices"):
        conn.execute(
            text(
                f"ALTER TABLE {table} ADD COLUMN customer_id VARCHAR(64) NOT NULL DEFAULT 'default'"
            )
        )
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN site_id BIGINT"))
        conn.execute(text(f"CREATE INDEX ix_{table}_customer_id ON {table} (customer_id)"))
    conn.execute(text("ALTER TABLE devices ADD COLUMN owner_agent_id VARCHAR(36)"))
    conn.execute(text("ALTER TABLE devices ADD COLUMN last_polled_at TIMESTAMP"))
    conn.execute(
        text("UPDATE devices SET owner_agent_id = last_agent_id, last_polled_at = last_seen")
    )
    conn.execute(
        text(
            "ALTER TABLE enrollment_tokens ADD COLUMN customer_id VARCHAR(64) NOT NULL "
            "DEFAULT 'default'"
        )
    )
    conn.execute(text("ALTER TABLE enrollment_tokens ADD COLUMN site_id BIGINT"))
    conn.execute(
        text(
            "ALTER TABLE operator_tokens ADD COLUMN role VARCHAR(32) NOT NULL "
            "DEFAULT 'dealer-admin'"
        )
    )
    conn.execute(text("ALTER TABLE operator_tokens ADD COLUMN customers TEXT NOT NULL DEFAULT ''"))
    conn.execute(
        text(
            "INSERT INTO assignments (subject, subject_id, customer_id, valid_from, reason) "
            "SELECT 'agent', agent_id, 'default', enrolled_at, 'enrolled' FROM agents"
        )
    )
    conn.execute(
        text(
            "INSERT INTO assignments (subject, subject_id, customer_id, owner_agent_id, "
            "valid_from, reason) SELECT 'device', device_key, 'default', last_agent_id, "
            "first_seen, 'first-report' FROM devices"
        )
    )


def _v9_fleet(conn: Connection) -> None:
    """Fleet intelligence: alerts, rule settings, notification targets and queue, forecasts,
    orders; the evaluator starts after the readings already stored (no alert storm)."""
    for table in FLEET_TABLES:
        table.create(conn, checkfirst=True)
    conn.execute(
        text(
            "INSERT INTO fleet_cursor (name, position, updated_at) SELECT 'readings', "
            "coalesce(max(id), 0), CURRENT_TIMESTAMP FROM readings"
        )
    )


def _v11_cluster(conn: Connection) -> None:
    """The shared state of several manager processes (MS-OPS-5..7)."""
    for table in CLUSTER_TABLES:
        table.create(conn, checkfirst=True)


def _v7_console(conn: Connection) -> None:
    """Console accounts, sessions and login attempts; each device's newest snapshot in
    device_state, filled from the readings already stored."""
    from metersync_manager import device_state as state

    for table in (console_users, console_sessions, login_attempts, device_state):
        table.create(conn, checkfirst=True)
    for index in CONSOLE_INDEXES:
        index.create(conn, checkfirst=True)
    state.backfill(conn)


def _v8_counter_range(conn: Connection) -> None:
    """Raw counters offset-encoded like counter_reads (the full xs:unsignedLong range);
    written as two steps so that no literal leaves the signed 64-bit range."""
    for col in ("value", "previous"):
        conn.execute(text(f"UPDATE counters SET {col} = ({col} - 9223372036854775807) - 1"))


def _v10_sequence_epoch(conn: Connection) -> None:
    """MS-DEL-21: every report stored so far is of its agent's first epoch."""
    conn.execute(text("ALTER TABLE reports ADD COLUMN sequence_epoch BIGINT NOT NULL DEFAULT 1"))


def _v12_console(conn: Connection) -> None:
    """The console's search terms and indexed forecasts and alert states."""
    import json

    from metersync_manager import search_terms

    device_terms.create(conn, checkfirst=True)
    have = {c["name"] for c in inspect(conn).get_columns("supply_forecasts")}
    if "days_to_empty" not in have:  # step 9 creates today's table, with the column
        conn.execute(text("ALTER TABLE supply_forecasts ADD COLUMN days_to_empty FLOAT"))
    f = supply_forecasts.c
    for key, idx, forecast in conn.execute(select(f.device_key, f.idx, f.forecast)).all():
        days = json.loads(forecast).get("daysToEmpty")
        conn.execute(
            supply_forecasts.update()
            .where(f.device_key == key, f.idx == idx)
            .values(days_to_empty=days)
        )
    for table in (supply_forecasts, fleet_alerts):
        for index in table.indexes:
            index.create(conn, checkfirst=True)
    search_terms.backfill(conn)


def _v13_shared_rows(conn: Connection) -> None:
    """Readings refer to an earlier reading's equal rows (every stored reading keeps its
    own); the floors of purged report sequences."""
    for kind in ("counters", "supplies", "alerts", "errors"):
        conn.execute(text(f"ALTER TABLE readings ADD COLUMN {kind}_of BIGINT"))
    device_rowsets.create(conn, checkfirst=True)
    report_floors.create(conn, checkfirst=True)


# version → the step that turns version-1 into version.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    2: _v2_mail_refusals,
    3: _v3_key_rotation,
    4: _v4_operator_tokens,
    5: _v5_staleness,
    6: _v6_tenancy,
    7: _v7_console,
    8: _v8_counter_range,
    9: _v9_fleet,
    10: _v10_sequence_epoch,
    11: _v11_cluster,
    12: _v12_console,
    13: _v13_shared_rows,
}
