"""MeterSync core: the safe XML edge, error codes, signatures and the `metersync` command."""

__version__ = "0.1.0"
