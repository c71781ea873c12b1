"""Text algorithms: VADER sentiment (lexicon shipped inside vaderSentiment), similarity (the earlier
engine's count cosine, Jaccard and Levenshtein, plus TF-IDF cosine) and keyword extraction
(scikit-learn). Texts come from the request's `texts` list or, as the old engine took them, from
params `text` (sentiment, keywords) and `text1`/`text2` (similarity)."""

import re

import numpy as np

from ..catalogue import Choice, Int, Text, params
from ..core import InvalidArgument, algorithm

_ANALYZER = []
WORD_RE = re.compile(r"(?u)\b\w+\b")  # the earlier engine's words: one-letter words included


def words(text):
    """The earlier engine's tokens: lowercase, \\b\\w+\\b."""
    return WORD_RE.findall(text.lower())


def _vader():
    if not _ANALYZER:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        _ANALYZER.append(SentimentIntensityAnalyzer())
    return _ANALYZER[0]


def sentiment_label(compound):
    # thresholds recommended by the VADER authors
    if compound >= 0.05:
        return "positive"
    if compound <= -0.05:
        return "negative"
    return "neutral"


def _word_counts(text):
    """The earlier engine's keys: words (lowercase \\b\\w+\\b) with a positive / negative valence in the
    lexicon (here VADER's), and all words."""
    lexicon = _vader().lexicon
    toks = words(text)
    pos = sum(1 for t in toks if lexicon.get(t, 0.0) > 0)
    neg = sum(1 for t in toks if lexicon.get(t, 0.0) < 0)
    return {"positive_words_count": pos, "negative_words_count": neg, "total_words": len(toks)}


def _one_sentiment(text):
    s = _vader().polarity_scores(text)
    label = sentiment_label(s["compound"])
    confidence = {"positive": s["pos"], "negative": s["neg"], "neutral": s["neu"]}[label]
    out = {
        "sentiment_score": s["compound"],
        "sentiment_label": label,
        "confidence": confidence,
        "scores": {"positive": s["pos"], "negative": s["neg"], "neutral": s["neu"], "compound": s["compound"]},
    }
    out.update(_word_counts(text))
    return out


@params(text=Text(help="text (when no texts are given)"))
@algorithm("sentiment_analysis", "Sentiment with the VADER lexicon (compound score in [-1, 1]); several "
                                 "texts: mean compound score plus one result per document",
           input="text", optional={"text": ""})
def sentiment_analysis(inp):
    docs = inp.documents(1, ("text",))
    results = [_one_sentiment(t) for t in docs]
    if len(results) == 1:
        out = dict(results[0])
    else:
        compound = float(np.mean([r["sentiment_score"] for r in results]))
        label = sentiment_label(compound)
        share = sum(1 for r in results if r["sentiment_label"] == label) / len(results)
        out = {"sentiment_score": compound, "sentiment_label": label, "confidence": share,
               "documents": results}
        for key in ("positive_words_count", "negative_words_count", "total_words"):
            out[key] = sum(r[key] for r in results)
    out["method"] = "vader"
    out["n_documents"] = len(docs)
    return out


NO_WORDS = "the texts contain no words to compare (empty vocabulary)"
NO_KEYWORDS = "the texts contain no words other than English stop words (empty vocabulary)"


def _fit(vec, docs, empty_message):
    try:
        return vec.fit_transform(docs)
    except ValueError as e:
        if "empty vocabulary" in str(e):
            raise InvalidArgument(empty_message)
        raise


SIMILARITY_METHODS = ("cosine", "jaccard", "levenshtein", "tfidf_cosine")


def _word_counts_matrix(docs):
    """Documents x words count matrix on the earlier engine's words (lowercase \\b\\w+\\b), sparse, integer."""
    from sklearn.feature_extraction.text import CountVectorizer
    return CountVectorizer(token_pattern=WORD_RE.pattern, dtype=np.int64).fit_transform(docs)


def _count_cosine(docs):
    """Cosine of the raw word-count vectors (the earlier engine's "cosine"), all pairs; 0.0 with a text
    without words. Integer dot products and squared norms, one square root of their exact product, so
    identical texts give exactly 1.0."""
    M = _word_counts_matrix(docs)
    G = (M @ M.T).toarray().astype(np.float64)
    sq = np.diag(G)
    den = np.sqrt(np.outer(sq, sq))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, G / np.where(den > 0, den, 1.0), 0.0)


def _jaccard(docs):
    """|common| / |union| of the word sets, all pairs."""
    B = (_word_counts_matrix(docs) > 0).astype(np.int64)
    inter = (B @ B.T).toarray().astype(np.float64)
    size = np.asarray(B.sum(axis=1)).ravel().astype(np.float64)
    union = size[:, None] + size[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _levenshtein(docs):
    """1 - edit distance / length of the longer text, on the texts as sent (the earlier engine's), all
    pairs (rapidfuzz)."""
    from rapidfuzz.distance import Levenshtein
    from rapidfuzz.process import cdist
    return cdist(docs, docs, scorer=Levenshtein.normalized_similarity, dtype=np.float64)


@params(text1=Text(help="first text (when no texts are given)"), text2=Text(help="second text"),
        method=Choice(*SIMILARITY_METHODS, help="cosine (word counts), jaccard (word sets), levenshtein or tfidf_cosine"))
@algorithm("text_similarity", "Pairwise text similarity: cosine of word counts (default), jaccard of word sets, "
                              "levenshtein (1 - edit distance / longer length) or tfidf_cosine",
           input="text", optional={"text1": "", "text2": "", "method": "cosine"})
def text_similarity(inp):
    method = inp.p.choice("method", SIMILARITY_METHODS)
    docs = inp.documents(2, ("text1", "text2"))
    n = len(docs)
    toks = [words(d) for d in docs]
    if method != "levenshtein" and not any(toks):
        raise InvalidArgument(NO_WORDS)
    if method == "tfidf_cosine":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.metrics.pairwise import cosine_similarity
        M = _fit(TfidfVectorizer(), docs, NO_WORDS)
        S = cosine_similarity(M)
        np.fill_diagonal(S, 1.0)
        S = np.clip(S, 0.0, 1.0)
    else:
        S = {"cosine": _count_cosine, "jaccard": _jaccard, "levenshtein": _levenshtein}[method](docs)
        S = np.clip(S, 0.0, 1.0)
        np.fill_diagonal(S, 1.0)
    w1, w2 = set(toks[0]), set(toks[1])
    out = {"similarity": float(S[0, 1]), "method": method,
           # the earlier engine's keys, for the first two texts: distinct words of each, shared, in all
           "text1_words": len(w1), "text2_words": len(w2), "common_words": len(w1 & w2),
           "total_unique_words": len(w1 | w2), "n_documents": n}
    if n > 2:
        out["similarity_matrix"] = S
    return out


@params(text=Text(help="text (when no texts are given)"), n_keywords=Int(min=1, max=1000, help="keywords to return"),
        method=Choice("tfidf", "frequency", help="tfidf or frequency"))
@algorithm("keyword_extraction", "Keywords by TF-IDF (English stop words removed) or raw frequency",
           input="text", optional={"text": "", "n_keywords": "5", "method": "tfidf"})
def keyword_extraction(inp):
    k = inp.p.int("n_keywords", min=1, max=1000)
    method = inp.p.choice("method", ("tfidf", "frequency"))
    docs = inp.documents(1, ("text",))
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    vec = (TfidfVectorizer if method == "tfidf" else CountVectorizer)(stop_words="english")
    # the earlier engine's counts, after stop-word removal: all words and distinct words
    analyze = vec.build_analyzer()
    kept = [t for d in docs for t in analyze(d)]
    if not kept:
        # only stop words (or no words): no keywords, as the earlier engine answered
        terms, scores = [], np.zeros(0)
    else:
        M = _fit(vec, docs, NO_KEYWORDS)
        if method == "tfidf":
            scores = np.asarray(M.mean(axis=0)).ravel()  # mean TF-IDF weight over the documents
        else:
            scores = np.asarray(M.sum(axis=0)).ravel().astype(np.float64)
        terms = vec.get_feature_names_out()
    # highest score first, ties broken alphabetically (deterministic)
    order = sorted(range(len(terms)), key=lambda i: (-scores[i], terms[i]))[:k]
    return {
        "keywords": [str(terms[i]) for i in order],
        "scores": [float(scores[i]) for i in order],
        "method": method,
        "total_words": len(kept),
        "unique_words": len(set(kept)),
        "n_keywords": len(order),
        "n_documents": len(docs),
    }
