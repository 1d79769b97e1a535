"""When passes run: never two of one QuantEval at once, a burst of requests as one more pass, and
a failed pass (or one the API server partly refused) tried again with backoff.

Kept apart from what a pass does, so that the coalescing and the backoff are unit-tested with a
pass that is a plain coroutine and a sleep that only records.
"""

import asyncio
from collections.abc import Awaitable, Callable
from enum import Enum

COALESCE_SECONDS = 0.5
# After the 1st, 2nd, ... failed try in a row (the default of Settings.retry_seconds).
RETRY_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class Outcome(Enum):
    DONE = "done"  # nothing more to do until the next event
    RETRY = "retry"  # something was refused (a quota may free up): again after a backoff
    GONE = "gone"  # the QuantEval is deleted


def retry_delay(failures: int, schedule: tuple[float, ...] = RETRY_SECONDS) -> float:
    """Seconds before the next try after `failures` failed tries in a row (the last one caps)."""
    return schedule[min(failures, len(schedule) - 1)]


Pass = Callable[[], Awaitable[Outcome]]
OnFailure = Callable[[Exception, float], None]  # the error, and the seconds until the next try


class PassQueue:
    """Passes by key (a QuantEval's eval_key). `request` runs one now, or marks one more as due
    when a pass of that key is under way (its requester runs it)."""

    def __init__(
        self,
        coalesce_seconds: float = COALESCE_SECONDS,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        retry_seconds: tuple[float, ...] = RETRY_SECONDS,
    ) -> None:
        self.coalesce_seconds = coalesce_seconds
        self.sleep = sleep
        self.retry_seconds = retry_seconds
        self.running: set[str] = set()  # keys with a pass under way
        self.pending: set[str] = set()  # ... and another asked for meanwhile

    def busy(self, key: str) -> bool:
        return key in self.running

    async def request(self, key: str, run: Pass, on_failure: OnFailure) -> None:
        if key in self.running:
            self.pending.add(key)
            return
        self.running.add(key)
        failures = 0
        try:
            while True:
                # Events come in bursts (a Job and its pod change together, 200 Jobs finish
                # within seconds): wait a moment so that one pass answers the whole burst.
                await self.sleep(self.coalesce_seconds)
                self.pending.discard(key)
                try:
                    outcome = await run()
                except Exception as error:
                    delay = retry_delay(failures, self.retry_seconds)
                    failures += 1
                    on_failure(error, delay)
                    await self.sleep(delay)  # requests meanwhile join this try
                    continue
                if outcome is Outcome.GONE:
                    return
                if outcome is Outcome.RETRY:
                    await self.sleep(retry_delay(failures, self.retry_seconds))
                    failures += 1
                    continue
                failures = 0
                if key not in self.pending:
                    return
        finally:
            self.running.discard(key)
            self.pending.discard(key)
