"""The template as the unit of inference, tested on simulated evaluations of known truth
(tests/unit/template_simulation.py: issue 25's model, 400 replications, fixed seeds)."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from quanteval.power import (
    Design,
    detectable_change,
    projected_se,
    samples_per_prompt_for,
    templates_for,
)
from quanteval.report.claim import CONTRADICTED, SUPPORTED, settle_claims
from quanteval.stats import settle
from quanteval.templates import (
    TemplateDelta,
    decide,
    delta_pp,
    family_confidence,
    flip_p_value,
    template_counts,
    template_delta,
)
from tests.unit.template_simulation import (
    EMOTIONS,
    TEMPLATES,
    Evaluation,
    population_delta_pp,
    simulate,
)

REPLICATIONS = 400


def _measure(evaluation: Evaluation) -> TemplateDelta:
    counts = template_counts(
        evaluation.templates, evaluation.intended, evaluation.base, evaluation.run, EMOTIONS
    )
    return template_delta(counts)


def _replicate(
    samples_per_prompt: int,
    seed: int,
    effect_mean: float = 0.0,
    effect_sd: float = 0.10,
    replications: int = REPLICATIONS,
) -> list[TemplateDelta]:
    rng = np.random.default_rng(seed)
    return [
        _measure(simulate(rng, samples_per_prompt, effect_mean, effect_sd))
        for _ in range(replications)
    ]


@pytest.fixture(scope="module")
def truth() -> float:
    return population_delta_pp()


@pytest.fixture(scope="module")
def zero_mean_effect() -> dict[int, list[TemplateDelta]]:
    """By samplesPerPrompt: 400 evaluations under per-template and per-cell effects of mean 0."""
    return {spp: _replicate(spp, seed=2500 + spp) for spp in (1, 5)}


@pytest.mark.parametrize(("samples_per_prompt", "least"), [(1, 0.92), (5, 0.93)])
def test_the_interval_covers_the_population_difference(
    zero_mean_effect: dict[int, list[TemplateDelta]],
    truth: float,
    samples_per_prompt: int,
    least: float,
) -> None:
    intervals = [d.interval(0.95) for d in zero_mean_effect[samples_per_prompt]]
    covered = np.mean([low <= truth <= high for low, high in intervals])
    width = np.mean([high - low for low, high in intervals])
    print(
        f"samplesPerPrompt {samples_per_prompt}: coverage {covered:.1%}, "
        f"mean width {width:.1f} points (population ΔF1 {truth:+.2f})"
    )
    assert covered >= least


@pytest.mark.parametrize("samples_per_prompt", [1, 5])
def test_under_a_zero_mean_effect_the_verdict_rarely_says_worse_or_better(
    zero_mean_effect: dict[int, list[TemplateDelta]], samples_per_prompt: int
) -> None:
    evaluations = zero_mean_effect[samples_per_prompt]
    marks = [settle(d, d.flip_p, 1).decision.mark for d in evaluations]
    called = np.mean([mark in ("worse", "better") for mark in marks])
    print(f"samplesPerPrompt {samples_per_prompt}: worse or better in {called:.1%}")
    assert called <= 0.06


def test_a_mark_never_contradicts_the_interval_shown(
    zero_mean_effect: dict[int, list[TemplateDelta]],
) -> None:
    """Under no mean effect and under a real one, at family sizes 1, 2 and 4 (each p taken as its
    Holm-adjusted value at the family's strictest step)."""
    worse_runs = _replicate(1, seed=2600, effect_mean=-0.2)
    assert np.mean([settle(d, d.flip_p, 1).decision.mark == "worse" for d in worse_runs]) > 0.3
    for difference in [*zero_mean_effect[1], *zero_mean_effect[5], *worse_runs]:
        for k in (1, 2, 4):
            settled = settle(difference, min(1.0, k * difference.flip_p), k)
            low, high = settled.interval
            mark = settled.decision.mark
            assert settled.confidence == pytest.approx(1 - 0.05 / k)
            if mark.startswith("worse") and mark != "worse by Holm only":
                assert high < 0
            if mark.startswith("better") and mark != "better by Holm only":
                assert low > 0
            if mark in ("no detectable difference", "worse by Holm only", "better by Holm only"):
                assert low <= 0 <= high
            if mark == "no detectable difference":
                bound = max(abs(low), abs(high))
                assert settled.decision.text.endswith(f"(could be up to {bound:.1f} points)")


def test_the_claim_check_rarely_settles_anything_under_no_effect() -> None:
    """k = 1..10 comparisons an evaluation, 400 evaluations each (the first k of ten): some
    comparison supports or contradicts the claim in at most 5% (so the claim as a whole is
    supported or contradicted in at most as many)."""
    rng = np.random.default_rng(2700)
    evaluations = [
        [_measure(simulate(rng, 1, effect_sd=0.0)) for _ in range(10)] for _ in range(REPLICATIONS)
    ]
    for k in range(1, 11):
        settled_any = 0
        for differences in evaluations:
            settled, family, confidence = settle_claims(differences[:k])
            assert family == k and confidence == pytest.approx(1 - 0.05 / k)
            settled_any += any(outcome in (SUPPORTED, CONTRADICTED) for _, outcome in settled)
        print(f"k={k}: supported or contradicted in {settled_any / REPLICATIONS:.1%}")
        assert settled_any / REPLICATIONS <= 0.05


def test_too_many_comparisons_for_10_templates_cannot_decide() -> None:
    far_below = (-40.0, -20.0)
    at_30 = decide(far_below, 30 * 2 / 1024, 30, TEMPLATES)
    assert at_30.mark == "cannot decide"
    assert at_30.text == (
        "cannot decide at this family size (30 comparisons, 10 templates): "
        "add templates or compare fewer runs"
    )
    assert decide(far_below, 25 * 2 / 1024, 25, TEMPLATES).mark == "worse"
    assert decide(far_below, 0.0001, 1, 5).mark == "cannot decide"  # 2/32 > 0.05 even alone


def test_holm_alone_or_the_interval_alone_is_said_as_such() -> None:
    assert decide((-3.0, 0.5), 0.01, 2, TEMPLATES).text == (
        "worse by Holm; interval includes 0 at 97.5%"
    )
    only_interval = decide((0.5, 9.0), 0.08, 1, TEMPLATES)
    assert only_interval.mark == "better by the interval only"
    assert "does not reject (Holm p = 0.08)" in only_interval.text


def test_equivalent_only_within_a_margin_the_user_set() -> None:
    interval, tost = (-2.5, 2.0), (-2.0, 1.5)
    assert decide(interval, 0.7, 1, TEMPLATES).text == (
        "no detectable difference (could be up to 2.5 points)"
    )
    assert decide(interval, 0.7, 1, TEMPLATES, tost, 3.0).text == "equivalent within ±3 points"
    assert decide(interval, 0.7, 1, TEMPLATES, tost, 1.8).mark == "no detectable difference"


def test_the_detectable_change_is_detected_with_80_percent_power() -> None:
    """The report's minimum detectable change (the family's test on the data's template-level
    SE), simulated at that true change: the interval excludes 0 in about 80% of evaluations.
    The SE grows with the change (more samples flip), so the change is found as a fixed point:
    the detectable change of data whose true change it is."""
    # The effect on the probability scale whose population ΔF1 is a given change (near linear).
    slope = population_delta_pp(effect_mean=-0.1, effect_sd=0.0) / -0.1
    change = 15.0
    for step in range(2):
        at_change = _replicate(1, 2800 + step, -change / slope, 0.0, replications=200)
        se = float(np.sqrt(np.mean([d.se_pp**2 for d in at_change])))
        change = detectable_change(se, TEMPLATES)
    effect = -change / slope
    assert population_delta_pp(effect_mean=effect, effect_sd=0.0) == pytest.approx(-change, 0.05)
    found = _replicate(1, 2810, effect, 0.0)
    detected = np.mean([d.interval(family_confidence(1))[1] < 0 for d in found])
    print(f"detectable change {change:.1f} points: detected in {detected:.1%}")
    assert 0.7 <= detected <= 0.9


def test_the_template_difference_is_the_sample_macro_f1_difference() -> None:
    evaluation = simulate(np.random.default_rng(2900), 3)
    counts = template_counts(
        evaluation.templates, evaluation.intended, evaluation.base, evaluation.run, EMOTIONS
    )

    def macro(predicted: np.ndarray) -> float:
        labels = list(range(EMOTIONS))
        return float(
            f1_score(
                evaluation.intended, predicted, labels=labels, average="macro", zero_division=0
            )
        )

    expected = 100 * (macro(evaluation.run) - macro(evaluation.base))
    assert float(delta_pp(counts)) == pytest.approx(expected)


def test_the_permutation_test_is_exact_over_templates() -> None:
    evaluation = simulate(np.random.default_rng(3000), 1, effect_sd=0.0)
    hopeless = np.where(evaluation.intended == 0, 1, 0)  # every call wrong in every template
    worse = template_counts(
        evaluation.templates, evaluation.intended, evaluation.intended, hopeless, EMOTIONS
    )
    assert flip_p_value(worse) == pytest.approx(2 / 2**TEMPLATES)
    same = template_counts(
        evaluation.templates, evaluation.intended, evaluation.base, evaluation.base, EMOTIONS
    )
    assert flip_p_value(same) == 1.0


def test_more_samples_per_prompt_stop_helping_when_templates_dominate() -> None:
    now = Design(templates=10, emotions=7, samples_per_prompt=1)
    more = Design(templates=10, emotions=7, samples_per_prompt=4)
    assert projected_se(8.0, now, more, intraclass=0.0) == pytest.approx(4.0)
    assert projected_se(8.0, now, more, intraclass=1.0) == pytest.approx(8.0)
    assert samples_per_prompt_for(5.0, 8.0, now, intraclass=1.0) is None
    spp = samples_per_prompt_for(5.0, 8.0, now, intraclass=0.0)
    assert spp is not None and spp > 1
    at = Design(10, 7, spp)
    assert detectable_change(projected_se(8.0, now, at, 0.0), 10) <= 5.0
    before = Design(10, 7, spp - 1)
    assert detectable_change(projected_se(8.0, now, before, 0.0), 10) > 5.0
    templates = templates_for(5.0, 8.0, now, intraclass=1.0)
    assert templates is not None and templates > 10


def test_the_permutation_test_of_a_large_evaluation_draws_its_arrangements() -> None:
    """200 templates (the spec's most) are 2^200 arrangements: 16,384 drawn, in batches."""
    evaluation = simulate(np.random.default_rng(3200), 1, effect_mean=-0.15, templates=200)
    counts = template_counts(
        evaluation.templates, evaluation.intended, evaluation.base, evaluation.run, EMOTIONS
    )
    p = flip_p_value(counts)
    assert 2 / (2**14 + 1) <= p < 0.01  # a real effect, resolved to the draws' precision
