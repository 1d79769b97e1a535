"""The study's prompts, and their expansion into samples with per-sample seeds."""

from pathlib import Path

import pytest

from quanteval.api.spec import load_manifest
from quanteval.emotions import BUILTIN_EMOTION_SETS
from quanteval.prompts import BUILTIN_PROMPT_SETS, PAPER_PROMPTS, expand_samples, sample_seed

ISEAR = BUILTIN_EMOTION_SETS["isear"]

STUDY_PROMPTS = (
    "Describe a situation where a person felt <class>",
    "Write a text that expresses <class>",
    "Phrases that express <class>",
    "What is a sentence example for <class>? ",
    "Can you provide an example of a situation where someone experienced <class>?",
    "What is an example of a <class> sentence?",
    "<class> sentence",
    "Experience for <class>?",
    "Please describe a situation or event — in as much detail as possible — in which a reader "
    "felt <class>",
    "Please complete the sentence: I felt <class> when/because",
)


def test_paper_set_is_the_ten_prompts_of_the_study_verbatim() -> None:
    assert len(PAPER_PROMPTS) == 10
    assert PAPER_PROMPTS == STUDY_PROMPTS
    assert BUILTIN_PROMPT_SETS["paper"] == STUDY_PROMPTS


def test_quickstart_uses_the_paper_prompts(quickstart_path: Path) -> None:
    assert load_manifest(quickstart_path).spec.prompt_templates == STUDY_PROMPTS


def test_isear_emotions() -> None:
    assert ISEAR == ("anger", "disgust", "fear", "guilt", "joy", "sadness", "shame")


def test_paper_prompts_times_isear_is_seventy_samples() -> None:
    samples = expand_samples(PAPER_PROMPTS, ISEAR, 1, 1234)

    assert len(samples) == 70
    assert len({s.key for s in samples}) == 70
    assert len({s.seed for s in samples}) == 70
    assert {s.emotion for s in samples} == set(ISEAR)
    assert {s.prompt_id for s in samples} == set(range(1, 11))
    assert {s.sample_index for s in samples} == {0}
    for sample in samples:
        assert "<class>" not in sample.prompt
        assert sample.emotion in sample.prompt
        assert 0 <= sample.seed < 2**63


def test_prompts_are_rendered_with_the_emotion() -> None:
    samples = expand_samples(PAPER_PROMPTS, ("joy",), 1, 1234)

    assert samples[0].prompt == "Describe a situation where a person felt joy"
    assert samples[6].prompt == "joy sentence"
    assert samples[9].prompt == "Please complete the sentence: I felt joy when/because"
    assert samples[0].key == "p1-joy-s0"


def test_expansion_with_several_samples_per_prompt() -> None:
    samples = expand_samples(PAPER_PROMPTS, ISEAR, 3, 1234)

    assert len(samples) == 210
    assert len({s.key for s in samples}) == 210
    assert len({s.seed for s in samples}) == 210
    # Ordered by emotion, then prompt, then sample index.
    assert [s.key for s in samples[:4]] == [
        "p1-anger-s0",
        "p1-anger-s1",
        "p1-anger-s2",
        "p2-anger-s0",
    ]
    assert samples[30].emotion == "disgust"


def test_seed_depends_only_on_base_seed_prompt_emotion_and_index() -> None:
    reference = {s.key: s.seed for s in expand_samples(PAPER_PROMPTS, ISEAR, 2, 1234)}

    # Other prompt texts, fewer emotions in another order, more samples: the same keys keep
    # the same seeds.
    other_texts = tuple(f"Variant {i} of <class>" for i in range(10))
    for samples in (
        expand_samples(other_texts, ISEAR, 2, 1234),
        expand_samples(PAPER_PROMPTS, ("shame", "joy"), 2, 1234),
        expand_samples(PAPER_PROMPTS, ISEAR, 5, 1234),
        expand_samples(PAPER_PROMPTS[:3], ISEAR, 1, 1234),
    ):
        for sample in samples:
            if sample.key in reference:
                assert sample.seed == reference[sample.key], sample.key
            assert sample.seed == sample_seed(
                1234, sample.prompt_id, sample.emotion, sample.sample_index
            )


@pytest.mark.parametrize(
    "other",
    [(1235, 1, "joy", 0), (1234, 2, "joy", 0), (1234, 1, "fear", 0), (1234, 1, "joy", 1)],
)
def test_seed_changes_with_each_of_its_inputs(other: tuple[int, int, str, int]) -> None:
    assert sample_seed(*other) != sample_seed(1234, 1, "joy", 0)


def test_seed_is_reproducible() -> None:
    assert sample_seed(1234, 3, "anger", 2) == sample_seed(1234, 3, "anger", 2)
    first = [s.seed for s in expand_samples(PAPER_PROMPTS, ISEAR, 1, 42)]
    second = [s.seed for s in expand_samples(PAPER_PROMPTS, ISEAR, 1, 42)]
    assert first == second
