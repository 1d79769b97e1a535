"""The Pareto front of F1 (higher is better) against a cost (lower is better): peak memory, or
dollars where every run has a price."""

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    run_id: str
    f1: float
    cost: float


def _dominates(a: Point, b: Point) -> bool:
    return a.f1 >= b.f1 and a.cost <= b.cost and (a.f1 > b.f1 or a.cost < b.cost)


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The points no other point dominates, by cost (then F1, highest first)."""
    front = [p for p in points if not any(_dominates(q, p) for q in points)]
    return sorted(front, key=lambda p: (p.cost, -p.f1, p.run_id))
