"""What an output folder remembers between runs: a lock for the run writing into it, a
log of each file's outcome, and no temporary files left by a killed run."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

from .errors import InputError

LOG_NAME = "napari-unet-cat-log.jsonl"


class FolderLock:
    """One run at a time per output folder: a lock file holding the run's host and pid.

    A second run stops with a message that names the first; a lock left by a killed run
    on this machine (its process is gone) is taken over.
    """

    NAME = ".napari-unet-cat.lock"

    def __init__(self, folder: Path):
        self.path = Path(folder) / self.NAME
        self.held = False

    def __enter__(self) -> FolderLock:
        import socket

        me = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and self._alive(owner, me["host"]):
                    raise InputError(
                        f"another run (process {owner.get('pid')} on {owner.get('host')}) is writing into "
                        f"{self.path.parent}; wait for it to end or choose another output folder (if no run is "
                        f"going, delete {self.path})"
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()  # stale: its run was killed
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        raise InputError(f"cannot take the lock {self.path}: another run keeps taking it")

    def _owner(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # unreadable: half-written by a killed run

    @staticmethod
    def _alive(owner: dict, host: str) -> bool:
        if owner.get("host") != host:
            return True  # another machine's run: it cannot be checked from here
        try:
            os.kill(int(owner.get("pid", -1)), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, OverflowError):
            return True
        return True

    def __exit__(self, *exc) -> None:
        if self.held:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.held = False


def check_same_model(output_dir: Path, fingerprint: str, overwrite: bool) -> None:
    """Refuse to mix two models' masks in one folder: a re-run with another model needs
    ``overwrite``. Logs of older versions (no fingerprint) are not checked."""
    if overwrite:
        return
    log = output_dir / LOG_NAME
    if not log.exists():
        return
    others = set()
    with contextlib.suppress(OSError), open(log, encoding="utf-8") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a killed run
            if record.get("status") == "done" and record.get("model") not in (None, fingerprint):
                others.add(record["model"])
    if others:
        raise InputError(
            f"the masks in {output_dir} were made by another model ({', '.join(sorted(others))}; this one is "
            f"{fingerprint}): use --overwrite (overwrite=True) to redo them with this model, or another output folder"
        )


def remove_leftovers(output_dir: Path) -> None:
    """Delete temporary files a killed run left behind (``.<stem>.<random>.tmp.tif``, and
    the model copy of a cluster run);
    one output folder takes one run at a time."""
    for leftover in output_dir.glob(".*.tmp.tif"):
        with contextlib.suppress(OSError):  # never fatal
            leftover.unlink()
    for leftover in output_dir.glob(".napari-unet-cat-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def log_outcome(
    output_dir: Path, path: Path, status: str, why: str, seconds: float, model: str = "", notes: dict | None = None
) -> None:
    record = {"file": str(path), "status": status, "seconds": round(seconds, 3), "time": time.time()}
    if model:
        record["model"] = model
    record.update(notes or {})
    if why:
        record["error"] = why
    try:
        with open(output_dir / LOG_NAME, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError:
        pass  # the log is a convenience; the masks are the result
