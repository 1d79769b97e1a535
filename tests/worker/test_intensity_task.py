"""The intensity task in the real worker: SmolLM2 rates the built-in corpus's texts for the
evaluation's emotions, with the model loaded once for both tasks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quanteval.api.layout import GENERATIONS_FILE, RATINGS_FILE, RESULT_FILE, run_dir
from quanteval.api.records import RatingRecord
from quanteval.api.result import RunResult
from quanteval.api.spec import parse_manifest
from quanteval.api.termination import TERMINATION_LOG_ENV
from quanteval.intensity import builtin_items
from quanteval.matrix import build_run_spec, expand
from quanteval_worker.intensity import intensity_figures
from tests.builders import make_manifest

EMOTIONS = ["joy", "anger"]


@pytest.mark.slow
def test_a_run_with_both_tasks_writes_its_ratings_and_their_figures(
    tmp_path: Path, tiny_llama_dir: Path
) -> None:
    """The tiny Llama (SmolLM2's tokenizer, so its number tree): the task's files and figures;
    what SmolLM2 itself answers is measured in docs/benchmarks.md (a second a text here)."""
    parsed = parse_manifest(
        make_manifest(
            "intensity-test",
            [{"name": "tiny", "source": str(tiny_llama_dir)}],
            emotions=EMOTIONS,
            prompts=["Write a text that expresses <class>"],
            tasks=["generation", "intensity"],
            generation={"preset": "greedy", "maxNewTokens": 8},
            intensity={"method": "expected"},
        )
    )
    root = tmp_path / "out"
    (run,) = expand(parsed.spec)
    spec = build_run_spec(parsed, run, root.as_uri())
    spec_file = tmp_path / "runspec.json"
    spec_file.write_text(spec.to_json())
    env = os.environ | {TERMINATION_LOG_ENV: str(tmp_path / "termination")}
    done = subprocess.run(
        [sys.executable, "-m", "quanteval_worker.main", "--spec", str(spec_file)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]

    directory = root / run_dir(run.id)
    assert (directory / GENERATIONS_FILE).exists()  # the generation task ran too
    lines = (directory / RATINGS_FILE).read_text().splitlines()
    records = [RatingRecord.from_line(line) for line in lines]
    expected = builtin_items(EMOTIONS)
    assert [r.key for r in records] == [i.key for i in expected]  # every text, in order
    assert {r.emotion for r in records} == set(EMOTIONS)
    for record in records:  # the expected rating, or a parse failure kept raw, with why
        assert record.rating is None or 0 <= record.rating <= 100
        assert (record.rating is None) == (record.parse_failure is not None)
        assert record.non_numeric_mass is not None and 0 <= record.non_numeric_mass <= 1
        if record.non_numeric_mass <= 0.5:
            assert record.rating == record.expected and record.spread is not None
        else:
            assert record.parse_failure == "mostly no number"
        assert json.loads(lines[records.index(record)])["answer"] == record.answer

    result = RunResult.model_validate_json((directory / RESULT_FILE).read_text())
    figures = result.intensity_task
    assert figures is not None and figures.texts == len(expected) == 50
    assert figures.parse_failures == sum(r.rating is None for r in records)
    assert sum(figures.parse_failures_by_reason.values()) == figures.parse_failures
    assert figures.ratings_per_second > 0 and figures.latency_p95_ms >= figures.latency_p50_ms
    assert "never rescaled, never clamped" in figures.rule
    assert figures.method == "expected" and figures.non_numeric_mass_mean is not None
    assert figures.expected_seconds is not None and 0 < figures.expected_seconds < figures.seconds
    if figures.spearman_rho is not None:
        low, high = figures.spearman_rho_ci95 or (2.0, -2.0)
        assert -1 <= low <= figures.spearman_rho <= high <= 1
    else:  # random weights rank nothing, or rate nothing: it says so
        assert figures.spearman_rho_unavailable
    # The classifier scored the same texts in the same run, timed the same way.
    reference = figures.classifier
    assert reference is not None and reference.texts == 50 and reference.ratings_per_second > 0
    assert all(r.classifier_rating is not None and 0 <= r.classifier_rating <= 100 for r in records)
    assert reference.spearman_rho is not None  # the embedded classifier orders them


def _rating(
    level: int, rating: float | None, gold: float | None = None, why: str = "no number"
) -> RatingRecord:
    answer = "no idea" if rating is None else f"{rating:g}"
    return RatingRecord(
        key=f"k{level}-{rating}", emotion="joy", level=level, gold=gold, rating=rating,
        parse_failure=why if rating is None else None, answer=answer, latency_ms=10.0 * level,
    )  # fmt: skip


def test_the_figures_count_failures_rank_by_level_and_say_why_there_is_no_rho() -> None:
    ordered = [_rating(level, 20.0 * level) for level in range(1, 6) for _ in range(3)]
    failed = [_rating(3, None), _rating(4, None, why="a fraction"), _rating(5, None)]
    figures = intensity_figures([*ordered, *failed], seconds=2.0)
    assert figures.parse_failures == 3 and figures.parse_failure_rate == 3 / 18
    assert figures.parse_failures_by_reason == {"no number": 2, "a fraction": 1}
    assert figures.spearman_rho == pytest.approx(1.0) and figures.ratings_per_second == 9.0
    flat = intensity_figures([_rating(level, 100.0) for level in range(1, 6) for _ in range(3)], 1)
    assert flat.spearman_rho is None and flat.spearman_rho_unavailable == (
        "every rating is 100: no rank order"
    )
    golden = intensity_figures([_rating(1, 50.0, gold=40.0), _rating(2, 70.0, gold=90.0)], 1)
    assert golden.mae_vs_gold == pytest.approx(15.0)
