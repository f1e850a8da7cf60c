"""MeterSync conformance suite (import name `metersync_conformance`)."""
