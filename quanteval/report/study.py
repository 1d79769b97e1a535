"""The study's own headline figures (arXiv 2501.19317), checked on this evaluation's data.

For each model with an int8 run and an fp32 run (the study's 8 and 32 bits):
- memory: "8 bit saved 76% memory": the weights and peak savings, measured (no spread to test);
- time: "roughly doubled inference time": the paired per-sample latency ratio's interval against
  1.5-2.5 (inside: supported; disjoint: contradicted; else not settled by this data);
- quality: "cost large models up to 10 F1 points, helped small ones": the paired ΔF1 interval
  against -10..+10 points (inside: supported, the change is within the study's range; disjoint:
  contradicted; else not settled), with its direction.
"""

from collections.abc import Sequence
from typing import Final

from quanteval.fmt import interval
from quanteval.precisions import Precision
from quanteval.report.claim import CONTRADICTED, SUPPORTED, UNSETTLED
from quanteval.report.schema import RunReport, StudyClaim

STUDY_MEMORY_SAVING_PCT: Final = 76.0
ROUGHLY_DOUBLE: Final = (1.5, 2.5)
WITHIN_POINTS: Final = 10.0


def _against(ci: tuple[float, float] | None, low: float, high: float) -> str:
    if ci is None:
        return UNSETTLED
    if low <= ci[0] and ci[1] <= high:
        return SUPPORTED
    if ci[1] < low or ci[0] > high:
        return CONTRADICTED
    return UNSETTLED


def study_claims(runs: Sequence[RunReport]) -> tuple[StudyClaim, ...]:
    """One memory, one time and one quality check per model with int8 against fp32."""
    claims = []
    for run in runs:
        c = run.vs_baseline
        if run.precision != Precision.INT8 or c is None or run.baseline != Precision.FP32:
            continue
        t = c.paired
        saving = c.weights_saving_pct
        claims.append(
            StudyClaim(
                run_id=run.run_id,
                claim="8 bit saves 76% of the memory",
                measured=(
                    f"weights saving {saving:.1f}%, peak saving {c.memory_saving_pct:.1f}%"
                    if saving is not None and c.memory_saving_pct is not None
                    else "not measured"
                ),
                outcome="measured (no spread to test)",
            )
        )
        ratio = t.latency_ratio if t else None
        claims.append(
            StudyClaim(
                run_id=run.run_id,
                claim="8 bit roughly doubles inference time (read: 1.5-2.5x)",
                measured=f"per-sample latency x{ratio:.2f} "
                f"{interval(t.latency_ratio_ci95 if t else None, '.2f')}"
                if ratio is not None
                else "-",
                ci95=t.latency_ratio_ci95 if t else None,
                outcome=_against(t.latency_ratio_ci95 if t else None, *ROUGHLY_DOUBLE),
            )
        )
        delta = t.delta_f1_pp if t else None
        claims.append(
            StudyClaim(
                run_id=run.run_id,
                claim="8 bit moves macro-F1 by at most 10 points",
                measured=f"ΔF1 {delta:+.1f} points {interval(t.ci95 if t else None, '.1f', True)}"
                if delta is not None
                else "-",
                ci95=t.ci95 if t else None,
                outcome=_against(t.ci95 if t else None, -WITHIN_POINTS, WITHIN_POINTS),
            )
        )
    return tuple(claims)
