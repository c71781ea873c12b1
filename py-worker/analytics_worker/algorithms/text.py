"""Text algorithms: VADER sentiment (lexicon shipped inside vaderSentiment), TF-IDF similarity and
keyword extraction (scikit-learn). Texts come from the request's `texts` list or, as the old engine
took them, from params `text` (sentiment, keywords) and `text1`/`text2` (similarity)."""

import re

import numpy as np

from ..catalogue import Choice, Int, Text, params
from ..core import InvalidArgument, algorithm

_ANALYZER = []
TOKEN_RE = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern


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


def _one_sentiment(text):
    s = _vader().polarity_scores(text)
    label = sentiment_label(s["compound"])
    confidence = {"positive": s["pos"], "negative": s["neg"], "neutral": s["neu"]}[label]
    return {
        "sentiment_score": s["compound"],
        "sentiment_label": label,
        "confidence": confidence,
        "scores": {"positive": s["pos"], "negative": s["neg"], "neutral": s["neu"], "compound": s["compound"]},
    }


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


@params(text1=Text(help="first text (when no texts are given)"), text2=Text(help="second text"),
        method=Choice("cosine", "jaccard", help="cosine (TF-IDF) or jaccard (word sets)"))
@algorithm("text_similarity", "Pairwise text similarity: TF-IDF cosine (default) or Jaccard on word sets",
           input="text", optional={"text1": "", "text2": "", "method": "cosine"})
def text_similarity(inp):
    method = inp.p.choice("method", ("cosine", "jaccard"))
    docs = inp.documents(2, ("text1", "text2"))
    n = len(docs)
    if method == "cosine":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.metrics.pairwise import cosine_similarity
        M = _fit(TfidfVectorizer(), docs, NO_WORDS)
        S = cosine_similarity(M)
        np.fill_diagonal(S, 1.0)
        S = np.clip(S, 0.0, 1.0)
    else:
        sets = [set(TOKEN_RE.findall(d.lower())) for d in docs]
        if not any(sets):
            raise InvalidArgument(NO_WORDS)
        S = np.ones((n, n))
        for i in range(n):
            for j in range(i + 1, n):
                union = sets[i] | sets[j]
                S[i, j] = S[j, i] = (len(sets[i] & sets[j]) / len(union)) if union else 0.0
    out = {"similarity": float(S[0, 1]), "method": method, "n_documents": n}
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
    total_words = sum(len(TOKEN_RE.findall(d.lower())) for d in docs)
    if method == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer
        vec = TfidfVectorizer(stop_words="english")
        M = _fit(vec, docs, NO_KEYWORDS)
        scores = np.asarray(M.mean(axis=0)).ravel()  # mean TF-IDF weight over the documents
    else:
        from sklearn.feature_extraction.text import CountVectorizer
        vec = CountVectorizer(stop_words="english")
        M = _fit(vec, docs, NO_KEYWORDS)
        scores = np.asarray(M.sum(axis=0)).ravel().astype(np.float64)
    terms = vec.get_feature_names_out()
    # highest score first, ties broken alphabetically (deterministic)
    order = sorted(range(len(terms)), key=lambda i: (-scores[i], terms[i]))[:k]
    return {
        "keywords": [str(terms[i]) for i in order],
        "scores": [float(scores[i]) for i in order],
        "method": method,
        "total_words": int(total_words),
        "n_documents": len(docs),
    }
