"""Writing the report's files next to the runs: `<root>/report.{json,csv,md,html,png}`."""

from dataclasses import dataclass

from quanteval.report.html import render_html
from quanteval.report.plots import render_plots
from quanteval.report.schema import Report
from quanteval.report.serialize import to_json
from quanteval.report.tables import to_csv, to_markdown
from quanteval.storage import Storage

REPORT_FILES = ("report.json", "report.csv", "report.md", "report.html", "report.png")


@dataclass(frozen=True)
class ReportFiles:
    uris: tuple[str, ...]  # where each file went, in REPORT_FILES' order
    markdown: str

    @property
    def html(self) -> str:
        return self.uris[REPORT_FILES.index("report.html")]


def write_report(storage: Storage, report: Report) -> ReportFiles:
    """Render every file, then write them (the HTML last: it is the one people open)."""
    plots = render_plots(report)
    markdown = to_markdown(report)
    contents: dict[str, bytes] = {
        "report.json": to_json(report).encode(),
        "report.csv": to_csv(report).encode(),
        "report.md": markdown.encode(),
        "report.png": plots.f1_memory,
        "report.html": render_html(report, plots).encode(),
    }
    for name, data in contents.items():
        storage.write_bytes(name, data)
    return ReportFiles(tuple(f"{storage.uri}/{name}" for name in REPORT_FILES), markdown)
