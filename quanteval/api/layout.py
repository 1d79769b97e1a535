"""Where each file of an evaluation lives, under its root (a directory or an s3:// prefix):

runs/<run id>/runspec.json                   the run's spec, written as it starts
runs/<run id>/       generations.jsonl   one line per sample (quanteval.api.records)
runs/<run id>/       fidelity.npz        the reference corpus's token distributions
runs/<run id>/       result.json         written last: it marks the run complete
report.{json,csv,md,html,png}                the evaluation's report
"""

from typing import Final

RUNS_DIR: Final = "runs"
RESULT_FILE: Final = "result.json"
RUN_SPEC_FILE: Final = "runspec.json"
GENERATIONS_FILE: Final = "generations.jsonl"
RATINGS_FILE: Final = "ratings.jsonl"
FIDELITY_FILE: Final = "fidelity.npz"
REPORT_JSON: Final = "report.json"
REPORT_CSV: Final = "report.csv"
REPORT_MARKDOWN: Final = "report.md"
REPORT_HTML: Final = "report.html"
REPORT_PNG: Final = "report.png"
REPORT_FILES: Final = (REPORT_JSON, REPORT_CSV, REPORT_MARKDOWN, REPORT_HTML, REPORT_PNG)


def run_dir(run_id: str) -> str:
    """A run's directory, relative to its evaluation's root."""
    return f"{RUNS_DIR}/{run_id}"


def under(root: str, relative: str) -> str:
    """`relative` under an evaluation's root URI or path."""
    return f"{root.rstrip('/')}/{relative}"
