"""The CRD: generated from the pydantic models, committed without drift, structural, CEL-bounded."""

import re
import types
from collections.abc import Iterator
from typing import Any, Union, get_args, get_origin

import pytest
import yaml
from pydantic import BaseModel

from quanteval.api.spec import PRESETS, QuantEvalSpec
from quanteval.crd import build_crd, render_crd

from .conftest import REPO_ROOT

CRD_PATH = REPO_ROOT / "crds" / "quantevals.quanteval.io.yaml"
INT_OR_STRING = [{"type": "integer"}, {"type": "string"}]


def _version() -> dict[str, Any]:
    versions = build_crd()["spec"]["versions"]
    assert len(versions) == 1
    version: dict[str, Any] = versions[0]
    return version


def _root() -> dict[str, Any]:
    root: dict[str, Any] = _version()["schema"]["openAPIV3Schema"]
    return root


def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = _root()["properties"]["spec"]
    return spec


def _schemas(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node under `node` (itself included) with a readable path."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _schemas(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _schemas(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _schemas(node["additionalProperties"], f"{path}[*]")
    for index, option in enumerate(node.get("anyOf", [])):
        yield from _schemas(option, f"{path}<anyOf{index}>")


def _keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for value in node:
            yield from _keys(value)


def test_committed_crd_matches_the_models() -> None:
    committed = CRD_PATH.read_text()

    assert committed == render_crd(), (
        f"{CRD_PATH.relative_to(REPO_ROOT)} drifted from quanteval/api/spec.py: run "
        "`python -m quanteval.crd > crds/quantevals.quanteval.io.yaml`"
    )


def test_committed_crd_is_one_yaml_document() -> None:
    documents = list(yaml.safe_load_all(CRD_PATH.read_text()))

    assert documents == [build_crd()]


# The spec schema against the pydantic models


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds: X, X | None, list[X], Annotated[...]."""
    if isinstance(annotation, type) and not get_args(annotation):
        return [annotation] if issubclass(annotation, BaseModel) else []
    found: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        found.extend(_nested_models(arg))
    return found


def _child_object(node: dict[str, Any]) -> dict[str, Any]:
    """The object schema a field of model type has: itself, or its items for a list."""
    if node.get("type") == "array":
        items: dict[str, Any] = node["items"]
        return items
    return node


def _compare(model: type[BaseModel], node: dict[str, Any], path: str) -> list[str]:
    problems: list[str] = []
    properties: dict[str, Any] = node.get("properties", {})
    required = set(node.get("required", []))
    names = set()
    for attribute, field in model.model_fields.items():
        name = field.alias or attribute
        names.add(name)
        if name not in properties:
            problems.append(f"{path}.{name}: missing from the CRD")
            continue
        if field.is_required() != (name in required):
            problems.append(
                f"{path}.{name}: required {field.is_required()} in {model.__name__}, "
                f"{name in required} in the CRD"
            )
        nested = _nested_models(field.annotation)
        if nested:
            assert len(nested) == 1, f"{path}.{name}: several models {nested}"
            problems.extend(_compare(nested[0], _child_object(properties[name]), f"{path}.{name}"))
    for extra in sorted(set(properties) - names):
        problems.append(f"{path}.{extra}: in the CRD but not in {model.__name__}")
    for extra in sorted(required - names):
        problems.append(f"{path}.{extra}: required in the CRD but not a field")
    return problems


def test_every_spec_field_is_in_the_crd_with_the_same_requiredness() -> None:
    assert _compare(QuantEvalSpec, _spec(), "spec") == []


def test_field_names_are_camel_case() -> None:
    for path, _node in _schemas(_spec(), "spec"):
        leaf = path.rsplit(".", 1)[-1]
        assert "_" not in leaf, path


def test_the_field_walk_reaches_nested_models() -> None:
    spec = _spec()
    # A few fields several levels down, so the comparison above cannot pass vacuously.
    assert spec["properties"]["models"]["items"]["required"] == ["name", "source"]
    s3 = spec["properties"]["output"]["properties"]["s3"]
    assert s3["required"] == ["bucket"]
    assert s3["properties"]["secretRef"]["required"] == ["name"]
    tolerations = spec["properties"]["resources"]["properties"]["tolerations"]
    assert "tolerationSeconds" in tolerations["items"]["properties"]
    assert spec["required"] == ["models", "precisions"]


# Structural schema


def test_every_node_has_a_type() -> None:
    for path, node in _schemas(_root(), "$"):
        if "<anyOf" in path:
            continue
        if node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            continue
        assert "type" in node, path
        assert node["type"] in {"object", "array", "string", "integer", "number", "boolean"}, path


def test_no_refs_and_only_int_or_string_any_of() -> None:
    assert "$ref" not in set(_keys(build_crd()))
    assert "$defs" not in set(_keys(build_crd()))
    for path, node in _schemas(_root(), "$"):
        assert "allOf" not in node, path
        assert "oneOf" not in node, path
        if "anyOf" in node:
            assert node["anyOf"] == INT_OR_STRING, path
            assert node.get("x-kubernetes-int-or-string") is True, path
            assert "type" not in node, path
        if node.get("x-kubernetes-int-or-string"):
            assert node.get("x-kubernetes-validations"), f"{path}: int-or-string without a rule"


def test_int_or_auto_fields() -> None:
    spec = _spec()["properties"]
    gpus = spec["resources"]["properties"]["gpus"]
    batch = spec["generation"]["properties"]["batchSize"]

    assert gpus["x-kubernetes-validations"][0]["rule"] == (
        "type(self) == int ? (self >= 0 && self <= 64) : self in ['auto']"
    )
    assert batch["x-kubernetes-validations"][0]["rule"] == (
        "type(self) == int ? (self >= 1 && self <= 4096) : self in ['auto', 'continuous']"
    )


def _unbounded(node: dict[str, Any], path: str) -> list[str]:
    problems = []
    if node.get("type") == "string" and "maxLength" not in node and "enum" not in node:
        problems.append(f"{path}: string without maxLength or enum")
    if node.get("type") == "array" and "maxItems" not in node:
        problems.append(f"{path}: array without maxItems")
    if (
        node.get("type") == "object"
        and "additionalProperties" in node
        and "maxProperties" not in node
    ):
        problems.append(f"{path}: map without maxProperties")
    return problems


def test_spec_strings_and_arrays_are_bounded_for_cel_cost() -> None:
    problems = []
    for path, node in _schemas(_spec(), "spec"):
        # The string branch of int-or-"auto" is bounded by its CEL rule; map values are below.
        if "<anyOf" in path or path.endswith("[*]"):
            continue
        problems.extend(_unbounded(node, path))
    assert problems == []


def test_spec_map_values_are_bounded() -> None:
    problems = []
    for path, node in _schemas(_spec(), "spec"):
        if path.endswith("[*]"):
            problems.extend(_unbounded(node, path))
    assert problems == []


def _typeless(node: dict[str, Any]) -> bool:
    return "type" not in node and not node.get("x-kubernetes-int-or-string")


def test_cel_rules_only_reference_typed_nodes() -> None:
    problems = []
    for path, node in _schemas(_spec(), "spec"):
        if _typeless(node) and node.get("x-kubernetes-validations"):
            problems.append(f"{path}: a CEL rule on a node without a type")
        for rule in node.get("x-kubernetes-validations", []):
            for name, child in node.get("properties", {}).items():
                if _typeless(child) and f"self.{name}" in rule["rule"]:
                    problems.append(f"{path}: rule references {name}, a node without a type")
    assert problems == []


def test_descriptions_name_fields_as_the_schema_spells_them() -> None:
    names = set()
    descriptions = []
    for path, node in _schemas(_spec(), "spec"):
        names.add(path.rsplit(".", 1)[-1].split("[")[0].split("<")[0])
        if "description" in node:
            descriptions.append((path, node["description"]))
    unknown = [
        f"{path}: {word}"
        for path, text in descriptions
        for word in re.findall(r"\b[a-z]+(?:[A-Z][a-zA-Z0-9]*)+\b", text)
        if word not in names and word != "vLLM"  # a product's name, not a field's
    ]
    assert unknown == []


# Names, columns, subresource


def test_names_short_name_and_scope() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]

    assert crd["metadata"]["name"] == "quantevals.quanteval.io"
    assert crd["spec"]["group"] == "quanteval.io"
    assert crd["spec"]["scope"] == "Namespaced"
    assert names["kind"] == "QuantEval"
    assert names["plural"] == "quantevals"
    assert names["shortNames"] == ["qe"]


def test_version_served_stored_with_status_subresource() -> None:
    version = _version()

    assert version["name"] == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = {c["name"]: c for c in _version()["additionalPrinterColumns"]}

    assert list(columns) == ["Status", "Progress", "Best", "Age"]
    assert columns["Progress"]["jsonPath"] == ".status.progress"
    assert columns["Best"]["jsonPath"] == ".status.summary.bestRun"
    assert columns["Age"] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    }
    assert "Succeeded" in columns["Status"]["jsonPath"]


def test_printer_columns_point_at_status_fields() -> None:
    status = _root()["properties"]["status"]["properties"]

    assert "progress" in status
    assert "bestRun" in status["summary"]["properties"]
    assert "conditions" in status


# Validation rules


def _immutability_rule() -> str:
    rules = [r for r in _spec()["x-kubernetes-validations"] if "immutable" in r.get("message", "")]
    assert len(rules) == 1
    rule: str = rules[0]["rule"]
    return rule


def test_immutability_rule_spares_parallelism_and_suspend() -> None:
    rule = _immutability_rule()

    assert "oldSelf" in rule
    assert "parallelism" not in rule
    assert "suspend" not in rule
    for name, node in _spec()["properties"].items():
        if name not in {"parallelism", "suspend"} and not _typeless(node):
            assert f"self.{name} == oldSelf.{name}" in rule, name
    # emotions has no type, so CEL cannot read it: the operator guards it through content hashes.
    assert "emotions" not in rule


def test_optional_fields_without_default_compare_presence() -> None:
    rule = _immutability_rule()

    # baseline has no default: an absent value must stay absent.
    assert "has(self.baseline) == has(oldSelf.baseline)" in rule
    assert "has(self.models)" not in rule


def test_cross_field_rules() -> None:
    messages = [r["message"] for r in _spec()["x-kubernetes-validations"]]

    assert "set promptSet or prompts, not both" in messages
    assert "baseline must be one of precisions" in messages
    assert "model names must be unique" in messages


PRESET_GOVERNED = (
    "promptFormat", "temperature", "topK", "topP", "doSample", "samplesPerPrompt", "maxLength",
    "maxNewTokens", "addSpecialTokens",
)  # fmt: skip


@pytest.mark.parametrize("field", PRESET_GOVERNED)
def test_preset_fields_have_no_schema_default(field: str) -> None:
    generation = _spec()["properties"]["generation"]["properties"]

    assert field in generation
    assert "default" not in generation[field]


def test_preset_fields_are_the_ones_checked() -> None:
    assert {key for preset in PRESETS.values() for key in preset} == set(PRESET_GOVERNED)


def test_other_defaults_are_in_the_schema() -> None:
    spec = _spec()["properties"]

    assert spec["generation"]["properties"]["preset"]["default"] == "paper"
    assert spec["generation"]["properties"]["seed"]["default"] == 1234
    assert spec["parallelism"]["default"] == 4
    assert spec["suspend"]["default"] is False
    assert spec["backoffLimit"]["default"] == 1
    assert spec["activeDeadlineSeconds"]["default"] == 21600
    assert spec["emotions"]["default"] == "isear"
    assert spec["classifier"]["default"] == {"builtin": "minilm"}
    assert spec["generation"]["default"] == {}


def test_generated_defaults_parse() -> None:
    # What the API server stores for a minimal object must load as a spec.
    spec = _spec()["properties"]
    minimal = {
        "models": [{"name": "m", "source": "org/m"}],
        "precisions": ["fp32"],
        **{name: node["default"] for name, node in spec.items() if "default" in node},
    }

    QuantEvalSpec.model_validate(minimal)


def test_crd_loads_as_unions_only_where_expected() -> None:
    # Guards the helper above against a typing change hiding nested models.
    assert _nested_models(int | None) == []
    assert _nested_models(Union[QuantEvalSpec, None]) == [QuantEvalSpec]  # noqa: UP007
    assert _nested_models(list[QuantEvalSpec]) == [QuantEvalSpec]
    assert get_origin(int | None) is types.UnionType
