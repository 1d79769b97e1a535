"""distinct-n and percentiles on small inputs with known answers."""

import pytest

from quanteval.textstats import distinct_n, percentile


def test_distinct_1_within_one_text() -> None:
    assert distinct_n(["a b a b"], 1) == pytest.approx(0.5)


def test_distinct_2_within_one_text() -> None:
    # (a b), (b a), (a b): two of three bigrams are unique.
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)


def test_distinct_n_counts_across_texts() -> None:
    assert distinct_n(["the cat", "the dog"], 1) == pytest.approx(3 / 4)
    assert distinct_n(["the cat", "the cat"], 2) == pytest.approx(1 / 2)


def test_bigrams_do_not_cross_text_boundaries() -> None:
    # "a b" and "c d" give (a b) and (c d) only, never (b c).
    assert distinct_n(["a b", "c d"], 2) == pytest.approx(1.0)


def test_distinct_n_ignores_case_and_extra_whitespace() -> None:
    assert distinct_n(["Joy  JOY\tjoy\n"], 1) == pytest.approx(1 / 3)


def test_distinct_n_all_unique() -> None:
    assert distinct_n(["one two three four"], 1) == pytest.approx(1.0)
    assert distinct_n(["one two three four"], 3) == pytest.approx(1.0)


def test_distinct_n_without_ngrams_is_zero() -> None:
    assert distinct_n([], 1) == 0.0
    assert distinct_n(["", "   "], 1) == 0.0
    assert distinct_n(["only two"], 3) == 0.0


def test_distinct_n_accepts_a_generator() -> None:
    assert distinct_n((t for t in ["x y", "x z"]), 1) == pytest.approx(3 / 4)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 25, 1.75),
        ([3.0, 1.0, 2.0], 50, 2.0),
        ([10.0, 20.0], 95, 19.5),
        ([7.0], 95, 7.0),
        ([float(v) for v in range(1, 101)], 95, 95.05),
        ([float(v) for v in range(1, 101)], 50, 50.5),
    ],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_zero() -> None:
    assert percentile([], 50) == 0.0


def test_percentile_does_not_reorder_its_input() -> None:
    values = [3.0, 1.0, 2.0]
    percentile(values, 50)
    assert values == [3.0, 1.0, 2.0]
