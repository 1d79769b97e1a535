"""`quanteval-operator`: watch QuantEvals and run them as Jobs.

With no flags it watches every namespace; `--namespace` (repeatable) or QUANTEVAL_NAMESPACES
(comma-separated) narrows it. Standalone (no peering objects); kopf's liveness endpoint on
--liveness. It needs neither S3 nor model credentials: the workers get those from Secrets.
"""

import argparse
import asyncio
import logging
import os
import sys

import kopf

import quanteval_operator.handlers  # noqa: F401  (registers the handlers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quanteval-operator", description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", "-n", action="append", default=[], help="watch only these")
    parser.add_argument(
        "--liveness",
        default=os.environ.get("QUANTEVAL_LIVENESS", "http://0.0.0.0:8080/healthz"),
        help="kopf's liveness endpoint (default %(default)s)",
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    namespaces = args.namespace or [
        n.strip() for n in os.environ.get("QUANTEVAL_NAMESPACES", "").split(",") if n.strip()
    ]
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
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
