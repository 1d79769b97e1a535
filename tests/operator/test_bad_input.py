"""Bad input on the real control plane: each invalid QuantEval is refused, naming what is wrong.

Two layers refuse a manifest. The API server refuses what the CRD's OpenAPI schema and CEL rules
can check (and kubectl's strict field validation refuses unknown fields), so `kubectl apply`
fails and nothing is stored. What only the operator's pydantic models can check (the untyped
`spec.emotions`, prompt placeholders, the classifier's choice, a name Job names cannot carry) is
stored, and the operator marks it Valid=False (reason InvalidSpec) without creating a Job.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from devcluster.controlplane import Cluster
from devcluster.waiting import wait_until
from quanteval.api.errors import InvalidSpecError
from quanteval.api.spec import parse_manifest
from tests.builders import make_manifest
from tests.operator.harness import OperatorProcess, condition, get_eval, install_crd, jobs

JSON = dict[str, Any]
# Never loaded: a valid spec here is suspended, and an invalid one never gets a Job.
MODEL: JSON = {"name": "tiny", "source": "/nonexistent/model"}


def _eval(name: str = "bad", **spec: Any) -> JSON:
    """A QuantEval as `harness.manifest` builds it, as a dict; ``spec`` replaces top-level keys."""
    return make_manifest(name, **({"models": [MODEL], "resources": {"gpus": 1}} | spec))


def _without_prompts(**spec: Any) -> JSON:
    body = _eval(**spec)
    del body["spec"]["prompts"]
    return body


def _apply(cluster: Cluster, namespace: str, body: JSON) -> Any:
    return cluster.kubectl(
        "apply", "-f", "-", input=yaml.safe_dump(body), namespace=namespace, check=False
    )


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> Iterator[None]:
    """The CRD alone: the API server's checks need no operator."""
    install_crd(cluster)
    yield


# -- refused by the API server ------------------------------------------------------------------

APPLY_REJECTIONS = [
    pytest.param(
        _eval(name="dotted.name"), ["metadata.name", "DNS-1123 label"], id="name-with-a-dot"
    ),
    pytest.param(
        _eval(precisions=["fp64"]), ["spec.precisions[0]", '"fp64"'], id="unknown-precision"
    ),
    pytest.param(_eval(models=[]), ["spec.models", "at least 1 items"], id="empty-models"),
    pytest.param(_eval(parallelism=-1), ["spec.parallelism", "-1"], id="negative-parallelism"),
    pytest.param(
        _eval(workerImage="Registry/Worker Image"),
        ["spec.workerImage", "should match"],
        id="malformed-worker-image",
    ),
    pytest.param(
        _eval(generation={"temperature": 0}),
        ["spec.generation.temperature", "greater than 0"],
        id="temperature-0",
    ),
    pytest.param(
        _eval(generation={"temperature": 11}),
        ["spec.generation.temperature", "less than or equal to 10"],
        id="temperature-11",
    ),
    pytest.param(
        _eval(generation={"topP": 1.5}),
        ["spec.generation.topP", "less than or equal to 1"],
        id="top-p-1.5",
    ),
    pytest.param(
        _eval(name="n" * 53), ["metadata.name: at most 52 characters"], id="name-of-53-characters"
    ),
    pytest.param(
        _eval(models=[MODEL, {"name": "tiny", "source": "/elsewhere"}]),
        ["spec", "model names must be unique"],
        id="duplicate-model-names",
    ),
    pytest.param(
        _eval(precisions=["fp32", "int8", "fp32"]),
        ["spec", "each precision may appear once"],
        id="duplicate-precisions",
    ),
    pytest.param(
        _eval(models=[{"name": "TinyLlama", "source": "/m"}]),
        ["spec.models[0].name", "TinyLlama"],
        id="uppercase-model-name",
    ),
    pytest.param(
        _eval(promptSet="paper"),
        ["spec", "set promptSet or prompts, not both"],
        id="prompt-set-and-prompts",
    ),
    pytest.param(
        _eval(precisions=["fp32", "int8"], baseline="bf16"),
        ["spec", "baseline must be one of precisions"],
        id="baseline-not-among-precisions",
    ),
    pytest.param(
        _eval(models=[MODEL | {"precisions": ["int8", "int8"]}]),
        ["spec", "each precision may appear once in a model's precisions"],
        id="duplicate-model-precisions",
    ),
    pytest.param(
        _eval(models=[MODEL | {"baselineModel": MODEL["name"]}]),
        ["spec", "a model cannot be its own baselineModel"],
        id="baseline-model-itself",
    ),
    pytest.param(
        _eval(models=[MODEL, {"name": "gptq", "source": "/g", "baselineModel": "llama"}]),
        ["spec", "baselineModel must name an entry of models"],
        id="baseline-model-names-no-entry",
    ),
    pytest.param(
        _eval(generation={"batchSize": 0}),
        ["spec.generation.batchSize", "must be an integer from 1 to 4096, or auto"],
        id="batch-size-0",
    ),
    pytest.param(
        _eval(generation={"batchSize": "many"}),
        ["spec.generation.batchSize", "must be an integer from 1 to 4096, or auto"],
        id="batch-size-many",
    ),
    pytest.param(
        _eval(resources={"gpus": -1}),
        ["spec.resources.gpus", "must be an integer from 0 to 64, or auto"],
        id="gpus-minus-1",
    ),
    pytest.param(
        _eval(parallelsim=2),  # sic: kubectl's default --validate=strict refuses the typo
        ['unknown field "spec.parallelsim"'],
        id="unknown-field-in-spec",
    ),
    pytest.param(
        _eval(output={"s3": {"bucket": "My_Bucket"}}),
        ["spec.output.s3.bucket", "My_Bucket"],
        id="bad-bucket-name",
    ),
    pytest.param(
        _eval(models=[{"name": "tiny"}]),
        ["spec.models[0].source", "Required value"],
        id="model-without-source",
    ),
    pytest.param(
        _eval(generation={"preset": "creative"}),
        ["spec.generation.preset", '"creative"'],
        id="unknown-generation-preset",
    ),
    pytest.param(
        _eval(tasks=["generation", "summary"]),
        ["spec.tasks[1]", '"summary"', '"intensity"'],
        id="unknown-task",
    ),
    pytest.param(
        _eval(tasks=["intensity"]), ["spec", "tasks must hold generation"], id="no-generation"
    ),
    pytest.param(
        _eval(tasks=["generation", "intensity"], intensity={"texts": []}),
        ["spec.intensity.texts", "at least 1 items"],
        id="empty-intensity-texts",
    ),
    pytest.param(
        _eval(tasks=["generation", "intensity"], intensity={"template": "Rate {emotion}"}),
        ["spec.intensity", "template must contain {text}"],
        id="template-without-text",
    ),
    pytest.param(
        _eval(
            tasks=["generation", "intensity"],
            intensity={"texts": [{"text": "yay", "emotion": "joy"}], "textsFrom": "s3://b/t"},
        ),
        ["spec.intensity", "set texts or textsFrom, not both"],
        id="texts-and-texts-from",
    ),
]


@pytest.mark.parametrize(("body", "expected"), APPLY_REJECTIONS)
def test_the_api_server_refuses_it_naming_the_field(
    cluster: Cluster, crd: None, namespace: str, body: JSON, expected: list[str]
) -> None:
    result = _apply(cluster, namespace, body)
    assert result.returncode != 0, result.stdout
    for text in expected:
        assert text in result.stderr, result.stderr
    name = body["metadata"]["name"]
    stored = cluster.kubectl("get", "quanteval", name, namespace=namespace, check=False)
    assert stored.returncode != 0 and "NotFound" in stored.stderr


@pytest.mark.parametrize(("body", "expected"), APPLY_REJECTIONS)
def test_the_spec_models_refuse_it_too(body: JSON, expected: list[str]) -> None:
    """The CRD is generated from the pydantic models: what the API server refuses, they refuse."""
    with pytest.raises(InvalidSpecError):
        parse_manifest(copy.deepcopy(body))


def test_only_parallelism_and_suspend_change_after_creation(
    cluster: Cluster, crd: None, namespace: str
) -> None:
    # Suspended, and in a namespace without the S3 Secret: no worker ever starts.
    original = _eval("fixed", precisions=["fp32", "int8"], parallelism=1, suspend=True)
    created = _apply(cluster, namespace, original)
    assert created.returncode == 0, created.stderr
    generation = get_eval(cluster, namespace, "fixed")["metadata"]["generation"]

    immutable = "spec is immutable after creation except parallelism and suspend"
    changes: list[JSON] = [
        {"models": [MODEL, {"name": "other", "source": "/other"}]},
        {"models": [{"name": "renamed", "source": MODEL["source"]}]},
        {"precisions": ["fp32"]},
        {"generation": {"maxNewTokens": 9}},
        {"resources": {"gpus": 2}},
    ]
    for change in changes:
        refused = _apply(cluster, namespace, _eval("fixed", **(original["spec"] | change)))
        assert refused.returncode != 0, f"{change} was accepted"
        assert immutable in refused.stderr, refused.stderr
    body = get_eval(cluster, namespace, "fixed")
    assert body["metadata"]["generation"] == generation
    assert body["spec"]["models"] == [MODEL]
    assert body["spec"]["precisions"] == ["fp32", "int8"]

    accepted = _apply(cluster, namespace, _eval("fixed", **(original["spec"] | {"parallelism": 3})))
    assert accepted.returncode == 0, accepted.stderr
    resumed = _eval("fixed", **(original["spec"] | {"parallelism": 5, "suspend": False}))
    accepted = _apply(cluster, namespace, resumed)
    assert accepted.returncode == 0, accepted.stderr
    body = get_eval(cluster, namespace, "fixed")
    assert (body["spec"]["parallelism"], body["spec"]["suspend"]) == (5, False)
    assert body["metadata"]["generation"] == generation + 2


# -- stored, then marked Valid=False by the operator --------------------------------------------

OPERATOR_REJECTIONS = [
    pytest.param(
        _eval(emotions="plutchik"),
        ["spec.emotions", "unknown emotion set 'plutchik'", "ekman7, isear"],
        id="unknown-emotion-set",
    ),
    pytest.param(
        _eval(emotions=["joy", "awe"]),
        ["spec.emotions: ['awe'] are not known to the builtin classifier", "classifier.source"],
        id="emotion-unknown-to-the-builtin-classifier",
    ),
    pytest.param(
        _eval(emotions=["joy", "joy"]),
        ["spec.emotions", "each emotion may appear once"],
        id="duplicate-emotions",
    ),
    pytest.param(
        _eval(emotions=["joy"]), ["spec.emotions", "at least 2 items"], id="a-single-emotion"
    ),
    pytest.param(
        _eval(emotions=["joy", "Big Anger"]),
        ["spec.emotions[1]", "should match pattern"],
        id="emotion-name-with-a-space",
    ),
    pytest.param(_eval(emotions=7), ["spec.emotions"], id="emotions-a-number"),
    pytest.param(
        _eval(prompts=["<class> sentence", "a sentence with no placeholder"]),
        ["spec.prompts[1]: must contain <class>"],
        id="prompt-without-class-placeholder",
    ),
    pytest.param(
        _without_prompts(promptSet="novel"),
        ["promptSet: unknown prompt set 'novel'", "paper"],
        id="unknown-prompt-set",
    ),
    pytest.param(
        _eval(classifier={"builtin": "minilm", "source": "j-hartmann/emotion"}),
        ["spec.classifier", "set exactly one of classifier.builtin and classifier.source"],
        id="classifier-builtin-and-source",
    ),
    pytest.param(
        _eval(
            tasks=["generation", "intensity"],
            intensity={"texts": [{"text": "eek", "emotion": "fear"}]},
        ),
        ["spec.intensity.texts[0].emotion: 'fear' is not one of the evaluation's emotions"],
        id="intensity-text-of-another-emotion",
    ),
    pytest.param(
        _eval(tasks=["generation", "intensity"], intensity={"textsFrom": "./mine.jsonl"}),
        ["spec.intensity.textsFrom: ./mine.jsonl is not an s3:// object"],
        id="intensity-texts-from-a-local-path",
    ),
    pytest.param(
        _eval(classifier={"builtin": "minilm", "labelMap": {"happy": "joy"}}),
        ["spec.classifier", "classifier.labelMap applies to a classifier.source only"],
        id="label-map-with-builtin-classifier",
    ),
]


@pytest.mark.parametrize(("body", "expected"), OPERATOR_REJECTIONS)
def test_the_operator_marks_it_invalid_naming_the_field_and_creates_no_job(
    cluster: Cluster,
    eval_namespace: str,
    operator: OperatorProcess,
    body: JSON,
    expected: list[str],
) -> None:
    name = body["metadata"]["name"]
    applied = _apply(cluster, eval_namespace, body)
    assert applied.returncode == 0, applied.stderr  # the CRD cannot check it: stored

    def invalid() -> JSON | None:
        found = condition(get_eval(cluster, eval_namespace, name), "Valid")
        return found if found.get("status") == "False" else None

    valid = wait_until(invalid, timeout=60, what=f"{name} to be Valid=False", interval=0.5)
    assert valid["reason"] == "InvalidSpec"
    for text in expected:
        assert text in valid["message"], valid["message"]
    body = get_eval(cluster, eval_namespace, name)
    succeeded = condition(body, "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "InvalidSpec")
    assert body["status"]["progress"] == "0/0"
    assert jobs(cluster, eval_namespace) == [], operator.logs()[-2000:]


def test_emotions_cannot_change_once_the_operator_has_seen_them_even_while_suspended(
    cluster: Cluster, eval_namespace: str, operator: OperatorProcess
) -> None:
    original = _eval("feelings", suspend=True)
    assert _apply(cluster, eval_namespace, original).returncode == 0

    def seen() -> list[str] | None:
        status = get_eval(cluster, eval_namespace, "feelings").get("status") or {}
        emotions: list[str] | None = status.get("emotions")
        return emotions

    assert wait_until(seen, timeout=120, what="the operator to record the emotions") == [
        "joy",
        "anger",
    ]
    changed = _apply(
        cluster, eval_namespace, _eval("feelings", suspend=True, emotions=["joy", "fear"])
    )
    assert changed.returncode == 0  # the schema cannot hold an untyped field immutable

    def invalid() -> JSON | None:
        found = condition(get_eval(cluster, eval_namespace, "feelings"), "Valid")
        return found if found.get("status") == "False" else None

    try:
        valid = wait_until(invalid, timeout=120, what="Valid=False", interval=0.5)
    except TimeoutError:
        raise AssertionError(get_eval(cluster, eval_namespace, "feelings")) from None
    assert "spec.emotions changed" in valid["message"] and "then: joy, anger" in valid["message"]
    assert jobs(cluster, eval_namespace) == []


def test_an_operator_with_tenancy_limits_refuses_an_image_or_a_secret_it_does_not_allow(
    cluster: Cluster, eval_namespace: str, operator: OperatorProcess
) -> None:
    """The chart's tenancy values, as the environment they become."""
    limits = {
        "QUANTEVAL_ALLOWED_WORKER_IMAGES": "registry.example.com/qe/*",
        "QUANTEVAL_ALLOWED_SECRETS": "quanteval-s3",
    }
    log_dir = operator.log_dir / "restricted"
    log_dir.mkdir(exist_ok=True)
    restricted = OperatorProcess(operator.kubeconfig, log_dir, operator.settings | limits)
    operator.stop()  # one operator at a time reconciles
    restricted.start()
    try:
        refused = {
            "image": _eval("image", workerImage="evil.example.com/miner:1"),
            "secret": _eval("secret", output={"s3": {"bucket": "qe-results",
                                                      "secretRef": {"name": "prod-db"}}}),
        }  # fmt: skip
        for body in refused.values():
            assert _apply(cluster, eval_namespace, body).returncode == 0
        for name, field in (("image", "spec.workerImage"), ("secret", "secretRef.name")):

            def invalid(name: str = name) -> JSON | None:
                found = condition(get_eval(cluster, eval_namespace, name), "Valid")
                return found if found.get("status") == "False" else None

            valid = wait_until(invalid, timeout=60, what=f"{name} to be refused", interval=0.5)
            assert field in valid["message"] and "tenancy." in valid["message"], valid
        assert jobs(cluster, eval_namespace) == [], restricted.logs()[-2000:]
    finally:
        restricted.stop()
        operator.start()
