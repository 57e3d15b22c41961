"""Files written atomically, and the one cache-key helper. Standard library and pandas only (no torch)."""

import contextlib
import hashlib
import json
import os
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success it replaces `path` in one step.

    A process killed mid-write leaves the previous file untouched (and at most a
    stray temp file), never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_csv(path, frame) -> None:
    """Write a pandas DataFrame as CSV, atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g")


def save_torch(path, obj) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_npy(path, array) -> None:
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def cache_key(rel_paths, data_root, **params) -> str:
    """The key of anything derived from a list of files (prepared images, statistics).

    It covers every parameter given, and each file's path, identity (device and inode: hard links to
    one file, such as the lab bank's shared sources, share it), size and modification time, so a
    regenerated or edited image never comes from a stale cache. A file that cannot be stat'ed counts
    with size -1 and its data root (its reader reports it).
    """
    root = Path(data_root).resolve()
    h = hashlib.sha1(f"{sorted(params.items())}\n".encode())
    for p in rel_paths:
        try:
            st = os.stat(root / p)
            h.update(f"{p}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{root / p}|-1\n".encode())
    return h.hexdigest()[:16]
