"""Writing outputs so that a full disk loses nothing finished and leaves nothing half-written.

Two kinds of output, one rule each:

* **Self-healing** JSONL (``manifest.ResumableJsonl``): one whole line per record; a write cut short is
  taken back and a partial last line left by a kill is cut off on the next open, so a rerun skips what
  is there and writes the rest.
* **Atomic** files (:class:`Staged`): written under a temporary name beside the target and renamed over
  it only when every file of the step is complete (a rename needs no space), so the target holds either
  the previous content or the new one, never a part.

Either way a failed write becomes :class:`OutputError`, whose message names the file, says whether the
disk is full (``ENOSPC``, ``EFBIG`` from a file-size limit, ``EDQUOT``), what was kept and the fix.
"""
from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

from ..errors import RationalRewardsError

DISK_FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
RERUN = "run the same command again"


class OutputError(RationalRewardsError, OSError):
    """An output file could not be written (no space, no permission); what was written before is intact."""


def is_disk_full(error: BaseException) -> bool:
    """True for the errors a full disk, a quota or a file-size limit raise."""
    return isinstance(error, OSError) and error.errno in DISK_FULL


def output_error(path: str | Path, error: OSError, kept: str, rerun: str = RERUN) -> OutputError:
    """The error for a write to ``path`` that failed with ``error``: the file, the cause, ``kept`` (what
    is intact) and the fix, ending with ``rerun`` (what to do once the cause is gone)."""
    folder = Path(path).parent
    if is_disk_full(error):
        cause = f"the disk is full: {error.strerror or error}"
        fix = f"free space on the disk that holds {folder}, then {rerun}"
    else:
        cause = error.strerror or str(error)
        fix = f"make sure {folder} is writable and has space, then {rerun}"
    return OutputError(f"could not write to {path} ({cause}); {kept}: {fix}")


class Staged:
    """Files written under temporary names beside their targets and renamed into place together when the
    ``with`` block ends without an error; on any error the temporaries are removed, the targets are as
    they were, and an ``OSError`` is raised as :class:`OutputError` naming the target being written.

        with Staged(kept="the earlier results are unchanged") as stage:
            stage.write_text(out / "a.json", text)
            with open(stage.path(out / "b.bin"), "wb") as f: ...
    """

    def __init__(self, kept: str = "the file is as it was before", rerun: str = RERUN):
        self.kept, self.rerun = kept, rerun
        self._files: list[tuple[Path, Path]] = []      # (temporary, target)

    def path(self, target: str | Path, temporary: str | Path | None = None) -> Path:
        """Where to write ``target`` now (a new name in its folder, or ``temporary`` if the writer picks it)."""
        target = Path(os.path.realpath(target))       # a link is written through, not replaced
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(temporary) if temporary is not None else target.with_name(
            f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        self._files.append((tmp, target))
        return tmp

    def write_bytes(self, target: str | Path, data: bytes) -> None:
        self.path(target).write_bytes(data)

    def write_text(self, target: str | Path, text: str) -> None:
        self.write_bytes(target, text.encode("utf-8"))

    def copy(self, source: str | Path, target: str | Path) -> None:
        shutil.copyfile(source, self.path(target))

    def __enter__(self) -> "Staged":
        return self

    def __exit__(self, kind, error, tb) -> None:
        if error is None:
            for tmp, target in self._files:
                os.replace(tmp, target)
            return
        for tmp, _ in self._files:
            tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, OutputError) and self._files:
            raise output_error(self._files[-1][1], error, self.kept, self.rerun) from None


def write_atomic(target: str | Path, data: str | bytes, kept: str = "the file is as it was before",
                 rerun: str = RERUN) -> None:
    """Replace ``target`` with ``data`` (text is UTF-8) in one step: the old content or the new, never a part."""
    with Staged(kept, rerun) as stage:
        stage.write_bytes(target, data.encode("utf-8") if isinstance(data, str) else data)


def append_atomic(target: str | Path, text: str, lost: str, rerun: str = RERUN) -> None:
    """Add ``text`` to the end of ``target`` all at once: the old content and the new go to a new file that
    replaces ``target``, so a full disk or a kill leaves it as it was and a rerun adds the text once. ``lost``
    says what the failed step did not add. (A pipe or device is appended to directly.)"""
    target = Path(target)
    if target.exists() and not target.is_file():
        with open(target, "a", encoding="utf-8") as f:
            f.write(text)
        return
    before = target.read_bytes() if target.exists() else b""
    lines = before.count(b"\n")
    with Staged(f"{lost} and the {lines} line(s) already there are unchanged", rerun) as stage:
        with open(stage.path(target), "wb") as f:
            f.write(before)
            f.write(text.encode("utf-8"))


__all__ = ["append_atomic", "DISK_FULL", "OutputError", "Staged", "is_disk_full", "output_error", "write_atomic"]
