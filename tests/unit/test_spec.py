"""Manifest loading: defaults, presets, and errors that name the offending field."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quanteval.api.errors import ExitCode, InvalidSpecError
from quanteval.api.spec import load_manifest
from quanteval.precisions import Precision
from quanteval.prompts import PAPER_PROMPTS

from .conftest import QUICKSTART, Manifest, WriteManifest


def test_quickstart_loads_with_paper_defaults(quickstart_path: Path) -> None:
    manifest = load_manifest(quickstart_path)

    assert manifest.metadata.name == "quickstart"
    assert manifest.metadata.namespace == "default"
    spec = manifest.spec
    assert [m.name for m in spec.models] == ["smollm2-135m"]
    assert [p.value for p in spec.precisions] == ["fp32", "bf16", "int8", "nf4", "native"]
    generation = spec.generation
    assert generation.preset == "paper"
    assert generation.temperature == pytest.approx(0.9)
    assert generation.top_k == 10
    assert generation.top_p == pytest.approx(0.9)
    assert generation.do_sample is True
    assert generation.max_length == 100
    assert generation.prompt_format == "chat"  # a 135M chat model reads poorly on raw prompts
    assert generation.samples_per_prompt == 1
    assert spec.emotions == "isear"
    assert spec.emotion_names == ("anger", "disgust", "fear", "guilt", "joy", "sadness", "shame")
    assert spec.prompt_templates == PAPER_PROMPTS
    assert spec.baseline is None
    assert spec.baseline_precision == Precision.FP32
    assert spec.classifier.builtin == "minilm"
    assert spec.parallelism == 2


def test_generation_defaults_to_paper_preset_when_omitted(
    quickstart_dict: Manifest, write_manifest: WriteManifest
) -> None:
    del quickstart_dict["spec"]["generation"]
    generation = load_manifest(write_manifest(quickstart_dict)).spec.generation

    assert generation.preset == "paper"
    assert generation.do_sample is True
    assert generation.temperature == pytest.approx(0.9)
    assert generation.top_k == 10
    assert generation.max_length == 100
    # The study's method: the bare prompt, and only max_length=100 bounds the new tokens.
    assert generation.prompt_format == "raw"
    assert generation.max_new_tokens is None
    # ... tokenized as transformers 4.28's pipeline did: without the tokenizer's BOS.
    assert generation.add_special_tokens is False and generation.special_tokens is False


def test_special_tokens_are_a_raw_prompts_setting(
    quickstart_dict: Manifest, write_manifest: WriteManifest
) -> None:
    # The quick start is chat: the template holds its special tokens, the preset sets none.
    chat = load_manifest(write_manifest(quickstart_dict)).spec.generation
    assert chat.add_special_tokens is None and chat.special_tokens is False
    quickstart_dict["spec"]["generation"] = {"preset": "greedy", "promptFormat": "raw"}
    greedy_raw = load_manifest(write_manifest(quickstart_dict)).spec.generation
    assert greedy_raw.special_tokens is True  # raw outside the paper preset: as before
    quickstart_dict["spec"]["generation"] = {"promptFormat": "chat", "addSpecialTokens": True}
    with pytest.raises(InvalidSpecError, match=r"addSpecialTokens: applies to promptFormat raw"):
        load_manifest(write_manifest(quickstart_dict))


def test_greedy_preset_disables_sampling(
    quickstart_dict: Manifest, write_manifest: WriteManifest
) -> None:
    quickstart_dict["spec"]["generation"] = {"preset": "greedy"}
    generation = load_manifest(write_manifest(quickstart_dict)).spec.generation

    assert generation.preset == "greedy"
    assert generation.do_sample is False
    assert generation.top_k == 0
    assert generation.top_p == pytest.approx(1.0)
    assert generation.max_length is None
    assert generation.prompt_format == "chat"
    assert generation.max_new_tokens == 64


def test_explicit_field_overrides_preset(
    quickstart_dict: Manifest, write_manifest: WriteManifest
) -> None:
    quickstart_dict["spec"]["generation"] = {"preset": "greedy", "temperature": 0.5}
    greedy = load_manifest(write_manifest(quickstart_dict)).spec.generation
    assert greedy.temperature == pytest.approx(0.5)
    assert greedy.do_sample is False  # the rest still comes from the preset

    quickstart_dict["spec"]["generation"] = {"preset": "paper", "topK": 50, "doSample": False}
    paper = load_manifest(write_manifest(quickstart_dict)).spec.generation
    assert paper.top_k == 50
    assert paper.do_sample is False
    assert paper.top_p == pytest.approx(0.9)
    assert paper.temperature == pytest.approx(0.9)

    quickstart_dict["spec"]["generation"] = {"preset": "paper", "promptFormat": "chat"}
    chat = load_manifest(write_manifest(quickstart_dict)).spec.generation
    assert (chat.prompt_format, chat.max_length, chat.top_k) == ("chat", 100, 10)


def _parent(document: Manifest, path: str) -> tuple[Any, str | int]:
    """The container holding a dotted path's last part (list indexes as numbers), and that key."""
    *parents, last = path.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    return node, int(last) if last.isdigit() else last


def _set(path: str, value: Any) -> Callable[[Manifest], None]:
    def mutate(document: Manifest) -> None:
        node, key = _parent(document, path)
        node[key] = value

    return mutate


def _delete(path: str) -> Callable[[Manifest], None]:
    def mutate(document: Manifest) -> None:
        node, key = _parent(document, path)
        del node[key]

    return mutate


def _add_model(name: str) -> Callable[[Manifest], None]:
    def mutate(document: Manifest) -> None:
        document["spec"]["models"].append({"name": name, "source": "org/other-model"})

    return mutate


def _both(*mutations: Callable[[Manifest], None]) -> Callable[[Manifest], None]:
    def mutate(document: Manifest) -> None:
        for mutation in mutations:
            mutation(document)

    return mutate


BAD_MANIFESTS: list[tuple[str, Callable[[Manifest], None], list[str]]] = [
    ("wrong-api-version", _set("apiVersion", "quanteval.io/v1"), ["apiVersion/kind"]),
    ("wrong-kind", _set("kind", "Evaluation"), ["apiVersion/kind", "Evaluation"]),
    ("unknown-spec-field", _set("spec.colour", "blue"), ["spec.colour"]),
    ("unknown-precision", _set("spec.precisions", ["fp32", "fp12"]), ["spec.precisions"]),
    ("duplicate-precision", _set("spec.precisions", ["fp32", "fp32"]), ["spec.precisions"]),
    ("empty-models", _set("spec.models", []), ["spec.models"]),
    ("duplicate-model-names", _add_model("smollm2-135m"), ["spec.models", "smollm2-135m"]),
    ("uppercase-model-name", _add_model("SmolLM2"), ["spec.models[1].name"]),
    ("model-name-too-long", _add_model("a" * 41), ["spec.models[1].name", "40"]),
    ("model-missing-source", _delete("spec.models.0.source"), ["spec.models[0].source"]),
    ("temperature-zero", _set("spec.generation.temperature", 0), ["spec.generation.temperature"]),
    (
        "temperature-eleven",
        _set("spec.generation.temperature", 11),
        ["spec.generation.temperature"],
    ),
    ("top-p-above-one", _set("spec.generation.topP", 1.5), ["spec.generation.topP"]),
    ("unknown-preset", _set("spec.generation.preset", "fast"), ["spec.generation.preset"]),
    (
        "unknown-prompt-format",
        _set("spec.generation.promptFormat", "plain"),
        ["spec.generation.promptFormat", "'chat' or 'raw'"],
    ),
    (
        "generation-without-any-bound",
        _set("spec.generation", {"preset": "paper", "maxLength": None}),
        ["spec.generation.maxNewTokens", "set maxNewTokens or maxLength"],
    ),
    ("negative-parallelism", _set("spec.parallelism", -1), ["spec.parallelism"]),
    ("unknown-emotion-set", _set("spec.emotions", "plutchik"), ["spec.emotions", "plutchik"]),
    ("duplicate-emotions", _set("spec.emotions", ["joy", "joy"]), ["spec.emotions"]),
    (
        "prompt-without-placeholder",
        _both(_delete("spec.promptSet"), _set("spec.prompts", ["Tell me a story"])),
        ["prompts[0]", "<class>"],
    ),
    ("prompt-set-and-prompts", _set("spec.prompts", ["I felt <class>"]), ["promptSet", "prompts"]),
    ("unknown-prompt-set", _set("spec.promptSet", "mine"), ["promptSet", "mine"]),
    ("baseline-not-in-precisions", _set("spec.baseline", "fp16"), ["baseline", "fp16"]),
    (
        "builtin-classifier-unknown-emotion",
        _set("spec.emotions", ["joy", "awe"]),
        ["emotions", "awe", "classifier"],
    ),
    (
        "classifier-builtin-and-source",
        _set("spec.classifier", {"builtin": "minilm", "source": "org/classifier"}),
        ["spec.classifier"],
    ),
    (
        "classifier-neither-builtin-nor-source",
        _set("spec.classifier", {}),
        ["spec.classifier"],
    ),
    (
        "malformed-worker-image",
        _set("spec.workerImage", "Registry/Worker Image"),
        ["spec.workerImage", "should match pattern"],
    ),
    ("metadata-name-too-long", _set("metadata.name", "a" * 53), ["metadata.name", "52"]),
    ("unknown-task", _set("spec.tasks", ["generation", "summary"]), ["spec.tasks", "intensity"]),
    ("tasks-without-generation", _set("spec.tasks", ["intensity"]), ["spec.tasks", "generation"]),
    (
        "intensity-template-without-text",
        _both(
            _set("spec.tasks", ["generation", "intensity"]),
            _set("spec.intensity", {"template": "Rate {emotion}"}),
        ),
        ["spec.intensity.template", "{text}"],
    ),
    ("intensity-empty-texts", _set("spec.intensity", {"texts": []}), ["spec.intensity.texts"]),
    (
        "intensity-text-of-another-emotion",
        _both(
            _set("spec.tasks", ["generation", "intensity"]),
            _set("spec.intensity", {"texts": [{"text": "wow", "emotion": "surprise"}]}),
        ),
        ["intensity.texts[0].emotion", "surprise"],
    ),
    (
        "intensity-texts-and-texts-from",
        _set("spec.intensity", {"texts": [{"text": "wow", "emotion": "joy"}], "textsFrom": "t"}),
        ["spec.intensity.texts", "textsFrom"],
    ),
    ("metadata-name-uppercase", _set("metadata.name", "QuickStart"), ["metadata.name"]),
    (
        "native-alone-without-baseline",
        _set("spec.precisions", ["native"]),
        ["baseline", "native is never the default baseline"],
    ),
    (
        "model-duplicate-precisions",
        _set("spec.models.0.precisions", ["int8", "int8"]),
        ["spec.models[0].precisions", "each precision may appear once"],
    ),
    (
        "model-precisions-without-the-baseline",
        _set("spec.models.0.precisions", ["int8"]),
        ["models[0].precisions", "does not run the baseline (fp32)", "baselineModel"],
    ),
    (
        "baseline-model-itself",
        _set("spec.models.0.baselineModel", "smollm2-135m"),
        ["models[0].baselineModel", "its own baseline"],
    ),
    (
        "baseline-model-names-no-entry",
        _set("spec.models.0.baselineModel", "llama"),
        ["models[0].baselineModel", "'llama' names no entry", "smollm2-135m"],
    ),
    (
        "baseline-model-chain",
        _both(
            _add_model("gptq"),
            _add_model("awq"),
            _set("spec.models.1.baselineModel", "smollm2-135m"),
            _set("spec.models.2.baselineModel", "gptq"),
        ),
        ["models[2].baselineModel", "'gptq' is compared with 'smollm2-135m'"],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [pytest.param(mutate, expected, id=case) for case, mutate, expected in BAD_MANIFESTS],
)
def test_bad_manifest_names_the_field(
    quickstart_dict: Manifest,
    write_manifest: WriteManifest,
    mutate: Callable[[Manifest], None],
    expected: list[str],
) -> None:
    mutate(quickstart_dict)
    path = write_manifest(quickstart_dict)

    with pytest.raises(InvalidSpecError) as caught:
        load_manifest(path)

    message = caught.value.message
    assert str(path) in message
    for fragment in expected:
        assert fragment in message
    assert caught.value.exit_code == ExitCode.INVALID_SPEC


def test_every_bad_case_starts_from_a_valid_manifest(
    quickstart_dict: Manifest, write_manifest: WriteManifest
) -> None:
    """The parametrized cases above fail because of their mutation, not of the base document."""
    assert load_manifest(write_manifest(quickstart_dict)).metadata.name == "quickstart"


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("apiVersion: quanteval.io/v1alpha1\nkind: QuantEval\nspec: [unclosed\n")

    with pytest.raises(InvalidSpecError) as caught:
        load_manifest(path)

    assert "invalid YAML" in caught.value.message
    assert str(path) in caught.value.message


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")

    with pytest.raises(InvalidSpecError, match="mapping"):
        load_manifest(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")

    with pytest.raises(InvalidSpecError, match="exactly one QuantEval"):
        load_manifest(path)


def test_missing_file_gives_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"

    with pytest.raises(InvalidSpecError) as caught:
        load_manifest(path)

    assert str(path) in caught.value.message
    assert "cannot read" in caught.value.message
    assert "No such file" in caught.value.message


def test_quanteval_is_picked_from_a_multi_document_file(
    quickstart_path: Path, tmp_path: Path
) -> None:
    other = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: quanteval-s3\n"
    path = tmp_path / "bundle.yaml"
    path.write_text(other + "---\n" + quickstart_path.read_text())

    assert load_manifest(path).metadata.name == "quickstart"


def test_two_quantevals_in_one_file_are_rejected(quickstart_path: Path, tmp_path: Path) -> None:
    text = quickstart_path.read_text()
    path = tmp_path / "two.yaml"
    path.write_text(text + "\n---\n" + text)

    with pytest.raises(InvalidSpecError, match="exactly one QuantEval"):
        load_manifest(path)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("spec.emotions", ["joy", "Awe"], "spec.emotions"),
        ("spec.generation.batchSize", 0, "spec.generation.batchSize"),
    ],
)
def test_union_errors_name_the_field_as_the_user_writes_it(
    quickstart_dict: Manifest, write_manifest: WriteManifest, path: str, value: Any, field: str
) -> None:
    _set(path, value)(quickstart_dict)

    with pytest.raises(InvalidSpecError) as caught:
        load_manifest(write_manifest(quickstart_dict))

    assert field in caught.value.message
    assert "constrained" not in caught.value.message


@pytest.mark.parametrize("path", sorted(QUICKSTART.parent.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_manifest_is_valid(path: Path) -> None:
    manifest = load_manifest(path)
    assert manifest.spec.models and manifest.spec.precisions
