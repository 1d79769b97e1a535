"""The report Job's termination message: each comparison's paired verdict, for the status.

The operator has no S3 access; it reads the report pod's termination message (the kubelet keeps
4096 bytes of it) and copies these into `status.summary.comparisons[]`. Most important first:
significant differences (the largest first), then the rest; where they do not all fit, as many
as fit and `truncated: true`.
"""

import json
from typing import Any, Final

from quanteval.report.schema import Report
from quanteval.results import TERMINATION_MESSAGE_LIMIT

REPORT_MESSAGE_KIND: Final = "report"
_RANK = {"significantly worse": 0, "significantly better": 1, "no detectable difference": 2}


def _entry(run_id: str, delta: float | None, ci: tuple[float, float] | None, verdict: str) -> Any:
    entry: dict[str, Any] = {"id": run_id, "verdict": verdict}
    if delta is not None:
        entry["f1DeltaPp"] = round(delta, 1)
    if ci is not None:
        entry["f1DeltaCi95"] = [round(ci[0], 1), round(ci[1], 1)]
    return entry


def report_termination_message(report: Report, limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """Compact JSON: {kind, state, comparisons: [{id, f1DeltaPp, f1DeltaCi95, verdict}], ...}."""
    tests = [
        (run.run_id, run.vs_baseline.paired)
        for run in report.runs
        if run.vs_baseline is not None and run.vs_baseline.paired is not None
    ]
    tests.sort(key=lambda t: (_RANK.get(t[1].verdict, 3), -abs(t[1].delta_f1_pp or 0.0), t[0]))
    entries = [_entry(i, t.delta_f1_pp, t.ci95, t.verdict) for i, t in tests]
    payload: dict[str, Any] = {"kind": REPORT_MESSAGE_KIND, "state": "Succeeded"}
    kept: list[Any] = []
    for entry in entries:
        trial = payload | {"comparisons": [*kept, entry], "truncated": True}
        if len(json.dumps(trial, separators=(",", ":")).encode()) > limit:
            break
        kept.append(entry)
    payload["comparisons"] = kept
    if len(kept) < len(entries):
        payload["truncated"] = True
    return json.dumps(payload, separators=(",", ":"))
