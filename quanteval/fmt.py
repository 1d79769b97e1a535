"""How numbers read in tables, the command line's and the report's alike: '-' for unknown."""

from typing import Protocol


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def signed(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, "+" + fmt)


class PairedTest(Protocol):
    """What the table shows of a paired comparison (quanteval.report.schema.PairedTest)."""

    @property
    def delta_f1_pp(self) -> float | None: ...

    @property
    def ci95(self) -> tuple[float, float] | None: ...

    @property
    def verdict(self) -> str: ...


def interval(ci: tuple[float, float] | None, fmt: str, sign: bool = False) -> str:
    """A 95% interval as `[low, high]`; '' when there is none."""
    if ci is None:
        return ""
    spec = ("+" if sign else "") + fmt
    return f"[{format(ci[0], spec)}, {format(ci[1], spec)}]"


VERDICT_MARKS = {
    "significantly worse": "▼ worse",
    "significantly better": "▲ better",
    "no detectable difference": "≈ no diff.",
}


def verdict_mark(verdict: str | None) -> str:
    """A short marker of a paired verdict for a table cell ('?' where it cannot decide)."""
    if verdict is None:
        return ""
    return VERDICT_MARKS.get(verdict, "? too few")


def delta_cell(unpaired: float | None, test: PairedTest | None) -> str:
    """The paired ΔF1 with its interval where there is one, else the plain difference."""
    if test is None or test.delta_f1_pp is None:
        return signed(unpaired, ".1f")
    return f"{signed(test.delta_f1_pp, '.1f')} {interval(test.ci95, '.1f', sign=True)}"
