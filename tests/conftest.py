"""The suites' shared fixtures, as plugins (no suite imports another's conftest): the real S3
server, and the models (SmolLM2 from its wheel, tiny models built from configs)."""

pytest_plugins = ["tests.plugins.s3", "tests.plugins.models"]
