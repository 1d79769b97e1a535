"""Expansion into runs: order, ids, content hashes, baselines, S3 roots and run specs."""

import copy
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from quanteval.api.errors import InvalidSpecError
from quanteval.api.runspec import RunSpec
from quanteval.api.spec import QuantEval, load_manifest, parse_manifest
from quanteval.engines import RUNS, Engine
from quanteval.matrix import (
    build_run_spec,
    comparison_count,
    content_hash,
    expand,
    expect_arg,
    legacy_hash,
    run_output_uri,
    s3_evaluation_root,
)
from quanteval.precisions import Precision, default_baseline
from quanteval.prompts import PAPER_PROMPTS

from .conftest import Manifest

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _parse(document: Manifest) -> QuantEval:
    return parse_manifest(document)


def test_runs_are_models_times_precisions_in_order(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["models"].append({"name": "tiny-llama", "source": "org/tiny"})
    quickstart_dict["spec"]["precisions"] = ["nf4", "fp16", "fp32"]
    runs = expand(_parse(quickstart_dict).spec)

    assert [(r.model.name, r.precision) for r in runs] == [
        ("smollm2-135m", Precision.NF4),
        ("smollm2-135m", Precision.FP16),
        ("smollm2-135m", Precision.FP32),
        ("tiny-llama", Precision.NF4),
        ("tiny-llama", Precision.FP16),
        ("tiny-llama", Precision.FP32),
    ]
    assert [r.id for r in runs] == [
        "smollm2-135m-nf4",
        "smollm2-135m-fp16",
        "smollm2-135m-fp32",
        "tiny-llama-nf4",
        "tiny-llama-fp16",
        "tiny-llama-fp32",
    ]


def test_quickstart_has_five_runs(quickstart_path: Path) -> None:
    runs = expand(load_manifest(quickstart_path).spec)

    assert [r.id for r in runs] == [
        "smollm2-135m-fp32",
        "smollm2-135m-bf16",
        "smollm2-135m-int8",
        "smollm2-135m-nf4",
        "smollm2-135m-native",
    ]
    assert [r.is_baseline for r in runs] == [True, False, False, False, False]
    assert {r.baseline for r in runs} == {Precision.FP32}


@pytest.mark.parametrize("name", ["a", "m1", "smollm2-135m", "a" * 40, "x-" * 19 + "yz"])
def test_run_ids_are_dns1123_labels(quickstart_dict: Manifest, name: str) -> None:
    quickstart_dict["spec"]["models"][0]["name"] = name
    quickstart_dict["spec"]["precisions"] = [p.value for p in Precision if p in RUNS[Engine.AUTO]]

    for run in expand(_parse(quickstart_dict).spec):
        assert DNS1123_LABEL.fullmatch(run.id), run.id
        assert len(run.id) <= 63
        assert run.id == f"{name}-{run.precision.value}"


def _first_hash(document: Manifest) -> str:
    return expand(_parse(document).spec)[0].content_hash


def test_content_hash_is_stable(quickstart_dict: Manifest) -> None:
    first = _first_hash(quickstart_dict)

    assert re.fullmatch(r"[0-9a-f]{16}", first)
    assert _first_hash(copy.deepcopy(quickstart_dict)) == first
    assert _first_hash(quickstart_dict) == first


def _mutation(key: str, value: object) -> Callable[[Manifest], None]:
    def mutate(document: Manifest) -> None:
        document["spec"]["generation"][key] = value

    return mutate


def _model_field(key: str, value: object) -> Callable[[Manifest], None]:
    def mutate(document: Manifest) -> None:
        document["spec"]["models"][0][key] = value

    return mutate


def _spec_field(key: str, value: object) -> Callable[[Manifest], None]:
    def mutate(document: Manifest) -> None:
        document["spec"][key] = value

    return mutate


def _custom_prompts(document: Manifest) -> None:
    del document["spec"]["promptSet"]
    document["spec"]["prompts"] = ["I felt <class>"]


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_mutation("batchSize", 8), id="batch-size"),
        pytest.param(_model_field("name", "renamed-model"), id="model-name"),
        pytest.param(_spec_field("parallelism", 7), id="parallelism"),
        pytest.param(_spec_field("suspend", True), id="suspend"),
        pytest.param(_spec_field("report", {"equivalenceMarginPp": 2.5}), id="report"),
    ],
)
def test_content_hash_ignores_what_does_not_change_results(
    quickstart_dict: Manifest, mutate: Callable[[Manifest], None]
) -> None:
    before = _first_hash(quickstart_dict)
    mutate(quickstart_dict)

    assert _first_hash(quickstart_dict) == before


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(_mutation("temperature", 0.7), id="temperature"),
        pytest.param(_mutation("topK", 50), id="top-k"),
        pytest.param(_mutation("seed", 7), id="seed"),
        pytest.param(_model_field("source", "org/other-model"), id="source"),
        pytest.param(_model_field("revision", "abc123"), id="revision"),
        pytest.param(_spec_field("emotions", ["joy", "anger"]), id="emotions"),
        pytest.param(_spec_field("emotions", "ekman7"), id="emotion-set"),
        pytest.param(_custom_prompts, id="prompts"),
        pytest.param(_spec_field("classifier", {"source": "org/classifier"}), id="classifier"),
    ],
)
def test_content_hash_changes_with_what_changes_results(
    quickstart_dict: Manifest, mutate: Callable[[Manifest], None]
) -> None:
    before = _first_hash(quickstart_dict)
    mutate(quickstart_dict)

    assert _first_hash(quickstart_dict) != before


def test_content_hash_differs_per_precision(quickstart_dict: Manifest) -> None:
    spec = _parse(quickstart_dict).spec
    model = spec.models[0]
    hashes = {content_hash(spec, model, p, e) for p in Precision for e in Engine}

    assert len(hashes) == len(Precision) * len(Engine)
    assert len({r.content_hash for r in expand(spec)}) == len(spec.precisions)


@pytest.mark.parametrize(
    ("precisions", "expected"),
    [
        (["fp32", "bf16", "fp16", "int8", "nf4", "fp4"], Precision.FP32),
        (["fp4", "nf4", "int8", "fp16", "bf16", "fp32"], Precision.FP32),
        (["int8", "bf16", "nf4"], Precision.BF16),
        (["fp16", "int8"], Precision.FP16),
        (["nf4", "int8"], Precision.INT8),
        (["fp4", "nf4"], Precision.NF4),
        (["fp4"], Precision.FP4),
        (["bf16", "fp16"], Precision.BF16),
    ],
)
def test_default_baseline_is_the_highest_precision_present(
    quickstart_dict: Manifest, precisions: list[str], expected: Precision
) -> None:
    quickstart_dict["spec"]["precisions"] = precisions
    spec = _parse(quickstart_dict).spec

    assert default_baseline([Precision(p) for p in precisions]) == expected
    assert spec.baseline_precision == expected
    runs = expand(spec)
    assert {r.baseline for r in runs} == {expected}
    assert [r.precision for r in runs if r.is_baseline] == [expected]


def test_spec_baseline_overrides_the_default(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["baseline"] = "int8"
    spec = _parse(quickstart_dict).spec

    assert spec.baseline_precision == Precision.INT8
    runs = expand(spec)
    assert {r.baseline for r in runs} == {Precision.INT8}
    assert [r.id for r in runs if r.is_baseline] == ["smollm2-135m-int8"]


def test_s3_evaluation_root(quickstart_dict: Manifest) -> None:
    quickstart_dict["metadata"].update(namespace="team-a", uid="1234-abcd")

    assert s3_evaluation_root(_parse(quickstart_dict)) == (
        "s3://quanteval/results/team-a/quickstart-1234-abcd"
    )


def test_s3_evaluation_root_defaults(quickstart_dict: Manifest) -> None:
    # No namespace and no uid (a local run): "default" and "local".
    assert s3_evaluation_root(_parse(quickstart_dict)) == (
        "s3://quanteval/results/default/quickstart-local"
    )


def test_s3_evaluation_root_normalises_the_prefix(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["output"]["s3"]["prefix"] = "/a/b/"
    assert s3_evaluation_root(_parse(quickstart_dict)) == (
        "s3://quanteval/a/b/default/quickstart-local"
    )

    quickstart_dict["spec"]["output"]["s3"]["prefix"] = ""
    assert s3_evaluation_root(_parse(quickstart_dict)) == (
        "s3://quanteval/default/quickstart-local"
    )


def test_s3_evaluation_root_without_s3_output(quickstart_dict: Manifest) -> None:
    del quickstart_dict["spec"]["output"]

    with pytest.raises(ValueError, match=r"spec\.output\.s3"):
        s3_evaluation_root(_parse(quickstart_dict))


def test_run_spec_round_trips_through_json(quickstart_dict: Manifest) -> None:
    quickstart_dict["metadata"].update(namespace="team-a", uid="uid-1")
    quickstart_dict["spec"]["output"]["s3"].update(endpoint="http://minio:9000", region="eu-1")
    quickstart_dict["spec"]["resources"] = {"gpuMemoryGiB": 24}
    quickstart_dict["spec"]["generation"] = {"preset": "greedy", "temperature": 0.5}
    manifest = _parse(quickstart_dict)
    root = s3_evaluation_root(manifest)

    for run in expand(manifest.spec):
        run_spec = build_run_spec(manifest, run, root)
        text = run_spec.to_json()
        again = RunSpec.model_validate_json(text)

        assert again == run_spec
        assert again.to_json() == text
        assert again.output_uri == f"{root}/runs/{run.id}"
        assert again.output_uri == run_output_uri(root, run)
        assert again.run_id == run.id
        assert again.precision == run.precision
        assert again.baseline == Precision.FP32
        assert again.content_hash == run.content_hash
        assert again.evaluation.name == "quickstart"
        assert again.evaluation.namespace == "team-a"
        assert again.evaluation.uid == "uid-1"
        assert again.emotions == list(manifest.spec.emotion_names)
        assert again.prompts == list(manifest.spec.prompt_templates)
        assert again.generation.temperature == pytest.approx(0.5)
        assert again.generation.do_sample is False
        assert again.s3_endpoint == "http://minio:9000"
        assert again.s3_region == "eu-1"
        assert again.gpu_memory_gib == pytest.approx(24)


def test_run_output_uri_with_a_trailing_slash(quickstart_dict: Manifest) -> None:
    run = expand(_parse(quickstart_dict).spec)[0]

    assert run_output_uri("s3://b/p/", run) == "s3://b/p/runs/smollm2-135m-fp32"
    assert run_output_uri("file:///tmp/out", run) == "file:///tmp/out/runs/smollm2-135m-fp32"


def test_a_model_runs_its_own_precisions_and_compares_with_its_baseline_model(
    quickstart_dict: Manifest,
) -> None:
    quickstart_dict["spec"]["models"].append(
        {
            "name": "smollm2-gptq",
            "source": "org/smollm2-gptq",
            "precisions": ["native"],
            "baselineModel": "smollm2-135m",
        }
    )
    runs = expand(_parse(quickstart_dict).spec)

    assert [r.id for r in runs][-2:] == ["smollm2-135m-native", "smollm2-gptq-native"]
    native = runs[-1]
    assert native.precision == Precision.NATIVE
    assert native.is_baseline is False
    assert native.model.baseline_model == "smollm2-135m"
    assert [r.id for r in runs if r.is_baseline] == ["smollm2-135m-fp32"]


def test_native_is_never_the_default_baseline(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["precisions"] = ["native", "int8", "bf16"]

    assert _parse(quickstart_dict).spec.baseline_precision == Precision.BF16
    assert default_baseline([Precision.NATIVE]) is None


def test_the_quick_starts_run_hashes_are_pinned(quickstart_dict: Manifest) -> None:
    """A manifest that worked keeps its content hashes (and so its stored runs stay valid)."""
    hashes = {run.id: run.content_hash for run in expand(_parse(quickstart_dict).spec)}
    assert hashes == {
        "smollm2-135m-fp32": "e74037bbe653b68b",
        "smollm2-135m-bf16": "4077a636af0ce635",
        "smollm2-135m-int8": "49746d9e4e427ce3",
        "smollm2-135m-nf4": "51a634734ad4f56b",
        "smollm2-135m-native": "702fde29bcd48581",
    }


# Engines


def test_named_engines_cross_the_precisions_and_say_so_in_ids_and_hashes(
    quickstart_dict: Manifest,
) -> None:
    auto = {run.id: run.content_hash for run in expand(_parse(quickstart_dict).spec)}
    quickstart_dict["spec"]["precisions"] = ["fp32", "bf16"]
    quickstart_dict["spec"]["engines"] = ["auto", "vllm"]

    runs = expand(_parse(quickstart_dict).spec)

    assert [(r.id, r.engine) for r in runs] == [
        ("smollm2-135m-fp32", Engine.AUTO),
        ("smollm2-135m-fp32-vllm", Engine.VLLM),
        ("smollm2-135m-bf16", Engine.AUTO),
        ("smollm2-135m-bf16-vllm", Engine.VLLM),
    ]
    hashes = {r.id: r.content_hash for r in runs}
    assert hashes["smollm2-135m-fp32"] == auto["smollm2-135m-fp32"]  # auto: as before engines
    assert hashes["smollm2-135m-fp32-vllm"] != hashes["smollm2-135m-fp32"]


def test_a_models_own_engines_override_the_specs(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["precisions"] = ["bf16"]
    quickstart_dict["spec"]["models"].append(
        {
            "name": "smollm2-q",
            "source": "org/model",
            "precisions": ["w8a8-int8", "w4a16-g32"],
            "engines": ["vllm"],
            "baselineModel": "smollm2-135m",
        }
    )
    quickstart_dict["spec"]["engines"] = ["transformers", "vllm"]

    runs = expand(_parse(quickstart_dict).spec)

    assert [r.id for r in runs] == [
        "smollm2-135m-bf16-transformers",
        "smollm2-135m-bf16-vllm",
        "smollm2-q-w8a8-int8-vllm",
        "smollm2-q-w4a16-g32-vllm",
    ]
    spec = build_run_spec(_parse(quickstart_dict), runs[2], "file:///tmp/e")
    assert RunSpec.model_validate_json(spec.to_json()).engine == Engine.VLLM


@pytest.mark.parametrize(
    ("precisions", "engines", "says"),
    [
        (["bf16", "w8a8-int8"], ["auto"], "w8a8-int8 on auto: w8a8-int8 is made by QuantEval"),
        (["bf16", "nf4"], ["vllm"], "nf4 on vllm: bitsandbytes runs on vLLM only through"),
        (["bf16", "hqq-4bit"], ["vllm"], "use w4a16-g32 on vllm"),
        (["bf16"], ["llama.cpp"], "bf16 on llama.cpp: llama.cpp runs a GGUF file as shipped"),
        (["bf16", "fp8-per-block"], ["transformers"], "use torchao-float8 on transformers"),
    ],
)
def test_a_pair_the_table_rules_out_is_refused_with_the_pair_and_an_alternative(
    quickstart_dict: Manifest, precisions: list[str], engines: list[str], says: str
) -> None:
    quickstart_dict["spec"]["precisions"] = precisions
    quickstart_dict["spec"]["engines"] = engines

    with pytest.raises(InvalidSpecError, match=re.escape(says)):
        _parse(quickstart_dict)


def test_a_run_on_an_engine_without_a_baseline_there_compares_with_the_default_engines(
    quickstart_dict: Manifest,
) -> None:
    quickstart_dict["spec"]["precisions"] = ["bf16"]
    quickstart_dict["spec"]["models"].append(
        {
            "name": "smollm2-gguf",
            "source": "/models/smollm2.gguf",
            "precisions": ["native"],
            "engines": ["llama.cpp"],
            "baselineModel": "smollm2-135m",
        }
    )
    assert [r.id for r in expand(_parse(quickstart_dict).spec)] == [
        "smollm2-135m-bf16",
        "smollm2-gguf-native-llamacpp",
    ]
    quickstart_dict["spec"]["models"][1]["engines"] = ["vllm"]  # a vllm run needs vllm's baseline
    quickstart_dict["spec"]["models"][1]["precisions"] = ["w8a8-int8"]
    with pytest.raises(InvalidSpecError, match="add vllm to smollm2-135m's engines"):
        _parse(quickstart_dict)


def test_a_run_id_over_63_characters_is_refused_naming_the_model(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["models"][0]["name"] = "m" * 40
    quickstart_dict["spec"]["precisions"] = ["fp32", "torchao-int4wo"]
    quickstart_dict["spec"]["engines"] = ["transformers"]

    with pytest.raises(InvalidSpecError, match=r"models\[0\]\.name: the run id .* is over 63"):
        _parse(quickstart_dict)


def test_an_evaluation_over_the_run_limit_is_refused(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["models"] = [
        {"name": f"m{i}", "source": "org/model"} for i in range(64)
    ]
    quickstart_dict["spec"]["precisions"] = ["fp32", "bf16", "fp16", "int8", "nf4", "fp4", "native"]
    quickstart_dict["spec"]["engines"] = ["auto", "transformers"]

    with pytest.raises(InvalidSpecError, match=r"896 runs.*at most 832.*split it"):
        _parse(quickstart_dict)


def test_continuous_batching_is_vllms_only(quickstart_dict: Manifest) -> None:
    quickstart_dict["spec"]["precisions"] = ["bf16"]
    quickstart_dict["spec"]["generation"]["batchSize"] = "continuous"
    quickstart_dict["spec"]["engines"] = ["auto", "vllm"]

    with pytest.raises(InvalidSpecError, match=r"batchSize: continuous is vLLM.s.*auto runs fixed"):
        _parse(quickstart_dict)
    quickstart_dict["spec"]["engines"] = ["vllm"]
    assert _parse(quickstart_dict).spec.generation.batch_size == "continuous"


def test_the_family_counts_each_comparison_and_each_engine_effect(
    quickstart_dict: Manifest,
) -> None:
    quickstart_dict["spec"]["precisions"] = ["bf16", "fp16"]
    quickstart_dict["spec"]["engines"] = ["auto", "vllm"]
    # fp16 on each engine against its bf16, and vllm's bf16 against auto's: three.
    assert comparison_count(expand(_parse(quickstart_dict).spec)) == 3
    quickstart_dict["spec"]["engines"] = ["vllm"]  # no default engine: no engine effect
    assert comparison_count(expand(_parse(quickstart_dict).spec)) == 1


@pytest.mark.parametrize(
    ("precision", "engine"),
    [(p, e) for e in Engine for p in Precision if p not in RUNS[e]],
)
def test_every_pair_the_table_rules_out_is_refused_naming_it_and_an_alternative(
    quickstart_dict: Manifest, precision: Precision, engine: Engine
) -> None:
    quickstart_dict["spec"]["precisions"] = ["bf16"]
    quickstart_dict["spec"]["models"].append(
        {
            "name": "other", "source": "org/other", "precisions": [precision.value],
            "engines": [engine.value], "baselineModel": "smollm2-135m",
        }
    )  # fmt: skip

    with pytest.raises(InvalidSpecError) as refused:
        _parse(quickstart_dict)

    message = str(refused.value)
    assert f"models[1] (other): {precision} on {engine}: " in message
    assert re.search(r"; (use|add vllm|run) ", message), message


# Replicates


def test_replicates_repeat_each_run_with_other_seeds_and_keep_the_first_runs_id_and_hash(
    quickstart_dict: Manifest,
) -> None:
    once = {run.id: run.content_hash for run in expand(_parse(quickstart_dict).spec)}
    quickstart_dict["spec"]["precisions"] = ["fp32", "int8"]
    quickstart_dict["spec"]["replicates"] = 3
    manifest = _parse(quickstart_dict)

    runs = expand(manifest.spec)

    assert [(r.id, r.replicate) for r in runs] == [
        ("smollm2-135m-fp32", 1),
        ("smollm2-135m-fp32-r2", 2),
        ("smollm2-135m-fp32-r3", 3),
        ("smollm2-135m-int8", 1),
        ("smollm2-135m-int8-r2", 2),
        ("smollm2-135m-int8-r3", 3),
    ]
    # The first replicate is the run as it was: adding replicates keeps its stored result.
    assert runs[0].content_hash == once["smollm2-135m-fp32"]
    assert len({r.content_hash for r in runs}) == len(runs)
    specs = [build_run_spec(manifest, r, "file:///tmp/e") for r in runs[:3]]
    seeds = [s.generation.seed for s in specs]
    assert seeds[0] == manifest.spec.generation.seed and len(set(seeds)) == 3
    assert [s.replicate for s in specs] == [1, 2, 3]
    # A repeat is compared with nothing: the family is the one int8 run against fp32.
    assert comparison_count(runs) == 1
    assert expect_arg(runs[1]) == "smollm2-135m-fp32-r2=smollm2-135m/fp32/auto/r2"


def test_replicates_count_against_the_run_limit_and_the_id_length(
    quickstart_dict: Manifest,
) -> None:
    quickstart_dict["spec"]["models"] = [{"name": f"m{i}", "source": "org/m"} for i in range(64)]
    quickstart_dict["spec"]["precisions"] = ["fp32", "bf16"]
    quickstart_dict["spec"]["replicates"] = 7
    with pytest.raises(InvalidSpecError, match=r"896 runs \(models x precisions x engines x rep"):
        _parse(quickstart_dict)
    quickstart_dict["spec"]["models"] = [{"name": "m" * 40, "source": "org/m"}]
    quickstart_dict["spec"]["precisions"] = ["bf16", "fp8-per-tensor"]
    quickstart_dict["spec"]["engines"] = ["vllm"]
    quickstart_dict["spec"]["replicates"] = 9  # 63 characters with -r9
    _parse(quickstart_dict)
    quickstart_dict["spec"]["replicates"] = 10
    with pytest.raises(InvalidSpecError, match=r"run id '.*-fp8-per-tensor-vllm-r10' is over 63"):
        _parse(quickstart_dict)


def test_raw_prompts_special_tokens_enter_a_raw_runs_hash_and_the_old_hash_is_kept_apart(
    quickstart_dict: Manifest,
) -> None:
    """A chat run keeps its hash (pinned above); a raw run's input changed with the paper
    preset's addSpecialTokens: false, so its hash did, and the hash it had is its legacy hash."""
    quickstart_dict["spec"]["generation"] = {"preset": "paper"}
    spec = _parse(quickstart_dict).spec
    run = expand(spec)[0]
    assert run.content_hash != legacy_hash(spec, run)
    quickstart_dict["spec"]["generation"] = {"preset": "paper", "addSpecialTokens": True}
    with_bos = expand(_parse(quickstart_dict).spec)[0]
    assert with_bos.content_hash != run.content_hash
    assert legacy_hash(_parse(quickstart_dict).spec, with_bos) == legacy_hash(spec, run)
    # The hash an older operator gave the paper preset's run, over the paper set as it was before
    # prompt 4's trailing space: pinned.
    assert legacy_hash(spec, run) == "471f0a58c951420d"


def test_a_chat_runs_hash_is_over_its_prompts_as_the_template_receives_them(
    quickstart_dict: Manifest,
) -> None:
    """Prompt 4's trailing space is framed away by a chat template (the quick start's pinned
    hashes hold); sent raw, it is input, and so in the hash."""
    paper = expand(_parse(quickstart_dict).spec)[0].content_hash
    del quickstart_dict["spec"]["promptSet"]
    quickstart_dict["spec"]["prompts"] = [p.rstrip() for p in PAPER_PROMPTS]
    assert expand(_parse(quickstart_dict).spec)[0].content_hash == paper
    quickstart_dict["spec"]["generation"] = {"preset": "paper"}
    del quickstart_dict["spec"]["prompts"]
    spaced = expand(_parse(quickstart_dict).spec)[0].content_hash
    quickstart_dict["spec"]["prompts"] = [p.rstrip() for p in PAPER_PROMPTS]
    assert expand(_parse(quickstart_dict).spec)[0].content_hash != spaced


def test_score_text_enters_the_hash_only_when_it_is_not_the_default(
    quickstart_dict: Manifest,
) -> None:
    default = expand(_parse(quickstart_dict).spec)[0].content_hash
    quickstart_dict["spec"]["classifier"]["scoreText"] = "continuation"
    assert expand(_parse(quickstart_dict).spec)[0].content_hash == default
    quickstart_dict["spec"]["classifier"]["scoreText"] = "promptAndContinuation"
    assert expand(_parse(quickstart_dict).spec)[0].content_hash != default


def test_the_expected_rating_is_the_default_and_an_evaluation_that_kept_greedy_keeps_its_hash(
    quickstart_dict: Manifest,
) -> None:
    """The default method rates otherwise than the greedy default of before: its runs' hashes
    change (their stored ratings are not this spec's); `method: greedy` keeps the old hash
    (pinned: the quick start with the intensity task, before the default changed)."""
    quickstart_dict["spec"]["tasks"] = ["generation", "intensity"]
    spec = _parse(quickstart_dict).spec
    assert spec.intensity.method == "expected"
    default = expand(spec)[0].content_hash
    quickstart_dict["spec"]["intensity"] = {"method": "greedy"}
    greedy = expand(_parse(quickstart_dict).spec)[0].content_hash
    assert greedy == "91a6620ee21ca3cb" != default
    quickstart_dict["spec"]["intensity"] = {"method": "expected"}
    assert expand(_parse(quickstart_dict).spec)[0].content_hash == default
