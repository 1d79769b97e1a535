"""Expansion of a QuantEval into runs (model x precision x engine): ids, content hashes, run
specs."""

import hashlib
import json
from dataclasses import dataclass

from quanteval.api.layout import run_dir, under
from quanteval.api.runspec import EvaluationRef, RunSpec
from quanteval.api.spec import ModelSpec, QuantEval, QuantEvalSpec
from quanteval.engines import DEFAULT_ENGINES, Engine, replicate_id
from quanteval.engines import run_id as engine_run_id
from quanteval.intensity import intensity_run
from quanteval.precisions import Precision
from quanteval.prompts import PAPER_PROMPTS_BEFORE_THE_SPACE, chat_message

LOCAL_UID = "local"


@dataclass(frozen=True)
class Run:
    id: str
    model: ModelSpec
    precision: Precision
    baseline: Precision
    content_hash: str
    engine: Engine = Engine.AUTO
    replicate: int = 1  # spec.replicates: the first is the run, the others repeat it

    @property
    def is_baseline(self) -> bool:
        return self.precision == self.baseline and self.model.baseline_model is None

    @property
    def is_repeat(self) -> bool:
        """A replicate after the first: it measures run-to-run spread, and is compared with
        nothing (its run's first replicate is)."""
        return self.replicate > 1


def run_id(model: ModelSpec, precision: Precision, engine: Engine = Engine.AUTO) -> str:
    """`<model>-<precision>[-<engine>]`: a DNS-1123 label (validation refuses one over 63)."""
    return engine_run_id(model.name, precision, engine)


def content_hash(
    spec: QuantEvalSpec,
    model: ModelSpec,
    precision: Precision,
    engine: Engine = Engine.AUTO,
    replicate: int = 1,
    legacy: bool = False,
) -> str:
    """A hash of everything that determines a run's result, so an unchanged run can be skipped.

    The model's short name and the batch size are left out: neither changes what is generated.
    The engine enters only when named (auto's runs keep the hashes they had before engines), the
    replicate only after the first; raw prompts' special tokens only on a raw run (schema 3),
    whose input they change (`legacy`: the hash a run had before, schema 2 for every run).
    """
    material: dict[str, object] = {
        "schema": 2,  # 2: raw prompts, no model generation defaults, EOS not counted
        "source": model.source,
        "revision": model.revision,
        "precision": precision.value,
        "emotions": list(spec.emotion_names),
        "prompts": _hashed_prompts(spec, legacy),
        "generation": spec.generation.model_dump(
            mode="json", exclude={"batch_size", "preset", "add_special_tokens"}
        ),
        # scoreText only where it is not the default: the hashes of before hold.
        "classifier": spec.classifier.model_dump(
            mode="json",
            exclude={"score_text"} if spec.classifier.score_text == "continuation" else set(),
        ),
    }
    if spec.tasks != ["generation"]:  # only then: the hashes of earlier evaluations hold
        material["tasks"] = list(spec.tasks)
        # method only where it is not greedy (the default, expected, included: its ratings are
        # others than the greedy default's of before, so the hash must change), so runs that
        # kept greedy keep their hashes.
        method = {"method"} if spec.intensity.method == "greedy" else set()
        material["intensity"] = spec.intensity.model_dump(mode="json", exclude=method)
    if engine != Engine.AUTO:
        material["engine"] = engine.value
    if replicate > 1:
        material["replicate"] = replicate
    if spec.generation.prompt_format == "raw" and not legacy:
        material["schema"] = 3  # 3: raw prompts' special tokens as set (the paper preset: none)
        material["addSpecialTokens"] = spec.generation.special_tokens
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _hashed_prompts(spec: QuantEvalSpec, legacy: bool) -> list[str]:
    """The prompts as the model receives them: a chat message without surrounding whitespace
    (the paper set's prompt 4 lost its trailing space there, so chat runs keep their hashes);
    `legacy`: the paper set as it was before that space."""
    if legacy and spec.prompts is None:
        return list(PAPER_PROMPTS_BEFORE_THE_SPACE)
    if spec.generation.prompt_format == "chat":
        return [chat_message(t) for t in spec.prompt_templates]
    return list(spec.prompt_templates)


def expand(spec: QuantEvalSpec) -> list[Run]:
    """One run per model, each of its precisions, each of its engines and each replicate, in
    the spec's order (a run's replicates together)."""
    baseline = spec.baseline_precision
    return [
        Run(
            id=replicate_id(run_id(model, precision, engine), replicate),
            model=model,
            precision=precision,
            baseline=baseline,
            content_hash=content_hash(spec, model, precision, engine, replicate),
            engine=engine,
            replicate=replicate,
        )
        for model in spec.models
        for precision in spec.precisions_of(model)
        for engine in spec.engines_of(model)
        for replicate in range(1, spec.replicates + 1)
    ]


def legacy_hash(spec: QuantEvalSpec, run: Run) -> str:
    """The hash `run` had before raw prompts' special tokens entered it (schema 2) and the paper
    set's prompt 4 had its trailing space: a Job an older operator started under it is this run,
    not a changed spec."""
    return content_hash(spec, run.model, run.precision, run.engine, run.replicate, legacy=True)


def replicate_seed(seed: int, replicate: int) -> int:
    """The base seed of a run's replicate: the spec's for the first, one derived from it and
    the replicate's number for the others (every sample's seed derives from the base)."""
    if replicate == 1:
        return seed
    digest = hashlib.sha256(f"{seed}/replicate/{replicate}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1  # within the spec's 0..2**31 - 1


def expect_arg(run: Run, reason: str = "") -> str:
    """The report's `--expect` value for a run:
    `<run id>=<model>/<precision>/<engine>[/r<replicate>][:reason]` (the replicate after the
    first; quanteval.report.data.ExpectedRun.from_arg reads it): no id is parsed back."""
    arg = f"{run.id}={run.model.name}/{run.precision}/{run.engine}"
    if run.is_repeat:
        arg += f"/r{run.replicate}"
    return f"{arg}:{reason}" if reason else arg


def comparison_count(runs: list[Run]) -> int:
    """The comparisons an evaluation's runs make, one multiplicity family: each run that is not
    a baseline against its baseline, and each named engine's baseline run against the default
    engine's of the same model (the engine effect)."""
    runs = [r for r in runs if not r.is_repeat]
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
        generation=spec.generation.model_copy(
            update={"seed": replicate_seed(spec.generation.seed, run.replicate)}
        ),
        replicate=run.replicate,
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
