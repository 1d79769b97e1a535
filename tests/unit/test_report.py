"""The evaluation report: every computed number on hand-made runs, and the files it writes."""

import csv
import dataclasses
import io
import json
import shutil
from pathlib import Path

import pytest

from quanteval.api.errors import ExitCode, InvalidSpecError
from quanteval.api.records import SampleRecord
from quanteval.api.result import (
    CheckpointQuantization,
    ClassifierReference,
    IntensityFigures,
    LevelRating,
    RankAgreement,
)
from quanteval.api.termination import ReportMessage
from quanteval.comparison import Terms
from quanteval.precisions import Precision
from quanteval.report import REPORT_SCHEMA, BuiltReport, ExpectedRun, build_report
from quanteval.report.claim import NO_PAIR, ClaimRun, check_claim, similar_memory, verdict
from quanteval.report.compute import dollar_front
from quanteval.report.data import parse_records, parse_run_id
from quanteval.report.drift import intensity_drift, pair_by_sample, rouge_f, rouge_means
from quanteval.report.pareto import Point, pareto_front
from quanteval.report.plots import f1_dollars_png
from quanteval.report.samples import pick_samples
from quanteval.report.schema import Report, RunReport
from quanteval.report.serialize import from_json, to_json
from quanteval.report.verdicts import report_termination_message
from quanteval_cli.main import main
from tests.builders import (
    EMOTIONS,
    Samples,
    generation_lines,
    make_result,
    write_ratings,
    write_run,
)

FP32, BF16, INT8, NF4 = Precision.FP32, Precision.BF16, Precision.INT8, Precision.NF4


BIG_FP32: Samples = {
    (1, "anger", 0): ("the cat sat", 0.75),
    (1, "joy", 0): ("a happy day", 0.5),
    (2, "anger", 0): ("storm clouds gather", 0.25),
    (2, "joy", 0): ("sunny fields", 1.0),
}
BIG_INT8: Samples = {
    (1, "anger", 0): ("the cat ran", 0.70),  # ROUGE-1 2/3, ROUGE-2 1/2, ROUGE-L 2/3
    (1, "joy", 0): ("a happy day", 0.6),  # identical: 1
    (2, "anger", 0): ("storm clouds gather", 0.25),  # identical: 1
    (2, "joy", 0): ("dogs bark loudly", 0.0),  # disjoint: 0
}
BIG_NF4: Samples = {
    (1, "anger", 0): ("the cat sat", 0.25),  # identical
    (1, "joy", 0): ("xyz", 0.5),  # disjoint
    (3, "anger", 0): ("not in the baseline", 0.9),  # no counterpart: left out
}
SMALL: Samples = {(1, "anger", 0): ("joy joy joy", 0.4), (1, "joy", 0): ("joy joy", 0.9)}


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two models: big (fp32 baseline, int8, nf4) and small (fp32 baseline, bf16)."""
    root = tmp_path_factory.mktemp("report") / "eval"
    runs = [
        ("big", FP32, 0.80, 4000, 5000, 20.0, BIG_FP32),
        ("big", INT8, 0.70, 1000, 2000, 40.0, BIG_INT8),
        ("big", NF4, 0.60, 600, 1100, 30.0, BIG_NF4),
        ("small", FP32, 0.50, 1000, 1000, 10.0, SMALL),
        ("small", BF16, 0.75, 500, 1800, 5.0, SMALL),
    ]
    for model, precision, f1, weights, peak, seconds, samples in runs:
        result = make_result(
            model, precision, f1=f1, weights=weights, peak=peak, seconds=seconds,
            per_emotion_f1=(f1 - 0.1, f1 + 0.1),
        )  # fmt: skip
        write_run(root, f"{model}-{precision.value}", result, samples)
    return root


@pytest.fixture(scope="module")
def built(evaluation: Path) -> BuiltReport:
    """The evaluation's report, built once for the tests that only read it."""
    return build_report(str(evaluation))


def _runs(report: Report) -> dict[str, RunReport]:
    return {r.run_id: r for r in report.runs}


# --- ROUGE and intensity drift ------------------------------------------------------------------


def test_rouge_of_identical_texts_is_one() -> None:
    assert rouge_f("The cat sat on the mat.", "The cat sat on the mat.") == (1.0, 1.0, 1.0)


def test_rouge_of_identical_texts_without_tokens_is_one() -> None:
    """rouge-score keeps a-z and 0-9 only: emoji alone would score 0 against themselves."""
    assert rouge_f("🌱🌍🌊", "🌱🌍🌊") == (1.0, 1.0, 1.0)


def test_rouge_of_disjoint_texts_is_zero() -> None:
    assert rouge_f("the cat sat", "dogs bark loudly") == (0.0, 0.0, 0.0)


def test_rouge_by_hand() -> None:
    """'the cat sat' against 'the cat ran': 2 of 3 words, 1 of 2 bigrams, LCS of 2 words."""
    rouge1, rouge2, rouge_l = rouge_f("the cat sat", "the cat ran")

    assert rouge1 == pytest.approx(2 / 3)
    assert rouge2 == pytest.approx(1 / 2)
    assert rouge_l == pytest.approx(2 / 3)


def _gens(samples: Samples) -> list[SampleRecord]:
    generations, bad = parse_records(generation_lines(samples).splitlines(), SampleRecord)
    assert bad == 0
    return generations


def test_pairs_are_the_samples_both_have() -> None:
    pairs = pair_by_sample(_gens(BIG_FP32), _gens(BIG_NF4))

    assert [(b.text, r.text) for b, r in pairs] == [
        ("the cat sat", "the cat sat"),
        ("a happy day", "xyz"),
    ]


def test_rouge_means_average_the_pairs() -> None:
    means = rouge_means(pair_by_sample(_gens(BIG_FP32), _gens(BIG_INT8)))

    assert means is not None
    assert means.rouge1 == pytest.approx((2 / 3 + 1 + 1 + 0) / 4)
    assert means.rouge2 == pytest.approx((1 / 2 + 1 + 1 + 0) / 4)
    assert means.rouge_l == pytest.approx((2 / 3 + 1 + 1 + 0) / 4)
    assert rouge_means([]) is None


def test_intensity_drift_is_the_mean_absolute_change_in_points() -> None:
    # |70-75|, |60-50|, |25-25|, |0-100|
    drift = intensity_drift(pair_by_sample(_gens(BIG_FP32), _gens(BIG_INT8)))

    assert drift == pytest.approx((5 + 10 + 0 + 100) / 4)
    assert intensity_drift([]) is None


# --- Pareto front and the claim check -----------------------------------------------------------


def test_pareto_front() -> None:
    points = [
        Point("a", 0.80, 5000),
        Point("b", 0.70, 2000),  # dominated by d: better F1, less memory
        Point("c", 0.60, 1100),
        Point("d", 0.75, 1800),
        Point("e", 0.50, 1000),
        Point("f", 0.50, 1200),  # dominated by e: same F1, more memory
        Point("g", 0.80, 5000),  # equal to a: neither dominates
    ]

    assert [p.run_id for p in pareto_front(points)] == ["e", "c", "d", "a", "g"]
    assert pareto_front([]) == []


def test_similar_memory_is_within_25_percent() -> None:
    assert similar_memory(1000, 1250)
    assert similar_memory(1250, 1000)
    assert not similar_memory(1000, 1251)
    assert not similar_memory(0, 0)


def _claim_run(run_id: str, precision: Precision, f1: float, peak: int) -> ClaimRun:
    return ClaimRun(run_id, run_id.split("-")[0], precision, f1, peak)


def test_claim_check_counts_wins_at_similar_memory() -> None:
    runs = [
        _claim_run("big-fp32", FP32, 0.80, 5000),
        _claim_run("big-int8", INT8, 0.70, 2000),
        _claim_run("big-nf4", NF4, 0.60, 1100),
        _claim_run("small-fp32", FP32, 0.50, 1000),
        _claim_run("small-bf16", BF16, 0.75, 1800),
    ]

    check = check_claim(runs, {"big": 4000, "small": 1000}, ["big", "small"])

    pairs = [(c.larger_run_id, c.smaller_run_id, c.larger_wins) for c in check.comparisons]
    assert pairs == [("big-int8", "small-bf16", False), ("big-nf4", "small-fp32", True)]
    assert check.comparisons[0].memory_ratio == pytest.approx(2000 / 1800)
    assert check.wins == 1  # the raw strict comparison, kept; no samples, so nothing settled
    assert check.verdict == (
        "not settled by this data: of 2 comparisons at similar memory, 0 support it, "
        "0 contradict it, 2 not settled"
    )
    assert check.models_by_size == ("big", "small")
    assert check.models_left_out == ()


def test_claim_check_without_a_pair_at_similar_memory() -> None:
    runs = [_claim_run("big-nf4", NF4, 0.6, 3000), _claim_run("small-fp32", FP32, 0.5, 1000)]

    far = check_claim(runs, {"big": 4000, "small": 1000}, ["big", "small"])
    one_model = check_claim(runs[:1], {"big": 4000}, ["big", "ghost"])
    same_size = check_claim(
        [_claim_run("big-nf4", NF4, 0.6, 1000), _claim_run("small-fp32", FP32, 0.5, 1000)],
        {"big": 1000, "small": 1000},
        ["big", "small"],
    )

    for check in (far, one_model, same_size):
        assert check.comparisons == ()
        assert check.verdict == NO_PAIR == "no pair at similar memory"
    assert one_model.models_left_out == ("ghost",)


def test_the_claim_check_compares_no_runs_on_different_devices() -> None:
    """Memory of a CPU run and a GPU run is two machines' (quanteval.comparison.unlike)."""
    big = dataclasses.replace(_claim_run("big-nf4", NF4, 0.6, 1000), terms=Terms("", "cuda"))
    small = dataclasses.replace(_claim_run("small-fp32", FP32, 0.5, 1000), terms=Terms("", "cuda"))
    on_cpu = dataclasses.replace(small, terms=Terms("", "cpu"))
    sizes = {"big": 4000, "small": 1000}

    assert len(check_claim([big, small], sizes, ["big", "small"]).comparisons) == 1
    apart = check_claim([big, on_cpu], sizes, ["big", "small"])
    assert apart.comparisons == () and apart.verdict == NO_PAIR


def test_claim_verdict_wording() -> None:
    assert verdict(1, 0, 2).startswith("supported: of 2 comparisons at similar memory, 1 support")
    assert verdict(0, 1, 1).startswith("contradicted: of 1 comparison")
    assert verdict(1, 1, 2).startswith("not settled by this data")
    assert verdict(0, 0, 0) == "no pair at similar memory"


def _generations(model_right: set[int], n: int = 40) -> tuple[SampleRecord, ...]:
    return tuple(
        SampleRecord(
            key=f"p{i}", prompt_id=i, emotion=EMOTIONS[i % 2], sample_index=0, prompt="",
            text="", predicted=EMOTIONS[i % 2] if i in model_right else EMOTIONS[(i + 1) % 2],
            probabilities={},
        )
        for i in range(n)
    )  # fmt: skip


def test_the_claim_is_settled_by_the_paired_interval() -> None:
    big = ClaimRun("big-nf4", "big", NF4, 0.9, 1000, _generations(set(range(36))), EMOTIONS)
    small = ClaimRun("small-fp32", "small", FP32, 0.3, 1000, _generations(set(range(12))), EMOTIONS)
    tied = ClaimRun("small-fp32", "small", FP32, 0.9, 1000, _generations(set(range(36))), EMOTIONS)
    supported = check_claim([big, small], {"big": 10, "small": 1}, ["big", "small"])
    unsettled = check_claim([big, tied], {"big": 10, "small": 1}, ["big", "small"])
    (c,) = supported.comparisons
    assert c.outcome == "supported" and c.pairs == 40 and c.ci95 is not None and c.ci95[0] > 0
    assert supported.verdict.startswith("supported") and supported.supported == 1
    assert unsettled.comparisons[0].outcome == "not settled by this data"
    assert unsettled.verdict.startswith("not settled by this data")


# --- the report of a whole evaluation -----------------------------------------------------------


def test_report_of_two_models(built: BuiltReport) -> None:
    report = built.report
    runs = _runs(report)

    assert [r.run_id for r in report.runs] == [
        "big-fp32", "big-int8", "big-nf4", "small-fp32", "small-bf16",
    ]  # fmt: skip
    assert report.emotions == EMOTIONS
    assert report.evaluation is not None and report.evaluation.name == "hand-made"
    assert {r.state for r in report.runs} == {"Succeeded"}

    base = runs["big-fp32"]
    assert base.is_baseline and base.baseline == FP32
    assert base.vs_baseline is not None
    assert base.vs_baseline.rouge1 == 1.0 and base.vs_baseline.intensity_drift == 0.0
    assert base.vs_baseline.memory_saving_pct == 0.0 and base.vs_baseline.time_ratio == 1.0

    int8 = runs["big-int8"]
    assert not int8.is_baseline
    assert int8.f1_macro == 0.70 and int8.weights_bytes == 1000 and int8.peak_memory_bytes == 2000
    assert int8.generation_seconds == 40.0 and int8.tokens_per_second == 2.5
    assert int8.per_emotion_f1 == pytest.approx({"anger": 0.60, "joy": 0.80})
    c = int8.vs_baseline
    assert c is not None and c.baseline_run_id == "big-fp32"
    assert c.weights_saving_pct == pytest.approx(75.0)  # 100 * (1 - 1000/4000)
    assert c.memory_saving_pct == pytest.approx(60.0)  # 100 * (1 - 2000/5000)
    assert c.f1_delta_pp == pytest.approx(-10.0)  # 100 * (0.70 - 0.80)
    assert c.time_ratio == pytest.approx(2.0)  # 40 / 20
    assert c.matched_samples == 4
    assert c.rouge1 == pytest.approx((2 / 3 + 1 + 1 + 0) / 4)
    assert c.rouge2 == pytest.approx((1 / 2 + 1 + 1 + 0) / 4)
    assert c.rouge_l == pytest.approx((2 / 3 + 1 + 1 + 0) / 4)
    assert c.intensity_drift == pytest.approx((5 + 10 + 0 + 100) / 4)

    nf4 = runs["big-nf4"].vs_baseline
    assert nf4 is not None and nf4.matched_samples == 2  # the keys both have
    assert (nf4.rouge1, nf4.rouge2, nf4.rouge_l) == (0.5, 0.5, 0.5)
    assert nf4.intensity_drift == pytest.approx((50 + 0) / 2)

    bf16 = runs["small-bf16"].vs_baseline
    assert bf16 is not None and bf16.baseline_run_id == "small-fp32"
    assert bf16.memory_saving_pct == pytest.approx(-80.0)  # more memory than the baseline
    assert bf16.weights_saving_pct == pytest.approx(50.0)
    assert bf16.f1_delta_pp == pytest.approx(25.0)
    assert bf16.time_ratio == pytest.approx(0.5)
    assert (bf16.rouge1, bf16.intensity_drift) == (1.0, 0.0)


def test_distinct_is_recomputed_from_the_generations(built: BuiltReport) -> None:
    runs = _runs(built.report)

    small = runs["small-fp32"]  # "joy joy joy", "joy joy": 5 words, 1 distinct; 3 bigrams, 1
    assert small.distinct1 == pytest.approx(1 / 5)
    assert small.distinct2 == pytest.approx(1 / 3)
    assert runs["big-fp32"].distinct1 == 1.0  # all 11 words differ (result.json says 0.123)


def test_pareto_front_best_run_and_claim_of_the_evaluation(built: BuiltReport) -> None:
    report = built.report

    assert report.pareto_front == ("small-fp32", "big-nf4", "small-bf16", "big-fp32")
    assert [r.run_id for r in report.runs if r.on_pareto_front] == [
        "big-fp32", "big-nf4", "small-fp32", "small-bf16",
    ]  # fmt: skip
    assert report.best_run == "big-fp32"
    # Four samples a run: every comparison is below 10 pairs, so nothing is settled.
    assert report.claim.verdict == (
        "not settled by this data: of 2 comparisons at similar memory, 0 support it, "
        "0 contradict it, 2 not settled"
    )
    assert report.claim.wins == 1
    assert report.claim.models_by_size == ("big", "small")


def test_samples_side_by_side(built: BuiltReport) -> None:
    report = built.report

    big = [row for row in report.samples if row.model == "big"]
    assert [row.key for row in big] == ["p1-anger-s0", "p2-joy-s0", "p2-anger-s0", "p1-joy-s0"]
    first = big[0]
    assert [c.precision for c in first.cells] == [FP32, INT8, NF4]
    assert [c.text for c in first.cells] == ["the cat sat", "the cat ran", "the cat sat"]
    assert first.cells[0].intensity == 75.0
    assert [c.text for c in big[1].cells] == ["sunny fields", "dogs bark loudly", None]


def test_pick_samples_spreads_over_emotions_and_prompts() -> None:
    keys = [(p, e, 0) for p in range(1, 11) for e in ("anger", "joy", "fear")]

    assert pick_samples(keys, 5) == [
        (1, "anger", 0), (2, "joy", 0), (3, "fear", 0), (5, "anger", 0), (6, "joy", 0),
    ]  # fmt: skip
    assert len(set(pick_samples(keys, 30))) == 30
    assert pick_samples(keys[:2], 5) == [(1, "anger", 0), (1, "joy", 0)]
    assert pick_samples([], 5) == []


def test_failed_and_missing_runs_are_marked_and_a_missing_baseline_gives_none(
    tmp_path: Path,
) -> None:
    root = tmp_path / "eval"
    write_run(root, "m-fp32", None, BIG_FP32)  # generations but no result.json: did not finish
    write_run(root, "m-bf16", None)  # an empty directory
    int8_result = make_result("m", INT8, f1=0.6, weights=10, peak=20, seconds=2.0)
    write_run(root, "m-int8", int8_result, BIG_INT8)
    (root / "runs" / "notes").mkdir()
    expected = [
        ExpectedRun("m-nf4", "m", NF4, reason="OutOfMemory: even at batch size 1"),
        ExpectedRun("m-int8", "m", INT8),
    ]

    report = build_report(str(root), expected).report
    runs = _runs(report)

    assert [r.run_id for r in report.runs] == ["m-fp32", "m-bf16", "m-int8", "m-nf4"]
    assert runs["m-fp32"].state == "Failed"
    assert "did not finish" in runs["m-fp32"].reason
    assert runs["m-fp32"].f1_macro is None and runs["m-fp32"].samples == 4
    assert runs["m-bf16"].state == "Missing"
    assert runs["m-nf4"].state == "Missing"
    assert runs["m-nf4"].reason == "OutOfMemory: even at batch size 1"
    int8 = runs["m-int8"]
    assert int8.state == "Succeeded" and int8.f1_macro == 0.6
    assert int8.baseline == FP32 and not int8.is_baseline
    assert runs["m-fp32"].is_baseline  # the baseline, though it failed
    assert int8.vs_baseline is None  # its baseline run failed: no comparison, not a wrong one
    assert all(r.vs_baseline is None for r in report.runs)
    assert report.pareto_front == ("m-int8",) and report.best_run == "m-int8"
    assert report.claim.verdict == NO_PAIR
    # Its size comes from the run that succeeded: a failed baseline no longer drops the model.
    assert report.claim.models_left_out == () and report.claim.models_by_size == ("m",)
    assert report.ignored == ("notes",)

    markdown = (root / "report.md").read_text()
    assert "| m-fp32 (baseline) | Failed |" in markdown
    assert "| m-nf4 | Missing |" in markdown
    assert "m: no succeeded baseline run" in markdown


def test_an_invalid_result_is_a_failed_run(tmp_path: Path) -> None:
    root = tmp_path / "eval"
    write_run(root, "m-fp32", None)
    (root / "runs" / "m-fp32" / "result.json").write_text('{"schemaVersion": "nope"}')

    (run,) = build_report(str(root)).report.runs

    assert run.state == "Failed"
    assert run.reason.startswith("invalid result.json: ")


def test_unreadable_generation_lines_are_counted() -> None:
    generations, bad = parse_records(
        ['{"promptId": 1, "emotion": "joy"}', "{", "[]", "", "7"], SampleRecord
    )

    assert [g.key for g in generations] == ["p1-joy-s0"]
    assert bad == 3


def test_run_ids() -> None:
    assert parse_run_id("llama-2-7b-fp32") == ("llama-2-7b", FP32)
    assert parse_run_id("nf4") is None
    assert parse_run_id("m-fp12") is None


def test_run_ids_of_precisions_with_hyphens_split_at_the_precision_not_the_last_hyphen() -> None:
    assert parse_run_id("smollm2-135m-hqq-4bit") == ("smollm2-135m", Precision.HQQ_4BIT)
    assert parse_run_id("llama-2-7b-torchao-int8wo") == ("llama-2-7b", Precision.TORCHAO_INT8WO)
    assert parse_run_id("m-hqq-2bit") == ("m", Precision.HQQ_2BIT)
    assert parse_run_id("hqq-4bit") is None  # a precision alone names no model
    assert parse_run_id("m-4bit") is None
    for precision in Precision:  # every name comes back from the id matrix.run_id makes
        assert parse_run_id(f"my-model-{precision.value}") == ("my-model", precision)


def test_no_runs_is_an_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpecError, match="no runs/"):
        build_report(str(tmp_path))


# --- the files ----------------------------------------------------------------------------------


def test_the_files_are_written_and_the_json_round_trips(
    evaluation: Path, built: BuiltReport
) -> None:
    names = ("report.json", "report.csv", "report.md", "report.html", "report.png")
    assert built.files.uris == tuple(f"{evaluation}/{name}" for name in names)
    for name in names:
        assert (evaluation / name).stat().st_size > 0

    text = (evaluation / "report.json").read_text()
    document = json.loads(text)
    assert document["schemaVersion"] == REPORT_SCHEMA == "quanteval.io/report/v1"
    assert document["runs"][1]["vsBaseline"]["rougeL"] == pytest.approx(2 / 3)
    assert document["runs"][1]["perEmotionF1"] == pytest.approx({"anger": 0.6, "joy": 0.8})
    assert document["paretoFront"] == ["small-fp32", "big-nf4", "small-bf16", "big-fp32"]
    assert from_json(text) == built.report
    assert to_json(from_json(text)) == text

    rows = list(csv.DictReader(io.StringIO((evaluation / "report.csv").read_text())))
    assert [r["runId"] for r in rows] == [r.run_id for r in built.report.runs]
    assert float(rows[1]["memorySavingPct"]) == pytest.approx(60.0)
    assert rows[1]["onParetoFront"] == "false" and rows[0]["isBaseline"] == "true"
    assert float(rows[1]["f1.joy"]) == pytest.approx(0.8)

    markdown = (evaluation / "report.md").read_text()
    assert markdown == built.files.markdown
    assert "| big-fp32 (baseline) | Succeeded | 0.800 [" in markdown  # with its 95% interval
    assert "## Verdict" in markdown
    assert "**Verdict: not settled by this data: of 2 comparisons" in markdown

    assert (evaluation / "report.png").read_bytes().startswith(b"\x89PNG")
    html = (evaluation / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 4  # no price: no F1-against-dollars
    assert "plot-f1-dollars" not in html
    assert 'id="comparison-table"' in html


def test_html_escapes_generated_text(tmp_path: Path) -> None:
    root = tmp_path / "eval"
    samples: Samples = {(1, "anger", 0): ("<script>alert(1)</script> & more", 0.5)}
    result = make_result("m", FP32, f1=0.5, weights=10, peak=20, seconds=1.0)
    write_run(root, "m-fp32", result, samples)

    build_report(str(root))

    html = (root / "report.html").read_text()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html


# --- the command line ---------------------------------------------------------------------------


def test_cli_report(evaluation: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = shutil.copytree(evaluation, tmp_path / "eval")

    assert main(["report", str(root)]) == ExitCode.OK

    captured = capsys.readouterr()
    assert "| big-int8 | Succeeded | 0.700 [" in captured.out
    assert "not settled by this data: of 2 comparisons" in captured.out
    assert str(root / "report.html") in captured.err


def test_cli_report_without_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path)]) == 3  # ExitCode.INVALID_SPEC

    assert "no runs/" in capsys.readouterr().err


def test_cli_report_storage_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("QUANTEVAL_STORAGE_RETRY_SECONDS", "1")  # an outage past its budget

    assert main(["report", "s3://bucket/quanteval/default/e-1"]) == 6  # ExitCode.STORAGE

    err = " ".join(capsys.readouterr().err.split())
    assert "cannot list" in err and "at http://127.0.0.1:9" in err
    assert "over the retry budget of 1 s" in err


def test_cli_report_of_expected_runs_that_left_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed pod may write nothing: the runs named with --expect show as Missing."""
    result = make_result("m", FP32, f1=0.5, weights=10, peak=20, seconds=1.0)
    write_run(tmp_path, "m-fp32", result, SMALL)

    assert main(["report", str(tmp_path), "--expect", "m-fp32", "--expect", "m-nf4"]) == 0

    assert "| m-nf4 | Missing |" in capsys.readouterr().out
    document = json.loads((tmp_path / "report.json").read_text())
    assert [(r["runId"], r["state"]) for r in document["runs"]] == [
        ("m-fp32", "Succeeded"),
        ("m-nf4", "Missing"),
    ]
    # The operator names a failed run's reason: the report says it, not "wrote nothing".
    reason = "OutOfMemory: out of memory at batch size 1"
    assert main(["report", str(tmp_path), "--expect", "m-fp32", "--expect", f"m-nf4:{reason}"]) == 0
    document = json.loads((tmp_path / "report.json").read_text())
    assert [r["reason"] for r in document["runs"] if r["runId"] == "m-nf4"] == [reason]
    assert main(["report", str(tmp_path / "empty"), "--expect", "m-fp32"]) == 0
    assert main(["report", str(tmp_path), "--expect", "fp32"]) == 3
    assert "is not <run id>=" in capsys.readouterr().err


def test_a_runs_warnings_reach_the_reports_notes(tmp_path: Path) -> None:
    root = tmp_path / "eval"
    warning = "classifier x can never predict guilt: their F1 is 0, so macro-F1 is capped at 1/2"
    capped = make_result("m", FP32, f1=0.4, weights=10, peak=10, seconds=1.0).model_copy(
        update={"warnings": [warning]}
    )
    write_run(root, "m-fp32", capped, SMALL)
    built = build_report(str(root))
    assert _runs(built.report)["m-fp32"].warnings == (warning,)
    assert f"- m-fp32: {warning}" in built.files.markdown


def _many(correct: set[int], n: int = 40) -> Samples:
    """n samples over EMOTIONS; the classifier is right on the sample numbers in `correct`."""
    return {
        (i // 2, EMOTIONS[i % 2], 0): (f"text {i}", 0.9 if i in correct else 0.1) for i in range(n)
    }


def test_paired_verdicts_reach_the_json_the_markdown_and_the_html(tmp_path: Path) -> None:
    root = tmp_path / "eval"
    right = set(range(0, 40, 4)) | set(range(1, 40, 4)) | set(range(2, 40, 4))  # 30 of 40
    runs = {
        FP32: _many(right),
        BF16: _many(right),  # the same predictions: no difference at all
        INT8: _many(set(list(sorted(right))[:10])),  # 20 of the 30 right answers lost
    }
    for precision, samples in runs.items():
        result = make_result("m", precision, f1=0.5, weights=10, peak=10, seconds=1.0)
        write_run(root, f"m-{precision.value}", result, samples)
    report = build_report(str(root)).report
    by_id = _runs(report)
    same = by_id["m-bf16"].vs_baseline
    worse = by_id["m-int8"].vs_baseline
    assert same is not None and same.paired is not None
    assert worse is not None and worse.paired is not None
    assert same.paired.verdict == "no detectable difference (could be up to 0.0 points)"
    assert same.paired.mark == "no detectable difference" and same.paired.templates == 20
    assert same.paired.delta_f1_pp == 0 and same.paired.p_value == 1.0
    assert worse.paired.verdict == "significantly worse" and worse.paired.mark == "worse"
    # Two comparisons: the interval the mark is read from is at 97.5%, beside the 95% one and
    # the sample-level one.
    assert worse.paired.family_size == 2 and worse.paired.confidence == 0.975
    assert worse.paired.ci is not None and worse.paired.ci[1] < 0
    assert worse.paired.ci95 is not None and worse.paired.ci[0] < worse.paired.ci95[0]
    assert worse.paired.ci95_these_prompts is not None
    assert worse.paired.pairs == 40 and worse.paired.unpaired == 0
    assert worse.paired.only_baseline_right == 20 and worse.paired.only_run_right == 0
    assert worse.paired.ci95 is not None and worse.paired.ci95[1] < 0
    # Holm over the two comparisons: the smaller p doubled.
    assert worse.paired.p_value is not None and worse.paired.p_value_adjusted is not None
    assert worse.paired.p_value_adjusted == pytest.approx(2 * worse.paired.p_value)
    assert by_id["m-fp32"].vs_baseline is not None and by_id["m-fp32"].vs_baseline.paired is None
    # The study's figures on this data: int8 lost 50 points, beyond its "at most 10".
    claims = {c.claim.split(" ")[2]: c for c in report.study_claims if c.run_id == "m-int8"}
    assert claims["moves"].outcome == "contradicted" and claims["moves"].ci95 is not None
    assert claims["roughly"].outcome == "not settled by this data"  # no latencies recorded
    assert claims["saves"].measured.startswith("weights saving 0.0%")
    # The best is a set: the two runs with the same predictions; int8 is significantly worse.
    assert report.best_runs == ("m-fp32", "m-bf16") and report.best_run in report.best_runs
    intervals = by_id["m-fp32"].intervals
    assert intervals is not None and intervals.samples == 40
    assert intervals.accuracy_ci95[0] < 0.75 < intervals.accuracy_ci95[1]

    document = json.loads((root / "report.json").read_text())
    paired = document["runs"][2]["vsBaseline"]["paired"]
    assert paired["verdict"] == "significantly worse"
    assert {
        "deltaF1Pp", "ci95", "ci", "confidence", "familySize", "templates", "ci95ThesePrompts",
        "designEffect", "mark", "pValue", "pValueAdjusted", "mcnemarPValue", "minDetectableF1Pp",
        "templatesFor5Pp", "samplesPerPromptFor5Pp",
    } <= set(paired)  # fmt: skip
    assert len(document["runs"][0]["intervals"]["f1MacroCi95"]) == 2
    markdown = (root / "report.md").read_text()
    assert "- m-int8 against m-fp32: **significantly worse**: macro-F1 -" in markdown
    assert "Best runs: m-fp32, m-bf16: none significantly worse than" in markdown
    html = (root / "report.html").read_text()
    assert "<b>significantly worse</b>" in html and 'id="verdict"' in html


def test_fewer_than_10_paired_samples_cannot_decide(tmp_path: Path) -> None:
    root = tmp_path / "eval"
    for precision in (FP32, INT8):
        result = make_result("m", precision, f1=0.5, weights=10, peak=10, seconds=1.0)
        write_run(root, f"m-{precision.value}", result, _many({0, 1, 2}, n=8))
    comparison = _runs(build_report(str(root)).report)["m-int8"].vs_baseline
    assert comparison is not None and comparison.paired is not None
    assert comparison.paired.verdict.startswith("cannot decide")
    assert comparison.paired.p_value is None and comparison.paired.pairs == 8


def test_equivalent_is_said_only_within_the_margin_the_user_set(tmp_path: Path) -> None:
    root = tmp_path / "eval"
    right = set(range(0, 40, 2))
    for precision in (FP32, BF16):  # the same predictions: no difference at all
        result = make_result("m", precision, f1=0.5, weights=10, peak=10, seconds=1.0)
        write_run(root, f"m-{precision.value}", result, _many(right))
    plain = build_report(str(root)).report
    assert "**equivalent" not in (root / "report.md").read_text()
    assert _runs(plain)["m-bf16"].vs_baseline.paired.mark == "no detectable difference"  # type: ignore[union-attr]

    assert main(["report", str(root), "--equivalence-margin-pp", "2"]) == ExitCode.OK
    markdown = (root / "report.md").read_text()
    assert "- m-bf16 against m-fp32: **equivalent within ±2 points**" in markdown
    with pytest.raises(SystemExit):
        main(["report", str(root), "--equivalence-margin-pp", "0"])


def test_the_report_jobs_termination_message_carries_the_verdicts_most_important_first(
    tmp_path: Path,
) -> None:
    root = tmp_path / "eval"
    right = set(range(30))
    runs = {FP32: _many(right), BF16: _many(right), INT8: _many(set(range(10)))}
    for precision, samples in runs.items():
        result = make_result("m", precision, f1=0.5, weights=10, peak=10, seconds=1.0)
        write_run(root, f"m-{precision.value}", result, samples)
    report = build_report(str(root)).report

    message = json.loads(report_termination_message(report))
    assert message["kind"] == "report" and "truncated" not in message
    first, second = message["comparisons"]
    assert first["id"] == "m-int8" and first["verdict"] == "significantly worse"
    assert first["f1DeltaCi95"][1] < 0 and isinstance(first["f1DeltaPp"], float)
    assert second == {
        "id": "m-bf16", "verdict": "no detectable difference (could be up to 0.0 points)",
        "f1DeltaPp": 0.0, "f1DeltaCi95": [0.0, 0.0], "f1DeltaCi": [0.0, 0.0], "familySize": 2,
    }  # fmt: skip
    small = json.loads(report_termination_message(report, limit=280))
    assert [c["id"] for c in small["comparisons"]] == ["m-int8"] and small["truncated"] is True
    assert len(report_termination_message(report, limit=280).encode()) <= 280


def test_quanteval_report_writes_the_termination_message_where_the_job_says(
    evaluation: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = shutil.copytree(evaluation, tmp_path / "eval")
    log = tmp_path / "termination-log"
    monkeypatch.setenv("QUANTEVAL_TERMINATION_LOG", str(log))
    assert main(["report", str(root)]) == ExitCode.OK
    message = json.loads(log.read_text())
    assert message["kind"] == "report"
    assert {c["id"] for c in message["comparisons"]} == {"big-int8", "big-nf4", "small-bf16"}


def test_the_dollar_front_needs_every_run_priced() -> None:
    def run(run_id: str, f1: float, dollars: float | None) -> RunReport:
        return RunReport(
            run_id, "m", FP32, "Succeeded", "", FP32, False, f1_macro=f1, dollars=dollars
        )

    priced = [run("a", 0.6, 1.0), run("b", 0.7, 2.0), run("c", 0.5, 3.0)]
    assert dollar_front(priced) == ("a", "b")  # c costs more and scores less than both
    # A CPU run's dollars are another machine's: a front per device.
    cpu = run("d", 0.65, 0.5)
    devices = {"a": Terms("", "cuda"), "b": Terms("", "cuda"), "c": Terms("", "cuda")}
    assert dollar_front([*priced, cpu]) == ("d", "b")  # on one front, d beats a
    assert dollar_front([*priced, cpu], devices | {"d": Terms("", "cpu")}) == ("a", "b", "d")
    assert dollar_front([*priced, run("d", 0.9, None)]) is None  # no invented price
    plot = f1_dollars_png(priced, dollar_front(priced))
    assert plot is not None and plot.startswith(b"\x89PNG")
    assert f1_dollars_png([*priced, run("d", 0.9, None)], None) is None  # and no plot of one


def test_the_intensity_task_has_its_section_with_the_drift_against_the_baseline(
    tmp_path: Path,
) -> None:
    root = tmp_path / "eval"
    keys = [f"joy-s{i // 5 + 1}-l{i % 5 + 1}" for i in range(20)]
    for precision, shift in ((FP32, 0.0), (INT8, 8.0)):
        figures = IntensityFigures(
            texts=20, parse_failures=1, parse_failure_rate=0.05,
            parse_failures_by_reason={"the scale echoed": 1}, spearman_rho=0.8,
            same_texts=(
                RankAgreement(
                    texts=19, situations=4, model_rho=0.8, classifier_rho=0.35, difference=0.45,
                    difference_ci95=(0.2, 0.7),
                )
                if precision == INT8
                else None
            ),
            spearman_rho_ci95=(0.6, 0.9), mae_vs_gold=None, mae_vs_gold_ci95=None, seconds=2.0,
            ratings_per_second=10.0, latency_p50_ms=1.0, latency_p95_ms=2.0, rule="first number",
            dollars_per_1k_ratings=0.5, joules_per_1k_ratings=1234.0,
            method="expected",
            calibration=(
                LevelRating(
                    level=1, texts=4, mean=20.0 + shift, mean_ci95=(15.0 + shift, 25.0 + shift)
                ),
                LevelRating(
                    level=5, texts=3, mean=90.0, mean_ci95=(85.0, 95.0), classifier_mean=40.0
                ),
            ),
            classifier=ClassifierReference(
                classifier="builtin:minilm", device="cpu", texts=20, spearman_rho=0.3,
                spearman_rho_ci95=(0.1, 0.5), seconds=0.1, ratings_per_second=200.0,
                dollars_per_1k_ratings=0.01,
            ),
        )  # fmt: skip
        result = make_result("m", precision, f1=0.5, weights=10, peak=20, seconds=1.0)
        write_run(
            root,
            f"m-{precision.value}",
            result.model_copy(update={"intensity_task": figures}),
            BIG_FP32,
        )
        ratings: dict[str, float | None] = {k: 4.0 * i + shift for i, k in enumerate(keys)}
        ratings[keys[0]] = None if precision == INT8 else 0.0  # a parse failure: unpaired
        write_ratings(root, f"m-{precision.value}", ratings)

    built = build_report(str(root))

    int8 = _runs(built.report)["m-int8"]
    assert int8.intensity_task is not None and int8.intensity_task.ratings_per_second == 10.0
    drift = int8.vs_baseline.rating_drift if int8.vs_baseline else None
    assert drift is not None and (drift.pairs, drift.unpaired) == (19, 1)
    assert drift.mean_abs_change == pytest.approx(8.0) and drift.moved_over_5_pct == 100
    markdown = (root / "report.md").read_text()
    assert "## Intensity ratings" in markdown and "m-fp32 (19 pairs, 1 unpaired)" in markdown
    assert "| 1 (5.0%: the scale echoed 1) |" in markdown  # parse failures by reason
    html = (root / "report.html").read_text()
    assert 'id="intensity-table"' in html and 'id="plot-ratings"' in html
    assert 'id="plot-calibration"' in html and "<h3>Calibration</h3>" in html
    assert "- m-int8 (expected): level 1: 28.0 [23.0, 33.0]; level 5: 90.0 [85.0, 95.0] " in (
        markdown
    )
    verdicts = ReportMessage.parse(report_termination_message(built.report))
    assert verdicts is not None  # the status summary's drift, through the report Job
    assert verdicts.verdicts()["m-int8"]["ratingMeanAbsChange"] == 8.0
    flat = " ".join(markdown.split())
    assert "m-int8: 10.0 ratings/s against the classifier's 200.0/s on cpu (20x slower)" in flat
    assert "$0.50000 against $0.01000 per 1,000 ratings (50x dearer)" in flat
    assert "1,234 J per 1,000 of its ratings" in flat
    # From the rho intervals ([0.6, 0.9] against [0.1, 0.5]) where the result has no same-texts
    # figure; from the interval of the difference on the same texts where it has.
    assert "m-fp32: 10.0 ratings/s" in flat and "rho +0.80 against the classifier's +0.30 " in flat
    assert (
        "m-int8: 10.0 ratings/s against the classifier's 200.0/s on cpu (20x slower)" in flat
        and "on the same 19 texts (4 situations): rho +0.80 against the classifier's +0.35, "
        "difference +0.45 [+0.20, +0.70]: it ranks intensities better than the classifier"
        in flat
    )
    assert from_json((root / "report.json").read_text()) == built.report


def test_a_native_checkpoint_is_compared_with_its_baseline_model(tmp_path: Path) -> None:
    """m-gptq at native names m as its baselineModel: paired against m-fp32 like a precision of
    m, its own quantization in its row, and never m-gptq's own baseline."""
    root = tmp_path / "eval"
    right = set(range(30))
    write_run(
        root,
        "m-fp32",
        make_result("m", FP32, f1=0.5, weights=1000, peak=1200, seconds=1.0),
        _many(right),
    )
    gptq = make_result("m-gptq", Precision.NATIVE, f1=0.4, weights=250, peak=400, seconds=2.0)
    gptq = gptq.model_copy(
        update={
            "baseline_model": "m",
            "checkpoint_quantization": CheckpointQuantization(
                method="gptq", bits=4, group_size=128
            ),
        }
    )
    write_run(root, "m-gptq-native", gptq, _many(set(sorted(right)[:10])))
    built = build_report(str(root))
    native = _runs(built.report)["m-gptq-native"]

    assert native.is_baseline is False
    assert native.checkpoint == "gptq, 4-bit, group 128"
    assert native.vs_baseline is not None and native.vs_baseline.paired is not None
    assert native.vs_baseline.paired.pairs == 40
    assert native.vs_baseline.paired.verdict == "significantly worse"
    assert native.vs_baseline.weights_saving_pct == pytest.approx(75.0)
    assert "m-gptq-native (gptq, 4-bit, group 128)" in built.files.markdown
    assert "- m-gptq-native against m-fp32: **significantly worse**" in built.files.markdown


# --- Replicates and the A/A floor ---------------------------------------------------------------


def _two_seeds(texts: dict[int, str], flip: str = "") -> Samples:
    """Two samples a prompt (indices 0 and 1) over EMOTIONS and 10 prompts; `flip` appended
    to sample 1's text."""
    return {
        (p, e, i): (f"{texts[p]} {e}" + (flip if i else ""), 0.8 if i else 0.9)
        for p in texts
        for e in EMOTIONS
        for i in (0, 1)
    }


def test_a_baselines_seed_halves_give_the_a_a_floor_beside_rouge(tmp_path: Path) -> None:
    root = tmp_path / "eval"
    texts = {p: f"the river ran cold and slow past house {p}" for p in range(10)}
    base = _two_seeds(texts, flip=" and then the wind rose")
    run = {k: (v[0] + " suddenly", v[1]) for k, v in base.items()}
    for precision, samples in ((FP32, base), (INT8, run)):
        result = make_result("m", precision, f1=0.5, weights=10, peak=10, seconds=1.0)
        write_run(root, f"m-{precision.value}", result, samples)

    report = build_report(str(root)).report

    vs = _runs(report)["m-int8"].vs_baseline
    assert vs is not None and vs.noise_floor is not None and vs.rouge_l is not None
    floor = vs.noise_floor
    assert floor.pairs == 20 and floor.source.startswith("m-fp32's samples 0 against 1")
    assert 0 < floor.rouge_l < 1 and floor.intensity_drift == pytest.approx(10.0)
    markdown = (root / "report.md").read_text()
    assert f"{vs.rouge_l:.3f} (A/A {floor.rouge_l:.3f})" in markdown
    rows = {r["runId"]: r for r in csv.DictReader(io.StringIO((root / "report.csv").read_text()))}
    assert float(rows["m-int8"]["aaRougeL"]) == pytest.approx(floor.rouge_l)
    assert json.loads((root / "report.json").read_text())["runs"][1]["vsBaseline"]["noiseFloor"]


def test_replicates_give_run_to_run_intervals_and_are_compared_with_nothing(
    tmp_path: Path,
) -> None:
    root = tmp_path / "eval"
    samples = _many(set(range(30)))
    seconds = {FP32: (10.0, 11.0, 10.5), INT8: (20.0, 21.0, 19.0)}
    for precision, times in seconds.items():
        for replicate, time in enumerate(times, start=1):
            run_id = f"m-{precision.value}" + (f"-r{replicate}" if replicate > 1 else "")
            result = make_result("m", precision, f1=0.5, weights=10, peak=10, seconds=time)
            metrics = result.metrics.model_copy(update={"tpot_p50_ms": time})
            result = result.model_copy(
                update={"run_id": run_id, "replicate": replicate, "metrics": metrics}
            )
            write_run(root, run_id, result, samples)
    failed = ExpectedRun.from_arg("m-int8-r4=m/int8/auto/r4:OOMKilled")
    assert failed.replicate == 4

    report = build_report(str(root), [failed]).report

    # Only the first replicates are runs in the comparison; the rest are the spread.
    assert [r.run_id for r in report.runs] == ["m-fp32", "m-int8"]
    spread = {r.run_id: r for r in report.replicates}
    assert spread["m-int8"].replicates == ("m-int8", "m-int8-r2", "m-int8-r3", "m-int8-r4")
    assert spread["m-int8"].succeeded == 3
    seconds_spread = spread["m-int8"].generation_seconds
    assert seconds_spread is not None and seconds_spread.mean == pytest.approx(20.0)
    low, high = seconds_spread.ci95
    assert low < 20.0 < high and seconds_spread.values == (20.0, 21.0, 19.0)
    # The replicate of the baseline is its A/A floor: the same texts here, so ROUGE 1.
    vs = _runs(report)["m-int8"].vs_baseline
    assert vs is not None and vs.noise_floor is not None
    assert vs.noise_floor.source == "m-fp32 against its replicate m-fp32-r2"
    assert vs.noise_floor.rouge_l == 1.0
    # With repeats, the study's time figure gets an interval and a verdict.
    doubled = next(c for c in report.study_claims if "inference time" in c.claim)
    assert doubled.ci95 is not None and doubled.ci95[0] < 1.9 < doubled.ci95[1]
    assert doubled.outcome == "supported"
    assert doubled.measured.startswith("TPOT p50 x1.90 [") and "over 3 and 3" in doubled.measured
    markdown = (root / "report.md").read_text()
    assert (
        "## Run to run" in markdown
        and "| m-int8 | m-int8, m-int8-r2, m-int8-r3, m-int8-r4 |" in (markdown)
    )
    assert 'id="replicates"' in (root / "report.html").read_text()
