"""The per-sample record of generations.jsonl: the file's names, what an old file still gives,
and pairs only where the prompt is the same."""

import json

import pytest
from pydantic import ValidationError

from quanteval.api.records import SampleRecord, sha256_hex
from quanteval.report.drift import pair_by_sample


def _record(prompt: str = "Write anger", **scored: object) -> SampleRecord:
    return SampleRecord(
        key="p1-anger-s0", prompt_id=1, emotion="anger", sample_index=0, seed=7,
        prompt=prompt, prompt_sha256=sha256_hex(prompt), text="grr", prompt_tokens=3,
        new_tokens=2, tpot_ms=None, **scored,
    )  # fmt: skip


def test_a_line_keeps_the_files_names_and_only_what_is_known() -> None:
    unscored = json.loads(_record().to_line())
    assert list(unscored) == [
        "key", "promptId", "emotion", "sampleIndex", "seed", "prompt", "promptSha256", "text",
        "promptTokens", "newTokens", "tpotMs",
    ]  # fmt: skip
    assert unscored["tpotMs"] is None  # set, though unknown: written as null
    scored = _record(predicted="anger", probabilities={"anger": 0.9, "joy": 0.1})
    again = SampleRecord.from_line(scored.to_line())
    assert again == scored and again.intensity == pytest.approx(90.0)


def test_an_older_line_without_key_or_hash_still_reads() -> None:
    old = SampleRecord.from_line('{"promptId": 2, "emotion": "joy", "text": "yay", "x": 1}')
    assert old.key == "p2-joy-s0" and old.sample_key == (2, "joy", 0)
    assert old.prompt_digest == sha256_hex("")
    with pytest.raises(ValidationError):
        SampleRecord.from_line('{"emotion": "joy"}')


def test_a_sample_whose_prompt_changed_is_not_paired() -> None:
    base = [_record("Write anger")]
    assert len(pair_by_sample(base, [_record("Write anger")])) == 1
    assert pair_by_sample(base, [_record("Write about anger, please")]) == []
