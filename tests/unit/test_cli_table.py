"""The comparison `quanteval run` prints: what decides a precision, within 100 columns."""

from rich.console import Console

from quanteval.comparison import RunOutcome, compare
from quanteval.fidelity import FidelityFigures
from quanteval.precisions import Precision
from quanteval.report.schema import BaselineComparison, PairedTest
from quanteval_cli.table import comparison_table, decision_tables

MODEL = "a-model-name-of-forty-characters-exactly"  # the longest a spec allows
PRECISIONS = (Precision.FP32, Precision.TORCHAO_FLOAT8, Precision.NF4, Precision.INT8)


def _outcome(precision: Precision, state: str = "Succeeded") -> RunOutcome:
    return RunOutcome(
        run_id=f"{MODEL}-{precision.value}",
        model=MODEL,
        precision=precision,
        state=state,
        f1_macro=0.5,
        weights_bytes=1000,
        peak_memory_bytes=2000,
        generation_seconds=10.0,
        dollars=0.1234,
    )


def _against(run_id: str) -> BaselineComparison:
    paired = PairedTest(
        pairs=70,
        unpaired=0,
        verdict="better by Holm; interval includes 0 at 98.75%",
        mark="better by Holm only",  # the longest mark
        templates=10,
        delta_f1_pp=-11.25,
        ci95=(-25.3, 22.7),
        family_size=4,
        confidence=0.9875,
        ci=(-34.31, 31.7),
    )
    fidelity = FidelityFigures(
        sequences=24, positions=600, mean_kl=0.3678, mean_kl_ci95=(0.35, 0.38), p99_kl=2.0,
        p99_kl_ci95=(1.8, 2.2), top1_agreement_pct=61.7, top1_agreement_ci95=(60.0, 63.0),
        perplexity_ratio=1.44, perplexity_ratio_ci95=(1.4, 1.5), baseline_kept_mass=0.97,
        run_kept_mass=0.97,
    )  # fmt: skip
    return BaselineComparison(
        run_id.replace("-nf4", "-fp32"), 50.0, 40.0, 1.0, 2.0, 70, 0.5, 0.3, 0.4, 3.0,
        dollar_ratio=2.0, paired=paired, fidelity=fidelity,
    )  # fmt: skip


def test_the_decision_table_fits_100_columns_one_line_a_run() -> None:
    outcomes = [*map(_outcome, PRECISIONS[:3]), _outcome(Precision.INT8, "Failed")]
    rows = compare(outcomes, Precision.FP32)
    against = {f"{MODEL}-nf4": _against(f"{MODEL}-nf4")}
    console = Console(width=100, record=True)
    console.print(
        decision_tables(rows, title="quickstart (quanteval-out/quickstart)", against=against)
    )
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 100
    assert any(line.strip() == MODEL for line in lines)  # the model is the table's title
    for precision, cells in {
        "fp32 (baseline)": ["+0.0"],
        "torchao-float8": ["+0.0", "1.00"],
        "nf4": ["-11.2 [-34.3, +31.7]", "△ better, Holm only", "0.3678"],
        "int8": ["Failed"],
    }.items():
        (line,) = [line for line in lines if line.strip().startswith(precision + " ")]
        for cell in cells:
            assert cell in line, (cell, line)


def test_the_wide_table_keeps_every_column() -> None:
    rows = compare([_outcome(p) for p in PRECISIONS[:2]], Precision.FP32)
    table = comparison_table(rows)
    assert len(table.columns) == 24
