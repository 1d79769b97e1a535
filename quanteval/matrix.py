"""Expansion of a QuantEval into runs (model x precision x engine): ids, content hashes, run
specs."""

import hashlib
import json
from dataclasses import dataclass

from quanteval.api.layout import run_dir, under
from quanteval.api.runspec import EvaluationRef, RunSpec
from quanteval.api.spec import ModelSpec, QuantEval, QuantEvalSpec
from quanteval.engines import DEFAULT_ENGINES, Engine
from quanteval.engines import run_id as engine_run_id
from quanteval.intensity import intensity_run
from quanteval.precisions import Precision

LOCAL_UID = "local"


@dataclass(frozen=True)
class Run:
    id: str
    model: ModelSpec
    precision: Precision
    baseline: Precision
    content_hash: str
    engine: Engine = Engine.AUTO

    @property
    def is_baseline(self) -> bool:
        return self.precision == self.baseline and self.model.baseline_model is None


def run_id(model: ModelSpec, precision: Precision, engine: Engine = Engine.AUTO) -> str:
    """`<model>-<precision>[-<engine>]`: a DNS-1123 label (validation refuses one over 63)."""
    return engine_run_id(model.name, precision, engine)


def content_hash(
    spec: QuantEvalSpec, model: ModelSpec, precision: Precision, engine: Engine = Engine.AUTO
) -> str:
    """A hash of everything that determines a run's result, so an unchanged run can be skipped.

    The model's short name and the batch size are left out: neither changes what is generated.
    The engine enters only when named (auto's runs keep the hashes they had before engines).
    """
    material = {
        "schema": 2,  # 2: raw prompts, no model generation defaults, EOS not counted
        "source": model.source,
        "revision": model.revision,
        "precision": precision.value,
        "emotions": list(spec.emotion_names),
        "prompts": list(spec.prompt_templates),
        "generation": spec.generation.model_dump(mode="json", exclude={"batch_size", "preset"}),
        "classifier": spec.classifier.model_dump(mode="json"),
    }
    if spec.tasks != ["generation"]:  # only then: the hashes of earlier evaluations hold
        material["tasks"] = list(spec.tasks)
        material["intensity"] = spec.intensity.model_dump(mode="json")
    if engine != Engine.AUTO:
        material["engine"] = engine.value
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def expand(spec: QuantEvalSpec) -> list[Run]:
    """One run per model, each of its precisions and each of its engines, in the spec's order."""
    baseline = spec.baseline_precision
    return [
        Run(
            id=run_id(model, precision, engine),
            model=model,
            precision=precision,
            baseline=baseline,
            content_hash=content_hash(spec, model, precision, engine),
            engine=engine,
        )
        for model in spec.models
        for precision in spec.precisions_of(model)
        for engine in spec.engines_of(model)
    ]


def expect_arg(run: Run, reason: str = "") -> str:
    """The report's `--expect` value for a run: `<run id>=<model>/<precision>/<engine>[:reason]`
    (quanteval.report.data.ExpectedRun.from_arg reads it): no id is parsed back."""
    arg = f"{run.id}={run.model.name}/{run.precision}/{run.engine}"
    return f"{arg}:{reason}" if reason else arg


def comparison_count(runs: list[Run]) -> int:
    """The comparisons an evaluation's runs make, one multiplicity family: each run that is not
    a baseline against its baseline, and each named engine's baseline run against the default
    engine's of the same model (the engine effect)."""
    defaults = {r.model.name for r in runs if r.is_baseline and r.engine in DEFAULT_ENGINES}
    effects = sum(
        r.is_baseline and r.engine not in DEFAULT_ENGINES and r.model.name in defaults for r in runs
    )
    return sum(not r.is_baseline for r in runs) + effects


def evaluation_ref(manifest: QuantEval) -> EvaluationRef:
    meta = manifest.metadata
    return EvaluationRef(name=meta.name, namespace=meta.namespace, uid=meta.uid or LOCAL_UID)


def s3_evaluation_root(manifest: QuantEval) -> str:
    """s3://<bucket>/<prefix>/<namespace>/<eval>-<uid>: where the runs and the report go."""
    s3 = manifest.spec.output.s3
    if s3 is None:
        raise ValueError("spec.output.s3 is not set")
    ref = evaluation_ref(manifest)
    parts = [p for p in (s3.prefix.strip("/"), ref.namespace, f"{ref.name}-{ref.uid}") if p]
    return f"s3://{s3.bucket}/{'/'.join(parts)}"


def run_output_uri(evaluation_root: str, run: Run) -> str:
    return under(evaluation_root, run_dir(run.id))


def build_run_spec(manifest: QuantEval, run: Run, evaluation_root: str) -> RunSpec:
    spec = manifest.spec
    s3 = spec.output.s3
    return RunSpec(
        evaluation=evaluation_ref(manifest),
        run_id=run.id,
        model=run.model,
        precision=run.precision,
        engine=run.engine,
        baseline=run.baseline,
        emotions=list(spec.emotion_names),
        prompts=list(spec.prompt_templates),
        generation=spec.generation,
        classifier=spec.classifier,
        intensity=(
            intensity_run(spec.intensity, spec.emotion_names) if "intensity" in spec.tasks else None
        ),
        vllm=spec.vllm,
        output_uri=run_output_uri(evaluation_root, run),
        s3_endpoint=s3.endpoint if s3 else "",
        s3_region=s3.region if s3 else "",
        gpu_memory_gib=spec.resources.gpu_memory_gib,
        allow_bf16_emulation=spec.resources.allow_bf16_emulation,
        cost=spec.cost,
        content_hash=run.content_hash,
    )
