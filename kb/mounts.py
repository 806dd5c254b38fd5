"""Where a source's files live among mounted filesystems, recorded at each run, so that a share found unmounted
is told apart from its files' deletion, even when a stray file sits in its bare mount point."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, Field

from kb.containment import inside

log = logging.getLogger(__name__)


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


def is_mount_point(folder: str) -> bool:
    """Whether another filesystem is mounted at ``folder`` (where it really is)."""
    return os.path.ismount(os.path.realpath(folder))


def holding_mount(folder: str) -> str:
    """The mount point nearest above ``folder``, or ``folder`` itself when it is one."""
    folder = os.path.realpath(folder)
    while not os.path.ismount(folder):
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
    return [os.path.join(folder, relative) for relative in recorded.inside
            if not is_mount_point(os.path.join(folder, relative))]


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
