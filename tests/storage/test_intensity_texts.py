"""The intensity task's own texts as an s3:// object: the worker reads them with the output's
endpoint and credentials before it loads the model, and a missing object names the field."""

import pytest

from devcluster.minio import MinioServer
from quanteval.api.errors import InvalidSpecError
from quanteval.api.runspec import IntensityItem, RunSpec
from quanteval.api.spec import parse_manifest
from quanteval.matrix import build_run_spec, expand
from quanteval.storage import open_storage
from quanteval_worker.intensity import with_texts
from tests.builders import make_manifest


def _run_spec(endpoint: str, bucket: str, texts_from: str) -> RunSpec:
    parsed = parse_manifest(
        make_manifest(
            "texts-from-s3",
            tasks=["generation", "intensity"],
            intensity={"textsFrom": texts_from},
            output={"s3": {"bucket": bucket, "endpoint": endpoint}},
        )
    )
    (run,) = expand(parsed.spec)
    return build_run_spec(parsed, run, f"s3://{bucket}/out")


def test_the_worker_reads_the_texts_of_an_s3_object(
    s3_server: MinioServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in s3_server.env().items():
        if key != "AWS_ENDPOINT_URL_S3":  # the spec's endpoint, as in a pod
            monkeypatch.setenv(key, value)
    lines = (
        '{"text": "what a day", "emotion": "joy", "gold": 70}\n{"text": "no", "emotion": "anger"}\n'
    )
    open_storage(f"s3://{s3_bucket}/corpora", s3_server.endpoint).write_text("mine.jsonl", lines)
    spec = _run_spec(s3_server.endpoint, s3_bucket, f"s3://{s3_bucket}/corpora/mine.jsonl")
    assert spec.intensity is not None and spec.intensity.items == []

    task = with_texts(spec.intensity, spec)

    assert task.texts_from is None
    assert task.items == [
        IntensityItem(key="t1", text="what a day", emotion="joy", gold=70),
        IntensityItem(key="t2", text="no", emotion="anger"),
    ]
    missing = _run_spec(s3_server.endpoint, s3_bucket, f"s3://{s3_bucket}/corpora/gone.jsonl")
    assert missing.intensity is not None
    with pytest.raises(InvalidSpecError, match=r"spec.intensity.textsFrom: .*gone.jsonl does not"):
        with_texts(missing.intensity, missing)
