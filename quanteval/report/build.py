"""`quanteval report`: read an evaluation's runs, compute the report, write it next to them."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from quanteval.report.compute import compute_report
from quanteval.report.data import ExpectedRun
from quanteval.report.load import load_evaluation
from quanteval.report.schema import Report
from quanteval.report.write import ReportFiles, write_report
from quanteval.storage import open_storage


@dataclass(frozen=True)
class BuiltReport:
    report: Report
    files: ReportFiles


def build_report(
    uri: str,
    expected: Sequence[ExpectedRun] = (),
    *,
    endpoint: str = "",
    region: str = "",
    now: datetime | None = None,
    equivalence_margin_pp: float | None = None,
) -> BuiltReport:
    """The report of the evaluation at `uri` (a directory or s3:// prefix holding runs/).

    `expected`: runs the caller knows of (from the manifest); those that left nothing are
    reported as Missing. `equivalence_margin_pp`: spec.report.equivalenceMarginPp. Raises
    InvalidSpecError when there is no runs/ and nothing expected,
    StorageError when storage fails.
    """
    storage = open_storage(uri, endpoint, region)
    loaded = load_evaluation(storage, expected)
    moment = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    report = compute_report(
        loaded.runs,
        source=storage.uri,
        generated_at=moment,
        ignored=loaded.ignored,
        equivalence_margin_pp=equivalence_margin_pp,
    )
    return BuiltReport(report, write_report(storage, report))
