"""With the real all-MiniLM-L6-v2, questions find the paragraph that answers them."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb import KnowledgeBase
from tests.conftest import minilm_path

# Paragraphs written for this test; each question is answered by exactly one of them.
PARAGRAPHS = {
    "normandy.txt": "The Duchy of Normandy was founded in 911 when the Viking leader Rollo swore fealty to King "
    "Charles III of West Francia. The Normans later conquered England in 1066.",
    "photosynthesis.txt": "Photosynthesis converts light energy into chemical energy. Plants take up carbon dioxide "
    "and water and release oxygen, storing the energy as glucose in their leaves.",
    "amazon.txt": "The Amazon is the largest tropical rainforest on Earth, covering much of Brazil and Peru. It is "
    "home to roughly ten percent of all known species.",
    "returns.txt": "Customers may return unused items within 30 days of delivery for a full refund. Used power "
    "tools can be returned within 14 days for store credit.",
    "vacation.txt": "Full-time employees receive 25 days of paid vacation per year, and up to five unused days may "
    "be carried over into the next quarter.",
    "telescope.txt": "The James Webb Space Telescope observes the universe in infrared light from an orbit around "
    "the second Lagrange point, 1.5 million kilometres from Earth.",
}
QUESTIONS = {
    "When was the duchy founded and by whom?": "normandy.txt",
    "How do plants turn sunlight into sugar?": "photosynthesis.txt",
    "Which forest has the most biodiversity?": "amazon.txt",
    "How long do I have to send back a product?": "returns.txt",
    "How much holiday do staff get?": "vacation.txt",
    "Where is the infrared space observatory located?": "telescope.txt",
}


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_questions_find_their_paragraph(tmp_path: Path, mode: str) -> None:
    for name, text in PARAGRAPHS.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    with KnowledgeBase.open(tmp_path / "kb", text_model=str(minilm_path()), device="cpu") as kb:
        kb.ingest(tmp_path)
        for question, expected in QUESTIONS.items():
            hits = kb.search(question, k=3, mode=mode)
            assert Path(hits[0].path).name == expected, (question, [Path(h.path).name for h in hits])


def test_default_model_is_the_packaged_minilm(tmp_path: Path) -> None:
    with KnowledgeBase.open(tmp_path / "kb", device="cpu") as kb:
        identity = kb.encoder.identity()
    assert identity.dimension == 384 and "MiniLM" in identity.model
