"""How the report's numbers read in tables: '-' for what is unknown (shared with the CLI table)."""

from quanteval.table import delta_cell, human_bytes, interval, num, signed, verdict_mark

__all__ = ["delta_cell", "human_bytes", "interval", "num", "signed", "verdict_mark"]
