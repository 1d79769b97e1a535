"""How much a comparison can detect, with the prompt template as the unit: before a run
(`quanteval plan`, from an assumed design effect) and after it (the report, from the measured one).

The detectable change uses the test the report makes: two-sided at alpha / k for a family of k
comparisons (Bonferroni, the level of the interval the mark is read from), Student's t on
templates - 1 degrees of freedom, 80% power. More samples per prompt shrink only the part of the
variance within templates; more templates shrink all of it. With m samples per template and
intraclass correlation rho, the design effect (the template-level variance over the variance the
same samples would have if independent) is 1 + (m - 1) rho (Kish, "Survey Sampling", 1965).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from scipy import stats

ALPHA: Final = 0.05
POWER: Final = 0.80
DETECT_PP: Final = 5.0  # the change the advice is sized for
# The share of samples one precision gets right and the other wrong, assumed before any run:
# the quick start measured 21% (bf16), 31% (int8) and 37% (nf4) against fp32, with SmolLM2-135M.
ASSUMED_DISCORDANCE: Final = 0.30
# The intraclass correlation assumed before a run: the quick start's (SmolLM2-135M, 10 templates x
# 7 emotions, samplesPerPrompt 1; docs/benchmarks.md), whose design effects against fp32 averaged
# 0.99 at 7 samples a template: rho = (0.99 - 1) / 6, which is 0 within [0, 1]. Ten templates
# measure it coarsely; `quanteval plan --design-effect` sets another, and the report uses each
# comparison's own.
ASSUMED_INTRACLASS: Final = 0.0
ASSUMED_FROM: Final = "the quick start's 4 comparisons: design effect 0.55 to 1.49, mean 0.99"
PROJECTION_LIMIT: Final = 10_000  # beyond this many templates or samples per prompt: "never"


def detectable_change(se: float, templates: int, family_size: int = 1) -> float:
    """The smallest true change the family's test detects with POWER, given its standard error:
    (t(1 - alpha / 2k) + t(POWER)) on templates - 1 degrees of freedom, times the SE."""
    df = max(1, templates - 1)
    k = max(1, family_size)
    return float((stats.t.ppf(1 - ALPHA / (2 * k), df) + stats.t.ppf(POWER, df)) * se)


@dataclass(frozen=True)
class Design:
    """How an evaluation samples: templates x emotions x samples per prompt."""

    templates: int
    emotions: int
    samples_per_prompt: int

    @property
    def per_template(self) -> int:
        return self.emotions * self.samples_per_prompt

    @property
    def samples(self) -> int:
        return self.templates * self.per_template


def design_effect(per_template: int, intraclass: float) -> float:
    return 1 + (per_template - 1) * intraclass


def intraclass_of(effect: float, per_template: int) -> float:
    """rho from a design effect at m samples a template, within [0, 1] (a measured effect
    below 1 is noise, not negative correlation worth projecting)."""
    if per_template <= 1:
        return 0.0
    return min(1.0, max(0.0, (effect - 1) / (per_template - 1)))


def projected_se(se: float, now: Design, then: Design, intraclass: float) -> float:
    """The standard error `se`, measured at design `now`, at design `then`."""

    def variance(d: Design) -> float:
        return design_effect(d.per_template, intraclass) / d.samples

    return se * math.sqrt(variance(then) / variance(now))


def _fewest(low: int, detects: Callable[[int], bool]) -> int | None:
    """The smallest n from `low` to PROJECTION_LIMIT for which `detects(n)` holds (it holds for
    every larger n too: the detectable change falls as templates or samples rise); None if none."""
    high = PROJECTION_LIMIT
    if not detects(high):
        return None
    while low < high:
        middle = (low + high) // 2
        if detects(middle):
            high = middle
        else:
            low = middle + 1
    return low


def templates_for(
    change_pp: float, se: float, now: Design, intraclass: float, family_size: int = 1
) -> int | None:
    """The fewest templates (at least today's) with which the test detects `change_pp`, at
    today's samples per prompt; None beyond PROJECTION_LIMIT."""

    def detects(templates: int) -> bool:
        projected = projected_se(se, now, replace(now, templates=templates), intraclass)
        return detectable_change(projected, templates, family_size) <= change_pp

    return _fewest(max(2, now.templates), detects)


def samples_per_prompt_for(
    change_pp: float, se: float, now: Design, intraclass: float, family_size: int = 1
) -> int | None:
    """The fewest samples per prompt (at least today's) with which the test detects `change_pp`
    with today's templates; None where no number of samples does (the templates' own spread is
    then the floor: add templates)."""

    def detects(samples_per_prompt: int) -> bool:
        then = replace(now, samples_per_prompt=samples_per_prompt)
        projected = projected_se(se, now, then, intraclass)
        return detectable_change(projected, now.templates, family_size) <= change_pp

    return _fewest(now.samples_per_prompt, detects)


def planned_se(design: Design, effect: float, discordance: float = ASSUMED_DISCORDANCE) -> float:
    """The template-level standard error (points) of a paired change before any run: the
    independent-samples SE of a paired difference with a `discordance` share of discordant
    samples, sqrt(discordance / n), widened by the design effect."""
    return 100 * math.sqrt(discordance / design.samples * effect)
