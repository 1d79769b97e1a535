"""Writing the report's files next to the runs: `<root>/report.{json,csv,md,html,png}`."""

from dataclasses import dataclass

from quanteval.api.layout import (
    REPORT_CSV,
    REPORT_FILES,
    REPORT_HTML,
    REPORT_JSON,
    REPORT_MARKDOWN,
    REPORT_PNG,
)
from quanteval.report.html import render_html
from quanteval.report.plots import render_plots
from quanteval.report.schema import Report
from quanteval.report.serialize import to_json
from quanteval.report.tables import to_csv, to_markdown
from quanteval.storage import Storage


@dataclass(frozen=True)
class ReportFiles:
    uris: tuple[str, ...]  # where each file went, in REPORT_FILES' order
    markdown: str

    @property
    def html(self) -> str:
        return self.uris[REPORT_FILES.index(REPORT_HTML)]


def write_report(storage: Storage, report: Report) -> ReportFiles:
    """Render every file, then write them (the HTML last: it is the one people open)."""
    plots = render_plots(report)
    markdown = to_markdown(report)
    contents: dict[str, bytes] = {
        REPORT_JSON: to_json(report).encode(),
        REPORT_CSV: to_csv(report).encode(),
        REPORT_MARKDOWN: markdown.encode(),
        REPORT_PNG: plots.f1_memory,
        REPORT_HTML: render_html(report, plots).encode(),
    }
    for name, data in contents.items():
        storage.write_bytes(name, data)
    return ReportFiles(tuple(f"{storage.uri}/{name}" for name in REPORT_FILES), markdown)
