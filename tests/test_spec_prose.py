"""The prose specification is consistent with itself, the XSDs, the error table and OpenAPI."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from metersync.errors import BY_CODE
from metersync.requirements import CLASSES, load_requirements, pics_template

REPO = Path(__file__).resolve().parents[1]
SPEC = (REPO / "spec/metersync.md").read_text(encoding="utf-8")
REQS = load_requirements()
IDS = {r.id for r in REQS}
KEYWORD = re.compile(r"\b(MUST NOT|MUST|REQUIRED|SHALL NOT|SHALL|SHOULD NOT|SHOULD|MAY|OPTIONAL)\b")
STRENGTH = {"MUST": 3, "SHOULD": 2, "MAY": 1}


def test_well_over_a_hundred_requirements() -> None:
    assert len(REQS) > 100


def test_every_requirement_line_parses() -> None:
    # A line that looks like a requirement but does not parse would silently vanish from PICS.
    candidates = [ln for ln in SPEC.splitlines() if re.match(r"^- \*\*MS-[A-Z]+-\d+\*\*", ln)]
    assert len(candidates) == len(REQS), [ln for ln in candidates if ln.split("**")[1] not in IDS][
        :5
    ]


def test_ids_are_unique_and_numbered_from_one_per_area() -> None:
    counts = Counter(r.id for r in REQS)
    assert [i for i, n in counts.items() if n > 1] == []
    by_area: dict[str, list[int]] = {}
    for r in REQS:
        by_area.setdefault(r.area, []).append(int(r.id.rsplit("-", 1)[1]))
    for area, numbers in by_area.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), f"gaps in MS-{area}"


def test_classes_are_known_and_keyword_matches_text() -> None:
    for r in REQS:
        assert set(r.classes) <= set(CLASSES), (r.id, r.classes)
        words = [w.split()[0] for w in KEYWORD.findall(r.text)]
        words = [{"REQUIRED": "MUST", "SHALL": "MUST", "OPTIONAL": "MAY"}.get(w, w) for w in words]
        assert words, f"{r.id} has no RFC 2119 keyword in its text"
        assert max(STRENGTH[w] for w in words) == STRENGTH[r.level], r.id


def test_every_cited_requirement_exists() -> None:
    cited: set[str] = set()
    for path in [*(REPO / "spec/xsd").glob("*.xsd"), *(REPO / "metersync").glob("*.py")]:
        cited |= set(re.findall(r"MS-[A-Z]+-\d+", path.read_text(encoding="utf-8")))
    cited |= set(re.findall(r"MS-[A-Z]+-\d+", SPEC))
    assert sorted(cited - IDS) == []


def test_error_table_matches_the_code() -> None:
    for spec in BY_CODE.values():
        row = re.search(
            rf"^\|\s*{spec.code}\s*\|\s*`?{spec.name}`?\s*\|\s*{spec.http_status}\b",
            SPEC,
            re.MULTILINE,
        )
        assert row, f"error {spec.code} {spec.name} ({spec.http_status}) missing from the table"
    listed = {int(c) for c in re.findall(r"^\|\s*([1-8]\d{3})\s*\|", SPEC, re.MULTILINE)}
    assert listed == set(BY_CODE), f"table and errors.py differ: {listed ^ set(BY_CODE)}"


def test_every_class_has_mandatory_requirements() -> None:
    for cls in CLASSES:
        assert any(cls in r.classes and r.level == "MUST" for r in REQS), cls


def test_pics_template_is_the_csv_of_section_18_3() -> None:
    rows = list(csv.DictReader(io.StringIO(pics_template(REQS))))
    assert [r["requirement"] for r in rows] == [r.id for r in REQS]
    http_only = list(csv.DictReader(io.StringIO(pics_template(REQS, ("Agent-HTTP",)))))
    assert http_only and all(r["classes"] == "Agent-HTTP" for r in http_only)
    assert len(http_only) == sum("Agent-HTTP" in r.classes for r in REQS)


@pytest.mark.parametrize(
    "path", sorted((REPO / "spec/openapi").glob("*.yaml")), ids=lambda p: p.name
)
def test_openapi_documents_are_3_1_with_operations(path: Path) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert str(doc["openapi"]).startswith("3.1")
    operations = [op for item in doc["paths"].values() for op in item if op in {"get", "post"}]
    assert operations, f"{path.name} defines no operation"


def test_vendor_token_table_matches_the_reference_agent() -> None:
    from metersync_agent.identity import VENDOR_TOKENS

    section = SPEC[SPEC.index("Table 3-1") : SPEC.index("The **serial number**")]
    table = {int(n): token for token, n in re.findall(r"^\| (\w+) \| (\d+) \|$", section, re.M)}
    assert table == VENDOR_TOKENS
