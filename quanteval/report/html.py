"""`report.html`: one self-contained page (inline CSS, plots as data: URIs, no script)."""

import base64
import re
from collections.abc import Sequence
from html import escape

from quanteval.api.states import RunState
from quanteval.fmt import human_bytes, num
from quanteval.report.plots import Plots
from quanteval.report.schema import Report, SampleRow
from quanteval.report.tables import (
    CALIBRATION_INTRO,
    ENGINE_EFFECT_INTRO,
    FIDELITY_HEADERS,
    FIDELITY_INTRO,
    RATINGS_HEADERS,
    RATINGS_INTRO,
    REPLICATE_HEADERS,
    REPLICATES_INTRO,
    TABLE_HEADERS,
    VERDICT_INTRO,
    best_line,
    calibration_lines,
    claim_lines,
    dollar_front_text,
    engine_effect_lines,
    fidelity_rows,
    not_like_for_like,
    notes,
    nuance_lines,
    ratings_rows,
    replicate_rows,
    study_lines,
    table_cells,
    verdict_lines,
)

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif;
       color: #1d1d1f; margin: 0; background: #fafafa; }
main { max-width: 1360px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 10px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 20px 0 8px; }
.meta { color: #555; margin: 0 0 8px; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid #ddd; padding: 4px 6px; vertical-align: top; }
.scroll { overflow-x: auto; }
th { background: #f0f0f3; font-weight: 600; }
.comparison { font-size: 13px; }
.comparison th { font-size: 12px; }
.comparison td { text-align: right; white-space: nowrap; }
.comparison td:nth-child(1), .comparison td:nth-child(2) { text-align: left; }
tr.failed td, tr.missing td { color: #a00; background: #fff4f4; }
tr.baseline td:first-child { font-weight: 600; }
.verdict { font-size: 16px; font-weight: 600; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; padding: 8px; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: #555; font-size: 13px; margin-top: 4px; }
.samples { table-layout: fixed; width: 100%; }
.samples td { font-size: 13px; }
.samples .label { color: #666; font-size: 12px; margin-top: 4px; }
.na { color: #999; }
"""

PLOTS = (
    ("plot-f1-memory", "f1_memory", "Macro-F1 against peak memory; the dashed line is the "
     "Pareto front (outlined points)."),
    ("plot-f1-dollars", "f1_dollars", "Macro-F1 against dollars per run; the dashed line is the "
     "Pareto front by dollars."),
    ("plot-emotion-f1", "emotion_f1", "F1 per emotion, one row per run."),
    ("plot-memory", "memory", "Weights and peak memory (generation phase) per run."),
    ("plot-time", "time", "Generation wall time per run, with tokens per second."),
    ("plot-ratings", "ratings", "Intensity ratings: each precision's rating of a text against "
     "the baseline's; marker area counts the texts at a point; grey: within 5 points."),
    ("plot-calibration", "calibration", "Calibration: each run's mean rating of the texts of "
     "an intended level (95% interval), and its classifier's on the same texts (dashed)."),
)  # fmt: skip


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def comparison_table(report: Report) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in TABLE_HEADERS)
    rows = []
    for run in report.runs:
        classes = [run.state.lower()] + (["baseline"] if run.is_baseline else [])
        title = f' title="{escape(run.reason)}"' if run.reason else ""
        cells = "".join(f"<td>{escape(c)}</td>" for c in table_cells(run))
        rows.append(f'<tr class="{" ".join(classes)}"{title}>{cells}</tr>')
    return (
        f'<div class="scroll"><table id="comparison-table" class="comparison">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _table(table_id: str, headers: Sequence[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f'<div class="scroll"><table id="{table_id}" class="comparison">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def fidelity_table(report: Report) -> str:
    rows = fidelity_rows(report)
    if not rows:
        return "<p>No fidelity figures.</p>"
    return _table("fidelity-table", FIDELITY_HEADERS, rows)


def ratings_section(report: Report) -> str:
    """The intensity task's section; nothing when no run did the task."""
    rows = ratings_rows(report)
    if not rows:
        return ""
    return (
        f'<section id="intensity">\n<h2>Intensity ratings</h2>\n<p>{escape(RATINGS_INTRO)}</p>\n'
        f"{_table('intensity-table', RATINGS_HEADERS, rows)}\n<h3>The cost of nuance</h3>\n"
        f"{_paragraphs(nuance_lines(report) or ['No classifier reference.'])}\n"
        f"{_calibration(report)}</section>"
    )


def _calibration(report: Report) -> str:
    lines = calibration_lines(report)
    if not lines:
        return ""
    return f"<h3>Calibration</h3>\n<p>{escape(CALIBRATION_INTRO)}</p>\n{_paragraphs(lines)}\n"


def _inline(text: str) -> str:
    """Escaped text with its **bold** spans in <b>."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escape(text))


def engine_effect_html(report: Report) -> str:
    if not report.engine_effects:
        return ""
    return (
        '<section id="engine-effect">\n<h2>Engine effect</h2>\n'
        f"<p>{escape(ENGINE_EFFECT_INTRO)}</p>\n"
        f"{_paragraphs([line.strip() for line in engine_effect_lines(report)])}\n</section>"
    )


def replicates_html(report: Report) -> str:
    """The run-to-run section; nothing when no run was made more than once."""
    if not report.replicates:
        return ""
    return (
        '<section id="replicates">\n<h2>Run to run</h2>\n'
        f"<p>{escape(REPLICATES_INTRO)}</p>\n"
        f"{_table('replicates-table', REPLICATE_HEADERS, replicate_rows(report))}\n</section>"
    )


def _paragraphs(lines: Sequence[str]) -> str:
    """Markdown-ish lines (blank-separated paragraphs, '- ' items, **bold**) as HTML."""
    out, items = [], []
    for line in [*lines, ""]:
        if line.startswith("- "):
            items.append(f"<li>{_inline(line[2:])}</li>")
            continue
        if items:
            out.append(f"<ul>{''.join(items)}</ul>")
            items = []
        if line.startswith("**") and line.endswith("**"):
            out.append(f'<p class="verdict">{escape(line.strip("*"))}</p>')
        elif line:
            out.append(f"<p>{escape(line)}</p>")
    return "\n".join(out)


def _sample_cell(text: str | None, predicted: str | None, intensity: float | None) -> str:
    if text is None:
        return '<td class="na">no generation</td>'
    label = f"predicted {escape(predicted or '-')} · intensity {num(intensity, '.0f')}"
    return f'<td>{escape(text)}<div class="label">{label}</div></td>'


def samples_tables(rows: Sequence[SampleRow]) -> str:
    out = []
    for model in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == model]
        head = "".join(f"<th>{escape(c.precision.value)}</th>" for c in mine[0].cells)
        body = "".join(
            f"<tr><td><b>{escape(r.key)}</b><div class='label'>{escape(r.prompt)}</div></td>"
            + "".join(_sample_cell(c.text, c.predicted, c.intensity) for c in r.cells)
            + "</tr>"
            for r in mine
        )
        out.append(
            f"<h3>{escape(model)}</h3>"
            f'<table class="samples"><colgroup><col style="width:14%"></colgroup>'
            f"<thead><tr><th>sample</th>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
    return "\n".join(out) or "<p>No generations.</p>"


def render_html(report: Report, plots: Plots) -> str:
    figures = "\n".join(
        f'<figure><img id="{pid}" alt="{escape(caption)}" '
        f'src="{data_uri(getattr(plots, field))}"><figcaption>{escape(caption)}</figcaption>'
        "</figure>"
        for pid, field, caption in PLOTS
        if getattr(plots, field) is not None
    )
    front = ", ".join(report.pareto_front) or "none"
    succeeded = sum(r.state == RunState.SUCCEEDED for r in report.runs)
    peak = max((r.peak_memory_bytes or 0 for r in report.runs), default=0)
    extra = notes(report)
    legend = not_like_for_like(report)
    title = f"QuantEval report: {report.title}"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<h1>{escape(title)}</h1>
<p class="meta">{escape(report.source)} · generated {escape(report.generated_at)} ·
{succeeded} of {len(report.runs)} runs succeeded · largest peak {escape(human_bytes(peak))}</p>
<p>{_inline(best_line(report))} Pareto front (F1 against peak memory): {escape(front)}.
{escape(dollar_front_text(report))}</p>
<section id="comparison">
<h2>Comparison</h2>
<p>Against each model's baseline precision: memory saving (peak), F1 change in percentage points,
generation time ratio, mean ROUGE F-measure against the baseline's text of the same sample, and
intensity drift (mean absolute change of the intended emotion's probability, 0-100 points).
★: on the Pareto front.</p>
{comparison_table(report)}
{_paragraphs([legend] if legend else [])}
</section>
<section id="verdict">
<h2>Verdict</h2>
<p>{escape(VERDICT_INTRO)}</p>
{_paragraphs(verdict_lines(report) or ["No comparison against a baseline."])}
</section>
{engine_effect_html(report)}
{replicates_html(report)}
<section id="fidelity">
<h2>Fidelity to the baseline</h2>
<p>{escape(FIDELITY_INTRO)}</p>
{fidelity_table(report)}
</section>
{ratings_section(report)}
<section id="claim">
<h2>Claim check</h2>
{_paragraphs(claim_lines(report))}
<h3>The study's figures on this data</h3>
{_paragraphs(study_lines(report))}
</section>
<section id="plots">
<h2>Plots</h2>
<div class="plots">
{figures}
</div>
</section>
<section id="samples">
<h2>Generations side by side</h2>
{samples_tables(report.samples)}
</section>
{f'<section id="notes"><h2>Notes</h2>{_paragraphs(extra)}</section>' if extra else ""}
</main>
</body>
</html>
"""
