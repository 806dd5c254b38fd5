"""Searching a knowledge base while another process writes to it."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable

from kb import KnowledgeBase

MODES = ("dense", "keyword", "hybrid")


def search_while_running(writer: subprocess.Popen[str], kb: KnowledgeBase,
                         next_query: Callable[[], str]) -> tuple[int, list[BaseException]]:
    """Search in every mode, in a thread, until ``writer`` ends; returns the searches made and every failure."""
    errors: list[BaseException] = []
    searches = 0

    def search_until_done() -> None:
        nonlocal searches
        while writer.poll() is None:
            query = next_query()
            for mode in MODES:
                try:
                    for hit in kb.search(query, k=5, mode=mode):
                        assert hit.text and hit.end > hit.start
                    searches += 1
                except BaseException as error:  # noqa: BLE001 - every failure counts
                    errors.append(error)

    thread = threading.Thread(target=search_until_done)
    thread.start()
    writer.wait(timeout=300)
    thread.join(timeout=60)
    return searches, errors
