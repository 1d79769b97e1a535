"""The intensity task's pure parts: the built-in corpus's shape, the texts a run rates, the
rating rule, and Spearman's rho with its interval on data of known order."""

import numpy as np
import pytest

from quanteval.api.errors import InvalidSpecError
from quanteval.api.records import RatingRecord
from quanteval.api.result import RankAgreement
from quanteval.api.runspec import IntensityItem
from quanteval.api.spec import DEFAULT_INTENSITY_TEMPLATE, IntensitySpec, IntensityText
from quanteval.emotions import ALL_BUILTIN_EMOTIONS
from quanteval.intensity import (
    LEVELS,
    ParseFailure,
    Rating,
    builtin_items,
    corpus,
    intensity_run,
    items_from_lines,
    rating_prompt,
    read_rating,
)
from quanteval.rank_agreement import calibration, same_text_agreement
from quanteval.stats import spearman


def test_the_corpus_has_every_builtin_emotion_at_five_levels_in_several_situations() -> None:
    texts = corpus()
    assert sorted(texts) == sorted(ALL_BUILTIN_EMOTIONS)
    for emotion, situations in texts.items():
        assert len(situations) >= 5, emotion
        for situation in situations:
            assert len(situation["texts"]) == LEVELS, (emotion, situation["situation"])
    items = builtin_items(ALL_BUILTIN_EMOTIONS)
    assert len(items) >= 200 and len({i.text for i in items}) == len(items)  # no text twice
    assert len({i.key for i in items}) == len(items)
    assert {i.level for i in items} == set(range(1, LEVELS + 1))


def test_a_run_rates_the_texts_of_its_emotions_or_the_users_own() -> None:
    run = intensity_run(IntensitySpec(), ["joy", "anger"])
    assert {i.emotion for i in run.items} == {"joy", "anger"} and len(run.items) == 50
    assert run.items[0].key == "joy-s1-l1" and run.template == DEFAULT_INTENSITY_TEMPLATE
    own = intensity_run(
        IntensitySpec(
            template="{emotion}? {text}", texts=[IntensityText(text="hm", emotion="joy", gold=40)]
        ),
        ["joy"],
    )
    assert own.items == [IntensityItem(key="t1", text="hm", emotion="joy", gold=40)]


def test_texts_from_a_file_are_read_by_the_worker_and_keyed_like_inline_ones() -> None:
    run = intensity_run(IntensitySpec(texts_from="s3://bucket/texts.jsonl"), ["joy"])
    assert run.items == [] and run.texts_from == "s3://bucket/texts.jsonl"
    lines = (
        '{"text": "a fine day", "emotion": "joy"}\n\n'
        '{"text": "grr", "emotion": "anger", "gold": 80}\n'
    )
    assert items_from_lines(lines, ["joy", "anger"]) == [
        IntensityItem(key="t1", text="a fine day", emotion="joy"),
        IntensityItem(key="t2", text="grr", emotion="anger", gold=80),
    ]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param('{"text": "x", "emotion": "joy"}\nnot json\n', "line 2", id="not-json"),
        pytest.param('{"text": "x"}\n', "line 1: Field required", id="no-emotion"),
        pytest.param('{"text": "x", "emotion": "joy", "gold": 150}', "line 1", id="gold-over-100"),
        pytest.param('{"text": "x", "emotion": "fear"}', "'fear' is not one of", id="emotion"),
        pytest.param("\n\n", "no texts", id="empty"),
    ],
)
def test_a_bad_texts_file_is_refused_naming_the_field_and_the_line(
    lines: str, expected: str
) -> None:
    with pytest.raises(InvalidSpecError, match=r"spec\.intensity\.textsFrom") as error:
        items_from_lines(lines, ["joy", "anger"])
    assert expected in error.value.message


def test_the_rating_is_the_first_number_when_it_is_a_rating_on_the_scale() -> None:
    assert read_rating("75") == Rating(75.0)
    assert read_rating(" I'd say 62.5, maybe 70") == Rating(62.5)
    assert read_rating("80%. It is intense.") == Rating(80.0)
    assert read_rating("Rating: 0") == Rating(0.0)


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("quite intense", ParseFailure.NO_NUMBER),
        ("", ParseFailure.NO_NUMBER),
        ("On a scale of 0 to 100, I'd say 80", ParseFailure.SCALE_ECHO),
        ("(0-100): 80", ParseFailure.SCALE_ECHO),
        ("On a 1–10 scale, 7", ParseFailure.SCALE_ECHO),
        ("60-70", ParseFailure.RANGE),
        ("between 60 and 70, say 60 to 70", ParseFailure.RANGE),
        ("8/10", ParseFailure.FRACTION),
        ("7 / 10 - strong", ParseFailure.FRACTION),
        ("8 out of 10", ParseFailure.OUT_OF_N),
        ("1. The text expresses", ParseFailure.LIST_NUMBERING),
        ("Answer:\n1) The text", ParseFailure.LIST_NUMBERING),
        ("150!", ParseFailure.OUT_OF_RANGE),
        ("-3", ParseFailure.OUT_OF_RANGE),
    ],
)
def test_what_is_not_a_rating_is_a_parse_failure_of_its_own_reason(
    answer: str, why: ParseFailure
) -> None:
    """Never read as a rating, never rescaled: "0 to 100" is not a 0, nor "8/10" an 8."""
    assert read_rating(answer) == Rating(None, why)


def test_the_prompt_takes_texts_with_braces_as_they_are() -> None:
    item = IntensityItem(key="t1", text="a {weird} text", emotion="joy")
    assert rating_prompt("{emotion}: {text}", item) == "joy: a {weird} text"


def test_spearman_on_known_orders() -> None:
    rng = np.random.default_rng(3)
    levels = np.repeat(np.arange(1, 6), 20).astype(float)
    same_order = spearman(levels, levels * 20)
    assert same_order is not None and same_order[0] == pytest.approx(1.0)
    noisy = spearman(levels, levels * 20 + rng.normal(0, 15, len(levels)))
    assert noisy is not None and 0.5 < noisy[1][0] <= noisy[0] <= noisy[1][1] < 1
    unrelated = spearman(levels, rng.normal(0, 1, len(levels)))
    assert unrelated is not None and unrelated[1][0] < 0 < unrelated[1][1]
    assert spearman(levels[:9], levels[:9]) is None  # below 10 pairs: cannot say
    assert spearman(levels, np.full(len(levels), 50.0)) is None  # a constant rating: no order


def _rated(
    situation: int, level: int, rating: float | None, classifier: float, emotion: str = "joy"
) -> RatingRecord:
    return RatingRecord(
        key=f"{emotion}-s{situation}-l{level}", emotion=emotion, level=level, rating=rating,
        answer="", classifier_rating=classifier,
    )  # fmt: skip


def test_a_model_that_fails_the_hard_middle_is_compared_on_the_texts_it_rated() -> None:
    """The model answers only the mild and extreme texts, which both rank perfectly; the
    classifier ranks every text with noise in the middle. On all texts the classifier's rho is
    lower, which used to read as the model ranking better; on the same texts they tie."""
    records = [
        _rated(
            s,
            level,
            20.0 * level if level in (1, 5) else None,
            20.0 * level + (30.0 * (-1) ** s if level in (2, 3, 4) else 0.0),
        )
        for s in range(1, 11)
        for level in range(1, 6)
    ]
    overall, by_emotion = same_text_agreement(records)
    assert isinstance(overall, RankAgreement)
    assert overall.texts == 20 and overall.situations == 10  # the 20 texts the model rated
    assert overall.model_rho == overall.classifier_rho == pytest.approx(1.0)
    every = spearman([r.level or 0 for r in records], [r.classifier_rating or 0 for r in records])
    assert every is not None and every[0] < 0.99  # the classifier on all 50: lower
    assert overall.difference == 0 and overall.difference_ci95 == (0.0, 0.0)
    assert by_emotion == {"joy": overall}


def test_a_model_that_ranks_the_levels_and_a_classifier_that_does_not_differ_by_situations() -> (
    None
):
    rng = np.random.default_rng(11)
    records = [
        _rated(s, level, 20.0 * level + rng.normal(0, 3), rng.uniform(0, 100), emotion)
        for emotion in ("joy", "anger")
        for s in range(1, 6)
        for level in range(1, 6)
    ]
    overall, by_emotion = same_text_agreement(records)
    assert isinstance(overall, RankAgreement) and overall.situations == 10
    low, high = overall.difference_ci95
    assert overall.model_rho > 0.9 and 0 < low <= overall.difference <= high
    assert set(by_emotion) == {"joy", "anger"}
    flat = [_rated(s, level, 100.0, 20.0 * level) for s in range(1, 4) for level in range(1, 6)]
    assert (
        same_text_agreement(flat)[0]
        == "the model's ratings do not vary (100 throughout): no rank order"
    )


def test_calibration_rises_with_the_levels_a_model_tells_apart_and_is_flat_otherwise() -> None:
    """Simulated truth: a model rating 20 x level with noise lands near 20, 40, .. 100, each
    interval holding its level's truth; the classifier's means are on the same texts (the
    model's parse failures left out of both)."""
    rng = np.random.default_rng(5)
    records = [
        _rated(s, level, 20.0 * level + rng.normal(0, 5), 10.0 * level)
        for s in range(1, 31)
        for level in range(1, 6)
    ]
    records[0] = _rated(1, 1, None, 99.0)  # a parse failure: in neither mean
    points = calibration(records)
    assert [p.level for p in points] == [1, 2, 3, 4, 5]
    assert [p.texts for p in points] == [29, 30, 30, 30, 30]
    for point in points:
        assert point.mean_ci95 is not None
        low, high = point.mean_ci95
        assert low <= 20.0 * point.level <= high
        assert point.classifier_mean == pytest.approx(10.0 * point.level)
    flat = calibration([_rated(s, level, 100.0, 0.0) for s in range(1, 4) for level in (1, 5)])
    assert [(p.mean, p.mean_ci95) for p in flat] == [(100.0, (100.0, 100.0))] * 2
    user_text = RatingRecord(key="t1", emotion="joy", rating=50.0, answer="50")
    assert calibration([user_text]) == ()  # a user's texts carry no level
