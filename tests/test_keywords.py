"""Keyword tokenisation for BM25: normalisation, stopwords, plural folding, CJK bigrams, jieba segmentation, the
factory, and properties that keep documents and queries comparable."""

from __future__ import annotations

import string
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kb.keywords import (
    ENGLISH_STOPWORDS,
    JiebaTokenizer,
    KeywordTokenizer,
    SimpleTokenizer,
    character_bigrams,
    keyword_tokenizer,
    plural_stem,
    word_term,
)

HAN = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
simple = SimpleTokenizer()


@pytest.fixture(scope="module")
def jieba_tokenizer() -> JiebaTokenizer:
    return JiebaTokenizer()


def test_words_are_normalised_and_case_folded() -> None:
    assert simple.tokenize("ＨＥＬＬＯ Wörld STRASSE Straße ﬁle") == ["hello", "wörld", "strasse", "strasse", "file"]


def test_stopwords_are_dropped() -> None:
    assert simple.tokenize("The cat is on the mat and it was not there") == ["cat", "mat"]
    assert {"the", "and", "of", "to"} <= ENGLISH_STOPWORDS


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


def test_apostrophes_and_hyphens() -> None:
    assert word_term("john's") == "john"
    assert word_term("o'neill") == word_term("oneill") == "oneill"
    assert word_term("it's") is None  # "it" is a stopword
    assert simple.tokenize("O’Neill’s state-of-the-art don't snake_case") == [
        "oneill", "state", "art", "dont", "snake", "case"
    ]


def test_numbers_and_mixed_words_stay_whole() -> None:
    assert simple.tokenize("GPT-4 has 175B parameters, version 3.14") == [
        "gpt", "4", "has", "175b", "parameter", "version", "3", "14"
    ]


def test_chinese_becomes_overlapping_bigrams() -> None:
    assert simple.tokenize("中华人民") == ["中华", "华人", "人民"]
    assert simple.tokenize("我爱北京。好") == ["我爱", "爱北", "北京", "好"]
    assert simple.tokenize("GPT-4模型很强") == ["gpt", "4", "模型", "型很", "很强"]


def test_kana_and_hangul_runs_are_bigrams_too() -> None:
    assert simple.tokenize("東京タワー") == ["東京", "タワ", "ワー"]
    assert simple.tokenize("한국어 텍스트") == ["한국", "국어", "텍스", "스트"]
    assert simple.tokenize("ｶﾀｶﾅ") == ["カタ", "タカ", "カナ"]  # half-width katakana is normalised first


def test_character_bigrams() -> None:
    assert character_bigrams("好") == ["好"]
    assert character_bigrams("你好") == ["你好"]
    assert character_bigrams("你好吗") == ["你好", "好吗"]


@settings(max_examples=200)
@given(run=st.text(HAN, min_size=2, max_size=30))
def test_bigrams_cover_a_chinese_run(run: str) -> None:
    terms = simple.tokenize(run)
    assert len(terms) == len(run) - 1
    assert terms[0][0] + "".join(term[1] for term in terms) == run


@settings(max_examples=300)
@given(text=st.text())
def test_terms_are_clean(text: str) -> None:
    for term in simple.tokenize(text):
        assert term and not any(character.isspace() for character in term)
        assert term not in ENGLISH_STOPWORDS and "'" not in term
        assert term == term.casefold()


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


def test_jieba_segments_chinese_words(jieba_tokenizer: JiebaTokenizer) -> None:
    terms = jieba_tokenizer.tokenize("我爱北京天安门")
    assert {"北京", "天安门"} <= set(terms)
    assert {"中华", "人民", "共和国", "中华人民共和国"} <= set(jieba_tokenizer.tokenize("中华人民共和国成立了"))


def test_jieba_treats_other_text_like_simple(jieba_tokenizer: JiebaTokenizer) -> None:
    text = "The Studies of O'Neill: 東京タワー 한국어 version 2"
    english = "The Studies of O'Neill: タワー 한국어 version 2"
    assert jieba_tokenizer.tokenize(english) == simple.tokenize(english)
    assert set(simple.tokenize(english)) <= set(jieba_tokenizer.tokenize(text))


@settings(max_examples=100, deadline=None)
@given(run=st.text(HAN, min_size=1, max_size=20))
def test_jieba_terms_come_from_the_run(jieba_tokenizer: JiebaTokenizer, run: str) -> None:
    import opencc

    simplified = opencc.OpenCC("t2s").convert(run)  # traditional characters are folded before segmentation
    terms = jieba_tokenizer.tokenize(run)
    assert terms and all(term in simplified for term in terms)


def test_factory() -> None:
    assert isinstance(keyword_tokenizer("simple"), SimpleTokenizer)
    assert isinstance(keyword_tokenizer("jieba"), JiebaTokenizer)
    for tokenizer in (keyword_tokenizer("simple"), keyword_tokenizer("jieba")):
        assert isinstance(tokenizer, KeywordTokenizer)
        assert keyword_tokenizer(tokenizer.name).name == tokenizer.name


def test_factory_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="jieba, simple"):
        keyword_tokenizer("whitespace")


def test_missing_jieba_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jieba", None)  # makes `import jieba` fail as if it were not installed
    with pytest.raises(ImportError, match=r"multimodal-kb\[chinese\]"):
        keyword_tokenizer("jieba")
