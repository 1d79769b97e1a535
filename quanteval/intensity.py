"""The intensity task's pure parts: the built-in corpus, the texts a run rates, the prompt it
sends, and the rule that reads a rating from an answer (the README states the same rule)."""

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib.resources import files
from typing import Any, Final

import yaml
from pydantic import ValidationError

from quanteval.api.errors import InvalidSpecError
from quanteval.api.runspec import IntensityItem, IntensityRun
from quanteval.api.spec import IntensitySpec, IntensityText

CORPUS_FILE: Final = "intensity_corpus.yaml"
MAX_TEXTS_FROM: Final = 10_000  # texts a textsFrom file may hold
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


def _own_items(texts: Sequence[IntensityText]) -> list[IntensityItem]:
    """A user's texts, keyed t1, t2, ... in their order."""
    return [
        IntensityItem(key=f"t{i}", text=t.text, emotion=t.emotion, gold=t.gold)
        for i, t in enumerate(texts, start=1)
    ]


def intensity_run(spec: IntensitySpec, emotions: Sequence[str]) -> IntensityRun:
    """What a run rates: the spec's own texts, where to read them, or the built-in corpus."""
    if spec.texts_from is not None:
        items = []
    elif spec.texts is not None:
        items = _own_items(spec.texts)
    else:
        items = builtin_items(emotions)
    return IntensityRun(
        template=spec.prompt_template,
        max_new_tokens=spec.max_new_tokens,
        items=items,
        texts_from=spec.texts_from,
        method=spec.method,
    )


def items_from_lines(text: str, emotions: Sequence[str]) -> list[IntensityItem]:
    """The texts of a textsFrom file (JSON lines; blank lines skipped), keyed like inline texts.
    InvalidSpecError names the field and the first bad line."""
    field = "spec.intensity.textsFrom"
    texts: list[IntensityText] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = IntensityText.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValidationError) as error:
            detail = error.errors()[0]["msg"] if isinstance(error, ValidationError) else error.msg
            raise InvalidSpecError(
                f'{field}: line {number}: {detail} (each line: {{"text": ..., "emotion": ..., '
                '"gold": 0-100, optional})'
            ) from None
        if item.emotion not in emotions:
            raise InvalidSpecError(
                f"{field}: line {number}: emotion {item.emotion!r} is not one of the "
                f"evaluation's emotions ({', '.join(emotions)})"
            )
        texts.append(item)
        if len(texts) > MAX_TEXTS_FROM:
            raise InvalidSpecError(f"{field}: more than {MAX_TEXTS_FROM:,} texts")
    if not texts:
        raise InvalidSpecError(f"{field}: no texts (an empty file)")
    return _own_items(texts)


def rating_prompt(template: str, item: IntensityItem) -> str:
    """The template with the emotion and the text in place (no str.format: texts hold braces)."""
    return template.replace("{emotion}", item.emotion).replace("{text}", item.text)


class ParseFailure(StrEnum):
    """Why an answer holds no rating: each counted apart (IntensityFigures)."""

    NO_NUMBER = "no number"
    SCALE_ECHO = "the scale echoed"  # "On a scale of 0 to 100, ...": its 0 is no rating
    RANGE = "a range"  # "60-70", "between 60 and 70"
    FRACTION = "a fraction"  # "8/10": another scale, never rescaled
    OUT_OF_N = "out of N"  # "8 out of 10"
    LIST_NUMBERING = "list numbering"  # "1. The text ..."
    OUT_OF_RANGE = "outside 0-100"
    MOSTLY_NO_NUMBER = "mostly no number"  # intensity.method expected: over half the mass


RATING_RULE: Final = (
    "the first number in the answer, when it is a rating on 0-100; a parse failure, each of its "
    "own reason, when there is none, when it begins an echo of the scale ('0 to 100'), a range "
    "('60-70', 'between 60 and 70'), a fraction ('8/10') or 'N out of M', when it numbers a list "
    "('1. The text'), or when it is outside 0-100; never rescaled, never clamped"
)
_SCALE_ECHO: Final = re.compile(r"[01]\s*(?:-|–|—|to)\s*(?:10|100)\b", re.IGNORECASE)
_RANGE: Final = re.compile(r"\d+(?:\.\d+)?\s*(?:-|–|—|to)\s*\d")
_FRACTION: Final = re.compile(r"\d+(?:\.\d+)?\s*/\s*\d")
_OUT_OF_N: Final = re.compile(r"\d+(?:\.\d+)?\s+out\s+of\s+\d", re.IGNORECASE)
_LIST_ITEM: Final = re.compile(r"1[.)]\s+[^\W\d]")


@dataclass(frozen=True)
class Rating:
    """What an answer says: its rating, or why it holds none."""

    value: float | None
    failure: ParseFailure | None = None


def _failure(answer: str, at: int) -> ParseFailure | None:
    """Why the number at `at` is no rating, or None when it is one (RATING_RULE)."""
    rest = answer[at:]
    if _SCALE_ECHO.match(rest):
        return ParseFailure.SCALE_ECHO
    if _RANGE.match(rest) or answer[:at].rstrip().lower().endswith("between"):
        return ParseFailure.RANGE
    if _FRACTION.match(rest):
        return ParseFailure.FRACTION
    if _OUT_OF_N.match(rest):
        return ParseFailure.OUT_OF_N
    line_start = answer.rfind("\n", 0, at) + 1
    if not answer[line_start:at].strip() and _LIST_ITEM.match(rest):
        return ParseFailure.LIST_NUMBERING
    return None


def read_rating(answer: str) -> Rating:
    """The answer's rating by RATING_RULE, or the reason it has none (never a 0 for no
    rating)."""
    found = _NUMBER.search(answer)
    if found is None:
        return Rating(None, ParseFailure.NO_NUMBER)
    failure = _failure(answer, found.start())
    if failure is not None:
        return Rating(None, failure)
    value = float(found.group())
    if not 0.0 <= value <= 100.0:
        return Rating(None, ParseFailure.OUT_OF_RANGE)
    return Rating(value)
