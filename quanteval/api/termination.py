"""The termination messages: what a pod leaves for the operator, which has no S3 access.

The kubelet keeps at most 4096 bytes of a termination message (beyond that the JSON would
break), so both are compact JSON: the worker's (`RunMessage`: the run's state, reason and rounded
headline metrics) and the report Job's (`ReportMessage`: each comparison's paired verdict).
"""

import json
from typing import Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from quanteval.api.result import IntensityFigures, RunMetrics
from quanteval.api.states import RunState

TERMINATION_MESSAGE_LIMIT: Final = 4096
# Where a process writes its message: the container's terminationMessagePath unless the variable
# says otherwise (a local run, the dev cluster's node agent).
TERMINATION_LOG_ENV: Final = "QUANTEVAL_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG: Final = "/dev/termination-log"
_TRUNCATED: Final = " [truncated]"


class _Message(BaseModel):
    model_config = ConfigDict(populate_by_name=True, alias_generator=to_camel)

    def to_text(self) -> str:
        payload = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return json.dumps(payload, separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> Self | None:
        """The message in `text`; None when it is not one (a crash's last words, say)."""
        try:
            return cls.model_validate_json(text)
        except ValidationError:
            return None


class RunMessage(_Message):
    """The worker's: `{runId, state, reason?, metrics?, message?}`."""

    run_id: str = ""
    state: RunState
    reason: str | None = None  # a quanteval.api.states.Reason, or an error type's reason
    metrics: dict[str, float | int | None] | None = None  # RunMetrics' names, rounded
    message: str | None = None

    def to_text(self) -> str:
        """Under TERMINATION_MESSAGE_LIMIT bytes: the message shortened where it must be."""
        text = super().to_text()
        size = len(text.encode())
        if size <= TERMINATION_MESSAGE_LIMIT or not self.message:
            return text
        message = self.message.encode()
        # JSON may escape a cut character into more bytes: keep a margin.
        keep = max(0, len(message) - (size - TERMINATION_MESSAGE_LIMIT) - len(_TRUNCATED) - 16)
        shorter = message[:keep].decode(errors="ignore") + _TRUNCATED
        return self.model_copy(update={"message": shorter}).to_text()


class Verdict(_Message):
    """One comparison of the report: its run id, paired ΔF1 (points), its template-level
    intervals at 95% and at the family's level (the one its verdict is read from), the verdict;
    with the intensity task, the mean absolute rating change against the baseline (points)."""

    id: str
    verdict: str
    f1_delta_pp: float | None = None
    f1_delta_ci95: tuple[float, float] | None = None  # template level, 95%
    f1_delta_ci: tuple[float, float] | None = None  # template level, at 1 - 0.05/familySize
    family_size: int | None = None
    rating_mean_abs_change: float | None = None
    against: str | None = None  # the run it was compared with


class ReportMessage(_Message):
    """The report Job's: `{kind: "report", state, comparisons: [...], truncated?}`."""

    kind: Literal["report"] = "report"
    state: RunState = RunState.SUCCEEDED
    comparisons: list[Verdict]
    truncated: bool | None = None  # True where not all comparisons fit

    @classmethod
    def fitting(cls, ranked: list[Verdict], limit: int = TERMINATION_MESSAGE_LIMIT) -> Self:
        """As many of `ranked` (most important first) as fit in `limit` bytes."""
        kept: list[Verdict] = []
        for verdict in ranked:
            trial = cls(comparisons=[*kept, verdict], truncated=True)
            if len(trial.to_text().encode()) > limit:
                break
            kept.append(verdict)
        return cls(comparisons=kept, truncated=True if len(kept) < len(ranked) else None)

    def verdicts(self) -> dict[str, dict[str, Any]]:
        """By run id, the status fields the operator copies (f1DeltaPp, f1DeltaCi95, f1DeltaCi,
        familySize, verdict, ratingMeanAbsChange)."""
        return {
            v.id: v.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"id"})
            for v in self.comparisons
        }


def intensity_metrics(figures: IntensityFigures) -> dict[str, float | None]:
    """The intensity task's headline figures under their status names (rating*: the model's
    0-100 ratings, apart from the classifier-probability `intensity` of the generation task)."""
    return {
        "ratingParseFailureRate": figures.parse_failure_rate,
        "ratingSpearmanRho": figures.spearman_rho,
        "ratingsPerSecond": figures.ratings_per_second,
        "dollarsPer1kRatings": figures.dollars_per_1k_ratings,
    }


def run_message(
    run_id: str,
    state: RunState,
    metrics: RunMetrics | None = None,
    reason: str = "",
    message: str = "",
    intensity: IntensityFigures | None = None,
) -> RunMessage:
    """The worker's message, with the run's headline metrics (and the intensity task's, where it
    ran) rounded to 6 significant digits (a price per 1,000 ratings may be $0.0001)."""
    rounded = None
    if metrics is not None:
        values: dict[str, float | int | None] = metrics.model_dump(by_alias=True)
        if intensity is not None:
            values |= intensity_metrics(intensity)
        rounded = {k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in values.items()}
    return RunMessage(
        run_id=run_id, state=state, reason=reason or None, metrics=rounded, message=message or None
    )
