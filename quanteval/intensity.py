"""The intensity task's pure parts: the built-in corpus, the texts a run rates, the prompt it
sends, and the rule that reads a rating from an answer (the README states the same rule)."""

import re
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from typing import Any, Final

import yaml

from quanteval.api.runspec import IntensityItem, IntensityRun
from quanteval.api.spec import IntensitySpec

CORPUS_FILE: Final = "intensity_corpus.yaml"
LEVELS: Final = 5  # 1 very mild, 2 mild, 3 moderate, 4 strong, 5 extreme
_NUMBER: Final = re.compile(r"-?\d+(?:\.\d+)?")


@cache
def corpus() -> dict[str, list[dict[str, Any]]]:
    """The built-in corpus: per emotion, situations, each with its texts from level 1 to 5."""
    text = (files("quanteval") / "data" / CORPUS_FILE).read_text(encoding="utf-8")
    loaded: dict[str, list[dict[str, Any]]] = yaml.safe_load(text)
    return loaded


def builtin_items(emotions: Sequence[str]) -> list[IntensityItem]:
    """The corpus's texts for these emotions, keyed `<emotion>-s<situation>-l<level>`."""
    return [
        IntensityItem(key=f"{emotion}-s{s}-l{level}", text=text, emotion=emotion, level=level)
        for emotion in emotions
        for s, situation in enumerate(corpus().get(emotion, []), start=1)
        for level, text in enumerate(situation["texts"], start=1)
    ]


def intensity_run(spec: IntensitySpec, emotions: Sequence[str]) -> IntensityRun:
    """What a run rates: the spec's own texts (keyed t1, t2, ...) or the built-in corpus."""
    if spec.texts is not None:
        items = [
            IntensityItem(key=f"t{i}", text=t.text, emotion=t.emotion, gold=t.gold)
            for i, t in enumerate(spec.texts, start=1)
        ]
    else:
        items = builtin_items(emotions)
    return IntensityRun(
        template=spec.prompt_template, max_new_tokens=spec.max_new_tokens, items=items
    )


def rating_prompt(template: str, item: IntensityItem) -> str:
    """The template with the emotion and the text in place (no str.format: texts hold braces)."""
    return template.replace("{emotion}", item.emotion).replace("{text}", item.text)


def parse_rating(answer: str) -> float | None:
    """The first number in the answer, clamped to 0-100; None when there is none (a parse
    failure, never a 0)."""
    found = _NUMBER.search(answer)
    if found is None:
        return None
    return min(max(float(found.group()), 0.0), 100.0)
