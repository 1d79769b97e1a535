"""Where a model's weights come from: hub id, local directory, s3:// prefix, .gguf, package:NAME.

Every source resolves to something `from_pretrained` can load without a quantization conflict:
a GGUF file is dequantized once into a cached checkpoint (transformers refuses to combine
`gguf_file=` with a quantization config), published atomically so parallel workers never see
half a checkpoint.
"""

import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from quanteval.api.errors import CannotLoadError
from quanteval.api.result import CheckpointQuantization
from quanteval.checkpoints import read_checkpoint_quantization
from quanteval.storage import S3Storage
from quanteval_worker.gguf_files import gguf_quantization


@dataclass(frozen=True)
class ResolvedSource:
    """A local checkpoint directory, or a hub id with its revision."""

    location: str
    revision: str | None
    is_hub: bool
    gguf: Path | None = None  # the GGUF file `location` holds the dequantized weights of


def cache_dir() -> Path:
    return Path(os.environ.get("QUANTEVAL_CACHE_DIR") or Path.home() / ".cache" / "quanteval")


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source.endswith(".gguf")


def package_location(name: str) -> Path:
    """The checkpoint directory or GGUF file that an installed Python package ships."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise CannotLoadError(f"package:{name}: no installed Python package named {name!r}")
    root = Path(next(iter(spec.submodule_search_locations)))
    configs = sorted(root.glob("config.json")) + sorted(root.glob("*/config.json"))
    if configs:
        return configs[0].parent
    ggufs = sorted(root.rglob("*.gguf"))
    if len(ggufs) == 1:
        return ggufs[0]
    raise CannotLoadError(
        f"package:{name}: expected one model (a config.json folder or one .gguf file) in {root}, "
        f"found {len(ggufs)} .gguf files and no config.json"
    )


def _publish_atomically(target: Path, build: Callable[[Path], None]) -> Path:
    """Build into a temporary sibling, then rename; a concurrent winner's copy is kept."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def dequantize_gguf(gguf_path: Path) -> Path:
    """A plain transformers checkpoint of a GGUF file's weights (dequantized), cached once."""
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    target = cache_dir() / "gguf" / f"{gguf_path.stem}-{key.hexdigest()[:12]}"

    def build(directory: Path) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        folder, name = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        gguf_model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32
        )
        # A GGUF-loaded model cannot save_pretrained, and its config names the GGUF quantization:
        # rebuild a plain model from a clean config and copy the weights over.
        config_dict = gguf_model.config.to_dict()
        config_dict.pop("quantization_config", None)
        config = AutoConfig.for_model(**config_dict)
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(gguf_model.state_dict())
        plain.save_pretrained(directory)
        tokenizer.save_pretrained(directory)

    return _publish_atomically(target, build)


def download_s3_prefix(uri: str, endpoint: str, region: str) -> Path:
    """Every object under an s3:// prefix, downloaded once into the cache."""
    target = cache_dir() / "s3" / hashlib.sha256(f"{endpoint}|{uri}".encode()).hexdigest()[:24]

    def build(directory: Path) -> None:
        storage = S3Storage(uri, endpoint, region)
        client = storage.client
        prefix = f"{storage.prefix}/" if storage.prefix else ""
        count = 0
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=storage.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) :]
                if not relative or relative.endswith("/"):
                    continue
                destination = directory / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(storage.bucket, item["Key"], str(destination))
                count += 1
        if count == 0:
            raise CannotLoadError(f"{uri}: no objects under this prefix")

    try:
        return _publish_atomically(target, build)
    except CannotLoadError:
        raise
    except Exception as error:  # botocore's errors have no common base with a useful message
        raise CannotLoadError(f"{uri}: cannot download the model: {error}") from error


def resolve_source(
    source: str, revision: str | None = None, s3_endpoint: str = "", s3_region: str = ""
) -> ResolvedSource:
    if source.startswith("package:"):
        location = package_location(source.removeprefix("package:"))
    elif source.startswith("s3://"):
        location = download_s3_prefix(source, s3_endpoint, s3_region)
    elif _looks_like_path(source) or Path(source).exists():
        location = Path(source).expanduser()
        if not location.exists():
            raise CannotLoadError(f"model path {source} does not exist")
    else:
        return ResolvedSource(location=source, revision=revision, is_hub=True)
    gguf = None
    if location.is_file():
        if location.suffix != ".gguf":
            raise CannotLoadError(f"{source}: a model file must be .gguf; otherwise give a folder")
        gguf = location
    elif location.is_dir() and not (location / "config.json").exists():
        ggufs = sorted(location.glob("*.gguf"))
        if len(ggufs) != 1:
            raise CannotLoadError(f"{source}: the folder holds no config.json and no single .gguf")
        gguf = ggufs[0]
    if gguf is not None:
        location = dequantize_gguf(gguf)
    return ResolvedSource(location=str(location), revision=None, is_hub=False, gguf=gguf)


def quantization_at(location: Path) -> CheckpointQuantization | None:
    """How the files at `location` were quantized: a GGUF file's type, or a checkpoint folder's
    quantization_config (None: plain weights, or nothing there)."""
    if location.suffix == ".gguf" and location.is_file():
        return gguf_quantization(location)
    return read_checkpoint_quantization(location) if location.is_dir() else None


def source_quantization(source: ResolvedSource) -> CheckpointQuantization | None:
    """How the source was quantized before we got it (its GGUF file's, not the dequantized
    copy's)."""
    if source.gguf is not None:
        return quantization_at(source.gguf)
    if source.is_hub:
        return None  # fetched before this is asked: a local folder by then
    return quantization_at(Path(source.location))
