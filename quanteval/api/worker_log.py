"""The worker's structured output: one JSON object a line on stderr.

`quanteval run --local` reads the `progress` events to draw its progress bar and shows the
warnings; in a pod the same lines are the container log. Fields beyond these are kept (a log
line carries its own, such as `seconds` or `weightsBytes`).
"""

import json
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, ValidationError


class WorkerEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    ts: float
    event: Literal["log", "progress"]
    level: Literal["info", "warning", "error"] | None = None  # a log line's
    message: str | None = None  # a log line's
    # a progress event's: intensity's greedy answers, then (method expected) its number walks
    task: Literal["generation", "intensity", "expected"] | None = None
    done: int | None = None  # a progress event's: samples generated (texts rated) so far
    total: int | None = None  # a progress event's: samples (texts) the task has

    def to_line(self) -> str:
        return json.dumps(self.model_dump(exclude_none=True), default=str)

    @classmethod
    def parse(cls, line: str) -> Self | None:
        """The event on `line`; None when it is not one (a library's own print, say)."""
        try:
            return cls.model_validate_json(line)
        except ValidationError:
            return None
