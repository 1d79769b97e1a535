"""The Pareto front of F1 (higher is better) against peak memory (lower is better)."""

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    run_id: str
    f1: float
    memory: int


def _dominates(a: Point, b: Point) -> bool:
    return a.f1 >= b.f1 and a.memory <= b.memory and (a.f1 > b.f1 or a.memory < b.memory)


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """The points no other point dominates, by memory (then F1, highest first)."""
    front = [p for p in points if not any(_dominates(q, p) for q in points)]
    return sorted(front, key=lambda p: (p.memory, -p.f1, p.run_id))
