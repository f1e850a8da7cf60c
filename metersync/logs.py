"""Logging for the long-lived commands (`manager serve`, `agent run`): one place for the level,
ISO-8601 UTC timestamps, plain text or JSON lines, and the access log (MS-OPS operations).

    --log-level debug|info|warning|error   (default info)
    --log-format text|json                 (json: an object per line: time, level, logger, message)
    --access-log                           (manager: a line per HTTP request, metersync.access)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

LEVELS = ("debug", "info", "warning", "error")
ACCESS = "metersync.access"


def add_options(p: argparse.ArgumentParser, access: bool = False) -> None:
    p.add_argument("--log-level", choices=LEVELS, default="info", help="default info")
    p.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="json: JSON lines"
    )
    if access:
        p.add_argument(
            "--access-log", action="store_true", help="log every HTTP request (metersync.access)"
        )


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_time(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup(level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger: one handler on stderr, our formatter, the given level."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.set_name("metersync")
    root = logging.getLogger()
    for old in list(root.handlers):  # ours from an earlier call; others' (pytest's) stay
        if old.get_name() == "metersync" or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def from_args(args: argparse.Namespace) -> None:
    setup(getattr(args, "log_level", "info"), getattr(args, "log_format", "text"))
