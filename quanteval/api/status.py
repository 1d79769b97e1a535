"""The QuantEval's status, as the operator writes it and `kubectl get -o yaml` shows it; the
CRD's status schema is generated from these models (quanteval.crd). The operator checks every
status it writes against them (`EvaluationStatus.checked`), so a field it misspells fails its
tests instead of being pruned by the API server."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from quanteval.api.states import RunState

DateTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


class _Status(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)


class Condition(_Status):
    """Kubernetes' condition convention; one per type (a list-map keyed by type)."""

    type: str = Field(description="a quanteval.api.states.ConditionType")
    status: Literal["True", "False", "Unknown"]
    reason: str | None = Field(None, description="a quanteval.api.states.Reason")
    message: str | None = None
    last_transition_time: DateTime | None = None
    observed_generation: int | None = None


class RunStatus(_Status):
    """One run (a model at a precision, on an engine): its state, attempts, why, and headline
    metrics."""

    id: str = Field(description="<model>-<precision>[-<engine>]")
    state: RunState
    attempts: int | None = None
    reason: str | None = None
    device: str | None = Field(
        None,
        description="where the run computes, in place of its GPUs, where that is not a GPU: "
        "'CPU: llama.cpp' (a GGUF file at native; the worker's llama.cpp has no CUDA, so its Job "
        "asks for no GPU unless spec.resources.gpus names a number)",
    )
    metrics: dict[str, int | float] | None = Field(
        None, description="a few rounded figures from the run's termination message"
    )


class ComparisonStatus(_Status):
    """A run against its model's baseline precision (or its baselineModel's baseline run) on
    its engine; or a named engine's baseline run against the default engine's (engineEffect)."""

    id: str
    against: str | None = Field(
        None,
        description="the run compared with, where it is another model's (baselineModel) or "
        "another engine's",
    )
    engine_effect: bool | None = Field(
        None, description="true: the same model and precision on the default engine, compared"
    )
    memory_saving_pct: float | None = None
    f1_delta_pp: float | None = Field(
        None, description="paired over samples once the report is written, else unpaired"
    )
    f1_delta_ci95: list[float] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="the paired 95% interval for prompts like these (template level), from the "
        "report",
    )
    f1_delta_ci: list[float] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description="the same interval at 1 - 0.05/familySize, the one the verdict is read from",
    )
    family_size: int | None = Field(
        None, description="the evaluation's comparisons, tested together (Bonferroni, Holm)"
    )
    verdict: str | None = Field(None, description="the paired verdict, from the report")
    rating_mean_abs_change: float | None = Field(
        None, description="intensity task: mean absolute rating change in points, from the report"
    )
    time_ratio: float | None = None
    dollar_ratio: float | None = None


class SummaryStatus(_Status):
    baseline: str | None = None
    best_run: str | None = None
    report_uri: str | None = None
    comparisons: list[ComparisonStatus] | None = None
    verdicts_truncated: bool | None = Field(
        None, description="the report had more verdicts than its termination message holds"
    )


class EvaluationStatus(_Status):
    observed_generation: int | None = None
    conditions: list[Condition] | None = None
    progress: str | None = Field(None, description="finished runs / runs")
    start_time: DateTime | None = None
    completion_time: DateTime | None = None
    runs: list[RunStatus] | None = None
    summary: SummaryStatus | None = None
    emotions: list[str] | None = Field(
        None,
        description="the emotions as the operator first resolved spec.emotions: they may not "
        "change after (the schema cannot hold spec.emotions immutable: it is untyped)",
    )

    @classmethod
    def checked(cls, status: dict[str, Any]) -> dict[str, Any]:
        """`status` as JSON would carry it, once it is known to be one (ValidationError if not)."""
        model = cls.model_validate(status)
        dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
        return dumped
