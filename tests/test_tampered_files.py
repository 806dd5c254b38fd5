"""Files the knowledge base reads besides its sources: an image named to search by, and what others can plant in
the knowledge-base folder (the index cache, ``kb.json``, ``kb.sqlite``). A FIFO, a device, a symlink, a huge or
damaged file there ends in one clear line or a rebuild, never a hang, an exhausted memory or a traceback."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from kb.cli import main
from kb.errors import ImageSearchUnavailable, InvalidRequestError
from tests.test_hostile_operations import errors
from tests.test_multimodal import write_folder


@contextmanager
def bounded(seconds: int, what: str) -> Iterator[None]:
    """Fail the test, rather than hang it, when the body blocks for more than ``seconds``."""
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail(f"{what} hung"))
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_query_image_that_is_not_a_small_regular_file_is_refused_at_once(
        image_kb, kb_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_folder(tmp_path / "docs")
    kb = image_kb()
    kb.ingest(folder)
    os.mkfifo(tmp_path / "pipe.png")  # read_bytes() waited for a writer forever
    with open(tmp_path / "huge.png", "wb") as huge:  # sparse: 50 MB and a byte, over the referenced-image limit
        huge.truncate((50 << 20) + 1)
    refused = {tmp_path / "pipe.png": "not a readable regular file", Path("/dev/zero"): "not a readable regular file",
               tmp_path: "not a readable regular file", tmp_path / "huge.png": "over the 50 MB limit"}
    with bounded(60, "a search by image"):
        for path, said in refused.items():
            with pytest.raises(InvalidRequestError, match=said) as raised:
                kb.search(image=path)
            assert str(raised.value).startswith(f"{path}: cannot search by this image")
        assert kb.search(image=folder / "photo-1.png", k=1)  # a real picture still searches
        kb.close()
        monkeypatch.setenv("KB_DEVICE", "cpu")
        capsys.readouterr()
        assert main(["--kb", str(tmp_path / "kb"), "search", "--image", "/dev/zero"]) == 2
        assert errors(capsys.readouterr().err) == [
            "kb: error: /dev/zero: cannot search by this image: not a readable regular file (missing, unreadable, "
            "a folder, a FIFO or a device)"]
        # Without an image space nothing is read: the FIFO is not even opened.
        with pytest.raises(ImageSearchUnavailable, match="turned off"):
            kb_factory("off", clip_model="none").search(image=tmp_path / "pipe.png")
