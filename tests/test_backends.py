"""Encoder backends: the text encoder and the CLIP towers exported once to ONNX and run on ONNX Runtime or OpenVINO,
in float32 (torch's vectors) or int8 (other vectors, a space identity of their own)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from kb.config import Settings
from kb.encoders.clip import ClipEncoder
from kb.encoders.sentence_transformer import SentenceTransformerEncoder
from kb.errors import BackendUnavailableError, EncoderMismatchError
from kb.inference import ExportCache, backends
from kb.inference.graph import padded_tokens
from kb.storage.models import Space
from kb.types import TEXT_SPACE

pytest.importorskip("onnxruntime", reason="the onnx backends need onnxruntime (the onnx extra)")
pytest.importorskip("onnx", reason="exporting needs onnx (the onnx extra)")
TEXTS = ["The loading dock accepts deliveries from 6 am.", "Record zq094x.", "退货政策：三十天内", "word " * 400]
FLOAT32 = ["onnx", "openvino"]
INT8 = ["onnx-int8", "openvino-int8"]


def available(backend: str) -> None:
    if backend.startswith("openvino"):
        pytest.importorskip("openvino", reason="the openvino backends need openvino (the openvino extra)")
        if backend.endswith("int8"):
            pytest.importorskip("nncf", reason="openvino-int8 needs nncf (the openvino extra)")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> ExportCache:
    """One export cache for the module: each model and backend is exported once, as in real use."""
    return ExportCache(tmp_path_factory.mktemp("model-cache"))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


def test_openvino_reads_token_batches_at_few_lengths() -> None:
    """A tokenised batch grows to the next multiple (masked zeros, so the graph's answers are unchanged, as the
    backend tests above check); an image batch, and a batch already at a multiple, pass as they are."""
    ids = np.arange(1, 81, dtype=np.int64).reshape(2, 40)
    batch = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    padded = padded_tokens(batch, 32)
    assert {name: array.shape for name, array in padded.items()} == {name: (2, 64) for name in batch}
    assert (padded["input_ids"][:, :40] == ids).all() and not padded["attention_mask"][:, 40:].any()
    assert padded_tokens({name: array[:, :32] for name, array in batch.items()}, 32)["input_ids"].shape == (2, 32)
    images = {"inputs": np.zeros((2, 3, 40, 40), dtype=np.float32)}
    assert padded_tokens(images, 32)["inputs"].shape == (2, 3, 40, 40)


@pytest.mark.parametrize("backend", FLOAT32 + INT8)
def test_text_encoder_backends_agree_with_torch(tiny_text_model: Path, cache: ExportCache, backend: str) -> None:
    available(backend)
    torch_encoder = SentenceTransformerEncoder(str(tiny_text_model), device="cpu")
    encoder = SentenceTransformerEncoder(str(tiny_text_model), backend=backend, cache=cache, batch_size=3)
    reference, vectors = torch_encoder.encode(TEXTS), encoder.encode(TEXTS)
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    if backend in FLOAT32:  # the same vectors: the same space identity, nothing to re-embed
        assert cosines(vectors, reference).min() > 0.99999
        assert encoder.identity() == torch_encoder.identity()
    else:  # int8: close, but other vectors, so another identity that names the backend
        assert cosines(vectors, reference).min() > 0.95
        assert encoder.identity().model == f"{tiny_text_model} ({backend})"
        assert encoder.identity().fingerprint != torch_encoder.identity().fingerprint
    assert encoder.tokenizer is not None  # chunking still counts the model's own tokens


def with_default_prompt(model: Path, folder: Path) -> Path:
    """A copy of ``model`` whose sentence-transformers config puts a query prompt before every text by default."""
    shutil.copytree(model, folder)
    config_file = folder / "config_sentence_transformers.json"
    config = json.loads(config_file.read_text())
    config["prompts"] = {**config.get("prompts", {}), "query": "represent this sentence for searching passages: "}
    config["default_prompt_name"] = "query"
    config_file.write_text(json.dumps(config))
    return folder


def test_the_exported_graph_reads_the_default_prompt_torch_reads(tiny_text_model: Path, cache: ExportCache,
                                                                   tmp_path: Path) -> None:
    """A model's default prompt is put before each text on ONNX as on torch: the same identity, the same vectors."""
    prompted = with_default_prompt(tiny_text_model, tmp_path / "prompted")
    reference = SentenceTransformerEncoder(str(prompted), device="cpu").encode(TEXTS)
    vectors = SentenceTransformerEncoder(str(prompted), backend="onnx", cache=cache).encode(TEXTS)
    assert cosines(vectors, reference).min() > 0.99999


def test_a_model_is_exported_once_per_fingerprint(tiny_text_model: Path, tmp_path: Path, monkeypatch) -> None:
    from kb.inference import export

    exports: list[str] = []
    original = export._export
    monkeypatch.setattr(export, "_export", lambda *args: (exports.append(args[2].name), original(*args))[1])
    cache = ExportCache(tmp_path / "cache")
    for _ in range(2):
        SentenceTransformerEncoder(str(tiny_text_model), backend="onnx-int8", cache=cache).encode(TEXTS[:1])
    SentenceTransformerEncoder(str(tiny_text_model), backend="onnx", cache=cache).encode(TEXTS[:1])
    assert exports == ["sentence-embedding"]  # float32 and int8 come from the one export
    changed = tmp_path / "changed"
    shutil.copytree(tiny_text_model, changed)
    (changed / "modules.json").write_text((changed / "modules.json").read_text() + "\n")  # other files: other key
    SentenceTransformerEncoder(str(changed), backend="onnx", cache=cache).encode(TEXTS[:1])
    assert exports == ["sentence-embedding"] * 2
    assert len(list((tmp_path / "cache" / "exports").iterdir())) == 2
    assert not list((tmp_path / "cache" / "exports").glob("*/.partial-*"))


def test_a_killed_export_leaves_no_scratch_folder_behind(tiny_text_model: Path, tmp_path: Path) -> None:
    """A scratch folder left by an export killed midway is removed by the next export into the same entry."""
    cache = ExportCache(tmp_path / "cache")
    SentenceTransformerEncoder(str(tiny_text_model), backend="onnx", cache=cache).encode(TEXTS[:1])
    (entry,) = (tmp_path / "cache" / "exports").iterdir()
    stale = entry / ".partial-killed"
    stale.mkdir()
    (stale / "onnx-int8.onnx").write_bytes(b"half a graph")
    SentenceTransformerEncoder(str(tiny_text_model), backend="onnx-int8", cache=cache).encode(TEXTS[:1])
    assert not list(entry.glob(".partial-*"))


def test_switching_to_an_int8_backend_needs_reembed_and_records_it(kb_factory, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "dock.txt").write_text("Loading dock B accepts deliveries from 6 am to 2 pm.\n", encoding="utf-8")
    (folder / "returns.txt").write_text("Unused items can be returned within 30 days.\n", encoding="utf-8")
    cache = str(tmp_path / "cache")
    kb_factory(encoder_backend="torch", model_cache=cache).ingest(folder)
    same = kb_factory(encoder_backend="onnx", model_cache=cache)
    assert same.search("returns", k=1, mode="dense")[0].path.endswith("returns.txt")  # float32: same space
    switched = kb_factory(encoder_backend="onnx-int8", model_cache=cache)
    with pytest.raises(EncoderMismatchError, match="kb reembed"):
        switched.search("returns", k=1, mode="dense")
    assert switched.reembed() == 2
    with switched.store.sessions() as session:
        space = session.scalar(select(Space).where(Space.name == TEXT_SPACE))
        rows = session.execute(select(Space.model)).scalars().all()
    assert space is not None and space.model.endswith("(onnx-int8)") and rows == [space.model]
    assert space.fingerprint == switched.encoder.identity().fingerprint
    assert switched.search("returns", k=1, mode="dense")[0].path.endswith("returns.txt")
    reopened = kb_factory()  # the backend is recorded with the knowledge base
    assert reopened.settings.text_encoder.backend == "onnx-int8"
    assert reopened.search("deliveries", k=1)[0].path.endswith("dock.txt")
    with pytest.raises(EncoderMismatchError, match="onnx-int8"):
        kb_factory(encoder_backend="torch").search("returns", k=1, mode="dense")


def test_a_knowledge_base_recorded_before_backends_opens_with_torch(kb_factory, tmp_path: Path) -> None:
    import json

    kb = kb_factory(encoder_backend="onnx")
    kb.close()
    recorded = tmp_path / "kb" / "kb.json"
    settings = json.loads(recorded.read_text())
    del settings["encoder_backend"], settings["clip_backend"]
    recorded.write_text(json.dumps(settings))
    assert kb_factory().settings.text_encoder.backend == "torch"


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8", "openvino"])
def test_clip_towers_run_on_the_backend(tiny_clip: tuple[Path, Path], cache: ExportCache, backend: str) -> None:
    available(backend)
    config, checkpoint = tiny_clip
    torch_clip = ClipEncoder(str(config), str(checkpoint), device="cpu")
    clip = ClipEncoder(str(config), str(checkpoint), backend=backend, cache=cache, batch_size=2)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40 + 9 * i, 50, 3), dtype=np.uint8)) for i in range(3)]
    texts = ["a red circle", "a blue square on a white sign", "a photo"]
    floor = 0.9999 if backend in FLOAT32 else 0.95
    assert cosines(clip.encode_images(images), torch_clip.encode_images(images)).min() > floor
    assert cosines(clip.encode(texts), torch_clip.encode(texts)).min() > floor
    assert (clip.identity() == torch_clip.identity()) == (backend in FLOAT32)


def test_a_missing_runtime_is_one_clear_error(tiny_text_model: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # what an import finds when the package is not installed
    encoder = SentenceTransformerEncoder(str(tiny_text_model), backend="openvino", cache=ExportCache(tmp_path))
    with pytest.raises(BackendUnavailableError, match=r"multimodal-kb\[openvino\]"):
        encoder.encode(["x"])


def test_a_new_knowledge_base_records_the_backend_auto_chose(kb_factory, tmp_path: Path, monkeypatch) -> None:
    """``auto``, the default, is the fastest backend installed for this CPU, written into kb.json as a definite
    value: ``openvino-int8`` where the CPU computes bfloat16 natively, else ``onnx`` (float32, torch's vectors)."""
    available("openvino-int8")
    monkeypatch.setattr(backends, "bfloat16_native", lambda: True)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "returns.txt").write_text("Unused items can be returned within 30 days.\n", encoding="utf-8")
    knowledge_base = kb_factory()
    assert knowledge_base.settings.text_encoder.backend == "openvino-int8"
    assert json.loads((tmp_path / "kb" / "kb.json").read_text())["encoder_backend"] == "openvino-int8"
    knowledge_base.ingest(folder)
    assert knowledge_base.search("returns", k=1, mode="dense")[0].path.endswith("returns.txt")
    assert knowledge_base.encoder.identity().model.endswith("(openvino-int8)")
    assert Settings(encoder_backend="auto", device="cuda").text_encoder.backend == "torch"  # a GPU computes torch faster than a CPU runtime
    with monkeypatch.context() as without_nncf:
        without_nncf.setitem(sys.modules, "nncf", None)  # what an import finds when the package is not installed
        assert kb_factory("elsewhere").settings.text_encoder.backend == "onnx"
    monkeypatch.setattr(backends, "bfloat16_native", lambda: False)  # e.g. AVX2 only: OpenVINO's int8 was slowest
    plain = kb_factory("plain")
    assert plain.settings.text_encoder.backend == "onnx"
    plain.ingest(folder)
    torch_encoder = SentenceTransformerEncoder(plain.settings.text_encoder.model, backend="torch")
    assert plain.encoder.identity() == torch_encoder.identity()  # float32: the vectors torch would make
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert kb_factory("bare").settings.text_encoder.backend == "torch"


def test_a_recorded_backend_is_kept_wherever_the_knowledge_base_opens(kb_factory, tmp_path: Path,
                                                                       monkeypatch) -> None:
    available("openvino-int8")
    monkeypatch.setattr(backends, "bfloat16_native", lambda: True)
    with monkeypatch.context() as without_openvino:
        without_openvino.setitem(sys.modules, "openvino", None)
        assert kb_factory(encoder_backend="auto").settings.text_encoder.backend == "onnx"  # built without openvino
    assert kb_factory().settings.text_encoder.backend == "onnx"  # reopened where auto is openvino-int8: no reembed


def test_a_recorded_backend_that_is_not_installed_says_what_to_do(kb_factory, tmp_path: Path, monkeypatch) -> None:
    available("openvino-int8")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "dock.txt").write_text("Loading dock B accepts deliveries from 6 am to 2 pm.\n", encoding="utf-8")
    monkeypatch.setattr(backends, "bfloat16_native", lambda: True)
    kb_factory(encoder_backend="auto").ingest(folder)  # recorded with openvino-int8
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(BackendUnavailableError, match=r"encoder_backend 'openvino-int8' needs openvino: pip install "
                       r"'multimodal-kb\[openvino\]'.*KB_ENCODER_BACKEND=torch kb reembed"):
        kb_factory()
    monkeypatch.setenv("KB_ENCODER_BACKEND", "torch")  # the advice, followed
    assert kb_factory().reembed() == 1
    monkeypatch.delenv("KB_ENCODER_BACKEND")
    reopened = kb_factory()
    assert reopened.settings.text_encoder.backend == "torch"
    assert reopened.search("deliveries", k=1, mode="dense")[0].path.endswith("dock.txt")
