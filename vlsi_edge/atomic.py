"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


from vlsi_edge.errors import InputError

_UMASK = os.umask(0)
os.umask(_UMASK)


def check_writable_dir(path: str | Path, what: str) -> None:
    """Refuse, before any work, a folder that cannot be created or written (`what` names the option)."""
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists())  # "." and "/" always do
    if not existing.is_dir():
        raise InputError(f"{what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: {existing} is not writable")


def write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_figure(path: str | Path, fig) -> None:
    """A matplotlib figure as PNG (rendered in memory, then written atomically); closes the figure."""
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, buffer.getvalue())


def replace_dir(staging: str | Path, target: str | Path) -> None:
    """Move a fully written `staging` directory to `target`, replacing what was there.

    The old directory is renamed aside first and removed only after the new one is in place, so an
    interruption leaves either the old or the new directory at `target`.
    """
    staging, target = Path(staging), Path(target)
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    if old.exists():
        shutil.rmtree(old)


def recover_dir(target: str | Path) -> None:
    """Finish what a `replace_dir` killed between its two renames left: put the old directory back."""
    target = Path(target)
    old = target.with_name(f".{target.name}.old")
    if not target.exists() and old.is_dir():
        os.replace(old, target)


@contextlib.contextmanager
def staged_dir(target: str | Path):
    """A fresh directory beside `target` to write into; moved to `target` (`replace_dir`) when the block
    ends normally, removed when it raises — `target` is never half written."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.staging.") as tmp:
        yield Path(tmp)
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700
        replace_dir(tmp, target)  # the TemporaryDirectory is then gone: nothing left to clean
