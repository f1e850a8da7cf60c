"""`metersync spec …`: validate messages as a receiver would, and regenerate the model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """exit status: 0 all files valid (or generated/ in sync); 1 at least one file invalid
(or generated/ drifted); 2 usage error or unreadable file."""


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    val = sub.add_parser(
        "validate",
        help="check messages against the spec exactly as a receiver does",
        description="Check each FILE (or every .xml file under a DIRECTORY) as a MeterSync "
        "manager or agent does on receipt: size, encoding, forbidden constructs, "
        "well-formedness, depth, namespace, message type and XSD.",
        epilog=EPILOG,
    )
    val.add_argument("paths", nargs="+", type=Path, metavar="FILE|DIR")
    val.set_defaults(func=_validate)
    gen = sub.add_parser(
        "generate",
        help="regenerate generated/ from spec/xsd with xsdata",
        epilog=EPILOG,
    )
    gen.add_argument(
        "--out",
        type=Path,
        default=None,
        help="target folder (default: generated/ of this checkout)",
    )
    gen.add_argument(
        "--check", action="store_true", help="only report whether generated/ is in sync"
    )
    gen.set_defaults(func=_generate)
    pics = sub.add_parser("requirements", help="list the numbered requirements of the spec")
    pics.add_argument("--pics", action="store_true", help="print a PICS template (CSV, spec 18.3)")
    pics.add_argument(
        "--classes", default=None, help="comma-separated conformance classes (default: all)"
    )
    pics.set_defaults(func=_requirements)


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out.extend(sorted(p.rglob("*.xml")) if p.is_dir() else [p])
    return out


def _validate(args: argparse.Namespace) -> int:
    from metersync.errors import ProtocolError
    from metersync.xml_edge import parse_message

    files = _files(args.paths)
    if not files:
        print("no .xml files found", file=sys.stderr)
        return 2
    bad = 0
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror}", file=sys.stderr)
            return 2
        try:
            message = parse_message(data)
        except ProtocolError as exc:
            bad += 1
            where = exc.where()
            print(
                f"{path}: INVALID {exc.code} {exc.name} [{exc.requirement}]"
                + (f" at {where}" if where else "")
                + f": {exc.message}"
            )
        else:
            print(f"{path}: OK {message.kind}")
    print(f"{len(files) - bad} valid, {bad} invalid", file=sys.stderr)
    return 1 if bad else 0


def _checkout_generated() -> Path:
    import metersync_generated

    return Path(metersync_generated.__file__).resolve().parent


def _generate(args: argparse.Namespace) -> int:
    from metersync.codegen import differences, generate

    target = args.out or _checkout_generated()
    if args.check:
        diff = differences(target)
        for line in diff:
            print(line)
        print("generated/ is in sync with spec/xsd" if not diff else "generated/ has drifted")
        return 1 if diff else 0
    files = generate(target)
    print(f"wrote {len(files)} files to {target}")
    return 0


def _requirements(args: argparse.Namespace) -> int:
    from metersync.requirements import CLASSES, load_requirements, pics_template

    reqs = load_requirements()
    if args.pics:
        classes = tuple(c.strip() for c in args.classes.split(",")) if args.classes else CLASSES
        print(pics_template(reqs, classes), end="")
    else:
        for r in reqs:
            print(f"{r.id}\t{r.level}\t{', '.join(r.classes)}\t{r.text}")
    return 0
