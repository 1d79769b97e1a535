"""The intensity task against the baseline: ratings paired by text, on data of known change."""

import numpy as np
import pytest

from quanteval.api.records import RatingRecord, sha256_hex
from quanteval.report.ratings import rating_drift


def _ratings(values: list[float | None]) -> list[RatingRecord]:
    return [
        RatingRecord(key=f"t{i}", emotion="joy", rating=v, answer=str(v))
        for i, v in enumerate(values)
    ]


def test_identical_ratings_do_not_move() -> None:
    values: list[float | None] = [float(v) for v in np.linspace(0, 100, 30)]
    drift = rating_drift(_ratings(values), _ratings(values))
    assert drift is not None and drift.pairs == 30 and drift.unpaired == 0
    assert drift.mean_abs_change == 0 and drift.moved_over_5_pct == 0
    assert drift.wilcoxon_p == 1.0 and drift.rank_correlation == pytest.approx(1.0)


def test_a_shift_of_ten_points_moves_every_text_and_is_significant() -> None:
    base: list[float | None] = [float(v) for v in np.linspace(0, 80, 30)]
    drift = rating_drift(_ratings(base), _ratings([(v or 0.0) + 10 for v in base]))
    assert drift is not None and drift.mean_abs_change == pytest.approx(10.0)
    assert drift.moved_over_5_pct == 100 and drift.wilcoxon_p is not None
    assert drift.wilcoxon_p < 0.001 and drift.rank_correlation == pytest.approx(1.0)


def test_parse_failures_leave_their_texts_unpaired_and_few_pairs_give_no_test() -> None:
    drift = rating_drift(_ratings([50, None, 70, 80]), _ratings([55, 60, None, 80]))
    assert drift is not None and (drift.pairs, drift.unpaired) == (2, 2)
    assert drift.mean_abs_change == pytest.approx(2.5) and drift.wilcoxon_p is None
    assert drift.pairs_rated == ((50, 55), (80, 80))  # the scatter's points: (baseline, run)
    assert rating_drift([], _ratings([50])) is None  # the baseline did not do the task


def test_a_text_that_changed_between_runs_is_not_paired() -> None:
    def rated(text: str, rating: float) -> RatingRecord:
        return RatingRecord(
            key="t1", emotion="joy", text_sha256=sha256_hex(text), rating=rating, answer="x"
        )

    drift = rating_drift([rated("old text", 50)], [rated("new text", 90)])
    assert drift is not None and (drift.pairs, drift.unpaired) == (0, 1)
    same = rating_drift([rated("a text", 50)], [rated("a text", 90)])
    assert same is not None and same.pairs_rated == ((50, 90),)
