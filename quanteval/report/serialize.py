"""`report.json`: the report as versioned camelCase JSON, and back."""

from pydantic import TypeAdapter

from quanteval.report.schema import Report

_ADAPTER: TypeAdapter[Report] = TypeAdapter(Report)


def to_json(report: Report) -> str:
    return _ADAPTER.dump_json(report, by_alias=True, indent=2).decode() + "\n"


def from_json(text: str | bytes) -> Report:
    """A report from its JSON (pydantic.ValidationError when it is not one)."""
    return _ADAPTER.validate_json(text)
