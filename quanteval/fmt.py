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


def percent(confidence: float) -> str:
    """A confidence level as a percentage: 0.9875 -> '98.75%'."""
    return f"{100 * confidence:.4g}%"


class PairedTest(Protocol):
    """What the table shows of a paired comparison (quanteval.report.schema.PairedTest)."""

    @property
    def delta_f1_pp(self) -> float | None: ...

    @property
    def ci(self) -> tuple[float, float] | None: ...

    @property
    def mark(self) -> str: ...

    @property
    def verdict(self) -> str: ...

    @property
    def ci95(self) -> tuple[float, float] | None: ...

    @property
    def ci95_these_prompts(self) -> tuple[float, float] | None: ...

    @property
    def confidence(self) -> float | None: ...

    @property
    def family_size(self) -> int | None: ...

    @property
    def templates(self) -> int | None: ...

    @property
    def design_effect(self) -> float | None: ...


def interval(ci: tuple[float, float] | None, fmt: str, sign: bool = False) -> str:
    """An interval as `[low, high]`; '' when there is none."""
    if ci is None:
        return ""
    spec = ("+" if sign else "") + fmt
    return f"[{format(ci[0], spec)}, {format(ci[1], spec)}]"


MARKS = {
    "worse": "▼ worse",
    "better": "▲ better",
    "worse by Holm only": "▽ worse, Holm only",
    "better by Holm only": "△ better, Holm only",
    "worse by the interval only": "▽ worse, CI only",
    "better by the interval only": "△ better, CI only",
    "equivalent": "= equivalent",
    "cannot decide": "? undecided",
}


def verdict_mark(test: PairedTest | None) -> str:
    """A short marker of a paired verdict for a table cell; "no detectable difference" says how
    large the difference could be (the interval's farther end)."""
    if test is None:
        return ""
    if test.mark == "no detectable difference" and test.ci is not None:
        return f"○ none found ≤{max(abs(test.ci[0]), abs(test.ci[1])):.1f}"
    return MARKS.get(test.mark, test.mark)


def delta_cell(unpaired: float | None, test: PairedTest | None) -> str:
    """The paired ΔF1 with the interval its mark is read from, else the plain difference."""
    if test is None or test.delta_f1_pp is None:
        return signed(unpaired, ".1f")
    return f"{signed(test.delta_f1_pp, '.1f')} {interval(test.ci, '.1f', sign=True)}"


def memory_cell(saving_pct: float | None, comparable: bool) -> str:
    """A memory saving %, marked ‡ where the two runs' memory is not like for like."""
    cell = signed(saving_pct, ".1f")
    return f"{cell} ‡" if cell and not comparable else cell


def ratio_cell(ratio: float | None, comparable: bool) -> str:
    """A time or dollar ratio (×), marked ‡ where the two runs computed on different devices."""
    cell = num(ratio, ".2f")
    return cell if ratio is None or comparable else f"{cell} ‡"
