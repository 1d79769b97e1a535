"""Simulated evaluations whose population truth is known: issue 25's model of prompt templates.

Per evaluation, T templates x E emotions; a cell's chance that the classifier calls the intended
emotion is expit(N(0.4, 0.8²) + the template's N(0, 0.8²)) at the baseline; quantization moves it
by a template effect plus a cell effect, each N(mean, sd²) on the probability scale (clipped to
[0, 1]). Each sample of the run shares its baseline partner's random draw half of the time (seed
pairing), else draws its own; a wrong call names one of the other emotions at random. The
population difference is the macro-F1 difference of expected counts over 40,000 templates.
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

EMOTIONS = 7
TEMPLATES = 10


@dataclass(frozen=True)
class Evaluation:
    templates: NDArray[np.int64]
    intended: NDArray[np.int64]
    base: NDArray[np.int64]
    run: NDArray[np.int64]


def _chances(
    rng: np.random.Generator, templates: int, effect_mean: float, effect_sd: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    logits = rng.normal(0.4, 0.8, (templates, EMOTIONS)) + rng.normal(0, 0.8, (templates, 1))
    base = expit(logits)
    effect = rng.normal(effect_mean, effect_sd, (templates, 1)) + rng.normal(
        0, effect_sd, (templates, EMOTIONS)
    )
    return base, np.clip(base + effect, 0, 1)


def simulate(
    rng: np.random.Generator,
    samples_per_prompt: int,
    effect_mean: float = 0.0,
    effect_sd: float = 0.10,
    templates: int = TEMPLATES,
) -> Evaluation:
    """One evaluation of a run against its baseline."""
    p_base, p_run = _chances(rng, templates, effect_mean, effect_sd)
    shape = (templates, EMOTIONS, samples_per_prompt)
    shared = rng.random(shape) < 0.5
    draw_base, wrong_base = rng.random(shape), rng.integers(0, EMOTIONS - 1, shape)
    draw_run = np.where(shared, draw_base, rng.random(shape))
    wrong_run = np.where(shared, wrong_base, rng.integers(0, EMOTIONS - 1, shape))
    intended = np.broadcast_to(np.arange(EMOTIONS)[None, :, None], shape)

    def calls(
        chance: NDArray[np.float64], draw: NDArray[np.float64], wrong: NDArray[np.int64]
    ) -> NDArray[np.int64]:
        right = draw < chance[..., None]
        return np.where(right, intended, (intended + 1 + wrong) % EMOTIONS)

    template_ids = np.broadcast_to(np.arange(templates)[:, None, None], shape)
    return Evaluation(
        templates=template_ids.ravel().astype(np.int64),
        intended=intended.ravel().astype(np.int64),
        base=calls(p_base, draw_base, wrong_base).ravel().astype(np.int64),
        run=calls(p_run, draw_run, wrong_run).ravel().astype(np.int64),
    )


def _expected_macro_f1(chance: NDArray[np.float64]) -> float:
    right = chance.sum(axis=0)
    wrong = (1 - chance).sum(axis=0)
    called = right + (wrong.sum() - wrong) / (EMOTIONS - 1)
    support = np.full(EMOTIONS, chance.shape[0])
    return float((2 * right / (support + called)).mean())


def population_delta_pp(
    effect_mean: float = 0.0, effect_sd: float = 0.10, templates: int = 40_000, seed: int = 0
) -> float:
    """The run's macro-F1 minus the baseline's over `templates` templates, from expected counts."""
    base, run = _chances(np.random.default_rng(seed), templates, effect_mean, effect_sd)
    return 100 * (_expected_macro_f1(run) - _expected_macro_f1(base))
