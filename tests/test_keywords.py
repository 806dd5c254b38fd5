"""Keyword tokenisation for BM25: normalisation, stopwords, English stems (plural folding before version 3), CJK
bigrams (and, in documents, single characters), words with combining marks, jieba segmentation, versions, the
factory, and properties that keep documents and queries comparable."""

from __future__ import annotations

import string
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kb.keywords import (
    ENGLISH_STOPWORDS,
    LATEST_VERSION,
    JiebaTokenizer,
    KeywordTokenizer,
    SimpleTokenizer,
    character_bigrams,
    english_stem,
    keyword_length,
    keyword_tokenizer,
    parse_scheme,
    plural_stem,
    term_spans,
    word_term,
)

HAN = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
simple = SimpleTokenizer()


@pytest.fixture(scope="module")
def jieba_tokenizer() -> JiebaTokenizer:
    return JiebaTokenizer()


def test_words_are_normalised_and_case_folded() -> None:
    assert simple.tokenize("ＨＥＬＬＯ Wörld STRASSE Straße ﬁle") == ["hello", "wörld", "strass", "strass", "file"]


def test_stopwords_are_dropped() -> None:
    assert simple.tokenize("The cat is on the mat and it was not there") == ["cat", "mat"]
    assert {"the", "and", "of", "to"} <= ENGLISH_STOPWORDS
    for word in ENGLISH_STOPWORDS:  # in any case, in a question too
        assert simple.tokenize(word.upper()) == simple.tokenize_query(word.title()) == [], word
    # A stopword is dropped before stemming, so another word's stem may be spelt like one ("ans" -> "an"): it
    # matches only what stems to it, never the stopword itself.
    assert simple.tokenize("an ans") == simple.tokenize_query("ANS") == ["an"]


@pytest.mark.parametrize(
    "word, stem",
    [
        ("cats", "cat"), ("studies", "study"), ("policies", "policy"), ("caches", "cache"), ("cache", "cache"),
        ("glass", "glass"), ("corpus", "corpus"), ("analysis", "analysis"), ("toes", "toe"), ("gas", "gas"),
        ("1990s", "1990s"), ("données", "données"), ("news", "new"), ("boxes", "boxe"),
    ],
)
def test_plural_stem(word: str, stem: str) -> None:
    assert plural_stem(word) == stem


def test_singular_and_plural_meet() -> None:
    assert simple.tokenize("Documents, queries, studies and caches") == simple.tokenize("document query study cache")
    old = SimpleTokenizer(version=2)
    assert old.tokenize("Documents, queries, studies and caches") == old.tokenize("document query study cache")


def test_words_of_one_stem_meet_from_version_three() -> None:
    """A question's "Who invented ...?" finds a document's "the invention of ..."; version 2 folded plurals only."""
    assert simple.tokenize_query("Who invented the telephone?") == ["who", "invent", "telephon"]
    assert set(simple.tokenize_query("invented")) <= set(simple.tokenize("The invention of the telephone"))
    assert simple.tokenize("running runs ran generalization general") == ["run", "run", "ran", "general", "general"]
    assert SimpleTokenizer(version=2).tokenize("invented invention studies") == ["invented", "invention", "study"]
    assert [english_stem(word) for word in ("1990s", "données", "x86", "news", "gas")] == [
        "1990s", "données", "x86", "news", "gas"]  # numbers, codes and accented words pass as they are
    assert english_stem("international") == "internat"  # Snowball 3.1's rules (2.2 said "intern"), pinned
    word, longer = "b" * 39 + "ations", "b" * 40 + "ations"  # 45 and 46 letters: no English word is longer
    assert english_stem(word) != word and english_stem(longer) == longer


def test_stems_are_the_same_from_many_threads() -> None:
    """A Snowball stemmer keeps state while it works; searches and ingests in threads must not mix words."""
    from concurrent.futures import ThreadPoolExecutor

    from snowballstemmer.english_stemmer import EnglishStemmer

    for round in range(20):  # new words each round, so that none is answered from the cache
        words = [f"{stem}{'x' * round}{ending}" for stem in ("connect", "generaliz", "relat", "hope", "operat")
                 for ending in ("ed", "ing", "ion", "ions", "s", "ation", "ational", "ively")]
        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(english_stem, words)) == EnglishStemmer().stemWords(words)


def test_apostrophes_and_hyphens() -> None:
    assert word_term("john's") == "john"
    assert word_term("o'neill") == word_term("oneill") == "oneil"
    assert word_term("it's") is None  # "it" is a stopword
    assert simple.tokenize("O’Neill’s state-of-the-art don't snake_case") == [
        "oneil", "state", "art", "dont", "snake", "case"
    ]


def test_numbers_and_mixed_words_stay_whole() -> None:
    assert simple.tokenize("GPT-4 has 175B parameters, version 3.14") == [
        "gpt", "4", "has", "175b", "paramet", "version", "3", "14"
    ]


def test_chinese_questions_become_overlapping_bigrams() -> None:
    assert simple.tokenize_query("中华人民") == ["中华", "华人", "人民"]
    assert simple.tokenize_query("我爱北京。好") == ["我爱", "爱北", "北京", "#好"]  # a lone character: see below
    assert simple.tokenize_query("GPT-4模型很强") == ["gpt", "4", "模型", "型很", "很强"]


def test_kana_and_hangul_runs_are_bigrams_too() -> None:
    assert simple.tokenize_query("東京タワー") == ["東京", "タワ", "ワー"]
    assert simple.tokenize_query("한국어 텍스트") == ["한국", "국어", "텍스", "스트"]
    assert simple.tokenize_query("ｶﾀｶﾅ") == ["カタ", "タカ", "カナ"]  # half-width katakana is normalised first


def test_documents_hold_every_cjk_character_under_a_character_term() -> None:
    """So a one-character question (税) finds the character inside longer runs, where no bigram is it; a longer
    question is looked up by its bigrams alone, and a chunk's length leaves the character terms out, so it ranks
    as version 1 ranked it."""
    assert simple.tokenize("个人所得税 is due") == ["个人", "人所", "所得", "得税", "#个", "#人", "#所", "#得", "#税", "due"]
    assert simple.tokenize("집") == ["집", "#집"]
    assert simple.tokenize_query("税") == ["#税"] and simple.tokenize_query("所得税") == ["所得", "得税"]
    assert set(simple.tokenize_query("税 所得税")) <= set(simple.tokenize("个人所得税"))
    assert keyword_length(simple.tokenize("个人所得税 is due")) == len(SimpleTokenizer(version=1).tokenize("个人所得税 is due"))
    assert term_spans("个人所得税", set(simple.tokenize_query("税")), simple) == [(4, 5, "税")]  # shown where it matched


@pytest.mark.parametrize("word", ["हिन्दी", "தமிழ்", "ภาษาไทย", "naïve"])
def test_combining_marks_stay_inside_words(word: str) -> None:
    """Vowel signs and viramas are marks, not letters: version 1 cut हिन्दी into ह, न, द."""
    decomposed = __import__("unicodedata").normalize("NFD", word)
    assert simple.tokenize(f"{decomposed}, again") == simple.tokenize_query(word) + ["again"]
    assert len(simple.tokenize_query(word)) == 1
    assert len(SimpleTokenizer(version=1).tokenize("हिन्दी")) == 3


def test_version_one_still_cuts_as_it_did() -> None:
    """Knowledge bases built by version 1 are read with it until rebuilt: its terms must not move."""
    old = SimpleTokenizer(version=1)
    assert old.tokenize("中华人民 हिन्दी") == old.tokenize_query("中华人民 हिन्दी") == ["中华", "华人", "人民", "ह", "न", "द"]
    assert (old.scheme, simple.scheme) == ("simple", "simple/3")
    assert parse_scheme("simple") == ("simple", 1) and parse_scheme("jieba/2") == ("jieba", 2)
    assert keyword_tokenizer("simple", 1).tokenize("税务") == ["税务"]
    with pytest.raises(ValueError, match="no version 4"):
        keyword_tokenizer("simple", 4)


def test_character_bigrams() -> None:
    assert character_bigrams("好") == ["好"]
    assert character_bigrams("你好") == ["你好"]
    assert character_bigrams("你好吗") == ["你好", "好吗"]


@settings(max_examples=200)
@given(run=st.text(HAN, min_size=2, max_size=30))
def test_bigrams_cover_a_chinese_run(run: str) -> None:
    terms = simple.tokenize_query(run)
    assert len(terms) == len(run) - 1
    assert terms[0][0] + "".join(term[1] for term in terms) == run


@settings(max_examples=300)
@given(text=st.text())
def test_terms_are_clean(text: str) -> None:
    for term in simple.tokenize(text) + simple.tokenize_query(text):
        assert term and not any(character.isspace() for character in term)
        assert "'" not in term  # (a stem may be spelt like a stopword: see test_stopwords_are_dropped)
        assert term == term.casefold()
        assert not term.startswith("#") or len(term) == 2  # only a character term starts with the prefix


@settings(max_examples=200)
@given(text=st.text(alphabet=string.ascii_letters + string.digits + " .,;-'\n"))
def test_case_does_not_matter(text: str) -> None:
    assert simple.tokenize(text.upper()) == simple.tokenize(text.lower()) == simple.tokenize(text)


@settings(max_examples=200)
@given(parts=st.lists(st.text(alphabet=string.ascii_letters + "中文日本語한국 .,'-"), max_size=5))
def test_tokenizing_is_compositional_across_spaces(parts: list[str]) -> None:
    """A document's terms are the concatenation of its space-separated parts' terms, so a query term matches
    wherever the same word appears."""
    assert simple.tokenize(" ".join(parts)) == [term for part in parts for term in simple.tokenize(part)]
    assert simple.tokenize_query(" ".join(parts)) == [term for part in parts for term in simple.tokenize_query(part)]


def test_jieba_segments_chinese_words(jieba_tokenizer: JiebaTokenizer) -> None:
    terms = jieba_tokenizer.tokenize_query("我爱北京天安门")
    assert {"北京", "天安门"} <= set(terms)
    assert {"中华", "人民", "共和国", "中华人民共和国"} <= set(jieba_tokenizer.tokenize_query("中华人民共和国成立了"))


def test_a_document_s_run_longer_than_any_sentence_is_segmented_in_linear_time(jieba_tokenizer: JiebaTokenizer) -> None:
    """jieba's HMM costs the square of a run's length: a chunk of 6,400 unpunctuated characters took 0.135 s (a
    megabyte of them minutes). Past ``HAN_SLICE`` a document's run is cut by the dictionary alone."""
    started = time.perf_counter()
    terms = jieba_tokenizer.tokenize("丨丶" * 32_000 + "中华人民共和国")
    assert time.perf_counter() - started < 5
    assert {"中华人民共和国", "共和国", "#丨"} <= set(terms)


def test_jieba_holds_each_simplified_character_under_a_character_term(jieba_tokenizer: JiebaTokenizer) -> None:
    """Traditional text is indexed under simplified characters, words and character terms alike."""
    terms = jieba_tokenizer.tokenize("個人所得稅了")
    assert [term for term in terms if term.startswith("#")] == [f"#{c}" for c in "个人所得税了"]
    assert jieba_tokenizer.tokenize_query("稅") == ["#税"] and "了" in terms
    assert {"所得税", "个人所得税"} & set(terms)


def test_jieba_marks_traditional_text_found_by_a_simplified_question(jieba_tokenizer: JiebaTokenizer) -> None:
    """A snippet shows where the question matched: the traditional characters its simplified terms were found in."""
    text = "本年度個人所得稅申報"
    spans = term_spans(text, set(jieba_tokenizer.tokenize_query("个人所得税 税")), jieba_tokenizer)
    assert [text[start:end] for start, end, _ in spans] == ["個人所得稅"]
    assert term_spans(text, set(jieba_tokenizer.tokenize_query("稅")), jieba_tokenizer) == [(7, 8, "税")]


def test_jieba_treats_other_text_like_simple(jieba_tokenizer: JiebaTokenizer) -> None:
    text = "The Studies of O'Neill: 東京タワー 한국어 version 2"
    english = "The Studies of O'Neill: タワー 한국어 version 2"
    assert jieba_tokenizer.tokenize(english) == simple.tokenize(english)
    assert jieba_tokenizer.tokenize_query(english) == simple.tokenize_query(english)
    assert set(simple.tokenize(english)) <= set(jieba_tokenizer.tokenize(text))


@settings(max_examples=100, deadline=None)
@given(run=st.text(HAN, min_size=1, max_size=20))
def test_jieba_terms_come_from_the_run(jieba_tokenizer: JiebaTokenizer, run: str) -> None:
    import opencc

    simplified = opencc.OpenCC("t2s").convert(run)  # traditional characters are folded before segmentation
    for terms in (jieba_tokenizer.tokenize(run), jieba_tokenizer.tokenize_query(run)):
        assert terms and all(term.removeprefix("#") in simplified for term in terms)


def test_factory() -> None:
    assert isinstance(keyword_tokenizer("simple"), SimpleTokenizer)
    assert isinstance(keyword_tokenizer("jieba"), JiebaTokenizer)
    for tokenizer in (keyword_tokenizer("simple"), keyword_tokenizer("jieba")):
        assert isinstance(tokenizer, KeywordTokenizer)
        assert keyword_tokenizer(tokenizer.name).scheme == tokenizer.scheme == f"{tokenizer.name}/{LATEST_VERSION}"


def test_factory_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="jieba, simple"):
        keyword_tokenizer("whitespace")


def test_missing_jieba_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jieba", None)  # makes `import jieba` fail as if it were not installed
    with pytest.raises(ImportError, match=r"multimodal-kb\[chinese\]"):
        keyword_tokenizer("jieba")
