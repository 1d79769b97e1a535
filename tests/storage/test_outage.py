"""An object store that goes away and comes back: MinIO of the test's own, halted and resumed on
the same port and data. Operations wait out an outage within the retry budget and fail past it
naming the endpoint; the worker's writes wait on disk, in order, and never corrupt what was
written before."""

import threading
from pathlib import Path

import pytest

from devcluster.minio import MinioServer
from quanteval.api.errors import StorageError
from quanteval.storage import Patience, S3Storage
from quanteval_worker.spool import SpooledStorage

BUCKET = "outage"


@pytest.fixture
def store(own_s3_server: MinioServer) -> MinioServer:
    own_s3_server.create_bucket(BUCKET)
    return own_s3_server


def _storage(server: MinioServer, budget: float) -> S3Storage:
    return S3Storage(f"s3://{BUCKET}/runs/m-fp32", server.endpoint, patience=Patience(budget))


def _back_after(server: MinioServer, seconds: float) -> threading.Thread:
    """The store resumed `seconds` from now, while the test goes on."""
    timer = threading.Timer(seconds, server.resume)
    timer.start()
    return timer


def test_the_kit_restarts_minio_on_its_port_with_its_data(store: MinioServer) -> None:
    storage = _storage(store, budget=30)
    storage.write_text("generations.jsonl", "kept\n")
    endpoint = store.endpoint
    store.restart()
    assert store.endpoint == endpoint
    assert storage.read_text("generations.jsonl") == "kept\n"


def test_an_operation_waits_out_an_outage_within_the_budget(store: MinioServer) -> None:
    storage = _storage(store, budget=60)
    store.halt()
    timer = _back_after(store, 2)  # tried at 0, 1 and 3 s (the backoff): up at the third
    storage.write_text("result.json", "{}")  # waits for the store, then writes
    timer.join()
    assert storage.read_text("result.json") == "{}"
    assert storage.patience.outage_began is None  # over: the next outage has a budget of its own


def test_past_the_budget_an_operation_fails_naming_the_endpoint_and_loses_nothing(
    store: MinioServer,
) -> None:
    storage = _storage(store, budget=2)
    storage.write_text("generations.jsonl", "written before\n")
    store.halt()
    with pytest.raises(StorageError) as failure:
        storage.write_text("generations.jsonl", "half\n")
    message = failure.value.message
    assert f"s3://{BUCKET}/runs/m-fp32/generations.jsonl at {store.endpoint}" in message
    assert "over the retry budget of 2 s" in message
    store.resume()
    assert storage.read_text("generations.jsonl") == "written before\n"


def test_a_refusal_is_not_an_outage_and_fails_at_once(store: MinioServer) -> None:
    storage = S3Storage("s3://no-such-bucket-here/x", store.endpoint, patience=Patience(600))
    with pytest.raises(StorageError, match="no-such-bucket-here") as failure:
        storage.write_text("result.json", "{}")
    assert "retry budget" not in failure.value.message


def test_the_workers_writes_wait_on_disk_in_order_and_go_up_when_the_store_returns(
    store: MinioServer, tmp_path: Path
) -> None:
    inner = _storage(store, budget=60)
    spool = SpooledStorage(inner, tmp_path / "spool", limit=None)
    spool.write_text("run.json", "spec")
    tries: list[str] = []
    one_try = inner.try_write

    def counted(key: str, data: bytes) -> bool:
        tries.append(key)
        return one_try(key, data)

    inner.try_write = counted  # type: ignore[method-assign]
    store.halt()
    spool.write_text("generations.jsonl", "first\n")  # returns: the work goes on
    spool.write_text("fidelity.npz", "npz")
    spool.write_text("generations.jsonl", "scored\n")
    spool.write_text("result.json", "{}")
    assert tries == ["generations.jsonl"]  # the store asked once, not at every write
    assert [key for key, _, _ in spool.pending] == [
        "generations.jsonl", "fidelity.npz", "generations.jsonl", "result.json",
    ]  # fmt: skip
    assert spool.read_text("generations.jsonl") == "scored\n"  # the latest, from the disk
    timer = _back_after(store, 2)
    spool.flush()
    timer.join()
    storage = _storage(store, budget=5)
    assert storage.read_text("generations.jsonl") == "scored\n"
    assert storage.read_text("result.json") == "{}"
    assert storage.read_text("fidelity.npz") == "npz"
    assert not spool.pending and not any((tmp_path / "spool").iterdir())  # emptied, removed


def test_a_spool_that_would_outgrow_its_disk_fails_naming_the_size(
    store: MinioServer, tmp_path: Path
) -> None:
    spool = SpooledStorage(_storage(store, budget=60), tmp_path / "spool", limit=1000)
    store.halt()
    spool.write_bytes("generations.jsonl", b"x" * 600)
    with pytest.raises(StorageError) as failure:
        spool.write_bytes("fidelity.npz", b"y" * 600)
    message = failure.value.message
    assert "would take 1.2 KiB of this pod's disk, over the 1000 B the Job requested" in message
    assert "not written: generations.jsonl, fidelity.npz" in message
    store.resume()


def test_past_the_budget_the_spool_fails_naming_what_it_could_not_write(
    store: MinioServer, tmp_path: Path
) -> None:
    spool = SpooledStorage(_storage(store, budget=2), tmp_path / "spool", limit=None)
    store.halt()
    spool.write_text("generations.jsonl", "g\n")
    spool.write_text("result.json", "{}")
    with pytest.raises(StorageError) as failure:
        spool.flush()
    assert "not written: generations.jsonl, result.json" in failure.value.message
    assert f"at {store.endpoint}" in failure.value.message
    store.resume()
    assert _storage(store, budget=5).read_text("result.json") is None  # never a commit mark
