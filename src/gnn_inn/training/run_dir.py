"""The run folder (``gnn-inn train --out DIR``): refuse to overwrite, lock for the run's life.

* A folder that already holds files is refused unless the run resumes it (``--resume``) or
  replaces it (``--overwrite``, which deletes the run files listed in :data:`RUN_FILES`);
  ``--resume`` into a folder that holds run files but no ``last.pt`` is refused too.
* ``DIR/.lock`` is held for the life of the run: an exclusive ``fcntl.flock`` (released by the
  kernel when the process dies, so a killed run leaves no stale lock); where ``fcntl`` is
  missing, the lock file is created with ``O_EXCL`` and removed at the end. A second writer
  gets :class:`RunDirError` naming the folder and the holder's pid.
* :func:`trim_metrics` drops ``metrics.jsonl`` lines of epochs after the checkpoint a run
  resumes from (written after the last save by a run that was then killed).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

LOCK_NAME = ".lock"
#: the files a run writes into its folder (removed by ``--overwrite``)
RUN_FILES = ("best.pt", "last.pt", "results.json", "config.yaml", "metrics.jsonl")


class RunDirError(ValueError):
    """The run folder cannot be used; the message names it and says what to do."""


def check_run_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse ``out`` when it is a file, or holds files and neither flag is given."""
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other: continue the run in "
                          f"{out} or replace it, not both")
    if out.exists() and not out.is_dir():
        raise RunDirError(f"--out {out}: is a file, not a folder; name a folder for the run")
    if not out.is_dir():
        return
    held = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME)
    if resume:
        run_files = [n for n in held if n in RUN_FILES]
        if run_files and "last.pt" not in run_files:
            raise RunDirError(
                f"--resume: {out} holds {', '.join(run_files)} but no last.pt to continue from; "
                "a new run would replace them: pass --overwrite, or choose another --out")
        return
    if held and not overwrite:
        shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
        raise RunDirError(
            f"--out {out}: folder is not empty ({shown}); pass --resume to continue that run, "
            "--overwrite to replace it, or choose another --out")


def clear_run_files(out: Path) -> list[str]:
    """Delete the run files of :data:`RUN_FILES` in ``out``; return the names deleted."""
    gone = []
    for name in RUN_FILES:
        p = out / name
        if p.is_file():
            p.unlink()
            gone.append(name)
    return gone


@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[Path]:
    """Hold ``out/.lock`` exclusively for the block (see the module docstring)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunDirError(f"--out {out}: is a file, not a folder") from None
    path = out / LOCK_NAME
    if fcntl is not None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunDirError(
                f"--out {out}: another run is writing into this folder (it holds {path}, pid "
                f"{holder}); wait for it to finish or choose another --out") from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield path
        finally:
            os.close(fd)  # releases the lock; the file stays (removing it would race)
        return
    try:  # pragma: no cover - exercised only where fcntl is missing
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:  # pragma: no cover
        raise RunDirError(
            f"--out {out}: {path} exists: another run is writing into this folder (or one "
            "was killed: delete the file if no run is active)") from None
    try:  # pragma: no cover
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        yield path
    finally:  # pragma: no cover
        path.unlink(missing_ok=True)


def trim_metrics(out: Path, epoch: int) -> int:
    """Drop ``out/metrics.jsonl`` lines of epochs after ``epoch``; return how many."""
    path = out / "metrics.jsonl"
    if not path.is_file():
        return 0
    keep, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            later = json.loads(line).get("epoch", 0) > epoch
        except (ValueError, AttributeError):
            later = True  # a torn last line
        if later:
            dropped += 1
        else:
            keep.append(line)
    if dropped:
        path.write_text("".join(f"{ln}\n" for ln in keep), encoding="utf-8")
    return dropped
