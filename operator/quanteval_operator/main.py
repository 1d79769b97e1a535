"""`quanteval-operator`: watch QuantEvals and run them as Jobs.

With no flags it watches every namespace; `--namespace` (repeatable) or QUANTEVAL_NAMESPACES
(comma-separated) narrows it, and then it needs no cluster-wide permission (kopf's scanning of
namespaces and CRDs is off: the CRD must be installed before it starts). Standalone (no peering
objects); kopf's liveness endpoint on --liveness; Prometheus metrics on --metrics-port (0: none);
a pass of every unfinished QuantEval each --resync-seconds.
It needs neither S3 nor model credentials: the workers get those from Secrets.
"""

import argparse
import asyncio
import logging
import os
import sys

import kopf

from quanteval_operator import handlers  # registers the handlers


class _RoutineSuccesses(logging.Filter):
    """Drops kopf's "Handler 'x' succeeded." lines: every Job and pod change would log one."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Handler '") and message.endswith("' succeeded."))


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {value}")
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quanteval-operator", description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", "-n", action="append", default=[], help="watch only these")
    parser.add_argument(
        "--liveness",
        default=os.environ.get("QUANTEVAL_LIVENESS", "http://0.0.0.0:8080/healthz"),
        help="kopf's liveness endpoint (default %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=_port,
        default=os.environ.get("QUANTEVAL_METRICS_PORT", "8000"),
        help="serve Prometheus metrics on this port at /metrics; 0 disables (default %(default)s)",
    )
    parser.add_argument(
        "--resync-seconds",
        type=float,
        default=os.environ.get("QUANTEVAL_RESYNC_SECONDS", "300"),
        help="a pass for every unfinished QuantEval this often, whatever the events; "
        "0 disables (default %(default)s)",
    )
    parser.add_argument(
        "--client-side-selectors",
        action="store_true",
        help="receive every Job and pod of the cluster and filter them here instead of asking "
        "the API server for ours only: to measure what the server-side selectors save",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    namespaces = args.namespace or [
        n.strip() for n in os.environ.get("QUANTEVAL_NAMESPACES", "").split(",") if n.strip()
    ]
    handlers.OPTIONS.namespaced = bool(namespaces)
    handlers.OPTIONS.metrics_port = args.metrics_port
    handlers.OPTIONS.resync_seconds = args.resync_seconds
    handlers.OPTIONS.server_side_selectors = not args.client_side_selectors
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON)
    logging.captureWarnings(True)  # Python warnings as JSON lines too, not bare stderr text
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if not args.verbose:
        logging.getLogger("kopf.objects").addFilter(_RoutineSuccesses())
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            liveness_endpoint=args.liveness,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
