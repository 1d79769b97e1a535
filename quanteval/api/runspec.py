"""The run spec: everything one worker needs to evaluate one (model, precision), as versioned JSON.

The operator passes it in an environment variable (`run_spec_env`: plain JSON, or gzip and
base64 when it is large, since Linux refuses one environment string over 128 KiB); `quanteval run
--local` in a file. It is the contract between the control plane and the worker.
"""

import base64
import gzip
import json
from collections.abc import Mapping
from typing import Annotated, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from quanteval.api.spec import ClassifierSpec, CostSpec, GenerationSpec, ModelSpec, VllmSpec
from quanteval.engines import Engine
from quanteval.precisions import Precision

RUNSPEC_SCHEMA: Final = "quanteval.io/runspec/v1"
RUN_SPEC_ENV: Final = "QUANTEVAL_RUN_SPEC"  # the JSON
RUN_SPEC_GZIP_ENV: Final = "QUANTEVAL_RUN_SPEC_GZIP"  # the JSON, gzipped, in base64
PLAIN_RUN_SPEC_LIMIT: Final = 32 * 1024  # larger specs travel gzipped
# Linux's MAX_ARG_STRLEN: one environment string, "NAME=value" and its NUL, at most 32 pages.
ENV_STRING_LIMIT: Final = 32 * 4096


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, alias_generator=to_camel, frozen=True
    )


class EvaluationRef(_Model):
    name: str
    namespace: str
    uid: str


class IntensityItem(_Model):
    """One text a run rates; `key` is the same for every precision, so ratings pair by it."""

    key: str
    text: str
    emotion: str
    level: int | None = None  # the built-in corpus's intended level, 1 (very mild) to 5 (extreme)
    gold: float | None = None  # a user's own 0-100 score


class IntensityRun(_Model):
    """The intensity task as a run does it: the prompt template and the texts, resolved, or
    where to read them (`textsFrom`: the worker reads it before it loads the model)."""

    template: str
    max_new_tokens: int
    items: list[IntensityItem]
    texts_from: str | None = None
    method: Literal["greedy", "expected"] = "greedy"

    @model_validator(mode="after")
    def _texts_or_their_source(self) -> Self:
        if bool(self.items) == (self.texts_from is not None):
            raise ValueError("intensity: give items or textsFrom, one of them")
        return self


class RunSpec(_Model):
    schema_version: Literal["quanteval.io/runspec/v1"] = RUNSPEC_SCHEMA
    evaluation: EvaluationRef
    run_id: Annotated[str, Field(min_length=1, max_length=63)]
    model: ModelSpec
    precision: Precision
    engine: Engine = Engine.AUTO
    baseline: Precision
    emotions: Annotated[list[str], Field(min_length=1)]
    prompts: Annotated[list[str], Field(min_length=1)]
    generation: GenerationSpec  # its seed is the replicate's (quanteval.matrix.replicate_seed)
    replicate: Annotated[int, Field(ge=1)] = 1  # spec.replicates: which of the run's repeats
    classifier: ClassifierSpec
    intensity: IntensityRun | None = None  # set when the evaluation's tasks hold intensity
    vllm: VllmSpec = VllmSpec()  # read when engine is vllm
    # The run's directory: file:///abs/path or s3://bucket/key/prefix.
    output_uri: str
    s3_endpoint: str = ""
    s3_region: str = ""
    gpu_memory_gib: float | None = None
    allow_bf16_emulation: bool = False
    cost: CostSpec = CostSpec()
    content_hash: str

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)


def run_spec_env(spec: RunSpec) -> tuple[str, str]:
    """The environment variable (name, value) that carries `spec` to a worker pod."""
    text = spec.to_json()
    if len(text.encode()) <= PLAIN_RUN_SPEC_LIMIT:
        return RUN_SPEC_ENV, text
    packed = base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()
    return RUN_SPEC_GZIP_ENV, packed


def env_string_fits(name: str, value: str) -> bool:
    return len(name) + 1 + len(value.encode()) + 1 <= ENV_STRING_LIMIT


def run_spec_from_env(env: Mapping[str, str]) -> str:
    """The run spec's JSON from the worker's environment; "" when neither variable is set."""
    packed = env.get(RUN_SPEC_GZIP_ENV, "")
    if packed:
        return gzip.decompress(base64.b64decode(packed)).decode()
    return env.get(RUN_SPEC_ENV, "")
