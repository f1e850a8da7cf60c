"""The MeterSync specification as package data (import name `metersync_spec`).

The files beside this module are the source of truth; code finds them through these paths,
both in a checkout and after `pip install .`.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
XSD_DIR = ROOT / "xsd"
OPENAPI_DIR = ROOT / "openapi"
EXAMPLES_DIR = ROOT / "examples"
NAMESPACE = "urn:metersync:v1"
