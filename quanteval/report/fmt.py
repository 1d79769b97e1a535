"""How the report's numbers read in tables: '-' for what is unknown."""

from quanteval.table import human_bytes

__all__ = ["human_bytes", "num", "signed"]


def num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def signed(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, "+" + spec)
