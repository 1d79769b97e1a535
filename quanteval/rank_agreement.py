"""The intensity task's ratings against the intended levels: the model's rank agreement and the
classifier's on the same texts, and the calibration by level (kept apart from
quanteval.intensity, which the operator imports: this needs scipy)."""

from collections.abc import Sequence
from statistics import fmean

from quanteval.api.records import RatingRecord
from quanteval.api.result import LevelRating, RankAgreement
from quanteval.stats import mean_interval, rho_difference


def situation_of(key: str) -> str:
    """The situation a built-in text tells (`<emotion>-s<situation>` of its key): its five
    levels are one cluster; a user's text (`t<i>`) is its own."""
    return key.rsplit("-l", 1)[0]


def same_text_agreement(
    records: Sequence[RatingRecord],
) -> tuple[RankAgreement | str | None, dict[str, RankAgreement | str]]:
    """The model's and the classifier's rank order against the intended levels on the same
    texts (the model's parse failures left out of both, so a model that fails the hard middle
    is not judged on the easy ends alone), overall and per emotion; None without levels or
    classifier ratings."""
    both = [
        r
        for r in records
        if r.level is not None and r.rating is not None and r.classifier_rating is not None
    ]
    if not both:
        return None, {}

    def agreement(rows: Sequence[RatingRecord]) -> RankAgreement | str:
        return rho_difference(
            [float(r.level or 0) for r in rows],
            [r.rating or 0.0 for r in rows],
            [r.classifier_rating or 0.0 for r in rows],
            [situation_of(r.key) for r in rows],
        )

    emotions = dict.fromkeys(r.emotion for r in both)
    return agreement(both), {e: agreement([r for r in both if r.emotion == e]) for e in emotions}


def calibration(records: Sequence[RatingRecord]) -> tuple[LevelRating, ...]:
    """The mean rating of each intended level's rated texts (the expected rating with method
    expected), with its interval, and the classifier's mean on the same texts: a model that
    tells the levels apart rises with them; one that answers 100 to all is flat."""
    rated = [r for r in records if r.level is not None and r.rating is not None]
    points = []
    for level in sorted({r.level for r in rated if r.level is not None}):
        rows = [r for r in rated if r.level == level]
        ratings = [r.rating or 0.0 for r in rows]
        scores = [r.classifier_rating for r in rows if r.classifier_rating is not None]
        points.append(
            LevelRating(
                level=level,
                texts=len(rows),
                mean=fmean(ratings),
                mean_ci95=mean_interval(ratings) if len(rows) >= 2 else None,
                classifier_mean=fmean(scores) if len(scores) == len(rows) else None,
            )
        )
    return tuple(points)
