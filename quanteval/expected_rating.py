"""The expected intensity rating: the model's own probability of each answer 0-100, not only the
answer it would print.

For n = 0..100, P(n) = P(the tokens of n as the tokenizer writes it, with or without one
leading space) x P(the token after them does not go on with a digit). The paths of all the
numbers form a tree of token prefixes; each prefix needs one next-token distribution after the
prompt (`NumberTree.prefixes`), which an engine can give from the prompt's cache. The
non-numeric mass is 1 - sum P(n); the rating is sum n P(n) / sum P(n), with its spread. Other
tokenizations of a number (split otherwise than the tokenizer splits it alone) are ignored.
"""

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

SCALE: Final = range(101)
Tokens = tuple[int, ...]


@dataclass(frozen=True)
class NumberTree:
    """Each number's token paths, and every prefix whose next-token distribution P(n) needs."""

    paths: dict[int, tuple[Tokens, ...]]
    prefixes: tuple[Tokens, ...]  # the empty one first; each path itself too (its last step)
    after: dict[Tokens, frozenset[int]]  # the tokens after a prefix on some number's path


def number_tree(encode: Callable[[str], list[int]]) -> NumberTree:
    """The paths of 0..100 as `encode` (the tokenizer, without special tokens) writes each, bare
    and after one space, and their prefixes, shortest first."""
    paths: dict[int, tuple[Tokens, ...]] = {}
    for n in SCALE:
        variants = dict.fromkeys(tuple(encode(text)) for text in (str(n), f" {n}"))
        paths[n] = tuple(v for v in variants if v)
    after: dict[Tokens, set[int]] = {}
    for path in (path for ps in paths.values() for path in ps):
        for depth in range(len(path) + 1):
            following = after.setdefault(path[:depth], set())
            if depth < len(path):
                following.add(path[depth])
    prefixes = tuple(sorted(after, key=lambda p: (len(p), p)))
    return NumberTree(paths, prefixes, {p: frozenset(t) for p, t in after.items()})


@dataclass(frozen=True)
class Step:
    """What one prefix's next-token distribution says: the probability of each token on a path
    after it, and the mass of tokens that begin with a digit (a number that goes on)."""

    tokens: Mapping[int, float]
    digit_mass: float


@dataclass(frozen=True)
class ExpectedRating:
    value: float | None  # sum n P(n) / sum P(n); None when no number has any probability
    spread: float | None  # the standard deviation of n under P(n) / sum P(n)
    non_numeric_mass: float  # 1 - sum P(n): answers that are no number of 0-100


def expected_rating(tree: NumberTree, steps: Mapping[Tokens, Step]) -> ExpectedRating:
    """The rating from each prefix's step (`steps`: one for every `tree.prefixes`)."""
    mass = {n: sum(_path_probability(path, steps) for path in tree.paths[n]) for n in SCALE}
    total = sum(mass.values())
    if total <= 0:
        return ExpectedRating(None, None, 1.0)
    mean = sum(n * p for n, p in mass.items()) / total
    variance = sum((n - mean) ** 2 * p for n, p in mass.items()) / total
    return ExpectedRating(mean, math.sqrt(max(variance, 0.0)), max(1.0 - total, 0.0))


def _path_probability(path: Tokens, steps: Mapping[Tokens, Step]) -> float:
    """P(the path's tokens, then no digit)."""
    probability = 1.0
    for depth, token in enumerate(path):
        probability *= steps[path[:depth]].tokens.get(token, 0.0)
    return probability * max(1.0 - steps[path].digit_mass, 0.0)
