"""The intensity task's rank agreement: the model's ratings and the classifier's against the
intended levels, on the same texts (kept apart from quanteval.intensity, which the operator
imports: this needs scipy)."""

from collections.abc import Sequence

from quanteval.api.records import RatingRecord
from quanteval.api.result import RankAgreement
from quanteval.stats import rho_difference


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
