"""The statistics, tested as statistics: simulated evaluations whose truth is known."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from quanteval.stats import (
    f1_interval,
    holm,
    label_indices,
    macro_f1,
    mcnemar_exact,
    mean_interval,
    paired_comparison,
    ratio_interval,
    run_intervals,
    settle,
    settle_family,
)

EMOTIONS = ["anger", "fear", "joy", "sadness", "shame"]


def _templates(n: int) -> list[int]:
    """Template ids of n samples cycling over EMOTIONS: each template filled with every emotion."""
    return [i // len(EMOTIONS) for i in range(n)]


def _classifier(rng: np.random.Generator, n: int, accuracy: float) -> tuple[list[str], list[str]]:
    """n samples, balanced over EMOTIONS; right with `accuracy`, else another emotion at random.

    Every class then has precision = recall = accuracy, so the population macro-F1 is `accuracy`.
    """
    intended = [EMOTIONS[i % len(EMOTIONS)] for i in range(n)]
    predicted = []
    for emotion in intended:
        if rng.random() < accuracy:
            predicted.append(emotion)
        else:
            predicted.append(str(rng.choice([e for e in EMOTIONS if e != emotion])))
    return intended, predicted


def test_macro_f1_is_scikit_learns() -> None:
    rng = np.random.default_rng(1)
    for _ in range(50):
        intended = list(rng.choice(EMOTIONS, 40))
        predicted = list(rng.choice([*EMOTIONS, "neutral"], 40))  # one label outside them
        ours = macro_f1(label_indices(intended, EMOTIONS), label_indices(predicted, EMOTIONS), 5)
        theirs = f1_score(intended, predicted, labels=EMOTIONS, average="macro", zero_division=0)
        assert ours == pytest.approx(theirs)


def test_identical_runs_show_no_difference() -> None:
    intended, predicted = _classifier(np.random.default_rng(2), 70, 0.6)
    intensity = list(np.random.default_rng(3).uniform(0, 100, 70))
    same = paired_comparison(
        _templates(70), intended, predicted, predicted, intensity, intensity, EMOTIONS
    )
    assert same is not None and same.templates == 14
    assert same.delta_f1_pp == 0 and same.ci95_these_prompts_pp == (0.0, 0.0)
    assert same.primary.interval(0.95) == (0.0, 0.0)
    assert same.primary.flip_p == 1.0 and same.mcnemar_p == 1.0 and same.wilcoxon_p == 1.0
    settled = settle_family({"same": same})["same"]
    assert settled.decision.mark == "no detectable difference"
    assert settled.decision.text == "no detectable difference (could be up to 0.0 points)"


def test_a_run_with_40_percent_of_its_predictions_flipped_is_significantly_worse() -> None:
    rng = np.random.default_rng(4)
    intended, base = _classifier(rng, 70, 0.6)
    flipped = set(rng.choice(70, 28, replace=False).tolist())  # 40% of the samples
    run = [
        EMOTIONS[(EMOTIONS.index(i) + 1) % 5] if n in flipped else b
        for n, (i, b) in enumerate(zip(intended, base, strict=True))
    ]
    intensity = [50.0] * 70
    worse = paired_comparison(_templates(70), intended, base, run, intensity, intensity, EMOTIONS)
    assert worse is not None
    assert worse.primary.delta_pp == pytest.approx(worse.delta_f1_pp)
    assert worse.ci95_these_prompts_pp[1] < 0  # the whole interval below zero
    assert worse.mcnemar_p < 0.001 and worse.primary.flip_p < 0.01
    settled = settle(worse.primary, holm([worse.primary.flip_p, 0.5])[0], 2)
    assert settled.interval[1] < 0 and settled.confidence == 0.975
    assert settled.decision.mark == "worse" and settled.decision.text == "significantly worse"


def test_mcnemars_p_is_the_exact_binomial_by_hand() -> None:
    # 1 pair only the first got right, 6 only the second: 2 * P(X <= 1), X ~ Binomial(7, 1/2).
    assert mcnemar_exact(1, 6) == pytest.approx(2 * (1 + 7) / 2**7)
    assert mcnemar_exact(6, 1) == pytest.approx(0.125)
    assert mcnemar_exact(0, 0) == 1.0


def test_fewer_than_10_pairs_or_one_template_cannot_decide() -> None:
    intended, predicted = _classifier(np.random.default_rng(5), 9, 0.6)
    few = paired_comparison(
        _templates(9), intended, predicted, predicted, [1.0] * 9, [2.0] * 9, EMOTIONS
    )
    assert few is None
    intended, predicted = _classifier(np.random.default_rng(5), 20, 0.6)
    one = paired_comparison(
        [1] * 20, intended, predicted, predicted, [1.0] * 20, [2.0] * 20, EMOTIONS
    )
    assert one is None


def test_holm_adjusts_step_down() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_the_intervals_cover_the_truth_in_95_percent_of_simulated_evaluations() -> None:
    """1,000 simulated quick starts (70 samples, a classifier right 60% of the time)."""
    rng = np.random.default_rng(6)
    truth_f1, truth_intensity = 0.6, 50.0
    f1_hits = intensity_hits = 0
    for _ in range(1000):
        intended, predicted = _classifier(rng, 70, truth_f1)
        low, high = f1_interval(intended, predicted, EMOTIONS)
        f1_hits += low <= truth_f1 <= high
        intensities = rng.beta(2, 2, 70) * 100  # mean 50
        low, high = mean_interval(list(intensities))
        intensity_hits += low <= truth_intensity <= high
    assert 0.93 <= f1_hits / 1000 <= 0.97
    assert 0.93 <= intensity_hits / 1000 <= 0.97


def test_a_runs_intervals_hold_its_figures() -> None:
    intended, predicted = _classifier(np.random.default_rng(7), 70, 0.6)
    intervals = run_intervals(intended, predicted, [40.0 + i % 20 for i in range(70)], EMOTIONS)
    assert intervals is not None
    f1 = f1_score(intended, predicted, labels=EMOTIONS, average="macro", zero_division=0)
    assert intervals.f1_macro_ci95[0] <= f1 <= intervals.f1_macro_ci95[1]
    accuracy = sum(i == p for i, p in zip(intended, predicted, strict=True)) / 70
    assert intervals.accuracy_ci95[0] <= accuracy <= intervals.accuracy_ci95[1]
    assert {e: i.n for e, i in intervals.per_emotion.items()} == dict.fromkeys(EMOTIONS, 14)


def test_a_latency_ratio_and_its_interval() -> None:
    rng = np.random.default_rng(9)
    base = rng.uniform(1000, 3000, 70)
    assert ratio_interval(list(base), list(2 * base)) == (2.0, (2.0, 2.0))
    hits = 0
    for _ in range(200):
        base = rng.uniform(1000, 3000, 70)
        run = 1.5 * base * rng.lognormal(0, 0.2, 70) / np.exp(0.02)  # true ratio 1.5
        _, (low, high) = ratio_interval(list(base), list(run))
        hits += low <= 1.5 <= high
    assert 0.9 <= hits / 200 <= 0.99
