"""Site search for the Chinese edition: overlapping Han bigrams.

Chinese is written without spaces, so a search index needs its own idea of a "word". Sphinx's
Chinese search indexes no Chinese at all without jieba, and with jieba a query typed without
spaces (嵌入向量) is cut differently from the text and finds nothing. Overlapping bigrams need no
dictionary and cut the text and the query the same way: 嵌入向量 -> 嵌入, 入向, 向量, and a
page matches when it holds every bigram. A run of one Han character is kept as it is. Text
outside Han runs is split and stemmed as in English (Porter), so "DeepFM", "logits" and "AUC"
are found as on the English site.

:func:`split` (Python, builds the index) and :data:`JS_SPLITTER` (the browser, splits the query)
must cut alike; the tests run both on the same strings.
"""
from __future__ import annotations

import re

import snowballstemmer
from sphinx.search import SearchLanguage
from sphinx.search.en import english_stopwords, js_porter_stemmer

HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{HAN}]+|[^\W_{HAN}]\w*", re.UNICODE)
_HAN_RUN = re.compile(rf"[{HAN}]+")


def han_bigrams(run: str) -> list[str]:
    """Overlapping bigrams of a run of Han characters; a single character stays as it is."""
    return [run] if len(run) < 2 else [run[i:i + 2] for i in range(len(run) - 1)]


def split(text: str) -> list[str]:
    """Words of ``text`` for the index and the query: bigrams of Han runs, other words whole."""
    words = []
    for token in _TOKEN.findall(text):
        if _HAN_RUN.fullmatch(token):
            words.extend(han_bigrams(token))
        else:
            words.extend(w for w in re.split(rf"[{HAN}]+", token) if w)
    return words


# The same cut in JavaScript: searchtools.js calls splitQuery(query) when it is defined.
JS_SPLITTER = r"""
function splitQuery(query) {
  var han = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]/;
  var tokens = query.match(/[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[\p{Letter}\p{Number}][\p{Letter}\p{Number}_]*/gu) || [];
  var words = [];
  tokens.forEach(function (token) {
    if (han.test(token[0])) {
      if (token.length < 2) words.push(token);
      else for (var i = 0; i + 1 < token.length; i++) words.push(token.substr(i, 2));
    } else {
      token.split(/[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+/).forEach(function (w) {
        if (w) words.push(w);
      });
    }
  });
  return words;
}
"""


class SearchChineseBigrams(SearchLanguage):
    """Chinese search language: overlapping Han bigrams, English words stemmed (Porter)."""

    lang = "zh"
    language_name = "Chinese"
    js_stemmer_code = js_porter_stemmer
    js_splitter_code = JS_SPLITTER
    stopwords = english_stopwords

    def init(self, options) -> None:
        self.stemmer = snowballstemmer.stemmer("english")

    def split(self, input: str) -> list[str]:  # noqa: A002 (Sphinx's signature)
        return split(input)

    def word_filter(self, stemmed_word: str) -> bool:
        if _HAN_RUN.fullmatch(stemmed_word):
            return True
        return len(stemmed_word) > 1 and stemmed_word not in self.stopwords

    def stem(self, word: str) -> str:
        if _HAN_RUN.search(word):
            return word
        return self.stemmer.stemWord(word.lower())
