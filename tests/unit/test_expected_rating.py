"""The expected rating from set next-token probabilities, against the mean computed by hand."""

import pytest

from quanteval.expected_rating import Step, expected_rating, number_tree

SPACE = 10  # a digit-split tokenizer: "0".."9" are 0..9, " " is 10


def _digits(text: str) -> list[int]:
    return [SPACE if c == " " else int(c) for c in text]


def _whole(text: str) -> list[int]:
    """A tokenizer with a token per number: n is 100 + n, " n" is 300 + n."""
    return [300 + int(text) if text.startswith(" ") else 100 + int(text)]


def test_a_digit_split_tokenizer_gives_the_hand_computed_mean() -> None:
    """After the prompt: "8" 0.5, "3" 0.2, " " 0.1 (then "5" 0.5), anything else 0.2. After
    "8": "0" 0.4 (then the end), the end 0.6. After "3": the end. After "80": the end. So
    P(8) = 0.5 x 0.6 = 0.3, P(80) = 0.5 x 0.4 = 0.2, P(3) = 0.2, P(5) = 0.1 x 0.5 = 0.05, and
    0.25 of the mass is no number."""
    tree = number_tree(_digits)
    assert tree.paths[42] == ((4, 2), (SPACE, 4, 2)) and tree.paths[100] == (
        (1, 0, 0),
        (10, 1, 0, 0),
    )
    set_steps = {
        (): Step({8: 0.5, 3: 0.2, SPACE: 0.1}, digit_mass=0.7),
        (8,): Step({0: 0.4}, digit_mass=0.4),
        (8, 0): Step({}, digit_mass=0.0),
        (3,): Step({}, digit_mass=0.0),
        (SPACE,): Step({5: 0.5}, digit_mass=0.5),
        (SPACE, 5): Step({}, digit_mass=0.0),
    }
    steps = {p: set_steps.get(p, Step({}, 1.0)) for p in tree.prefixes}
    rating = expected_rating(tree, steps)
    mean = (8 * 0.3 + 80 * 0.2 + 3 * 0.2 + 5 * 0.05) / 0.75
    assert rating.value == pytest.approx(mean)
    assert rating.non_numeric_mass == pytest.approx(0.25)
    spread = (
        sum(p * (n - mean) ** 2 for n, p in ((8, 0.3), (80, 0.2), (3, 0.2), (5, 0.05))) / 0.75
    ) ** 0.5
    assert rating.spread == pytest.approx(spread)


def test_whole_number_tokens_give_the_hand_computed_mean() -> None:
    """One token per number: P(70) = 0.6, P(" 20") = 0.2, each followed by no digit 0.9 of the
    time."""
    tree = number_tree(_whole)
    assert tree.paths[70] == ((170,), (370,)) and len(tree.prefixes) == 1 + 2 * 101
    steps = {p: Step({}, 0.1) for p in tree.prefixes}
    steps[()] = Step({170: 0.6, 320: 0.2}, digit_mass=0.8)
    rating = expected_rating(tree, steps)
    p70, p20 = 0.6 * 0.9, 0.2 * 0.9
    assert rating.value == pytest.approx((70 * p70 + 20 * p20) / (p70 + p20))
    assert rating.non_numeric_mass == pytest.approx(1 - p70 - p20)


def test_no_number_at_all_is_no_rating() -> None:
    tree = number_tree(_whole)
    rating = expected_rating(tree, {p: Step({}, 0.0) for p in tree.prefixes})
    assert (rating.value, rating.spread, rating.non_numeric_mass) == (None, None, 1.0)
