"""The per-sample records: one line of a run's `generations.jsonl` (`SampleRecord`), written by
the worker as each sample is generated (then again once scored) and read by the report; one line
of its `ratings.jsonl` (`RatingRecord`), the intensity task's answer to one text.

Field names are the file's since its first version (`key`, `emotion`, `predicted`,
`promptTokens`, `newTokens`, ...); new fields are additions. A line carries only what is known
when it is written: no `predicted` or `probabilities` before the classifier has scored it.
"""

import hashlib
import json
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel

SampleKey = tuple[int, str, int]  # prompt id, intended emotion, sample index


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class _Record(BaseModel):
    """A line of a per-sample file; readers ignore fields they do not know, so a newer
    worker's additions still read."""

    model_config = ConfigDict(
        frozen=True, extra="ignore", populate_by_name=True, alias_generator=to_camel
    )

    @classmethod
    def from_line(cls, line: str) -> Self:
        """Raises pydantic.ValidationError when the line is not a record."""
        return cls.model_validate_json(line)


class SampleRecord(_Record):
    key: str
    prompt_id: int
    emotion: str
    sample_index: int = 0
    seed: int | None = None
    prompt: str = ""
    prompt_sha256: str | None = None  # of the prompt as answered; absent in older files
    text: str = ""
    predicted: str = ""  # the classifier's label; "" until scored
    probabilities: dict[str, float] = {}
    prompt_tokens: int | None = None
    new_tokens: int | None = None
    batch: int | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None  # None for a sample of one token
    latency_ms: float | None = None  # its batch's start to its own end (absent in older files)

    @model_validator(mode="before")
    @classmethod
    def _key_from_parts(cls, data: Any) -> Any:
        """Files written before `key` existed: the key the sample's parts give."""
        if isinstance(data, dict) and "key" not in data and "promptId" in data:
            index = data.get("sampleIndex", 0)
            data = data | {"key": f"p{data['promptId']}-{data.get('emotion')}-s{index}"}
        return data

    @property
    def sample_key(self) -> SampleKey:
        """What identifies a sample across precisions (the same seed generated it)."""
        return (self.prompt_id, self.emotion, self.sample_index)

    @property
    def prompt_digest(self) -> str:
        """The prompt's hash: the stored one, else the prompt text's."""
        return self.prompt_sha256 or sha256_hex(self.prompt)

    @property
    def intensity(self) -> float:
        """The classifier's probability of the intended emotion, on the 0-100 scale."""
        return 100.0 * self.probabilities.get(self.emotion, 0.0)

    def to_line(self) -> str:
        """One JSON line (no newline) with the fields that were set, in the file's order."""
        fields = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return json.dumps(fields, ensure_ascii=False)


class RatingRecord(_Record):
    """One line of a run's `ratings.jsonl`: the intensity task's answer to one text."""

    key: str  # the text's id, the same for every precision
    emotion: str
    text_sha256: str | None = None  # of the text rated: pairs only where both rated the same
    level: int | None = None  # the built-in corpus's intended level, 1-5
    gold: float | None = None  # a user's own 0-100 score
    rating: float | None  # read by quanteval.intensity.RATING_RULE; None: a parse failure
    parse_failure: str | None = None  # why there is no rating (quanteval.intensity.ParseFailure)
    # intensity.method expected (quanteval.expected_rating): the rating is `expected`, where
    # no more than half the mass is on no number; the greedy answer stays in `answer`.
    expected: float | None = None
    spread: float | None = None
    non_numeric_mass: float | None = None
    answer: str  # the model's answer as it came
    prompt_tokens: int | None = None
    new_tokens: int | None = None
    latency_ms: float | None = None  # its batch's start to its own end
    classifier_rating: float | None = None  # the classifier's probability of the emotion x 100

    def to_line(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True), ensure_ascii=False)
