"""METEOR, two ways, reported under separate names because they differ.

* ``meteor_nltk`` — NLTK's METEOR with AudioBench's parameters (``alpha=0.9, beta=3,
  gamma=0.5``; WordNet synonyms), the mean of per-item scores on a 0-1 scale. This is
  the number the paper's AudioCaps column reports (x100).
* ``meteor_java`` — the METEOR 1.5 jar shipped by ``pycocoevalcap`` (exact, stem,
  synonym and paraphrase matching), the captioning community's corpus-level METEOR.
"""

import shutil
from functools import lru_cache

from mowe.scoring.wordnet import load_wordnet

NLTK_PARAMS = {"alpha": 0.9, "beta": 3.0, "gamma": 0.5}


@lru_cache(maxsize=1)
def _tokenizer():
    # NLTK's word_tokenize first splits sentences with the Punkt model, which must be
    # downloaded; its word step alone (NLTKWordTokenizer) needs no data and gives the
    # same tokens on one-sentence captions and answers.
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


def _as_list(refs):
    return [refs] if isinstance(refs, str) else list(refs)


def meteor_nltk(hyps, refs):
    """Mean NLTK METEOR (0-1) and the per-item scores.

    Parameters
    ----------
    hyps : list of str
    refs : list of (str or list of str)
        One reference or several per item (the best one counts, as in NLTK).
    """
    from nltk.translate.meteor_score import meteor_score

    wordnet = load_wordnet()
    tokenize = _tokenizer().tokenize
    items = []
    for hyp, ref in zip(hyps, refs):
        references = [tokenize(r.lower()) for r in _as_list(ref)]
        items.append(meteor_score(references, tokenize((hyp or "").lower()),
                                  wordnet=wordnet, **NLTK_PARAMS))
    return (sum(items) / len(items) if items else 0.0), items


def java_available():
    """Whether a Java runtime for the METEOR 1.5 jar is on PATH."""
    return shutil.which("java") is not None


def meteor_java(hyps, refs):
    """Corpus METEOR 1.5 (0-1) from ``pycocoevalcap``'s jar, and per-item scores.

    Raises
    ------
    RuntimeError
        When Java or pycocoevalcap is missing, with the install command.
    """
    if not java_available():
        raise RuntimeError("Java METEOR needs a Java runtime: "
                           "`apt-get install default-jre-headless`")
    try:
        from pycocoevalcap.meteor.meteor import Meteor
    except ImportError as error:
        raise RuntimeError("Java METEOR needs `pip install pycocoevalcap`") from error
    # The jar's stdio protocol breaks on its separator and on newlines.
    clean = lambda text: " ".join((text or "").replace("|||", " ").split()).lower() or "."
    gts = {i: [clean(r) for r in _as_list(ref)] for i, ref in enumerate(refs)}
    res = {i: [clean(h)] for i, h in enumerate(hyps)}
    scorer = Meteor()
    try:
        corpus, items = scorer.compute_score(gts, res)
    finally:
        _close(scorer)
    return float(corpus), [float(x) for x in items]


def _close(scorer):
    # pycocoevalcap leaves the Java process running until garbage collection.
    process = getattr(scorer, "meteor_p", None)
    if process is not None and process.poll() is None:
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        process.kill()
        process.wait()
