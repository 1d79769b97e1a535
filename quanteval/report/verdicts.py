"""The report Job's termination message: each comparison's paired verdict, for the status.

The operator has no S3 access; it reads the report pod's termination message (the kubelet keeps
4096 bytes of it) and copies these into `status.summary.comparisons[]`. Most important first:
significant differences (the largest first), then the rest; where they do not all fit, as many
as fit and `truncated: true`.
"""

from quanteval.api.termination import TERMINATION_MESSAGE_LIMIT, ReportMessage, Verdict
from quanteval.report.schema import Report

_RANK = {"significantly worse": 0, "significantly better": 1, "no detectable difference": 2}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def report_termination_message(report: Report, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """Compact JSON: {kind, state, comparisons: [{id, f1DeltaPp, f1DeltaCi95, verdict,
    ratingMeanAbsChange}], ...}."""
    tests = [
        (run.run_id, run.vs_baseline.paired, run.vs_baseline.rating_drift)
        for run in report.runs
        if run.vs_baseline is not None and run.vs_baseline.paired is not None
    ]
    tests.sort(key=lambda t: (_RANK.get(t[1].verdict, 3), -abs(t[1].delta_f1_pp or 0.0), t[0]))
    ranked = [
        Verdict(
            id=run_id,
            verdict=test.verdict,
            f1_delta_pp=_rounded(test.delta_f1_pp),
            f1_delta_ci95=None
            if test.ci95 is None
            else (round(test.ci95[0], 1), round(test.ci95[1], 1)),
            rating_mean_abs_change=_rounded(drift.mean_abs_change) if drift else None,
        )
        for run_id, test, drift in tests
    ]
    return ReportMessage.fitting(ranked, limit).to_text()
