"""The evaluation report: every run of an evaluation compared, as JSON, CSV, Markdown and HTML.

`build_report(uri)` reads `runs/*/result.json` and `generations.jsonl` under a local directory or
an S3 prefix, computes the comparison (pure functions on plain data: `compute.py`) and writes
`report.{json,csv,md,html,png}` next to the runs.
"""

from quanteval.report.build import BuiltReport, build_report
from quanteval.report.data import ExpectedRun
from quanteval.report.schema import REPORT_SCHEMA, Report

__all__ = ["REPORT_SCHEMA", "BuiltReport", "ExpectedRun", "Report", "build_report"]
