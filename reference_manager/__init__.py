"""MeterSync reference manager: ingest, storage and read API (import name `metersync_manager`)."""
