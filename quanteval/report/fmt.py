"""How the report's numbers read in tables: '-' for what is unknown (shared with the CLI table)."""

from quanteval.table import human_bytes, num, signed

__all__ = ["human_bytes", "num", "signed"]
