"""One logging set-up for every MeterSync command (agent and manager).

`add_options(parser)` adds `--log-level` and `--log-format text|json`; `setup(level, fmt)` sends
every record to stderr with an ISO-8601 UTC timestamp (text) or as one JSON object per line
(json, for log shippers). `access_logger()` is the logger the manager hands Hypercorn for its
access log, so access lines take the same format and destination.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO

LEVELS = ("debug", "info", "warning", "error", "critical")
FORMATS = ("text", "json")
ACCESS_LOGGER = "metersync.access"
# Hypercorn's access-log fields: client, request line, status, bytes, duration (microseconds).
ACCESS_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s %(D)sus'
# LogRecord attributes that are not caller-supplied `extra=` fields.
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def timestamp(record: logging.LogRecord) -> str:
    """ISO-8601 in UTC with milliseconds, e.g. 2026-12-07T04:50:01.123Z."""
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, any `extra=` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def add_options(parser: argparse.ArgumentParser, default_level: str = "info") -> None:
    parser.add_argument(
        "--log-level", default=default_level, choices=LEVELS, help=f"(default {default_level})"
    )
    parser.add_argument(
        "--log-format", default="text", choices=FORMATS,
        help="text: ISO-8601 timestamped lines; json: one JSON object per line",
    )  # fmt: skip


def setup(level: str = "info", fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Replace the root logger's handlers with one stderr handler in the chosen format."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise


def access_logger(enabled: bool = True) -> logging.Logger | None:
    """The access log's logger (propagates to the root handler), or None when disabled."""
    if not enabled:
        return None
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.setLevel(logging.INFO)
    return logger
