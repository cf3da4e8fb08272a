"""Parcours 3 → DUDE data-exchange gateway."""

__version__ = "0.1.0"
