"""The report Job's termination message: each comparison's paired verdict, for the status.

The operator has no S3 access; it reads the report pod's termination message (the kubelet keeps
4096 bytes of it) and copies these into `status.summary.comparisons[]`. Most important first:
differences found (worse, better, then those only the interval or only the test finds; the
largest first), then the rest; where they do not all fit, as many
as fit and `truncated: true`.
"""

from quanteval.api.termination import TERMINATION_MESSAGE_LIMIT, ReportMessage, Verdict
from quanteval.report.schema import BaselineComparison, Report

_RANK = {"worse": 0, "better": 1, "worse by Holm only": 2, "worse by the interval only": 2}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _rounded_interval(ci: tuple[float, float] | None) -> tuple[float, float] | None:
    return None if ci is None else (round(ci[0], 1), round(ci[1], 1))


def report_termination_message(report: Report, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """Compact JSON: {kind, state, comparisons: [{id, f1DeltaPp, f1DeltaCi95, f1DeltaCi,
    familySize, verdict, ratingMeanAbsChange, against}], ...}."""
    compared: list[tuple[str, BaselineComparison | None, str | None]] = [
        (run.run_id, run.vs_baseline, None) for run in report.runs
    ]
    # The engine effects, a named engine's baseline run against the default engine's: named, as
    # the status's rows of them are.
    compared += [(e.run_id, e.vs, e.vs.baseline_run_id) for e in report.engine_effects]
    tests = [
        (run_id, vs.paired, vs.rating_drift, against)
        for run_id, vs, against in compared
        if vs is not None and vs.paired is not None
    ]
    tests.sort(key=lambda t: (_RANK.get(t[1].mark, 3), -abs(t[1].delta_f1_pp or 0.0), t[0]))
    ranked = [
        Verdict(
            id=run_id,
            verdict=test.verdict,
            f1_delta_pp=_rounded(test.delta_f1_pp),
            f1_delta_ci95=_rounded_interval(test.ci95),
            f1_delta_ci=_rounded_interval(test.ci),
            family_size=test.family_size,
            rating_mean_abs_change=_rounded(drift.mean_abs_change) if drift else None,
            against=against,
        )
        for run_id, test, drift, against in tests
    ]
    return ReportMessage.fitting(ranked, limit).to_text()
