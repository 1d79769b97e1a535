"""Fixtures of the operator suites: the operator process, a namespace it serves, a tiny model
(the cluster itself is tests/plugins/cluster.py's)."""

from tests.operator.fixtures import eval_namespace, operator, tiny_model  # noqa: F401
