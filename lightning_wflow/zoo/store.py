"""On-disk storage of zoos: atomic writes, checksummed safetensors chunks, JSON manifests."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

__all__ = [
    "ZooCacheError",
    "ZooCacheWarning",
    "atomic_write_bytes",
    "read_manifest",
    "read_tensors",
    "write_manifest",
    "write_tensors",
]

MANIFEST = "manifest.json"


class ZooCacheWarning(UserWarning):
    """A cache entry was unusable (corrupt, truncated, mismatching) and is being rebuilt."""


class ZooCacheError(RuntimeError):
    """A stored file failed verification."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the file is
    renamed over ``path`` (``os.replace`` is atomic on POSIX and Windows within one volume).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_tensors(path: Path, tensors: dict[str, Tensor]) -> dict:
    """Save ``tensors`` as safetensors atomically; returns ``{"bytes", "sha256"}`` of the file."""
    blob = st_save({k: v.contiguous() for k, v in tensors.items()})
    atomic_write_bytes(path, blob)
    return {"bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}


def read_tensors(path: Path, expected: dict) -> dict[str, Tensor]:
    """Load a safetensors file after checking its size and sha256 against ``expected``.

    Raises:
        ZooCacheError: missing file, wrong size (truncated), wrong checksum or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise ZooCacheError(f"{path} is missing")
    size = path.stat().st_size
    if size != expected.get("bytes"):
        raise ZooCacheError(f"{path} has {size} bytes, the manifest says {expected.get('bytes')}")
    blob = path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != expected.get("sha256"):
        raise ZooCacheError(f"{path} has sha256 {digest[:12]}..., the manifest says otherwise")
    try:
        return st_load(blob)
    except Exception as err:  # safetensors raises its own error types for a bad header
        raise ZooCacheError(f"{path} is not a readable safetensors file: {err}") from err


def write_manifest(folder: Path, manifest: dict) -> None:
    atomic_write_bytes(Path(folder) / MANIFEST, json.dumps(manifest, indent=1).encode())


def read_manifest(folder: Path) -> dict | None:
    """The manifest of ``folder``; ``None`` when there is none.

    Raises:
        ZooCacheError: the file exists but is not a JSON object.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ZooCacheError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(manifest, dict):
        raise ZooCacheError(f"{path} does not hold a JSON object")
    return manifest
