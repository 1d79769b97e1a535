"""The QuantEval resource (quanteval.io/v1alpha1) as pydantic models, and manifest loading.

Field names are the resource's camelCase names; Python code uses snake_case attributes. The CRD's
OpenAPI schema is checked against these models by a test: one source of truth for both.
"""

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel, to_snake

from quanteval import API_GROUP, API_VERSION, KIND
from quanteval.api.errors import InvalidSpecError
from quanteval.emotions import ALL_BUILTIN_EMOTIONS, resolve_emotions
from quanteval.engines import Engine, baseline_engines, refusal, replicate_id, run_id
from quanteval.precisions import Precision, default_baseline
from quanteval.prompts import BUILTIN_PROMPT_SETS, PLACEHOLDER

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# Job names are <eval, cut>-<model, cut>-<precision>-<hash>: these bounds keep run ids readable.
MAX_EVAL_NAME = 52
MAX_MODEL_NAME = 40
# Runs an evaluation holds: 64 models x 13 precisions, the largest matrix before engines; its
# status (a line a run) then stays under 512 KiB (tests/unit/test_status.py).
MAX_RUNS = 832
MAX_REPLICATES = 10
EMOTION_NAME = r"^[a-z][a-z_-]{0,31}$"
# Label values, emotion names: what maps hold.
ShortString = Annotated[str, Field(max_length=63)]
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti|P|Pi|E|Ei)?$"
# An image reference: [registry[:port]/]path[:tag][@sha256:digest] (the chart checks the same).
_HOST = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*(:[0-9]+)?/"
_PATH_PART = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
IMAGE_REFERENCE = (
    f"^({_HOST})?{_PATH_PART}(/{_PATH_PART})*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        frozen=True,
        use_attribute_docstrings=True,
    )


class ModelSpec(_Model):
    """A model under evaluation: a short name and where its weights come from."""

    name: Annotated[str, Field(min_length=1, max_length=MAX_MODEL_NAME, pattern=DNS1123_LABEL)]
    """Short name of the model: a DNS-1123 label of at most 40 characters, part of run ids and Job
    names.
    """
    source: Annotated[str, Field(min_length=1, max_length=512)]
    """Where the weights come from: a Hugging Face hub id, a local folder, an s3:// prefix, a .gguf
    file, or package:NAME for a model an installed Python package ships.
    """
    revision: Annotated[str | None, Field(max_length=128)] = None
    """Hub revision (branch, tag or commit) to pin for reproducibility."""
    parameters: Annotated[float | None, Field(gt=0, le=1e13)] = None
    """Parameter count, for GPU sizing (gpus: auto) without inspecting the model."""
    precisions: Annotated[
        list[Precision] | None, Field(min_length=1, max_length=len(Precision))
    ] = None
    """This model's precisions, instead of spec.precisions (a pre-quantized checkpoint: native)."""
    engines: Annotated[list[Engine] | None, Field(min_length=1, max_length=len(Engine))] = None
    """This model's engines, instead of spec.engines (a GGUF file: llama.cpp)."""
    baseline_model: Annotated[str | None, Field(max_length=MAX_MODEL_NAME)] = None
    """Name of another entry of models that this one is a quantization of: its runs compare
    against that entry's baseline run, as a precision of the same model would (a GPTQ checkpoint
    at native against the original at fp16).
    """

    @field_validator("precisions", "engines")
    @classmethod
    def _unique(cls, value: list[Any] | None, info: ValidationInfo) -> list[Any] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"each {str(info.field_name).removesuffix('s')} may appear once")
        return value


PRESETS: dict[str, dict[str, Any]] = {
    # The study's method: a transformers text-generation pipeline called on the bare prompt (no
    # chat template) with top-k 10, top-p 0.9, temperature 0.9 and max_length=100, which counts the
    # prompt as its tokenizer encodes it; no other cap on new tokens; one sample per prompt.
    "paper": {
        "promptFormat": "raw",
        # transformers 4.28's TextGenerationPipeline tokenized with add_special_tokens=False (no
        # BOS); it changed only with transformers PR #31747 (July 2024), after the study's runs.
        "addSpecialTokens": False,
        "doSample": True,
        "temperature": 0.9,
        "topK": 10,
        "topP": 0.9,
        "samplesPerPrompt": 1,
        "maxLength": 100,
        "maxNewTokens": None,
    },
    "greedy": {
        "promptFormat": "chat",
        "doSample": False,
        "temperature": 1.0,
        "topK": 0,
        "topP": 1.0,
        "samplesPerPrompt": 1,
        "maxLength": None,
        "maxNewTokens": 64,
    },
}

PromptFormat = Literal["chat", "raw"]


class GenerationSpec(_Model):
    """Generation settings; a preset fills every field the spec leaves out."""

    preset: Literal["paper", "greedy"] = "paper"
    """Settings the other fields default to: paper (the study's method: the bare prompt, sampling
    with top-k 10, top-p 0.9, temperature 0.9, maxLength 100) or greedy (chat template, greedy
    decoding, 64 new tokens).
    """
    prompt_format: PromptFormat = "raw"
    """chat: the prompt goes through the model's chat template as a user message; raw: the bare
    prompt, as the study's text-generation pipeline received it. Default: the preset's (paper:
    raw, greedy: chat).
    """
    add_special_tokens: bool | None = None
    """promptFormat raw only: whether the tokenizer adds its own special tokens (BOS for Llama
    and Mistral). The paper preset: false, as the study's pipeline tokenized (transformers
    4.28); otherwise true. A chat template holds its own: true with chat is refused.
    """
    max_new_tokens: Annotated[int | None, Field(ge=1, le=4096)] = None
    """At most this many new tokens per sample (end of sequence not counted); null: only maxLength
    limits them.
    """
    max_length: Annotated[int | None, Field(ge=2, le=32768)] = 100
    """At most this many tokens per sample counting the prompt as the model receives it (after the
    chat template with promptFormat chat), as the study counted; null: only maxNewTokens limits
    them.
    """
    temperature: Annotated[float, Field(gt=0, le=10)] = 0.9
    """Sampling temperature."""
    top_k: Annotated[int, Field(ge=0, le=100000)] = 10
    """Keep the k most likely tokens when sampling; 0 keeps all."""
    top_p: Annotated[float, Field(gt=0, le=1)] = 0.9
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p."""
    do_sample: bool = True
    """Sample (true) or decode greedily (false)."""
    samples_per_prompt: Annotated[int, Field(ge=1, le=100)] = 1
    """Generations per prompt and emotion, each with a seed of its own."""
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 1234
    """Base seed; each sample's seed derives from it, its prompt, emotion and index."""
    batch_size: Annotated[int, Field(ge=1, le=4096)] | Literal["auto", "continuous"] = "auto"
    """Prompts per batch, or auto (fits the device; halves on out-of-memory), or continuous
    (vllm only: every sample submitted at once, scheduled as a server schedules them,
    vllm.maxNumSeqs at a time).
    """

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        preset = data.get("preset", "paper")
        if preset not in PRESETS:
            return data  # the Literal check reports it with the field's name
        merged = dict(data)
        for key, value in PRESETS[preset].items():
            if key not in data and to_snake(key) not in data:
                merged[key] = value
        chat = merged.get("promptFormat", merged.get("prompt_format")) == "chat"
        if chat and "addSpecialTokens" not in data and "add_special_tokens" not in data:
            merged.pop("addSpecialTokens", None)  # the preset's is for raw prompts only
        return merged

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if self.max_new_tokens is None and self.max_length is None:
            raise ValueError(
                "maxNewTokens: set maxNewTokens or maxLength; generation needs a bound"
            )
        if self.prompt_format == "chat" and self.add_special_tokens is not None:
            raise ValueError(
                "addSpecialTokens: applies to promptFormat raw; a chat template holds its own "
                "special tokens (remove addSpecialTokens, or use promptFormat raw)"
            )
        return self

    @property
    def special_tokens(self) -> bool:
        """Whether the tokenizer adds its special tokens to a prompt: raw's setting (true where
        unset), never on chat (the template holds them)."""
        if self.prompt_format == "chat":
            return False
        return self.add_special_tokens is not False


class VllmSpec(_Model):
    """The vLLM engine's settings. Its KV-cache budget is most of its memory (2.3-2.6 GiB of a
    135M model's process at 1 GiB), so it is fixed here and recorded beside every memory figure
    of a vllm run; none of these change what is generated (not in any content hash)."""

    kv_cache_gib: Annotated[int, Field(ge=1, le=4096)] = 1
    """KV-cache space on a CPU, in whole GiB (VLLM_CPU_KVCACHE_SPACE)."""
    gpu_memory_utilization: Annotated[float, Field(gt=0, le=1)] = 0.9
    """Share of the GPU's memory vLLM may take for weights, activations and KV cache."""
    max_model_len: Annotated[int, Field(ge=16, le=1_048_576)] = 2048
    """Longest sequence (prompt and new tokens) vLLM schedules."""
    max_num_seqs: Annotated[int | None, Field(ge=1, le=4096)] = None
    """Sequences vLLM runs at once; default: the batch size."""
    enforce_eager: bool = True
    """Run eagerly (no torch.compile or CUDA graphs): a much shorter engine start, slower steps;
    result.json records the start's seconds."""


class ClassifierSpec(_Model):
    """The emotion classifier: the embedded offline one, or any sequence-classification model."""

    builtin: Literal["minilm"] | None = None
    """The embedded offline classifier (MiniLM embeddings and a head trained on our sentences)."""
    source: Annotated[str | None, Field(min_length=1, max_length=512)] = None
    """A Hugging Face sequence-classification model: hub id, folder, s3:// prefix or package:NAME.
    """
    revision: Annotated[str | None, Field(max_length=128)] = None
    """Hub revision of the classifier."""
    # Classifier label -> emotion name, for labels that are not spelled as the emotion.
    label_map: Annotated[dict[str, ShortString], Field(max_length=64)] = Field(default_factory=dict)
    """Classifier label -> emotion name, for labels not spelled as the emotion."""
    score_text: Literal["continuation", "promptAndContinuation"] = "continuation"
    """What the classifier reads of each generation: the continuation (default: the model's own
    text), or the prompt followed by it, as the study's pipeline returned and classified it
    (every prompt names its emotion, so that text credits the prompt for the model's answer).
    """
    accept_missing_emotions: bool = False
    """Run even when the classifier can never predict some requested emotions (their F1 is 0, so
    macro-F1 is capped; the result and the report say at what). Default: such a run fails before
    the model loads, naming the labels.
    """

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.builtin is None) == (self.source is None):
            raise ValueError("set exactly one of classifier.builtin and classifier.source")
        if self.builtin is not None and self.label_map:
            raise ValueError("classifier.labelMap applies to a classifier.source only")
        return self


class SecretKeyRef(_Model):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of a Secret in the QuantEval's namespace."""
    key: Annotated[str, Field(min_length=1, max_length=253)] = "token"
    """Key within the Secret."""


class S3SecretRef(_Model):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of a Secret in the QuantEval's namespace holding S3 credentials."""
    access_key_id_key: Annotated[str, Field(min_length=1, max_length=253)] = "AWS_ACCESS_KEY_ID"
    """Key of the access key id in the Secret."""
    secret_access_key_key: Annotated[str, Field(min_length=1, max_length=253)] = (
        "AWS_SECRET_ACCESS_KEY"
    )
    """Key of the secret access key in the Secret."""


class S3OutputSpec(_Model):
    bucket: Annotated[str, Field(min_length=3, max_length=63, pattern=r"^[a-z0-9][a-z0-9.-]+$")]
    """Bucket for results and the report."""
    prefix: Annotated[str, Field(max_length=256, pattern=r"^[A-Za-z0-9!_.*'()/-]*$")] = "quanteval"
    """Key prefix; results go under <prefix>/<namespace>/<name>-<uid>/."""
    endpoint: Annotated[str, Field(max_length=512)] = ""
    """S3 endpoint URL (MinIO, Ceph, ...); empty: AWS."""
    region: Annotated[str, Field(max_length=64)] = ""
    """S3 region."""
    secret_ref: S3SecretRef | None = None
    """Secret with the credentials, passed to the workers as environment references only."""
    retry_budget_seconds: Annotated[int, Field(ge=0, le=86400)] | None = None
    """How long the store may be unreachable before a run (or the report) fails with exit 6:
    operations wait with backoff meanwhile, and a worker's finished work waits on its disk.
    Default: the operator's setting (600 unless its Helm chart sets another)."""


class OutputSpec(_Model):
    s3: S3OutputSpec | None = None
    """Where results go; fields left out take the operator's defaults."""


class Toleration(_Model):
    key: Annotated[str | None, Field(max_length=253)] = None
    """Taint key."""
    operator: Literal["Exists", "Equal"] | None = None
    """Exists or Equal."""
    value: Annotated[str | None, Field(max_length=253)] = None
    """Taint value."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect."""
    toleration_seconds: int | None = None
    """How long a NoExecute taint is tolerated."""


class ResourcesSpec(_Model):
    gpus: Annotated[int, Field(ge=0, le=64)] | Literal["auto"] = "auto"
    """GPUs per run, or auto: from models[].parameters and the precision against gpuMemoryGiB
    (unknown size: 1 GPU and a condition).
    """
    gpu_resource_name: Annotated[str | None, Field(min_length=1, max_length=253)] = None
    """Extended resource name of a GPU (default: the operator's setting, nvidia.com/gpu)."""
    gpu_memory_gib: Annotated[float | None, Field(gt=0, le=4096, alias="gpuMemoryGiB")] = None
    """Memory of one GPU in GiB, for gpus: auto (default: the operator's setting)."""
    node_selector: Annotated[dict[str, ShortString], Field(max_length=32)] = Field(
        default_factory=dict
    )
    """Node selector of the worker pods."""
    tolerations: Annotated[list[Toleration], Field(max_length=32)] = Field(default_factory=list)
    """Tolerations of the worker pods."""
    priority_class_name: Annotated[str, Field(max_length=253)] = ""
    """Priority class of the worker pods."""
    memory: Annotated[str, Field(max_length=32, pattern=f"({QUANTITY})|^$")] = ""
    """Memory request and limit of a worker (a Kubernetes quantity)."""
    cpu: Annotated[str, Field(max_length=32, pattern=f"({QUANTITY})|^$")] = ""
    """CPU request of a worker (a Kubernetes quantity)."""
    allow_bf16_emulation: bool = False
    """Run bf16 (and bitsandbytes 4-bit with bf16 compute) on a GPU without native bf16 (compute
    capability below 8.0: V100, T4), emulated and slower; default: such a run fails with the
    reason and the alternative (fp16).
    """


class HuggingFaceSpec(_Model):
    token_secret_ref: SecretKeyRef | None = None
    """Secret key holding a hub token (as HF_TOKEN in the worker; never logged)."""
    cache_volume_claim: Annotated[str, Field(max_length=253)] = ""
    """PersistentVolumeClaim mounted as the model cache (shared across runs)."""


class CostSpec(_Model):
    """Prices for dollars per run; without one, results carry GPU- and CPU-seconds only."""

    gpu_hour_usd: Annotated[float | None, Field(ge=0, le=10000, alias="gpuHourUSD")] = None
    """Price of one GPU for an hour, in US dollars (default: the operator's, Helm value
    worker.cost.gpuHourUSD, or quanteval run --gpu-hour-usd).
    """
    cpu_hour_usd: Annotated[float | None, Field(ge=0, le=10000, alias="cpuHourUSD")] = None
    """Price of one CPU core for an hour of CPU time, in US dollars (default: the operator's, Helm
    value worker.cost.cpuHourUSD, or quanteval run --cpu-hour-usd).
    """


EmotionName = Annotated[str, Field(pattern=EMOTION_NAME, max_length=32)]
PromptTemplate = Annotated[str, Field(min_length=1, max_length=2048)]
Task = Literal["generation", "intensity"]

# In the spirit of "The Cost of Nuance": the model is asked for one number, 0-100.
DEFAULT_INTENSITY_TEMPLATE = (
    "How intensely does the following text express {emotion}? Answer with a single number "
    "from 0 (not at all) to 100 (extremely), and nothing else.\nText: {text}\nIntensity:"
)


class IntensityText(_Model):
    """One text to rate: how intensely it expresses `emotion`, with an optional 0-100 `gold`."""

    text: Annotated[str, Field(min_length=1, max_length=500)]
    emotion: EmotionName
    gold: Annotated[float | None, Field(ge=0, le=100)] = None


class IntensitySpec(_Model):
    """The intensity task: the model under test rates texts 0-100 (its greedy answer read by
    quanteval.intensity's rule, or its expected rating: `method`)."""

    template: Annotated[str, Field(max_length=2048)] = ""
    """Prompt template with {text} and {emotion}, in the spec's prompt format (default: the
    built-in one).
    """
    max_new_tokens: Annotated[int, Field(ge=1, le=64)] = 5
    """Tokens the model may answer with."""
    method: Literal["greedy", "expected"] = "expected"
    """expected (the default): the mean of 0-100 under the model's own probability of each
    number (its tokens, then no digit), with its spread and the mass on no number
    (quanteval.expected_rating); the greedy answer is kept beside it, and a rating with more
    than half its mass on no number is a parse failure; greedy: the rating is read from the
    greedy answer alone (the rule in quanteval.intensity)."""
    texts: Annotated[list[IntensityText], Field(min_length=1, max_length=200)] | None = None
    """Texts to rate (default: the built-in corpus, for the evaluation's emotions)."""
    texts_from: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    """Instead of texts: an s3:// object (read with the output's S3 credentials and endpoint)
    or, in a local run, a file of JSON lines, one text a line: {"text", "emotion", "gold"?}.
    """

    @model_validator(mode="after")
    def _check_fields(self) -> Self:
        if self.template and "{text}" not in self.template:
            raise ValueError("template: must contain {text}, where the text to rate goes")
        if self.texts is not None and self.texts_from is not None:
            raise ValueError("texts: set texts or textsFrom, not both")
        return self

    @property
    def prompt_template(self) -> str:
        return self.template or DEFAULT_INTENSITY_TEMPLATE


class ReportSpec(_Model):
    """How the report states its comparisons."""

    equivalence_margin_pp: Annotated[float | None, Field(gt=0, le=50)] = None
    """A macro-F1 change (points) small enough not to matter to you: with it, a comparison whose
    interval (TOST at the family's level) lies within ±margin reads "equivalent within ±margin".
    Unset (the default): the report never says "equivalent", only "no detectable difference
    (could be up to X points)".
    """


class QuantEvalSpec(_Model):
    models: Annotated[list[ModelSpec], Field(min_length=1, max_length=64)]
    """Models to evaluate; each runs at every precision."""
    precisions: Annotated[list[Precision], Field(min_length=1, max_length=len(Precision))]
    """Precisions of every model without its own: fp32, bf16, fp16 (torch dtypes), int8
    (bitsandbytes LLM.int8), nf4, fp4 (bitsandbytes 4-bit, bf16 compute), torchao-int8wo,
    torchao-float8, torchao-int4wo (torchao weight-only), hqq-4bit, hqq-3bit, hqq-2bit (HQQ, GPU
    only), native (the checkpoint as it was quantized: its quantization_config, or a GGUF file
    run by llama.cpp).
    """
    engines: Annotated[list[Engine], Field(min_length=1, max_length=len(Engine))] = Field(
        default_factory=lambda: [Engine.AUTO]
    )
    """Engines every model without its own runs on, each crossed with its precisions: auto
    (transformers; llama.cpp for a GGUF file at native), transformers, llama.cpp (GGUF at native
    only) or vllm (fp32, bf16, fp16, native, w8a8-int8, w4a16-g32, fp8-per-*). Runs on a named
    engine have it in their id: <model>-<precision>-<engine>.
    """
    emotions: (
        Annotated[str, Field(max_length=32)]
        | Annotated[list[EmotionName], Field(min_length=2, max_length=32)]
    ) = "isear"
    """A built-in emotion set (isear, ekman7) or an explicit list of emotion names."""
    baseline: Precision | None = None
    """Precision the others are compared with; default: the highest of precisions other than
    native.
    """
    prompt_set: Annotated[str | None, Field(max_length=32)] = None
    """A built-in prompt set: paper (the study's ten seed prompts). Default when prompts is not set.
    """
    prompts: Annotated[list[PromptTemplate], Field(min_length=1, max_length=200)] | None = None
    """Prompt templates; <class> is replaced by the emotion name."""
    tasks: Annotated[list[Task], Field(min_length=1, max_length=2)] = Field(
        default_factory=lambda: list[Task](["generation"])
    )
    """What each run does with its model loaded once: generation (affective text, scored by the
    classifier) and intensity (the model rates texts 0-100). generation is always among them.
    """
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    """Generation settings."""
    replicates: Annotated[int, Field(ge=1, le=MAX_REPLICATES)] = 1
    """Times each run is made, each time with other seeds: the first keeps the run's id, the
    others are <run>-r2, <run>-r3, ... From 2 on, the report gives run-to-run intervals for time,
    memory and dollars, and a verdict on the study's time figure (once, it is measured once).
    """
    intensity: IntensitySpec = Field(default_factory=IntensitySpec)
    """The intensity task's settings (read when tasks holds intensity)."""
    vllm: VllmSpec = Field(default_factory=VllmSpec)
    """The vLLM engine's settings (read by runs whose engine is vllm)."""
    classifier: ClassifierSpec = Field(default_factory=lambda: ClassifierSpec(builtin="minilm"))
    """The emotion classifier that scores the generations."""
    output: OutputSpec = Field(default_factory=OutputSpec)
    """Where results and the report go."""
    report: ReportSpec = Field(default_factory=ReportSpec)
    """How the report states its comparisons (changes no run: not in any run's content hash)."""
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    """Resources and placement of the worker pods."""
    hugging_face: HuggingFaceSpec = Field(default_factory=HuggingFaceSpec)
    """Hugging Face hub access and model cache."""
    cost: CostSpec = Field(default_factory=CostSpec)
    """Prices per GPU-hour and CPU-hour, for dollars per run and per 1,000 generations."""
    parallelism: Annotated[int, Field(ge=1, le=1000)] = 4
    """Runs active at once (mutable)."""
    suspend: bool = False
    """True: no new run starts; running ones finish (mutable)."""
    backoff_limit: Annotated[int, Field(ge=0, le=10)] = 1
    """Retries of a run's pod on failures other than the worker's deterministic exit codes."""
    active_deadline_seconds: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 21600
    """Seconds a run may take before its Job fails."""
    queue_name: Annotated[str, Field(max_length=63)] = ""
    """Kueue LocalQueue: Jobs are created suspended with the queue label."""
    worker_image: Annotated[str, Field(max_length=512, pattern=f"({IMAGE_REFERENCE})|^$")] = ""
    """Image of this evaluation's run and report Jobs, with its tag or digest (default: the
    operator's, Helm value worker.image).
    """
    worker_images: Annotated[
        dict[Engine, Annotated[str, Field(max_length=512, pattern=IMAGE_REFERENCE)]],
        Field(max_length=len(Engine)),
    ] = Field(default_factory=dict)
    """Image of this evaluation's runs on one engine (vllm: an image with vLLM), before the
    operator's for that engine (Helm value worker.images), workerImage and worker.image.
    """

    @field_validator("precisions", "engines")
    @classmethod
    def _unique(cls, value: list[Any], info: ValidationInfo) -> list[Any]:
        if len(set(value)) != len(value):
            raise ValueError(f"each {str(info.field_name).removesuffix('s')} may appear once")
        return value

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each task may appear once")
        if "generation" not in value:
            raise ValueError("must hold generation: a run without it is not supported yet")
        return value

    @field_validator("models")
    @classmethod
    def _unique_model_names(cls, value: list[ModelSpec]) -> list[ModelSpec]:
        names = [m.name for m in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate model names: {', '.join(duplicates)}")
        return value

    @field_validator("emotions")
    @classmethod
    def _known_emotions(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            resolve_emotions(value)  # raises with the known set names
        elif len(set(value)) != len(value):
            raise ValueError("each emotion may appear once")
        return value

    @model_validator(mode="after")
    def _check_cross_fields(self) -> Self:
        if self.prompts is not None and self.prompt_set is not None:
            raise ValueError("promptSet: set promptSet or prompts, not both")
        if self.prompt_set is not None and self.prompt_set not in BUILTIN_PROMPT_SETS:
            known = ", ".join(sorted(BUILTIN_PROMPT_SETS))
            raise ValueError(f"promptSet: unknown prompt set {self.prompt_set!r}; use {known}")
        for index, prompt in enumerate(self.prompts or []):
            if PLACEHOLDER not in prompt:
                raise ValueError(
                    f"prompts[{index}]: must contain {PLACEHOLDER}, where the emotion name goes"
                )
        if "intensity" in self.tasks:
            self._check_intensity_texts()
        if self.baseline is not None and self.baseline not in self.precisions:
            raise ValueError(f"baseline: {self.baseline} is not one of precisions")
        if self.baseline is None and default_baseline(self.precisions) is None:
            raise ValueError(
                "baseline: native is never the default baseline (it is what is measured); add "
                "the precision to compare with to precisions (fp16, say), or set baseline: native"
            )
        self._check_engines()
        self._check_baseline_models()
        if self.classifier.builtin is not None:
            unknown = [e for e in self.emotion_names if e not in ALL_BUILTIN_EMOTIONS]
            if unknown:
                raise ValueError(
                    f"emotions: {unknown} are not known to the builtin classifier (it knows "
                    f"{', '.join(ALL_BUILTIN_EMOTIONS)}); set classifier.source and labelMap"
                )
        return self

    def _check_engines(self) -> None:
        """Every (precision, engine) pair a model crosses is one its engine runs, its run id is
        a label, and the runs fit one status."""
        runs = sum(len(self.engines_of(m)) * len(self.precisions_of(m)) for m in self.models)
        runs *= self.replicates
        if runs > MAX_RUNS:
            raise ValueError(
                f"models: the evaluation has {runs} runs (models x precisions x engines x "
                f"replicates); one holds at most {MAX_RUNS}, so that its status fits the API "
                "server's object size; split it into several evaluations"
            )
        if self.generation.batch_size == "continuous":
            fixed = sorted({e for m in self.models for e in self.engines_of(m)} - {Engine.VLLM})
            if fixed:
                raise ValueError(
                    "generation.batchSize: continuous is vLLM's continuous batching; "
                    f"{', '.join(fixed)} runs fixed batches: use auto or a number, or run only "
                    "on vllm"
                )
        for index, model in enumerate(self.models):
            own = model.engines is not None or model.precisions is not None
            field = f"models[{index}]" if own else "spec"
            for engine in self.engines_of(model):
                for precision in self.precisions_of(model):
                    why = refusal(precision, engine)
                    if why is not None:
                        raise ValueError(f"{field} ({model.name}): {why}")
                    name = replicate_id(run_id(model.name, precision, engine), self.replicates)
                    if len(name) > 63:
                        raise ValueError(
                            f"models[{index}].name: the run id {name!r} is over 63 characters; "
                            "shorten the model's name"
                        )

    def _check_baseline_models(self) -> None:
        """Every model's runs have a baseline run to compare with: its own, or its
        baselineModel's."""
        by_name = {m.name: m for m in self.models}
        baseline = self.baseline_precision
        for index, model in enumerate(self.models):
            field = f"models[{index}]"
            reference = model.baseline_model
            if reference is None:
                if baseline not in self.precisions_of(model):
                    raise ValueError(
                        f"{field}.precisions: {model.name} does not run the baseline "
                        f"({baseline}), so its runs have nothing to compare with; add {baseline}, "
                        "or set baselineModel to the entry it is a quantization of"
                    )
                self._check_baseline_engines(field, model, model)
                continue
            if reference == model.name:
                raise ValueError(f"{field}.baselineModel: a model cannot be its own baseline")
            target = by_name.get(reference)
            if target is None:
                raise ValueError(
                    f"{field}.baselineModel: {reference!r} names no entry of models (they are "
                    f"{', '.join(by_name)})"
                )
            if target.baseline_model is not None:
                raise ValueError(
                    f"{field}.baselineModel: {reference!r} is compared with "
                    f"{target.baseline_model!r} itself; name {target.baseline_model!r}"
                )
            self._check_baseline_engines(field, model, target)

    def _check_baseline_engines(self, field: str, model: ModelSpec, target: ModelSpec) -> None:
        """Each engine of `model` finds the baseline run it compares with among `target`'s."""
        runs_baseline = set(self.engines_of(target))
        for engine in self.engines_of(model):
            engines = baseline_engines(engine, self.baseline_precision)
            if not runs_baseline.intersection(engines):
                where = " nor ".join(engines) if len(engines) > 1 else engines[0]
                raise ValueError(
                    f"{field}.engines: {model.name} runs on {engine}, but {target.name} does not "
                    f"run the baseline ({self.baseline_precision}) on {where}, so those runs have "
                    f"nothing to compare with; add {engines[0]} to {target.name}'s engines"
                )

    def precisions_of(self, model: ModelSpec) -> list[Precision]:
        """The model's own precisions, or the spec's."""
        return model.precisions if model.precisions is not None else self.precisions

    def engines_of(self, model: ModelSpec) -> list[Engine]:
        """The model's own engines, or the spec's."""
        return model.engines if model.engines is not None else self.engines

    def _check_intensity_texts(self) -> None:
        from quanteval.intensity import builtin_items  # the corpus is read only when it is used

        emotions = self.emotion_names
        for index, text in enumerate(self.intensity.texts or []):
            if text.emotion not in emotions:
                raise ValueError(
                    f"intensity.texts[{index}].emotion: {text.emotion!r} is not one of the "
                    f"evaluation's emotions ({', '.join(emotions)})"
                )
        given = self.intensity.texts is not None or self.intensity.texts_from is not None
        if not given and not builtin_items(emotions):
            raise ValueError(
                f"intensity.texts: the built-in corpus has no text for {', '.join(emotions)}; "
                "give intensity.texts or intensity.textsFrom"
            )

    @property
    def emotion_names(self) -> tuple[str, ...]:
        return resolve_emotions(self.emotions)

    @property
    def prompt_templates(self) -> tuple[str, ...]:
        if self.prompts is not None:
            return tuple(self.prompts)
        return BUILTIN_PROMPT_SETS[self.prompt_set or "paper"]

    @property
    def baseline_precision(self) -> Precision:
        baseline = self.baseline or default_baseline(self.precisions)
        if baseline is None:  # refused by validation: native alone and no baseline
            raise ValueError("spec.baseline: native is never the default baseline")
        return baseline


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: Annotated[str, Field(min_length=1, max_length=MAX_EVAL_NAME, pattern=DNS1123_LABEL)]
    namespace: Annotated[str, Field(max_length=63, pattern=DNS1123_LABEL)] = "default"
    uid: str | None = None
    generation: int | None = None


class QuantEval(BaseModel):
    """A whole QuantEval manifest: the same document a user applies with kubectl."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    api_version: Literal["quanteval.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["QuantEval"]
    metadata: Metadata
    spec: QuantEvalSpec


_UNION_BRANCH = re.compile(
    r"(int|str|float|bool|constrained-\w+|list\[.*\]|dict\[.*\]|literal\[.*\]|function-.*)"
)


# A model validator's message that names a field inside the model: "prompts[1]: must contain ...".
_FIELD_MESSAGE = re.compile(r"^([a-zA-Z][\w.\[\]]*): (.*)$", re.DOTALL)


def format_validation_error(error: ValidationError) -> str:
    """One line per problem, each naming the field as a user writes it (spec.models[0].name).

    Of a union's errors, a type mismatch is dropped when another branch got further: a list of
    emotions with a bad item is not also "not a valid string".
    """
    items = error.errors()
    lines: list[tuple[str, str, str]] = []
    for item in items:
        parts: list[str] = []
        for loc in item["loc"]:
            if isinstance(loc, int):
                parts[-1:] = [f"{parts[-1]}[{loc}]"] if parts else [f"[{loc}]"]
            elif _UNION_BRANCH.fullmatch(str(loc)):
                continue  # pydantic's name of a union branch, not a field
            else:
                parts.append(str(loc))
        field = ".".join(parts) or "(document)"
        message = item["msg"].removeprefix("Value error, ")
        named = _FIELD_MESSAGE.match(message)
        if named and item["type"] == "value_error":
            field, message = f"{field}.{named[1]}", named[2]
        lines.append((field, item["type"], f"{field}: {message}"))
    fields_with_detail = {f for f, kind, _ in lines if not kind.endswith("_type")}
    kept = [
        text for f, kind, text in lines if not (kind.endswith("_type") and f in fields_with_detail)
    ]
    return "\n".join(dict.fromkeys(kept))


def parse_manifest(document: Any, source: str = "manifest") -> QuantEval:
    if not isinstance(document, dict):
        raise InvalidSpecError(f"{source}: expected a QuantEval manifest (a YAML mapping)")
    if document.get("apiVersion") != f"{API_GROUP}/{API_VERSION}" or document.get("kind") != KIND:
        raise InvalidSpecError(
            f"{source}: apiVersion/kind must be {API_GROUP}/{API_VERSION} {KIND}, got "
            f"{document.get('apiVersion')!r} {document.get('kind')!r}"
        )
    try:
        return QuantEval.model_validate(document)
    except ValidationError as error:
        message = f"{source}: invalid QuantEval\n{format_validation_error(error)}"
        raise InvalidSpecError(message) from None


def load_manifest(path: str | Path) -> QuantEval:
    """Load the one QuantEval in a YAML file; errors name the file and the field."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise InvalidSpecError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as error:
        raise InvalidSpecError(f"{path}: invalid YAML: {error}") from None
    evals = [d for d in documents if isinstance(d, dict) and d.get("kind") == KIND]
    if len(evals) != 1:
        if len(documents) == 1:
            return parse_manifest(documents[0], str(path))
        raise InvalidSpecError(
            f"{path}: expected exactly one QuantEval document, found {len(evals)}"
        )
    return parse_manifest(evals[0], str(path))
