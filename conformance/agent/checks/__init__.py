"""Checks of an agent under test, one module per concern; core.py imports the others."""
