"""The intensity task against the baseline precision: each text's rating paired by its key.

A text rated by both runs (a number in both answers, the same text by its hash) is a pair; a
parse failure on either side, or a text that changed, leaves it out, counted. Figures: the mean
absolute rating change with its 95% bootstrap interval, its p95, the share of texts whose rating
moved by more than 5 points, the rank correlation with the baseline's ratings, and Wilcoxon's
signed-rank test of the changes (scipy).
"""

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

import numpy as np
from pydantic import ConfigDict
from scipy import stats

from quanteval.api.records import RatingRecord
from quanteval.stats import CAMEL_CASE, MIN_PAIRS, mean_interval, spearman

MOVED_POINTS: Final = 5.0


@dataclass(frozen=True)
class RatingDrift:
    __pydantic_config__: ClassVar[ConfigDict] = CAMEL_CASE

    pairs: int  # texts both runs rated
    unpaired: int  # texts of either run without a rating in the other (or in itself)
    mean_abs_change: float | None  # points
    mean_abs_change_ci95: tuple[float, float] | None
    p95_abs_change: float | None
    moved_over_5_pct: float | None  # % of pairs whose rating moved by more than 5 points
    rank_correlation: float | None  # Spearman's rho with the baseline's ratings
    rank_correlation_ci95: tuple[float, float] | None
    wilcoxon_p: float | None  # None below 10 pairs
    # (baseline rating, this run's rating) of every pair, in the run's order: the scatter's data
    pairs_rated: tuple[tuple[float, float], ...] = ()


def rating_drift(base: Sequence[RatingRecord], run: Sequence[RatingRecord]) -> RatingDrift | None:
    """None when either run has no ratings (the task did not run)."""
    if not base or not run:
        return None
    rated = {r.key: r for r in base if r.rating is not None}
    pairs = [
        (rated[r.key].rating or 0.0, r.rating)
        for r in run
        if r.rating is not None and r.key in rated and _same_text(rated[r.key], r)
    ]
    keys = {r.key for r in base} | {r.key for r in run}
    if not pairs:
        return RatingDrift(0, len(keys), None, None, None, None, None, None, None)
    before = np.array([b for b, _ in pairs])
    after = np.array([a for _, a in pairs])
    change = np.abs(after - before)
    rho = spearman(before, after)
    return RatingDrift(
        pairs=len(pairs),
        unpaired=len(keys) - len(pairs),
        mean_abs_change=float(change.mean()),
        mean_abs_change_ci95=mean_interval(list(change)) if len(pairs) >= 2 else None,
        p95_abs_change=float(np.percentile(change, 95)),
        moved_over_5_pct=100.0 * float((change > MOVED_POINTS).mean()),
        rank_correlation=rho[0] if rho else None,
        rank_correlation_ci95=rho[1] if rho else None,
        wilcoxon_p=_wilcoxon(after - before) if len(pairs) >= MIN_PAIRS else None,
        pairs_rated=tuple(pairs),
    )


def _same_text(base: RatingRecord, run: RatingRecord) -> bool:
    """Both rated the same text (a textsFrom file may have changed between runs); files that
    do not record the text's hash pair by key alone."""
    return (
        base.text_sha256 is None or run.text_sha256 is None or base.text_sha256 == run.text_sha256
    )


def _wilcoxon(differences: np.ndarray) -> float:
    if not np.any(differences):
        return 1.0  # every rating the same: nothing moved
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.wilcoxon(differences, zero_method="wilcox").pvalue)
