"""The package version: one place, imported by the package face and by the run directory."""

__version__ = "0.1.0"
