"""The configuration reference in docs/configuration.md, generated from the settings model: ``python -m kb.docs``
rewrites it, ``python -m kb.docs --check`` fails when it is not current (a test runs the check). For a checkout of
the project: the docs are not part of an installed package."""

from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from kb.config import MACHINE_SETTINGS, Settings

CONFIGURATION = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
BEGIN = "<!-- settings table: generated from kb/config.py by `python -m kb.docs`; edit the model, not this table -->"
END = "<!-- end of the generated settings table -->"


# The settings by concern, in the order the reference shows them (the model itself is flat: KB_* names and
# keyword arguments stay as they are). A setting missing here is listed under "Other" until it is given a place.
CONCERNS: dict[str, tuple[str, ...]] = {
    "Storage and indexes": ("database_url", "index_factory", "hnsw_ef_search", "vector_index"),
    "Text encoder": ("text_model", "device", "encoder_backend", "model_cache", "batch_size"),
    "Chunking": ("chunk_tokens", "chunk_overlap"),
    "Keyword search and fusion": ("keyword_tokenizer", "fusion", "keyword_weight", "keyword_weights_by_language",
                                  "rrf_k", "fusion_candidates", "fusion_true_scores", "cross_lingual",
                                  "cross_lingual_weight"),
    "Reranker": ("reranker_model", "rerank_candidates"),
    "Files: limits and isolation": ("max_file_mb", "follow_symlinks_outside", "file_isolation", "file_timeout",
                                    "worker_memory_mb", "max_document_chars", "max_pages", "max_html_mb",
                                    "max_removed_share"),
    "Images, CLIP and OCR": ("clip_model", "clip_pretrained", "clip_backend", "max_image_pixels", "min_image_side",
                             "ocr", "ocr_embedded_images"),
    "Reader": ("reader_model", "reader_models_by_language", "reader_max_passages", "reader_max_windows",
               "reader_max_seq_length", "reader_stride", "reader_max_answer_tokens", "reader_batch_size",
               "reader_no_answer_threshold", "reader_backend", "reader_precision", "reader_int8_float_layers",
               "reader_quantize"),
}


def _default(field: FieldInfo) -> str:
    """The default as the reference shows it: ``none``, ``true``, ``2,048``, or the value in backticks."""
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    if value is None or value is PydanticUndefined:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return f"{value:,}" if isinstance(value, int) else f"{value:g}"
    if isinstance(value, dict | list):
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    return f"`{value}`"


def _takes_json(field: FieldInfo) -> bool:
    """Whether the environment variable holds JSON (lists and mappings, as pydantic-settings reads them)."""
    annotation = field.annotation
    return typing.get_origin(annotation) in (dict, list) or annotation in (dict, list)


def _row(name: str, field: FieldInfo) -> str:
    env = f"`KB_{name.upper()}`" + (" (JSON)" if _takes_json(field) else "")
    meaning = (field.description or "").replace("|", "\\|")
    if name in MACHINE_SETTINGS:
        meaning += " (this machine's: not recorded in `kb.json`)"
    return f"| `{name}` | {env} | {_default(field)} | {meaning} |"


def settings_table() -> str:
    """One table per concern, one row per setting: name, environment variable, default, and its description."""
    fields = Settings.model_fields
    placed = {name for names in CONCERNS.values() for name in names}
    concerns = {**CONCERNS, "Other": tuple(name for name in fields if name not in placed)}
    parts = []
    for concern, names in concerns.items():
        if names:
            rows = [_row(name, fields[name]) for name in names if name in fields]
            parts.append("\n".join([f"## {concern}", "", "| setting | env | default | meaning |",
                                    "| --- | --- | --- | --- |", *rows]))
    return "\n\n".join(parts)


def render(document: str) -> str:
    """``document`` with the text between its markers replaced by the current settings table."""
    start, end = document.find(BEGIN), document.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{CONFIGURATION} lacks the markers of the generated table")
    return document[: start + len(BEGIN)] + "\n\n" + settings_table() + "\n\n" + document[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kb.docs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/configuration.md is not current")
    args = parser.parse_args(argv)
    current = CONFIGURATION.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            print(f"{CONFIGURATION} is not current: run python -m kb.docs", file=sys.stderr)
            return 1
        return 0
    CONFIGURATION.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
