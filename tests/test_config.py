"""Settings are grouped by concern (``settings.reader.model``) while every flat name users have written keeps
working: the ``KB_*`` variables, keyword arguments, and the keys of a ``kb.json`` written before the grouping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from kb.cli import main
from kb.config import FLAT_NAMES, MACHINE_SETTINGS, ReaderSettings, Settings, field_of, load_settings, save_settings
from kb.errors import ConfigurationError

# Every flat name there was before the grouping, with a value other than its default (as an environment variable
# gives it) and where the grouped model keeps it. Written out here, not derived: it is what users rely on.
FLAT = {
    "database_url": ("sqlite:////tmp/elsewhere.sqlite", "database_url", "sqlite:////tmp/elsewhere.sqlite"),
    "device": ("cpu", "device", "cpu"),
    "model_cache": ("/tmp/exports", "model_cache", "/tmp/exports"),
    "batch_size": ("7", "batch_size", 7),
    "vector_index": ("pgvector", "index.kind", "pgvector"),
    "index_factory": ("HNSW32", "index.factory", "HNSW32"),
    "hnsw_ef_search": ("64", "index.hnsw_ef_search", 64),
    "hnsw_ef_construction": ("200", "index.hnsw_ef_construction", 200),
    "pgvector_build_memory_mb": ("2048", "index.pgvector_build_memory_mb", 2048),
    "text_model": ("my/encoder", "text_encoder.model", "my/encoder"),
    "encoder_backend": ("onnx", "text_encoder.backend", "onnx"),
    "chunk_tokens": ("120", "chunking.tokens", 120),
    "chunk_overlap": ("10", "chunking.overlap", 10),
    "keyword_tokenizer": ("simple", "keywords.tokenizer", "simple"),
    "keyword_cache_mb": ("0", "keywords.cache_mb", 0),
    "fusion": ("rrf", "fusion.method", "rrf"),
    "keyword_weight": ("0.3", "fusion.keyword_weight", 0.3),
    "keyword_weights_by_language": ('{"ja": 0.7}', "fusion.keyword_weights_by_language", {"ja": 0.7}),
    "rrf_k": ("10", "fusion.rrf_k", 10),
    "fusion_candidates": ("12", "fusion.candidates", 12),
    "fusion_true_scores": ("false", "fusion.true_scores", False),
    "cross_lingual": ("false", "cross_lingual.enabled", False),
    "cross_lingual_weight": ("0.6", "cross_lingual.weight", 0.6),
    "reranker_model": ("my/reranker", "reranker.model", "my/reranker"),
    "rerank_candidates": ("8", "reranker.candidates", 8),
    "rerank_weight": ("0.4", "reranker.weight", 0.4),
    "reranker_backend": ("openvino", "reranker.backend", "openvino"),
    "max_file_mb": ("3.5", "ingestion.max_file_mb", 3.5),
    "follow_symlinks_outside": ("true", "ingestion.follow_symlinks_outside", True),
    "file_isolation": ("false", "ingestion.file_isolation", False),
    "file_timeout": ("5", "ingestion.file_timeout", 5.0),
    "worker_memory_mb": ("512", "ingestion.worker_memory_mb", 512),
    "max_document_chars": ("1000", "ingestion.max_document_chars", 1000),
    "max_pages": ("3", "ingestion.max_pages", 3),
    "max_html_mb": ("1.5", "ingestion.max_html_mb", 1.5),
    "max_image_pixels": ("1000000", "ingestion.max_image_pixels", 1_000_000),
    "min_image_side": ("8", "ingestion.min_image_side", 8),
    "max_removed_share": ("0.25", "ingestion.max_removed_share", 0.25),
    "clip_model": ("none", "clip.model", "none"),
    "clip_pretrained": ("/tmp/clip.pt", "clip.pretrained", "/tmp/clip.pt"),
    "clip_backend": ("onnx", "clip.backend", "onnx"),
    "ocr": ("off", "ocr.mode", "off"),
    "ocr_embedded_images": ("true", "ocr.embedded_images", True),
    "ocr_file_seconds": ("90", "ocr.file_seconds", 90.0),
    "reader_model": ("my/reader", "reader.model", "my/reader"),
    "reader_models_by_language": ('{"zh": "my/zh-reader"}', "reader.models_by_language", {"zh": "my/zh-reader"}),
    "reader_max_passages": ("3", "reader.max_passages", 3),
    "reader_max_windows": ("5", "reader.max_windows", 5),
    "reader_max_seq_length": ("512", "reader.max_seq_length", 512),
    "reader_stride": ("64", "reader.stride", 64),
    "reader_max_answer_tokens": ("12", "reader.max_answer_tokens", 12),
    "reader_batch_size": ("4", "reader.batch_size", 4),
    "reader_no_answer_threshold": ("0.2", "reader.no_answer_threshold", 0.2),
    "reader_precision": ("bfloat16", "reader.precision", "bfloat16"),
    "reader_int8_float_layers": ('["qa_outputs"]', "reader.int8_float_layers", ["qa_outputs"]),
    "reader_backend": ("onnx", "reader.backend", "onnx"),
    "reader_quantize": ("true", "reader.precision", "int8"),  # the older spelling of reader_precision=int8
}

# A kb.json as the code before the grouping wrote it (flat keys; machine settings left out).
OLD_KB_JSON = {
    "chunk_overlap": 32, "chunk_tokens": 120, "clip_backend": "torch", "clip_model": "ViT-B-32",
    "clip_pretrained": "laion2b_s34b_b79k", "cross_lingual": False, "cross_lingual_weight": 0.8, "database_url": None,
    "encoder_backend": "torch", "follow_symlinks_outside": False, "fusion": "rrf", "fusion_candidates": 50,
    "fusion_true_scores": True, "hnsw_ef_search": 100, "index_factory": "Flat", "keyword_tokenizer": "simple",
    "keyword_weight": 0.5, "keyword_weights_by_language": {"zh": 0.8}, "max_document_chars": 10000000,
    "max_file_mb": 100.0, "max_html_mb": 5.0, "max_image_pixels": 64000000, "max_pages": 2000,
    "max_removed_share": 0.5, "min_image_side": 32, "ocr": "off", "ocr_embedded_images": False,
    "reader_max_answer_tokens": 30, "reader_max_passages": 10, "reader_max_seq_length": 384, "reader_max_windows": 40,
    "reader_model": "my/reader", "reader_models_by_language": {}, "reader_no_answer_threshold": None,
    "reader_stride": 128, "rerank_candidates": 20, "rerank_weight": 0.1, "reranker_model": None, "rrf_k": 60,
    "text_model": "sentence-transformers/all-MiniLM-L6-v2", "vector_index": "faiss",
}


@pytest.fixture(autouse=True)
def _no_kb_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sets the variables it is about, and only those."""
    for name in FLAT_NAMES:
        monkeypatch.delenv(f"KB_{name.upper()}", raising=False)


def _at(settings: Settings, attribute: str) -> object:
    value: object = settings
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def test_every_flat_name_there_was_is_still_a_setting() -> None:
    assert set(FLAT_NAMES) == set(FLAT)
    assert set(MACHINE_SETTINGS) <= set(FLAT_NAMES)


@pytest.mark.parametrize("name", sorted(FLAT))
def test_a_flat_environment_variable_sets_its_grouped_setting(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text, attribute, expected = FLAT[name]
    assert field_of(name).get_default(call_default_factory=True) != expected
    monkeypatch.setenv(f"KB_{name.upper()}", text)
    assert _at(Settings(), attribute) == expected


@pytest.mark.parametrize("name", sorted(FLAT))
def test_a_flat_keyword_argument_sets_its_grouped_setting(name: str) -> None:
    text, attribute, expected = FLAT[name]
    value = json.loads(text) if text.startswith(("{", "[")) else text  # as a caller writes it: "7" converts too
    assert _at(Settings(**{name: value}), attribute) == expected


def test_a_flat_name_read_as_an_attribute_says_where_the_setting_is_now() -> None:
    settings = Settings()
    with pytest.raises(AttributeError, match=r"settings\.reader_model is settings\.reader\.model now"):
        settings.reader_model  # noqa: B018
    with pytest.raises(AttributeError, match="no_such_setting"):
        settings.no_such_setting  # noqa: B018
    assert settings.fusion.method == "calibrated" and settings.device is None  # a group and a global setting


def test_a_group_may_be_given_whole_beside_flat_names_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(reader={"model": "my/reader", "stride": 96}, reader_max_seq_length=256)
    assert (settings.reader.model, settings.reader.stride, settings.reader.max_seq_length) == ("my/reader", 96, 256)
    assert settings.reader.max_windows == ReaderSettings().max_windows  # what the group was not given: its default
    assert Settings(fusion=settings.fusion.model_copy(update={"method": "relative"})).fusion.method == "relative"
    monkeypatch.setenv("KB_READER_MODEL", "env/reader")
    monkeypatch.setenv("KB_FUSION", "rrf")
    from_env = Settings(reader={"stride": 96})  # a group given in part keeps the environment's other settings
    assert (from_env.reader.model, from_env.reader.stride, from_env.fusion.method) == ("env/reader", 96, "rrf")
    assert Settings(reader={"model": "given/reader"}).reader.model == "given/reader"  # arguments over environment
    assert Settings(fusion="relative").fusion.method == "relative"  # a flat name that is also a group's name


def test_a_copy_takes_flat_names_is_validated_and_has_its_own_groups() -> None:
    settings = Settings(reader_model="my/reader")
    copy = settings.model_copy(update={"reader_backend": "torch", "reader_precision": "int8"})
    assert (copy.reader.model, copy.reader.backend, copy.reader.precision) == ("my/reader", "torch", "int8")
    copy.reader.stride = 32
    assert settings.reader.stride == 128 and settings.reader.precision == "float32"
    with pytest.raises(ValidationError, match="reader_precision=int8 applies to reader_backend=torch only"):
        copy.model_copy(update={"reader_backend": "onnx"})


def test_a_kb_json_written_before_the_grouping_opens_and_is_rewritten_the_same(tmp_path: Path) -> None:
    (tmp_path / "kb.json").write_text(json.dumps(OLD_KB_JSON, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    settings = load_settings(tmp_path, {})
    assert (settings.reader.model, settings.chunking.tokens, settings.fusion.method, settings.ocr.mode) == \
        ("my/reader", 120, "rrf", "off")
    assert settings.cross_lingual.enabled is False and settings.fusion.keyword_weights_by_language == {"zh": 0.8}
    before = (tmp_path / "kb.json").read_text(encoding="utf-8")
    save_settings(tmp_path, settings)
    assert (tmp_path / "kb.json").read_text(encoding="utf-8") == before


def test_recorded_settings_rank_below_the_environment_and_the_caller(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kb.json").write_text(json.dumps(OLD_KB_JSON), encoding="utf-8")
    monkeypatch.setenv("KB_CHUNK_TOKENS", "64")
    settings = load_settings(tmp_path, {"fusion": "relative", "reader": {"stride": 96}})
    assert (settings.chunking.tokens, settings.fusion.method) == (64, "relative")
    assert (settings.reader.model, settings.reader.stride) == ("my/reader", 96)  # the recorded model is kept


def test_a_kb_json_from_before_backends_keeps_torch_and_an_unknown_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "kb.json").write_text(json.dumps({"chunk_tokens": 120}), encoding="utf-8")
    settings = load_settings(tmp_path, {})
    assert (settings.text_encoder.backend, settings.clip.backend) == ("torch", "torch")
    (tmp_path / "kb.json").write_text(json.dumps({"reader": {"model": "x"}}), encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"unknown settings \['reader'\]"):
        load_settings(tmp_path, {})


def test_errors_name_the_flat_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KB_READER_STRIDE", "many")
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert [issue["loc"] for issue in raised.value.errors()] == [("reader_stride",)]
    monkeypatch.delenv("KB_READER_STRIDE")
    assert [issue["loc"] for issue in _errors(keyword_weights_by_language={"zh": "high"})] == \
        [("keyword_weights_by_language", "zh")]
    for weight in (float("nan"), float("inf"), -5, 3.0):  # a share, as keyword_weight is (NaN scored every hit NaN)
        assert [issue["loc"] for issue in _errors(keyword_weights_by_language={"zh": weight})] == \
            [("keyword_weights_by_language", "zh")]
    assert [issue["loc"] for issue in _errors(reader_modle="x")] == [("reader_modle",)]
    between = _errors(chunk_tokens=32, chunk_overlap=40)  # a check between two settings names both, no group
    assert [issue["loc"] for issue in between] == [()] and "chunk_overlap (40) must be below chunk_tokens (32)" in \
        between[0]["msg"]


def _errors(**values: object) -> list:
    with pytest.raises(ValidationError) as raised:
        Settings(**values)
    return raised.value.errors()


def test_the_cli_says_which_setting_is_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "docs").mkdir()
    monkeypatch.setenv("KB_READER_STRIDE", "-1")
    assert main(["--kb", str(tmp_path / "kb"), "ingest", str(tmp_path / "docs")]) == 2
    assert capsys.readouterr().err.strip() == "kb: error: reader_stride: Input should be greater than or equal to 0"
    monkeypatch.setenv("KB_READER_STRIDE", "300")
    assert main(["--kb", str(tmp_path / "kb"), "ingest", str(tmp_path / "docs")]) == 2
    assert capsys.readouterr().err.strip() == \
        "kb: error: reader_stride (300) must be below half of reader_max_seq_length (384)"


def test_the_environment_is_read_alike_for_a_new_and_a_recorded_knowledge_base(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A lower-case name sets its setting over kb.json as it does over the defaults; an empty one is unset."""
    (tmp_path / "kb.json").write_text(json.dumps(OLD_KB_JSON), encoding="utf-8")
    monkeypatch.setenv("kb_chunk_tokens", "50")
    monkeypatch.setenv("KB_READER_MODEL", "")
    assert Settings().chunking.tokens == 50
    settings = load_settings(tmp_path, {})
    assert settings.chunking.tokens == 50 and settings.reader.model == "my/reader"


def test_a_malformed_json_variable_or_kb_json_is_a_configuration_error_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KB_READER_MODELS_BY_LANGUAGE", "{zh")
    with pytest.raises(ConfigurationError, match="KB_READER_MODELS_BY_LANGUAGE is not valid JSON"):
        Settings()
    monkeypatch.delenv("KB_READER_MODELS_BY_LANGUAGE")
    for written in ("{not json", "[1, 2]"):
        (tmp_path / "kb.json").write_text(written, encoding="utf-8")
        with pytest.raises(ConfigurationError, match="kb.json"):
            load_settings(tmp_path, {})


def test_local_model_paths_are_recorded_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model named by a path relative to the current directory opens from any other (cron, the scheduler); hub
    names and tags stay as given."""
    for folder in ("models/st", "models/reader", "models/zh-reader"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "models" / "clip.pt").write_bytes(b"weights")
    monkeypatch.chdir(tmp_path)
    settings = Settings(text_model="models/st", reader_model="./models/reader", clip_pretrained="models/clip.pt",
                        reader_models_by_language={"zh": "models/zh-reader", "ja": "org/ja-reader"},
                        reranker_model="cross-encoder/ms-marco-MiniLM-L6-v2")
    (tmp_path / "kb").mkdir()
    save_settings(tmp_path / "kb", settings)
    monkeypatch.chdir("/")
    reopened = load_settings(tmp_path / "kb", {})
    assert reopened.text_encoder.model == str(tmp_path / "models" / "st")
    assert Path(reopened.reader.model) == tmp_path / "models" / "reader"
    assert reopened.clip.pretrained == str(tmp_path / "models" / "clip.pt")
    assert reopened.reader.models_by_language == {"zh": str(tmp_path / "models" / "zh-reader"), "ja": "org/ja-reader"}
    assert reopened.reranker.model == "cross-encoder/ms-marco-MiniLM-L6-v2"


def test_names_without_a_path_separator_stay_names_whatever_folders_the_directory_holds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A documents folder holding ``openai/`` or ``usem3/`` must not turn the CLIP tag or the text model's special
    name into a path that no loader reads as a tag."""
    for folder in ("openai", "usem3", "ViT-B-32"):
        (tmp_path / folder).mkdir()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kb").mkdir()
    save_settings(tmp_path / "kb", Settings(text_model="usem3", clip_model="ViT-B-32", clip_pretrained="openai"))
    reopened = load_settings(tmp_path / "kb", {})
    assert (reopened.text_encoder.model, reopened.clip.model, reopened.clip.pretrained) == ("usem3", "ViT-B-32",
                                                                                           "openai")


def test_an_empty_reranker_variable_still_turns_a_recorded_reranker_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from retrieval.rerank import reranker_enabled

    save_settings(tmp_path, Settings(reranker_model="cross-encoder/ms-marco-MiniLM-L6-v2"))
    monkeypatch.setenv("KB_RERANKER_MODEL", "")
    assert not reranker_enabled(load_settings(tmp_path, {}).reranker.model)
    monkeypatch.delenv("KB_RERANKER_MODEL")
    assert reranker_enabled(load_settings(tmp_path, {}).reranker.model)


@pytest.mark.parametrize(("factory", "refused"), [
    ("IVF99999999,Flat", "IVF99999999 asks for 99999999 inverted lists, more than the 1,048,576"),
    ("IVF4096_HNSW100000,Flat", "HNSW100000 asks for 100000 neighbours per node"),
    ("IMI2x16,Flat", "IMI2x16 asks for 2^32 inverted lists"),
    ("IVF256,PQ64x24", "x24 asks for 24 bits per code"),
    ("PCA99999999,Flat", "PCA99999999 asks for 99999999 as a dimension or count"),
    ("IVF" + "9" * 5000, "IVF999999999999... asks for"),
])
def test_an_index_factory_asking_for_absurd_sizes_is_refused_before_faiss_allocates_them(
        factory: str, refused: str) -> None:
    """FAISS allocates an IVF index's lists as it reads the string (IVF99999999 took 18 GB), so the setting is
    refused where it is validated, never handed to FAISS; real strings pass."""
    assert Settings(index_factory="OPQ16_64,IVF262144_HNSW32,PQ16x8").index.factory.startswith("OPQ16")
    [issue] = _errors(index_factory=factory)
    assert issue["loc"] == ("index_factory",) and refused in issue["msg"]


def test_the_cli_refuses_an_absurd_index_factory_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "docs").mkdir()
    monkeypatch.setenv("KB_INDEX_FACTORY", "HNSW100000")  # costs nothing to build, gigabytes per vector added
    assert main(["--kb", str(tmp_path / "kb"), "ingest", str(tmp_path / "docs")]) == 2
    assert capsys.readouterr().err == ("kb: error: index_factory: HNSW100000 asks for 100000 neighbours per node, "
                                       "more than the 256 any real index needs\n")


def test_a_device_is_refused_by_its_form_in_the_settings_and_by_its_absence_where_it_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """KB_DEVICE=nonsense or cuda:99 let search run (on ONNX Runtime) and ask die with torch's RuntimeError."""
    from kb.inference.backends import checked_device, torch_device

    (tmp_path / "docs").mkdir()
    monkeypatch.setenv("KB_DEVICE", "nonsense")
    assert main(["--kb", str(tmp_path / "kb"), "ingest", str(tmp_path / "docs")]) == 2
    assert capsys.readouterr().err == ("kb: error: device: 'nonsense' is not a torch device such as cpu, cuda, cuda:1 "
                                       "or mps\n")
    assert Settings(device="cuda:99").device == "cuda:99" and torch_device("cpu") == "cpu"
    for missing in ("cuda:99", "hpu"):  # hpu: torch built without it fails to import its module, not a RuntimeError
        with pytest.raises(ConfigurationError, match=rf"device '{missing}' \(KB_DEVICE\) is not on this machine: "):
            torch_device(missing)
    with pytest.raises(ValidationError):  # a model put on meta has no weights
        Settings(device="meta")
    assert checked_device(None) is None  # unset: sentence-transformers chooses among cuda, mps, xpu... as before
