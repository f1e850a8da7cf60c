"""Every example in spec/examples validates, or fails with exactly the error it documents."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from metersync.errors import BY_CODE, ProtocolError
from metersync.xml_edge import MESSAGES, parse_message
from metersync_spec import XSD_DIR

REPO = Path(__file__).resolve().parents[1]
VALID = sorted((REPO / "spec/examples/valid").glob("*.xml"))
INVALID_DIR = REPO / "spec/examples/invalid"
EXPECTED = tomllib.loads((INVALID_DIR / "expected.toml").read_text())


def test_every_message_type_has_a_valid_example() -> None:
    kinds = {parse_message(p.read_bytes()).kind for p in VALID}
    assert kinds == set(MESSAGES), f"no valid example for {set(MESSAGES) - kinds}"


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_example(path: Path) -> None:
    message = parse_message(path.read_bytes())
    assert isinstance(message.obj, MESSAGES[message.kind])


def test_every_invalid_example_states_its_error() -> None:
    files = {p.name for p in INVALID_DIR.glob("*.xml")}
    assert files == set(EXPECTED), "expected.toml and the invalid examples differ"


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=str)
def test_invalid_example(name: str) -> None:
    expected = EXPECTED[name]
    with pytest.raises(ProtocolError) as caught:
        parse_message((INVALID_DIR / name).read_bytes())
    err = caught.value
    assert (err.code, err.name) == (expected["code"], expected["name"]), str(err)
    assert BY_CODE[err.code].name == err.name
    if "line" in expected:
        assert err.line == expected["line"], str(err)


def _validate_cli(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metersync.cli", "spec", "validate", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_validate_command_reports_each_file_and_exit_status() -> None:
    ok = _validate_cli(REPO / "spec/examples/valid")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.count(": OK ") == len(VALID)
    assert "OK Report" in ok.stdout

    bad = _validate_cli(VALID[0], INVALID_DIR / "percent-over-100.xml")
    assert bad.returncode == 1
    line = next(s for s in bad.stdout.splitlines() if "percent-over-100" in s)
    assert "INVALID 1008 SCHEMA_VIOLATION [MS-XML-5]" in line
    assert "line 62" in line and "/Report/device[1]/supply[1]/percent[1]" in line


def test_validate_command_unreadable_file_is_a_usage_error(tmp_path: Path) -> None:
    result = _validate_cli(tmp_path / "missing.xml")
    assert result.returncode == 2
    assert "cannot read" in result.stderr


@pytest.mark.parametrize("xsd", sorted(p.name for p in XSD_DIR.glob("*.xsd")))
def test_every_xsd_compiles_on_its_own(xsd: str) -> None:
    """A vendor loading one schema file (with the files it includes) gets no error."""
    from lxml import etree

    etree.XMLSchema(etree.parse(str(XSD_DIR / xsd)))
