"""metersync.logs: ISO-8601 text lines, JSON lines, access logger, CLI options."""

from __future__ import annotations

import argparse
import io
import json
import logging
import re

import pytest

from metersync import logs


@pytest.fixture
def restore_root():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level


def test_text_lines_carry_an_iso_8601_utc_timestamp(restore_root) -> None:
    out = io.StringIO()
    logs.setup("info", "text", out)
    logging.getLogger("metersync.test").info("hello %s", "world")
    logging.getLogger("metersync.test").debug("below the level")
    line = out.getvalue().strip()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO metersync\.test: hello world", line
    ), line


def test_json_lines_are_one_object_each_with_extra_fields(restore_root) -> None:
    out = io.StringIO()
    logs.setup("debug", "json", out)
    log = logging.getLogger("metersync.test")
    log.debug("first", extra={"agent": "a-1", "count": 3})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("second")
    first, second = (json.loads(line) for line in out.getvalue().splitlines() if line[0] == "{")
    assert first["level"] == "DEBUG" and first["message"] == "first"
    assert first["agent"] == "a-1" and first["count"] == 3
    assert first["time"].endswith("Z")
    assert "ValueError: boom" in second["exception"]


def test_access_logger_goes_through_the_root_handler(restore_root) -> None:
    out = io.StringIO()
    logs.setup("warning", "json", out)
    access = logs.access_logger()
    assert access is not None and logs.access_logger(False) is None
    access.info("127.0.0.1 GET / 200")
    assert json.loads(out.getvalue())["logger"] == logs.ACCESS_LOGGER


def test_options_refuse_an_unknown_level() -> None:
    parser = argparse.ArgumentParser()
    logs.add_options(parser)
    args = parser.parse_args(["--log-level", "debug", "--log-format", "json"])
    assert (args.log_level, args.log_format) == ("debug", "json")
    with pytest.raises(SystemExit):
        parser.parse_args(["--log-level", "loud"])
