"""Paired macro-F1 comparisons with the prompt template as the unit of inference.

A verdict is for prompts like the ones tested, not only for the samples drawn: the samples of one
template share it (and so do the emotions it was filled with), so they are not independent, and
intervals or tests that treat them as such are too narrow (issue 25 simulated it: at
samplesPerPrompt 5 the sample bootstrap's 95% interval covered the population difference in about
82% of evaluations, McNemar's test called a difference in about 18% under no mean effect).

- Interval: the leave-one-template-out jackknife standard error with Student's t on T-1 degrees of
  freedom. That is the CV3 cluster-robust variance with t(G-1) critical values, which MacKinnon,
  Nielsen and Webb recommend where clusters are few ("Cluster-robust inference: A guide to
  empirical practice", Journal of Econometrics 232(2), 2023, sections 3.3 and 4), as Cameron and
  Miller do for G near 10 ("A Practitioner's Guide to Cluster-Robust Inference", Journal of Human
  Resources 50(2), 2015, section VI.C). With 10 templates x 7 emotions (issue 25's model, 400
  replications) it covered the population difference in 97.5% (samplesPerPrompt 1) and 95.0% (5);
  the template percentile bootstrap in 91%, the template x emotion cell bootstrap in 83.5-89%.
  tests/unit/test_template_stats.py measures it again on every run of the suite.
- Test: a paired permutation test of the macro-F1 difference itself that swaps the baseline's and
  the run's predictions of whole templates (scipy.stats.permutation_test; exact up to 2^14
  arrangements). With T templates its smallest two-sided p is 2 / 2^T.
- Family: the evaluation's k comparisons. p-values are Holm-adjusted over them; the interval shown
  is at the Bonferroni level 1 - 0.05/k, and the mark is read off that interval, so the mark and
  the interval shown never disagree.

The macro-F1 of any set of templates is computed from per-template counts (true positives,
predictions, support per intended class), so leaving a template out or swapping one is a sum.
"""

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from quanteval.fmt import percent
from quanteval.power import ALPHA

EXACT_UP_TO: Final = 2**14  # arrangements the permutation test enumerates; beyond, as many drawn
BATCH_COUNTS: Final = 2**22  # counts the permutation test holds at once, per array
SEED: Final = 20250131

Interval = tuple[float, float]
Mark = Literal[
    "worse",
    "better",
    "worse by Holm only",
    "better by Holm only",
    "worse by the interval only",
    "better by the interval only",
    "no detectable difference",
    "equivalent",
    "cannot decide",
]


@dataclass(frozen=True)
class TemplateCounts:
    """Per template (rows) and intended class (columns): the class's samples, and each run's
    true positives and predictions of it. Built by `template_counts`."""

    support: NDArray[np.float64]
    base_true: NDArray[np.float64]
    base_chosen: NDArray[np.float64]
    run_true: NDArray[np.float64]
    run_chosen: NDArray[np.float64]

    @property
    def templates(self) -> int:
        return int(self.support.shape[0])


def template_counts(
    templates: NDArray[np.int64],
    intended: NDArray[np.int64],
    base: NDArray[np.int64],
    run: NDArray[np.int64],
    classes: int,
) -> TemplateCounts:
    """Counts per template from per-sample arrays: template ids, intended class, each run's
    predicted class (a label outside the classes is `classes`, a miss)."""
    _, row = np.unique(templates, return_inverse=True)
    shape = (int(row.max()) + 1 if len(row) else 0, classes + 1)

    def count(mask: NDArray[np.bool_], column: NDArray[np.int64]) -> NDArray[np.float64]:
        table = np.zeros(shape)
        np.add.at(table, (row[mask], column[mask]), 1.0)
        return table[:, :classes]

    everything = np.ones(len(row), dtype=bool)
    return TemplateCounts(
        support=count(everything, intended),
        base_true=count(base == intended, intended),
        base_chosen=count(everything, base),
        run_true=count(run == intended, intended),
        run_chosen=count(everything, run),
    )


def f1_from_counts(
    true: NDArray[np.float64], support: NDArray[np.float64], chosen: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Each class's F1 from its true positives, its samples and its predictions; a class
    neither intended nor predicted scores 0 (scikit-learn's zero_division=0)."""
    denominator = support + chosen
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * true / denominator, 0.0)


def _macro_f1(
    true: NDArray[np.float64], support: NDArray[np.float64], chosen: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Macro-F1 over the classes (last axis) from summed counts."""
    return f1_from_counts(true, support, chosen).mean(axis=-1)  # type: ignore[no-any-return]


def delta_pp(
    counts: TemplateCounts,
    keep: NDArray[np.float64] | None = None,
    swap: NDArray[np.bool_] | None = None,
) -> NDArray[np.float64]:
    """The run's macro-F1 minus the baseline's, in points, over the templates `keep` weighs
    (shape (..., T); all by default), with the two runs' predictions exchanged in the templates
    `swap` marks."""
    t = counts.templates
    weights = np.ones((t, 1)) if keep is None else keep[..., None]
    flags = np.zeros((t, 1), dtype=bool) if swap is None else swap[..., None]

    def total(table: NDArray[np.float64]) -> NDArray[np.float64]:
        return (weights * table).sum(axis=-2)  # type: ignore[no-any-return]

    run_true = total(np.where(flags, counts.base_true, counts.run_true))
    run_chosen = total(np.where(flags, counts.base_chosen, counts.run_chosen))
    base_true = total(np.where(flags, counts.run_true, counts.base_true))
    base_chosen = total(np.where(flags, counts.run_chosen, counts.base_chosen))
    support = total(counts.support)
    return 100 * (
        _macro_f1(run_true, support, run_chosen) - _macro_f1(base_true, support, base_chosen)
    )


def jackknife_se(counts: TemplateCounts) -> float:
    """The leave-one-template-out jackknife standard error of the difference, in points."""
    t = counts.templates
    left_out = delta_pp(counts, keep=1.0 - np.eye(t))
    return float(math.sqrt((t - 1) / t * float(((left_out - left_out.mean()) ** 2).sum())))


@dataclass(frozen=True, eq=False)
class TemplateDelta:
    """The macro-F1 difference with its template-level standard error, and the permutation
    test's p (computed when first read)."""

    counts: TemplateCounts
    delta_pp: float
    se_pp: float  # leave-one-template-out jackknife

    @property
    def templates(self) -> int:
        return self.counts.templates

    @cached_property
    def flip_p(self) -> float:
        return flip_p_value(self.counts)

    def interval(self, confidence: float) -> Interval:
        """delta ± the t quantile on templates - 1 degrees of freedom x se, at `confidence`."""
        half = float(stats.t.ppf(1 - (1 - confidence) / 2, self.templates - 1)) * self.se_pp
        return self.delta_pp - half, self.delta_pp + half


def template_delta(counts: TemplateCounts) -> TemplateDelta:
    return TemplateDelta(counts, float(delta_pp(counts)), jackknife_se(counts))


def flip_p_value(counts: TemplateCounts) -> float:
    """Two-sided p of the permutation test that exchanges the runs' predictions template by
    template: exact over every arrangement up to EXACT_UP_TO of them, else as many drawn."""
    t = counts.templates
    as_given, exchanged = np.zeros(t), np.ones(t)

    def statistic(x: NDArray[Any], y: NDArray[Any], axis: int = -1) -> NDArray[np.float64]:
        return delta_pp(counts, swap=np.moveaxis(x, axis, -1) > 0.5)

    result = stats.permutation_test(
        (as_given, exchanged),
        statistic,
        permutation_type="samples",
        vectorized=True,
        n_resamples=EXACT_UP_TO,
        alternative="two-sided",
        # Arrangements a call: each holds (templates x classes) counts several times over, so
        # 200 templates x 32 emotions stay near 40 MB an array (the report Job has 2 GiB).
        batch=max(1, BATCH_COUNTS // counts.support.size),
        rng=np.random.default_rng(SEED),
    )
    return float(result.pvalue)


def smallest_p(templates: int) -> float:
    """The smallest two-sided p the permutation test can give with this many templates."""
    return 2 / min(1 << templates, EXACT_UP_TO + 1)


def family_confidence(family_size: int) -> float:
    """The Bonferroni level of each interval of a family of `family_size` comparisons."""
    return 1 - ALPHA / max(1, family_size)


def can_decide(family_size: int, templates: int) -> bool:
    """Whether the permutation test can reject at all once Holm has adjusted for the family:
    k x the smallest attainable p must be below alpha."""
    return templates >= 2 and max(1, family_size) * smallest_p(templates) <= ALPHA


@dataclass(frozen=True)
class Decision:
    mark: Mark
    text: str


def decide(
    interval: Interval,
    p_adjusted: float,
    family_size: int,
    templates: int,
    equivalence: Interval | None = None,
    margin_pp: float | None = None,
) -> Decision:
    """The mark of a comparison, read off its interval at the family's level (`interval`):
    worse or better only when it excludes 0 and the permutation test rejects (Holm-adjusted
    `p_adjusted`); where only one of them does, a mark that says which; "equivalent" only with a
    margin the user set, when the TOST interval (`equivalence`, at 1 - 2 alpha/k) lies within it;
    else "no detectable difference" with how large the difference could be. Nothing can be
    decided once the family is too large for the templates (k x the smallest p above alpha)."""
    k = max(1, family_size)
    level = percent(family_confidence(k))
    low, high = interval
    if not can_decide(k, templates):
        return Decision(
            "cannot decide",
            f"cannot decide at this family size ({k} comparisons, {templates} templates): "
            "add templates or compare fewer runs",
        )
    direction = "worse" if low + high < 0 else "better"  # the interval is centred on the estimate
    excludes, rejects = high < 0 or low > 0, p_adjusted < ALPHA
    if excludes and rejects:
        return Decision(direction, f"significantly {direction}")  # type: ignore[arg-type]
    if rejects:
        return Decision(
            f"{direction} by Holm only",  # type: ignore[arg-type]
            f"{direction} by Holm; interval includes 0 at {level}",
        )
    if excludes:
        return Decision(
            f"{direction} by the interval only",  # type: ignore[arg-type]
            f"{direction} by the {level} interval; the permutation test does not reject "
            f"(Holm p = {p_adjusted:.2g})",
        )
    if margin_pp is not None and equivalence is not None:
        low_tost, high_tost = equivalence
        if -margin_pp < low_tost and high_tost < margin_pp:
            return Decision("equivalent", f"equivalent within ±{margin_pp:g} points")
    bound = max(abs(low), abs(high))
    return Decision(
        "no detectable difference",
        f"no detectable difference (could be up to {bound:.1f} points)",
    )
