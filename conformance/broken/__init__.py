"""Deliberately broken implementations (`python -m metersync_conformance.broken`, __main__.py)."""
