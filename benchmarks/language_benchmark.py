"""Which text model and keyword tokenizer serve English, Chinese and cross-lingual questions in one knowledge base.

    python benchmarks/language_benchmark.py [--data ../shared/data] [--configs minilm:simple usem3:jieba]
        [--distractors 2000] [--max-questions 500] [--zh-weights 0.5 0.7 0.9]

A company knowledge base mixes languages, so each configuration ingests one mixed corpus: XQuAD English paragraphs
(minus the titles held out with squad2-dev-part), CMRC 2018 trial (simplified Chinese) and DRCD (traditional
Chinese) paragraphs, and English Wikipedia summaries. Then it is asked:
- en: XQuAD's English questions;
- zh: CMRC trial questions; zh-tw: DRCD questions;
- zh→en: Chinese questions about countries and languages whose English Wikipedia summary is in the corpus, built
  from CLDR's parallel names (the `babel` package): "安道尔位于哪里？" must find the summary of "Andorra";
- en→en: the same questions in English, the reference for what the cross-lingual ones lose.
Recall@1/@5 of the gold file for dense, keyword and hybrid search; for Chinese questions also without their English
gloss (``cross_lingual`` off), and hybrid with other keyword weights (`--zh-weights`) and gloss weights
(`--gloss-weights`) for Chinese questions. Every set here is for development; none is held out.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.retrieval_benchmark import default_model, evaluate
from benchmarks.squad_corpus import DATASETS, DISTRACTORS, Question, squad_titles, write_squad_corpus
from kb import KnowledgeBase
from kb.keywords import keyword_tokenizer
from kb.postings import rebuild_postings

MODELS = {"minilm": default_model, "usem3": lambda: "usem3"}
TERRITORY_QUESTIONS = ("{zh}位于哪里？", "Where is {en} located?")
LANGUAGE_QUESTIONS = ("{zh}是哪些人说的语言？", "Who speaks the {en}?")


def write_summaries(data: Path, folder: Path, count: int, wanted: set[str], seed: int = 0) -> dict[str, Path]:
    """``count`` random Wikipedia summaries plus those titled in ``wanted``, one file each; returns title -> file."""
    summaries = json.loads((data / DISTRACTORS).read_text(encoding="utf-8"))
    entries = [(entry.get("title") or key, (entry.get("extract") or "").strip()) for key, entry in summaries.items()]
    entries = [(title, text) for title, text in entries if text]
    rng = random.Random(seed)
    chosen = {title for title, _ in rng.sample(entries, min(count, len(entries)))} | wanted
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for number, (title, text) in enumerate(entries):
        if title in chosen:
            path = folder / f"{number:05d}.txt"
            path.write_text(text, encoding="utf-8")
            files[title] = path.resolve()
    return files


def parallel_name_questions(titles: set[str]) -> tuple[list[tuple[str, str, str]], set[str]]:
    """(Chinese question, English question, gold title) for each CLDR territory or language whose English name is a
    summary title, and the titles used."""
    from babel import Locale

    english, chinese = Locale("en"), Locale("zh")
    questions = []
    for code, name in english.territories.items():
        if not code.isdigit() and name in titles and chinese.territories.get(code):
            zh, en = TERRITORY_QUESTIONS
            questions.append((zh.format(zh=chinese.territories[code]), en.format(en=name), name))
    for code, name in english.languages.items():
        title = f"{name} language"
        if title in titles and chinese.languages.get(code):
            zh, en = LANGUAGE_QUESTIONS
            questions.append((zh.format(zh=chinese.languages[code]), en.format(en=title), title))
    return questions, {gold for *_, gold in questions}


def build_corpus(data: Path, folder: Path, distractors: int, max_questions: int) -> dict[str, list[Question]]:
    """The mixed corpus under ``folder`` and each question set with its gold files."""
    summaries = json.loads((data / DISTRACTORS).read_text(encoding="utf-8"))
    titles = {entry.get("title") or key for key, entry in summaries.items()}
    named, wanted = parallel_name_questions(titles)
    files = write_summaries(data, folder / "wikipedia", distractors, wanted)
    held_out = squad_titles(data / DATASETS["squad2-dev-part"]) if (data / DATASETS["squad2-dev-part"]).exists() \
        else set()
    rng = random.Random(1)

    def sample(questions: list[Question]) -> list[Question]:
        return rng.sample(questions, min(max_questions, len(questions)))

    return {
        "en": sample(write_squad_corpus(data, "xquad-en", folder / "xquad-en", held_out)),
        "zh": sample(write_squad_corpus(data, "cmrc2018-trial", folder / "cmrc2018-trial")),
        "zh-tw": sample(write_squad_corpus(data, "drcd-dev", folder / "drcd")),
        "zh→en": [Question(zh, files[gold]) for zh, _, gold in named],
        "en→en": [Question(en, files[gold]) for _, en, gold in named],
    }


def index_keywords(kb_dir: Path, model: str, tokenizer: str, version: int) -> None:
    """Rebuild the keyword postings of the knowledge base at ``kb_dir`` with ``version`` of ``tokenizer`` (the
    vectors stay), as a knowledge base that version built would hold them."""
    with KnowledgeBase.open(kb_dir, text_model=model, keyword_tokenizer=tokenizer, device="cpu",
                            clip_model="none") as kb, kb.store.writer_lock, kb.store.write() as unit:
        rebuild_postings(unit, keyword_tokenizer(tokenizer, version))


def run_config(corpus: Path, kb_dir: Path, model: str, tokenizer: str, sets: dict[str, list[Question]],
               zh_weights: list[float], gloss_weights: list[float],
               version: int | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Recall per question set and search mode for one configuration (with its keyword index rebuilt by
    ``version`` of the tokenizer when one is given)."""
    kb = KnowledgeBase.open(kb_dir, text_model=model, keyword_tokenizer=tokenizer, device="cpu", clip_model="none")
    report = kb.ingest(corpus)
    print(f"  ingested {len(report.added)} files ({len(report.unchanged)} kept) in {report.seconds:.0f} s",
          file=sys.stderr)
    if version is not None:
        kb.close()
        index_keywords(kb_dir, model, tokenizer, version)
        kb = KnowledgeBase.open(kb_dir, text_model=model, keyword_tokenizer=tokenizer, device="cpu",
                                clip_model="none")
        print(f"  keyword index: {kb.keywords.scheme}", file=sys.stderr)
    results: dict[str, dict[str, dict[str, float]]] = {}
    gloss_base = kb.settings.cross_lingual.weight
    for name, questions in sets.items():
        runs: dict[str, dict[str, float]] = {}
        for mode in ("dense", "keyword", "hybrid"):
            runs[mode] = evaluate(lambda q, m=mode: [h.path for h in kb.search(q, k=20, mode=m)], questions)
        if name.startswith("zh"):
            kb.settings.cross_lingual.enabled = False  # the question alone, without its English gloss
            for mode in ("dense", "keyword", "hybrid"):
                runs[f"{mode} no gloss"] = evaluate(lambda q, m=mode: [h.path for h in kb.search(q, k=20, mode=m)],
                                                    questions)
            kb.settings.cross_lingual.enabled = True
            base = dict(kb.settings.fusion.keyword_weights_by_language)
            for weight in zh_weights:
                kb.settings.fusion.keyword_weights_by_language["zh"] = weight
                runs[f"hybrid w={weight:g}"] = evaluate(lambda q: [h.path for h in kb.search(q, k=20)], questions)
            kb.settings.fusion.keyword_weights_by_language = base
            for weight in gloss_weights:
                kb.settings.cross_lingual.weight = weight
                runs[f"hybrid g={weight:g}"] = evaluate(lambda q: [h.path for h in kb.search(q, k=20)], questions)
            kb.settings.cross_lingual.weight = gloss_base
        results[name] = runs
    kb.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--configs", nargs="+", default=["minilm:simple", "minilm:jieba", "usem3:jieba"],
                        help="MODEL:TOKENIZER[/VERSION]; models: minilm (the packaged default), usem3; a tokenizer "
                        "version rebuilds the keyword index with it after ingesting (simple/1 against simple/2)")
    parser.add_argument("--distractors", type=int, default=2000)
    parser.add_argument("--max-questions", type=int, default=500, help="per question set, sampled with a fixed seed")
    parser.add_argument("--zh-weights", type=float, nargs="*", default=[0.7, 0.9],
                        help="keyword weights also tried for Chinese questions")
    parser.add_argument("--gloss-weights", type=float, nargs="*", default=[0.6, 1.0],
                        help="cross_lingual_weight values also tried for Chinese questions")
    parser.add_argument("--out", type=Path, help="write all figures as JSON here")
    parser.add_argument("--keep", type=Path, help="build the corpus and knowledge bases in this folder and keep them; "
                        "a later run with the same folder and options searches them again without ingesting")
    args = parser.parse_args()
    if not (args.data / DISTRACTORS).exists():
        print(f"data not found under {args.data} (pass --data DIR)", file=sys.stderr)
        return 2
    figures = {}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.keep or Path(scratch)
        corpus = Path(tmp) / "corpus"
        sets = build_corpus(args.data, corpus, args.distractors, args.max_questions)
        print("question sets: " + ", ".join(f"{name} {len(questions)}" for name, questions in sets.items()))
        for config in args.configs:
            model, scheme = config.split(":")
            tokenizer, _, version = scheme.partition("/")
            print(f"{config}:", file=sys.stderr)
            figures[config] = run_config(corpus, Path(tmp) / f"{model}-{tokenizer}", MODELS[model](), tokenizer,
                                         sets, args.zh_weights, args.gloss_weights, int(version) if version else None)
    for name in next(iter(figures.values())):
        print(f"\n{name}: recall@1 / recall@5")
        modes = list(next(iter(figures.values()))[name])
        print(f"{'config':<16}" + "".join(f"{mode:>18}" for mode in modes))
        for config, results in figures.items():
            print(f"{config:<16}" + "".join(
                f"{results[name][mode]['recall@1']:>11.3f} / {results[name][mode]['recall@5']:.3f}"[-18:].rjust(18)
                for mode in modes))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
