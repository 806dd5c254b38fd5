"""Where a source's files live among mounted filesystems, recorded at each run, so that a share found unmounted
is told apart from its files' deletion, even when a stray file sits in its bare mount point."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from pydantic import BaseModel, Field, ValidationError

log = logging.getLogger(__name__)


class SourceMounts(BaseModel):
    """A source folder's mounts as one run found them: ``root``, the mount point holding the folder (the folder
    itself or one above it, ``/`` at the least), and ``inside``, the folders below it (relative paths) where
    another filesystem was mounted."""

    root: str
    inside: list[str] = Field(default_factory=list)


def recorded_mounts(stored: object) -> SourceMounts | None:
    """The mounts a run recorded (``sources.mounts``), or None where none was, or what is there is not a record
    (written by hand): then nothing is compared, and the next run records them afresh."""
    if stored is None:
        return None
    try:
        return SourceMounts.model_validate(stored)
    except ValidationError:
        log.warning("the recorded mounts of a source are not readable (%.200r); recording them afresh", stored)
        return None


def is_mount_point(folder: str) -> bool:
    """Whether another filesystem is mounted at ``folder`` (where it really is: a symlink is not one)."""
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


def away(recorded: SourceMounts | None, root: str, mounted_now: Iterable[str]) -> list[str]:
    """The folders below ``root`` (absolute) where a filesystem was mounted when last recorded and is not now."""
    if recorded is None:
        return []
    now = set(mounted_now)
    return [os.path.join(root, relative) for relative in recorded.inside if relative not in now]


def unmounted_inside(recorded: SourceMounts | None, root: str) -> list[str]:
    """``away``, looked up now rather than from a scan: the recorded folders below ``root`` not mounted now."""
    if recorded is None:
        return []
    return [os.path.join(root, relative) for relative in recorded.inside
            if not is_mount_point(os.path.join(root, relative))]


def to_record(root_mount: str, mounted_now: Iterable[str], away_and_kept: Iterable[str], root: str) -> SourceMounts:
    """What to record after a run: the mounts found now, and those away whose documents are still kept (so that
    the next run keeps them too, until the share is back or their removal is allowed)."""
    inside = set(mounted_now) | {os.path.relpath(folder, root) for folder in away_and_kept}
    return SourceMounts(root=root_mount, inside=sorted(inside))
