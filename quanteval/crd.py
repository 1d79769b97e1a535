"""The QuantEval CRD, generated from the pydantic models: one source of truth for both.

`python -m quanteval.crd > crds/quantevals.quanteval.io.yaml` writes it; a test fails when the
committed file drifts from what this module generates.

The OpenAPI schema is structural: references inlined, `X | None` as an optional X, int-or-"auto"
as `x-kubernetes-int-or-string` with a CEL rule, and the string-or-list `emotions` as a
preserved node checked by CEL. Fields a generation preset fills carry no schema default, so the
stored object keeps the preset meaning; every other default is in the schema, so stored objects
carry it (an empty-string default means "unset" and is not stored).
"""

import json
import sys
from typing import Any

import yaml

from quanteval import API_GROUP, API_VERSION, KIND
from quanteval.api.spec import DNS1123_LABEL, MAX_EVAL_NAME, PRESETS, QuantEvalSpec
from quanteval.api.states import ConditionType
from quanteval.api.status import EvaluationStatus
from quanteval.engines import RUNS, Engine
from quanteval.precisions import PRECISION_ORDER, Precision

PLURAL = "quantevals"
MUTABLE_FIELDS = ("parallelism", "suspend")
PRESET_FIELDS = {key for preset in PRESETS.values() for key in preset}
COPIED = ("description", "minimum", "maximum", "minLength", "maxLength", "pattern", "minItems",
          "maxItems", "maxProperties", "enum", "format")  # fmt: skip


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = dict(defs[node["$ref"].split("/")[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return target | extra
    return node


def _int_or_words(
    node: dict[str, Any], integer: dict[str, Any], words: list[str]
) -> dict[str, Any]:
    """An integer in its bounds, or one of the Literal's words (batchSize: auto, continuous)."""
    low, high = integer.get("minimum", 0), integer.get("maximum", 2**31 - 1)
    listed = ", ".join(f"'{w}'" for w in words)
    rule = f"type(self) == int ? (self >= {low} && self <= {high}) : self in [{listed}]"
    out: dict[str, Any] = {
        "x-kubernetes-int-or-string": True,
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "x-kubernetes-validations": [
            {
                "rule": rule,
                "message": f"must be an integer from {low} to {high}, or {' or '.join(words)}",
            }
        ],
    }
    if "description" in node:
        out["description"] = " ".join(node["description"].split())
    return out


def _emotions(node: dict[str, Any]) -> dict[str, Any]:
    """A set name or a list: no structural type fits both, and CEL cannot read an untyped node,
    so the operator checks this field (Valid=False naming it) and keeps it immutable (a Job's
    content hash would change)."""
    return {
        "description": " ".join(node.get("description", "").split()),
        "default": node.get("default", "isear"),
        "x-kubernetes-preserve-unknown-fields": True,
    }


def structural(node: dict[str, Any], defs: dict[str, Any], path: str = "") -> dict[str, Any]:
    """One JSON-schema node of pydantic's as a structural OpenAPI v3 node."""
    node = _resolve(node, defs)
    if "anyOf" in node:
        options = [_resolve(o, defs) for o in node["anyOf"] if o.get("type") != "null"]
        types = sorted(o.get("type", "") for o in options)
        if len(options) == 1:
            merged = options[0] | {k: v for k, v in node.items() if k != "anyOf"}
            return structural(merged, defs, path)
        if types == ["integer", "number"]:  # a number that stays an integer when it is one
            return {"type": "number"}
        if types == ["integer", "string"]:
            integer = next(o for o in options if o.get("type") == "integer")
            word = next(o for o in options if o.get("type") == "string")
            return _int_or_words(node, integer, word.get("enum") or [word["const"]])
        if types == ["array", "string"] and path.endswith("emotions"):
            return _emotions(node)
        raise ValueError(f"{path}: no structural form for anyOf {types}")
    out: dict[str, Any] = {k: node[k] for k in COPIED if k in node}
    if "description" in out:
        out["description"] = " ".join(out["description"].split())
    if "const" in node:
        out["enum"] = [node["const"]]
    if "exclusiveMinimum" in node:
        out["minimum"] = node["exclusiveMinimum"]
        out["exclusiveMinimum"] = True
    kind = node.get("type")
    out["type"] = kind
    if kind == "object":
        properties = node.get("properties", {})
        if properties:
            out["properties"] = {
                name: structural(child, defs, f"{path}.{name}")
                for name, child in properties.items()
            }
            if node.get("required"):
                out["required"] = list(node["required"])
        elif isinstance(node.get("additionalProperties"), dict):
            out["additionalProperties"] = structural(
                node["additionalProperties"], defs, f"{path}[*]"
            )
    elif kind == "array":
        out["items"] = structural(node["items"], defs, f"{path}[]")
    default = node.get("default")
    preset_governed = ".generation." in f"{path}." and path.rsplit(".", 1)[-1] in PRESET_FIELDS
    if default not in (None, "") and not preset_governed:  # "" means unset: not stored
        out["default"] = default
    return out


def _immutability_rule(properties: dict[str, Any], required: list[str]) -> str:
    clauses = []
    for name, node in properties.items():
        if name in MUTABLE_FIELDS or (
            "type" not in node and "x-kubernetes-int-or-string" not in node
        ):
            continue  # an untyped node (emotions) is out of CEL's reach
        if name in required or "default" in properties[name]:
            clauses.append(f"self.{name} == oldSelf.{name}")
        else:
            clauses.append(
                f"has(self.{name}) == has(oldSelf.{name}) && "
                f"(!has(self.{name}) || self.{name} == oldSelf.{name})"
            )
    return " && ".join(f"({c})" for c in clauses)


def _engine_rules() -> list[dict[str, str]]:
    """quanteval.engines' precision x engine table as CEL, one rule per engine that refuses some
    precisions (quanteval validate names the pair and what to use instead)."""
    engines = "(has(m.engines) ? m.engines : (has(self.engines) ? self.engines : ['auto']))"
    precisions = "(has(m.precisions) ? m.precisions : self.precisions)"
    rules = []
    for engine, runs in RUNS.items():
        if runs == frozenset(Precision):
            continue
        allowed = [p.value for p in PRECISION_ORDER if p in runs]
        listed = ", ".join(f"'{p}'" for p in allowed)
        rules.append(
            {
                "rule": f"self.models.all(m, !{engines}.exists(e, e == '{engine}')"
                f" || {precisions}.all(p, p in [{listed}]))",
                "message": f"engine {engine} runs {', '.join(allowed)} only "
                "(quanteval validate names the pair and what to use instead)",
            }
        )
    return rules


def spec_schema() -> dict[str, Any]:
    schema = QuantEvalSpec.model_json_schema(by_alias=True)
    defs = schema.pop("$defs", {})
    spec = structural(schema, defs, "spec")
    for node in spec["properties"].values():  # an object default that a preset may govern
        if node.get("type") == "object" and "default" not in node and "properties" in node:
            node["default"] = {}
    spec["properties"]["classifier"]["default"] = {"builtin": "minilm"}
    spec["x-kubernetes-validations"] = [
        {
            "rule": _immutability_rule(spec["properties"], spec.get("required", [])),
            "message": "spec is immutable after creation except parallelism and suspend",
        },
        {
            "rule": "!(has(self.prompts) && has(self.promptSet))",
            "message": "set promptSet or prompts, not both",
        },
        {
            "rule": "!has(self.baseline) || self.baseline in self.precisions",
            "message": "baseline must be one of precisions",
        },
        {
            "rule": "self.models.all(m, self.models.exists_one(n, n.name == m.name))",
            "message": "model names must be unique",
        },
        {
            "rule": "self.precisions.all(p, self.precisions.exists_one(q, q == p))",
            "message": "each precision may appear once",
        },
        {
            "rule": "self.models.all(m, !has(m.precisions)"
            " || m.precisions.all(p, m.precisions.exists_one(q, q == p)))",
            "message": "each precision may appear once in a model's precisions",
        },
        {
            "rule": "self.models.all(m, !has(m.baselineModel) || m.baselineModel != m.name)",
            "message": "a model cannot be its own baselineModel",
        },
        {
            "rule": "self.models.all(m, !has(m.baselineModel)"
            " || self.models.exists(n, n.name == m.baselineModel))",
            "message": "baselineModel must name an entry of models",
        },
        {
            "rule": "!has(self.tasks) || 'generation' in self.tasks",
            "message": "tasks must hold generation (the intensity task runs beside it)",
        },
        {
            "rule": "!has(self.engines) || self.engines.all(e, self.engines.exists_one(f, f == e))",
            "message": "each engine may appear once",
        },
        *_engine_rules(),
        {
            "rule": "!has(self.workerImages) || self.workerImages.all(k, k in ["
            + ", ".join(f"'{e}'" for e in Engine)
            + "])",
            "message": f"workerImages is keyed by engine: {', '.join(Engine)}",
        },
    ]
    spec["properties"]["intensity"]["x-kubernetes-validations"] = [
        {
            "rule": "!has(self.template) || self.template == ''"
            " || self.template.contains('{text}')",
            "message": "template must contain {text}, where the text to rate goes",
        },
        {
            "rule": "!(has(self.texts) && has(self.textsFrom))",
            "message": "set texts or textsFrom, not both",
        },
    ]
    return spec


def status_schema() -> dict[str, Any]:
    schema = EvaluationStatus.model_json_schema(by_alias=True)
    status = structural(schema, schema.pop("$defs", {}), "status")
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return status


def build_crd() -> dict[str, Any]:
    succeeded = f'.status.conditions[?(@.type=="{ConditionType.SUCCEEDED}")].reason'
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{API_GROUP}",
            "labels": {
                "app.kubernetes.io/name": "quanteval",
                "app.kubernetes.io/part-of": "quanteval",
            },
        },
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["qe"],
                "categories": ["all"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Status", "type": "string", "jsonPath": succeeded},
                        {"name": "Progress", "type": "string", "jsonPath": ".status.progress"},
                        {"name": "Best", "type": "string", "jsonPath": ".status.summary.bestRun"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "An evaluation of models x precisions on affective text "
                            "generation: one Job per (model, precision).",
                            "required": ["spec"],
                            "x-kubernetes-validations": [
                                {
                                    "rule": f"self.metadata.name.size() <= {MAX_EVAL_NAME}",
                                    "message": f"metadata.name: at most {MAX_EVAL_NAME} characters",
                                },
                                {
                                    "rule": f"self.metadata.name.matches('{DNS1123_LABEL}')",
                                    "message": "metadata.name: a DNS-1123 label (lowercase "
                                    "letters, digits and '-'; no dots): run ids and Job names "
                                    "are built from it",
                                },
                            ],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


class _NoAliases(yaml.SafeDumper):
    """Writes shared lists out in full: a CRD with YAML anchors is harder to read and diff."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_crd() -> str:
    header = "# Generated by `python -m quanteval.crd` from quanteval/api/spec.py: do not edit.\n"
    return header + yaml.dump(build_crd(), Dumper=_NoAliases, sort_keys=False, width=100)


if __name__ == "__main__":
    if sys.argv[1:] == ["--json"]:
        print(json.dumps(build_crd(), indent=2))
    else:
        sys.stdout.write(render_crd())
