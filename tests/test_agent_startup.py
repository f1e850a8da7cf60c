"""Start-up cost of the agent's CLI: what `agent --help` and a v2c `agent poll` import."""

from __future__ import annotations

import argparse
import subprocess
import sys

from metersync.snmpsim import SnmpSimulator, write_snmprec
from metersync_agent import cli
from metersync_agent.service import register_service_commands

PROBE = """
import sys
from metersync.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted({m.split('.')[0] for m in sys.modules if m.startswith(('pysnmp', 'pysmi'))})
print('HEAVY', heavy, 'metersync_agent.service' in sys.modules)
"""


def _imports(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60
    ).stdout
    return out[out.rindex("HEAVY") :].strip()


def test_agent_help_imports_neither_service_nor_pysnmp():
    assert _imports("agent", "--help") == "HEAVY [] False"


def test_v2c_poll_imports_no_pysnmp(tmp_path):
    write_snmprec(
        tmp_path / "public.snmprec",
        ["1.3.6.1.2.1.1.1.0|4|printer", "1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.11.2.3.9.1"],
    )
    with SnmpSimulator(tmp_path) as sim:
        host, port = sim.address
        assert _imports("agent", "poll", f"{host}:{port}", "--timeout", "1") == "HEAVY [] False"


def test_lazy_service_commands_are_the_service_s_own():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    register_service_commands(sub)
    assert set(sub.choices) == set(cli.SERVICE_COMMANDS)
