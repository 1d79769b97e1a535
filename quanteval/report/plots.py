"""The report's plots as PNG bytes: matplotlib's Agg canvas on figures of their own (no pyplot,
no display, no global state)."""

import io
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from quanteval.api.states import RunState
from quanteval.fmt import human_bytes
from quanteval.report.schema import Report, RunReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 140
WIDTH = 7.0  # inches: about 1000 pixels
MARKERS = {"fp32": "o", "bf16": "s", "fp16": "D", "int8": "^", "nf4": "v", "fp4": "P"}
MIB = 2**20
GIB = 2**30


@dataclass(frozen=True)
class Plots:
    f1_memory: bytes
    f1_dollars: bytes | None  # None unless every run has a price
    emotion_f1: bytes
    memory: bytes
    time: bytes
    ratings: bytes | None = None  # None unless a run did the intensity task against a baseline
    calibration: bytes | None = None  # None unless a run rated texts with intended levels


def _config_dir() -> None:
    """Pods have a read-only root filesystem: keep matplotlib's config and font cache in /tmp."""
    if "MPLCONFIGDIR" not in os.environ:
        directory = Path(tempfile.gettempdir()) / f"quanteval-matplotlib-{os.getuid()}"
        directory.mkdir(mode=0o700, exist_ok=True)
        os.environ["MPLCONFIGDIR"] = str(directory)


def _figure(width: float, height: float) -> "Figure":
    _config_dir()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(figure: "Figure") -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor="white")
    return buffer.getvalue()


def _empty(ax: "Axes", title: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, "no succeeded runs", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _succeeded(runs: Sequence[RunReport]) -> list[RunReport]:
    return [r for r in runs if r.state == RunState.SUCCEEDED]


def _memory_unit(values: Sequence[int]) -> tuple[int, str]:
    return (GIB, "GiB") if max(values, default=0) >= 4 * GIB else (MIB, "MiB")


def _colors(runs: Sequence[RunReport]) -> dict[str, str]:
    models = list(dict.fromkeys(r.model for r in runs))
    return {m: f"C{i % 10}" for i, m in enumerate(models)}


def _f1_against(
    runs: Sequence[RunReport],
    front: Sequence[str],
    x_of: Callable[[RunReport], float | None],
    title: str,
    xlabel: str,
) -> bytes:
    """F1 (with its 95% interval) against x, one labelled point per run, the Pareto front (runs
    outlined) as a dashed line."""
    figure = _figure(WIDTH, 4.6)
    ax = figure.add_subplot()
    done = [r for r in _succeeded(runs) if r.f1_macro is not None and x_of(r)]
    if not done:
        _empty(ax, title)
        return _png(figure)
    colors = _colors(done)
    on_front = sorted((r for r in done if r.run_id in front), key=lambda r: x_of(r) or 0.0)
    if on_front:
        ax.plot(
            [x_of(r) or 0.0 for r in on_front], [r.f1_macro or 0.0 for r in on_front],
            linestyle="--", color="0.45", linewidth=1.2, zorder=1, label="Pareto front",
        )  # fmt: skip
    for r in done:
        x, y = x_of(r) or 0.0, r.f1_macro or 0.0
        if r.intervals is not None:
            low, high = r.intervals.f1_macro_ci95
            ax.errorbar(
                [x], [y], yerr=[[max(y - low, 0.0)], [max(high - y, 0.0)]], fmt="none",
                ecolor=colors[r.model], elinewidth=1.2, capsize=4, alpha=0.7, zorder=1.5,
            )  # fmt: skip
        ax.scatter(
            [x], [y], s=70, color=colors[r.model], marker=MARKERS.get(r.precision.value, "o"),
            edgecolors="black" if r.run_id in front else "none", linewidths=1.2, zorder=2,
        )  # fmt: skip
        ax.annotate(
            f"{r.model}/{r.precision.value}", (x, y), xytext=(6, 6),
            textcoords="offset points", fontsize=9,
        )  # fmt: skip
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("macro-F1")
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.15, y=0.15)
    if on_front:
        ax.legend(loc="best")
    return _png(figure)


def f1_memory_png(runs: Sequence[RunReport], front: Sequence[str]) -> bytes:
    scale, unit = _memory_unit([r.peak_memory_bytes or 0 for r in _succeeded(runs)])
    return _f1_against(
        runs,
        front,
        lambda r: (r.peak_memory_bytes or 0) / scale,
        "Macro-F1 (95% interval) against peak memory",
        f"peak memory ({unit}, generation phase)",
    )


def f1_dollars_png(runs: Sequence[RunReport], front: Sequence[str] | None) -> bytes | None:
    """F1 against dollars per run; None unless every succeeded run is priced (as the front)."""
    if front is None:
        return None
    return _f1_against(
        runs,
        front,
        lambda r: r.dollars,
        "Macro-F1 (95% interval) against dollars per run",
        "dollars per run (the spec's price x measured time)",
    )


def emotion_heatmap_png(runs: Sequence[RunReport], emotions: Sequence[str]) -> bytes:
    """Per-emotion F1: one row per succeeded run, one column per emotion."""
    done = [r for r in _succeeded(runs) if r.per_emotion_f1]
    figure = _figure(WIDTH, 1.4 + 0.4 * max(len(done), 1))
    ax = figure.add_subplot()
    title = "F1 per emotion"
    if not done or not emotions:
        _empty(ax, title)
        return _png(figure)
    values = [[r.per_emotion_f1.get(e, float("nan")) for e in emotions] for r in done]
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            if value == value:  # not NaN
                color = "black" if value > 0.6 else "white"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", color=color, fontsize=9)
    ax.set_xticks(range(len(emotions)), list(emotions))
    ax.set_yticks(range(len(done)), [r.run_id for r in done])
    ax.set_title(title)
    figure.colorbar(image, ax=ax, label="F1")
    return _png(figure)


def memory_bars_png(runs: Sequence[RunReport]) -> bytes:
    """Weights and peak memory per run, side by side."""
    done = [r for r in _succeeded(runs) if r.peak_memory_bytes is not None]
    figure = _figure(WIDTH, 1.4 + 0.55 * max(len(done), 1))
    ax = figure.add_subplot()
    title = "Memory per run"
    if not done:
        _empty(ax, title)
        return _png(figure)
    scale, unit = _memory_unit([r.peak_memory_bytes or 0 for r in done])
    positions = list(range(len(done)))
    series = (
        ("weights", [r.weights_bytes or 0 for r in done], -0.2, "C0"),
        ("peak (generation)", [r.peak_memory_bytes or 0 for r in done], 0.2, "C1"),
    )
    for label, values, offset, color in series:
        bars = ax.barh(
            [p + offset for p in positions], [v / scale for v in values], height=0.38,
            label=label, color=color,
        )  # fmt: skip
        ax.bar_label(bars, [human_bytes(v) for v in values], padding=3, fontsize=8)
    ax.set_yticks(positions, [r.run_id for r in done])
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title)
    ax.margins(x=0.2)
    figure.legend(loc="outside lower center", ncols=2, frameon=False)
    return _png(figure)


def time_bars_png(runs: Sequence[RunReport]) -> bytes:
    """Generation wall time per run, with its tokens per second."""
    done = [r for r in _succeeded(runs) if r.generation_seconds is not None]
    figure = _figure(WIDTH, 1.4 + 0.4 * max(len(done), 1))
    ax = figure.add_subplot()
    title = "Generation time per run"
    if not done:
        _empty(ax, title)
        return _png(figure)
    colors = _colors(done)
    bars = ax.barh(
        [r.run_id for r in done],
        [r.generation_seconds or 0.0 for r in done],
        color=[colors[r.model] for r in done],
        height=0.6,
    )
    labels = [
        f"{r.generation_seconds or 0.0:.1f} s"
        + (f" · {r.tokens_per_second:.1f} tokens/s" if r.tokens_per_second is not None else "")
        for r in done
    ]
    ax.bar_label(bars, labels, padding=3, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title(title)
    ax.margins(x=0.45)  # room for the labels
    return _png(figure)


def ratings_scatter_png(runs: Sequence[RunReport]) -> bytes | None:
    """Per model, each precision's rating of a text against the baseline's rating of it; a
    marker's area grows with the square root of the texts at that point (ratings are integers,
    so many coincide)."""
    drifts = [(r, r.vs_baseline) for r in runs if r.vs_baseline and r.vs_baseline.rating_drift]
    models = list(dict.fromkeys(r.model for r, _ in drifts))
    if not models:
        return None
    from matplotlib.collections import PathCollection

    figure = _figure(WIDTH, 0.5 + 3.6 * len(models))
    for index, model in enumerate(models):
        ax = figure.add_subplot(len(models), 1, index + 1)
        ax.fill_between([0, 100], [-5, 95], [5, 105], color="0.9", label="within 5 points")
        ax.plot([0, 100], [0, 100], color="0.5", linewidth=0.8)
        baseline = ""
        for run, against in drifts:
            if run.model != model or against.rating_drift is None:
                continue
            baseline = against.baseline_run_id
            counts = Counter(against.rating_drift.pairs_rated)
            points = list(counts)
            ax.scatter(
                [x for x, _ in points], [y for _, y in points],
                s=[16 * math.sqrt(counts[p]) for p in points], alpha=0.5,
                marker=MARKERS.get(run.precision.value, "o"),
                label=f"{run.run_id} ({sum(counts.values())} texts)",
            )  # fmt: skip
        ax.set_xlim(-3, 103)
        ax.set_ylim(-3, 103)
        ax.set_aspect("equal")
        ax.set_xlabel(f"rating by the baseline ({baseline})")
        ax.set_ylabel("rating by the quantized run")
        ax.set_title(f"{model}: intensity ratings against the baseline's")
        ax.grid(True, alpha=0.3)
        legend = ax.legend(loc="upper left", fontsize=8)
        for handle in legend.legend_handles:  # one size in the legend, whatever the counts
            if isinstance(handle, PathCollection):
                handle.set_sizes([30])
    return _png(figure)


def calibration_png(runs: Sequence[RunReport]) -> bytes | None:
    """Per model, each run's mean rating of an intended level's texts (95% interval) against
    the level, and its classifier's mean on the same texts, dashed."""
    rated = [
        (r, r.intensity_task)
        for r in runs
        if r.intensity_task is not None and r.intensity_task.calibration
    ]
    models = list(dict.fromkeys(r.model for r, _ in rated))
    if not models:
        return None
    levels = sorted({p.level for _, task in rated for p in task.calibration})
    figure = _figure(WIDTH, 0.5 + 3.4 * len(models))
    for index, model in enumerate(models):
        ax = figure.add_subplot(len(models), 1, index + 1)
        of_model = [(run, task) for run, task in rated if run.model == model]
        for number, (run, task) in enumerate(of_model):
            points = task.calibration
            color = f"C{number % 10}"
            errors = [
                (p.mean - p.mean_ci95[0], p.mean_ci95[1] - p.mean) if p.mean_ci95 else (0.0, 0.0)
                for p in points
            ]
            ax.errorbar(
                [p.level for p in points], [p.mean for p in points],
                yerr=[[low for low, _ in errors], [high for _, high in errors]], color=color,
                marker=MARKERS.get(run.precision.value, "o"), capsize=3, label=run.run_id,
            )  # fmt: skip
            if all(p.classifier_mean is not None for p in points):
                ax.plot(
                    [p.level for p in points], [p.classifier_mean or 0.0 for p in points],
                    color=color, linestyle="--", linewidth=1, alpha=0.7,
                    label=f"classifier on {run.run_id}'s texts",
                )  # fmt: skip
        methods = " / ".join(sorted({task.method for _, task in of_model}))
        ax.set_ylim(-3, 103)
        ax.set_xticks(levels)
        ax.set_xlabel("intended level of the text")
        ax.set_ylabel(f"mean rating ({methods})")
        ax.set_title(f"{model}: ratings by intended level (95% intervals)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    return _png(figure)


def render_plots(report: Report) -> Plots:
    return Plots(
        f1_memory=f1_memory_png(report.runs, report.pareto_front),
        f1_dollars=f1_dollars_png(report.runs, report.pareto_front_dollars),
        emotion_f1=emotion_heatmap_png(report.runs, report.emotions),
        memory=memory_bars_png(report.runs),
        time=time_bars_png(report.runs),
        ratings=ratings_scatter_png(report.runs),
        calibration=calibration_png(report.runs),
    )
