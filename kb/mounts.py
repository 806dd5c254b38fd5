"""Where a source's files live among mounted filesystems, recorded at each run, so that a share found unmounted
is told apart from its files' deletion, even when a stray file sits in its bare mount point."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, Field

from kb.containment import inside

log = logging.getLogger(__name__)

MOUNT_TABLE = "/proc/self/mountinfo"  # Linux: every mount this process sees, one line each
_ESCAPED = re.compile(rb"\\([0-7]{3})")  # the table writes a space, tab, newline or backslash in a path as \ooo


class SourceMounts(BaseModel):
    """A source folder's mounts as one run found them: ``root``, the mount point holding the folder (the folder
    itself or one above it, ``/`` at the least), and ``inside``, the folders below it (relative paths, reached
    without a symlink at their last step) where another filesystem was mounted."""

    root: str
    inside: list[str] = Field(default_factory=list)


def recorded_mounts(stored: str | None) -> SourceMounts | None:
    """The mounts a run recorded (``sources.mounts``, as JSON text), or None where none was, or what is there is
    not a record (written by hand): then nothing is compared, and the next run records them afresh."""
    if stored is None or stored == "null":
        return None
    try:
        return SourceMounts.model_validate_json(stored)
    except ValueError:
        log.warning("the recorded mounts of a source are not readable (%.200r); recording them afresh", stored)
        return None


def listed_mount_points(table: str = MOUNT_TABLE) -> frozenset[str]:
    """Every mount point the kernel lists for this process, bind mounts included: a folder of one filesystem bound
    onto another folder of it has its parent's device number, so only this list tells that it is mounted. Empty
    where there is no such list (not Linux): then device numbers alone decide."""
    try:
        with open(table, "rb") as listing:
            lines = listing.read().splitlines()
    except OSError:
        return frozenset()
    fields = (line.split(b" ") for line in lines)
    return frozenset(os.fsdecode(_ESCAPED.sub(lambda code: bytes([int(code[1], 8)]), mount[4]))
                     for mount in fields if len(mount) > 4)


def is_mount_point(folder: str, listed: frozenset[str] | None = None) -> bool:
    """Whether a filesystem, or a folder bound there, is mounted at ``folder`` (where it really is); ``listed``:
    the mount points already read, when a caller asks about many folders."""
    real = os.path.realpath(folder)
    return os.path.ismount(real) or real in (listed_mount_points() if listed is None else listed)


def holding_mount(folder: str) -> str:
    """The mount point nearest above ``folder``, or ``folder`` itself when it is one."""
    folder, listed = os.path.realpath(folder), listed_mount_points()
    while not is_mount_point(folder, listed):
        folder = os.path.dirname(folder)
    return folder


def root_unmounted(recorded: SourceMounts | None) -> str | None:
    """The recorded mount point that held the source folder and is no longer one (the share went away, and the
    folder seen now is the bare mount point's, or a folder below it), or None."""
    if recorded is None or is_mount_point(recorded.root):
        return None
    return recorded.root


def unmounted_inside(recorded: SourceMounts | None, folder: str) -> list[str]:
    """The folders below a source ``folder`` (absolute) where its last run found a share mounted, and none is now."""
    if recorded is None:
        return []
    listed = listed_mount_points()
    return [os.path.join(folder, relative) for relative in recorded.inside
            if not is_mount_point(os.path.join(folder, relative), listed)]


def unmounted_below(records: Mapping[str, SourceMounts | None], root: str) -> list[str]:
    """Where, at or below ``root``, a share was mounted when a source's run recorded it and none is now: by the
    records of ``root`` and of every source nested in it (whose documents ``root``'s runs see too), each source's
    own share and the shares below it."""
    away: list[str] = []
    for folder, recorded in records.items():
        if inside(folder, root):
            share = root_unmounted(recorded)
            away += ([share] if share is not None else []) + unmounted_inside(recorded, folder)
    return away


def to_record(root: str, root_mount: str, mounted_now: Iterable[str], still_holding: Iterable[str]) -> SourceMounts:
    """What to record after a run of ``root``: its holding mount, the folders found mounted below it now, and those
    recorded before and not mounted now whose documents are still kept (so that the next run keeps them too, until
    the share is back or their removal is allowed)."""
    inside_now = {os.path.relpath(folder, root) for folder in (*mounted_now, *still_holding)}
    return SourceMounts(root=root_mount, inside=sorted(inside_now))
