"""LocalStorage: whole-object writes, reads, listing and deletion under a directory."""

import os
from pathlib import Path

from quanteval.storage import LocalStorage, open_storage


def _all_files(root: Path) -> set[str]:
    """Every file under root, hidden ones included, as paths relative to root."""
    return {
        str((Path(directory) / name).relative_to(root))
        for directory, _, names in os.walk(root)
        for name in names
    }


def test_write_then_read(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write_text("runs/m-fp32/result.json", '{"ok": true}\n')

    assert storage.read_text("runs/m-fp32/result.json") == '{"ok": true}\n'
    assert (tmp_path / "runs" / "m-fp32" / "result.json").read_text() == '{"ok": true}\n'


def test_write_bytes_and_overwrite(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write_bytes("a.txt", "first é".encode())
    assert storage.read_text("a.txt") == "first é"

    storage.write_text("a.txt", "second")
    assert storage.read_text("a.txt") == "second"


def test_read_of_a_missing_key_is_none(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)

    assert storage.read_text("missing.json") is None
    assert storage.read_text("no/such/dir/result.json") is None


def test_list_children(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write_text("runs/m-nf4/result.json", "{}")
    storage.write_text("runs/m-fp32/result.json", "{}")
    storage.write_text("runs/m-fp32/generations.jsonl", "")
    storage.write_text("report.json", "{}")

    assert storage.list_children("runs") == ["m-fp32", "m-nf4"]
    assert storage.list_children("runs/m-fp32") == ["generations.jsonl", "result.json"]
    assert storage.list_children("") == ["report.json", "runs"]
    assert storage.list_children("missing") == []
    assert storage.list_children("report.json") == []


def test_list_children_hides_dot_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.write_text("runs/a/result.json", "{}")
    (tmp_path / "runs" / ".partial").write_text("")

    assert storage.list_children("runs") == ["a"]


def test_delete_takes_the_folders_it_empties_as_s3_keeps_none(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "out")
    storage.write_text("runs/a/result.json", "{}")
    storage.write_text("runs/b/result.json", "{}")

    storage.delete("runs/a/result.json")

    assert storage.read_text("runs/a/result.json") is None
    assert storage.list_children("runs") == ["b"]  # runs/a went with its last file
    storage.delete("runs/b/result.json")
    assert list((tmp_path / "out").iterdir()) == []  # the root stays
    storage.delete("runs/a/result.json")  # deleting what is gone is fine
    storage.delete("never/was.json")


def test_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    for index in range(5):
        storage.write_text("runs/a/result.json", f"{index}")
        storage.write_bytes("runs/a/generations.jsonl", b"x" * 10_000)
    storage.write_text("top.txt", "t")

    assert _all_files(tmp_path) == {
        "runs/a/result.json",
        "runs/a/generations.jsonl",
        "top.txt",
    }


def test_child_storage(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    run = storage.child("runs/m-fp32")
    run.write_text("result.json", "{}")

    assert storage.read_text("runs/m-fp32/result.json") == "{}"
    assert run.read_text("result.json") == "{}"
    assert run.uri == str((tmp_path / "runs" / "m-fp32").resolve())


def test_uri_is_the_absolute_root(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "out" / ".." / "out")

    assert storage.uri == str((tmp_path / "out").resolve())


def test_open_storage_local_paths(tmp_path: Path) -> None:
    plain = open_storage(str(tmp_path))
    with_scheme = open_storage(f"file://{tmp_path}")

    assert isinstance(plain, LocalStorage)
    assert isinstance(with_scheme, LocalStorage)
    assert plain.uri == with_scheme.uri == str(tmp_path.resolve())
