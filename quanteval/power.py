"""How many samples a comparison needs: the detectable change at 80% power, before anything runs.

Standard library only, so `quanteval plan` needs neither numpy nor scipy.
"""

import math
from statistics import NormalDist
from typing import Final

ALPHA: Final = 0.05
POWER: Final = 0.80
# The share of samples one precision gets right and the other wrong, assumed before any run:
# the quick start measured 21% (bf16), 31% (int8) and 37% (nf4) against fp32, with SmolLM2-135M.
ASSUMED_DISCORDANCE: Final = 0.30
DETECT_PP: Final = 5.0  # the change the recommended samplesPerPrompt is sized for


def z_sum() -> float:
    """z of a two-sided test at ALPHA plus z of POWER (2.80 for 0.05 and 80%)."""
    normal = NormalDist()
    return normal.inv_cdf(1 - ALPHA / 2) + normal.inv_cdf(POWER)


def detectable_change(standard_error: float) -> float:
    """The smallest true change a two-sided test at ALPHA detects with POWER, given its SE."""
    return z_sum() * standard_error


def planned_detectable_pp(samples: int, discordance: float = ASSUMED_DISCORDANCE) -> float:
    """The paired accuracy change (points) `samples` detect, when a `discordance` share of the
    samples is right under one precision only: SE = sqrt(discordance / samples)."""
    return 100 * detectable_change(math.sqrt(discordance / samples))


def samples_to_detect(change_pp: float, discordance: float = ASSUMED_DISCORDANCE) -> int:
    """Samples a run needs to detect `change_pp` points (80% power, alpha 0.05)."""
    return math.ceil(discordance * (z_sum() / (change_pp / 100)) ** 2)
