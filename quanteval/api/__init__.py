"""The contract between QuantEval's parts, in one place: what one writes and another reads.

- `states`: run states, condition types and reasons (the words `kubectl get` and the reports show)
- `layout`: where each file of an evaluation lives (`runs/<run>/result.json`, `report.*`)
- `records`: the per-sample record of `generations.jsonl`
- `termination`: the worker's and the report Job's termination messages
- `worker_log`: the worker's structured stderr (progress events and log lines)
- `spec`, `runspec`, `result`, `status`: the resource, one run's input, its result, the status
- `errors`: the error types and the exit codes they map to
"""
