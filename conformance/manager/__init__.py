"""Certifying a manager: the harness plays agents against it; checks by concern, core.py first."""
