"""The `metersync` command: one entry point, each area registers its own subcommands."""

from __future__ import annotations

import argparse
import importlib
import sys

# (subcommand, module that defines `register(subparsers)`), imported lazily so that
# `metersync spec …` never pays for the agent's or the manager's imports.
AREAS = [
    ("spec", "metersync.spec_cli", "validate messages and regenerate the model"),
    ("agent", "metersync_agent.cli", "the reference agent: poll, discover, run"),
    ("manager", "metersync_manager.cli", "the reference manager: serve, tokens"),
    ("conformance", "metersync_conformance.cli", "certify an agent or a manager"),
    ("feed", "metersync.feed", "run an update feed: keys, software, licences (TUF)"),
    ("demo", "metersync.demo", "start simulated printers, a manager and an agent"),
]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="metersync", description=__doc__)
    sub = parser.add_subparsers(dest="area", metavar="AREA")
    for name, module, help_text in AREAS:
        if argv[:1] == [name]:
            area = sub.add_parser(name, help=help_text)
            importlib.import_module(module).register(area)
        else:
            sub.add_parser(name, help=help_text)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
