"""The words for where a run, and an evaluation, stand: one enum each, used wherever they appear
(status, termination messages, result files, reports, Events, metrics). StrEnum members are
their strings, so JSON and YAML carry the plain word."""

from enum import StrEnum


class RunState(StrEnum):
    PENDING = "Pending"  # its Job is not created yet, or its pod is not scheduled yet
    QUEUED = "Queued"  # its Job waits on spec.parallelism or spec.suspend
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"  # for the report also: started, but no valid result.json
    MISSING = "Missing"  # the report only: the run left nothing at all


TERMINAL_STATES = (RunState.SUCCEEDED, RunState.FAILED)


class ConditionType(StrEnum):
    VALID = "Valid"
    PROGRESSING = "Progressing"
    SUCCEEDED = "Succeeded"
    REPORT_READY = "ReportReady"
    GPUS_ESTIMATED = "GPUsEstimated"


class Reason(StrEnum):
    """Condition reasons, and the reasons a run carries in its status and termination message."""

    # an evaluation's conditions
    SPEC_VALID = "SpecValid"
    INVALID_SPEC = "InvalidSpec"
    PARAMETERS_UNKNOWN = "ParametersUnknown"
    SUSPENDED = "Suspended"
    RUNS_ACTIVE = "RunsActive"
    RUNS_IN_PROGRESS = "RunsInProgress"
    REPORTING = "Reporting"
    ALL_RUNS_FINISHED = "AllRunsFinished"
    REPORT_WRITTEN = "ReportWritten"
    REPORT_FAILED = "ReportFailed"
    RUNS_FAILED = "RunsFailed"
    ALL_RUNS_SUCCEEDED = "AllRunsSucceeded"
    # a run's (the errors' own are on quanteval.api.errors' error types)
    CANNOT_LOAD = "CannotLoad"
    OUT_OF_MEMORY = "OutOfMemory"
    STORAGE_FAILED = "StorageFailed"
    INTERNAL_ERROR = "InternalError"
    ALREADY_COMPLETE = "AlreadyComplete"  # a retried pod found its result.json already written
    CRASHED = "Crashed"  # a local worker process ended with no termination message
    NO_RESULT = "NoResult"  # a local worker process ended with no result.json
    CREATE_FAILED = "CreateFailed"  # the API server refused the run's Job (a quota, a webhook)


class EventReason(StrEnum):
    """The reasons of the Events that tell an evaluation's story (`kubectl describe`)."""

    RUN_STARTED = "RunStarted"
    RUN_SUCCEEDED = "RunSucceeded"
    RUN_FAILED = "RunFailed"
    RUN_RETRIED = "RunRetried"
    RUN_WAITING = "RunWaiting"
    REPORT_STARTED = "ReportStarted"
    REPORT_WRITTEN = "ReportWritten"
    REPORT_FAILED = "ReportFailed"
    INVALID_SPEC = "InvalidSpec"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
