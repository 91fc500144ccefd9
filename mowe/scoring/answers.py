"""Deterministic answer metrics: emotion labels, yes/no, exact match, SQuAD token F1."""

import re
from collections import Counter

from mowe.scoring.normalize import NUMBER_WORDS, normalize_answer

# Canonical emotion -> words that name it in a free-form answer. The canonical names are
# MELD's seven labels; the synthetic corpus's happy/sad/angry map onto them.
EMOTION_SYNONYMS = {
    "neutral": ("neutral", "calm", "no emotion", "no particular emotion", "emotionless",
                "indifferent", "flat", "normal"),
    "joy": ("joy", "joyful", "happy", "happiness", "glad", "cheerful", "delighted",
            "excited", "pleased", "content", "elated"),
    "sadness": ("sadness", "sad", "unhappy", "sorrow", "sorrowful", "depressed",
                "melancholy", "gloomy", "upset", "down"),
    "anger": ("anger", "angry", "mad", "furious", "annoyed", "irritated", "frustrated",
              "rage", "enraged"),
    "fear": ("fear", "afraid", "scared", "fearful", "frightened", "terrified", "anxious",
             "nervous", "worried"),
    "disgust": ("disgust", "disgusted", "disgusting", "gross", "repulsed", "revolted"),
    "surprise": ("surprise", "surprised", "astonished", "amazed", "shocked", "startled"),
}
_NEGATION = re.compile(r"\b(?:not|no|never|n't|isn't|doesn't|don't|wasn't)\s+(?:\w+\s+)?$")
_WORD_NUMBERS = {word: str(number) for number, word in NUMBER_WORDS.items()}


def _phrase_pattern(words):
    return re.compile(r"\b(" + "|".join(sorted(map(re.escape, words), key=len, reverse=True))
                      + r")\b")


_EMOTION_PATTERNS = {label: _phrase_pattern(words) for label, words in EMOTION_SYNONYMS.items()}


def extract_emotion(text, labels=None):
    """The emotion a free-form answer names, as a canonical label, or None.

    The earliest non-negated mention wins ("The speaker sounds happy, not sad" -> joy).

    Parameters
    ----------
    text : str
        A model answer or a reference label.
    labels : iterable of str, optional
        Canonical labels to consider (default: all of :data:`EMOTION_SYNONYMS`).

    Examples
    --------
    >>> extract_emotion("I think the speaker is quite happy.")
    'joy'
    >>> extract_emotion("She is not angry, she is scared")
    'fear'
    """
    text = (text or "").lower()
    best = None
    for label in labels or EMOTION_SYNONYMS:
        for match in _EMOTION_PATTERNS[label].finditer(text):
            if _NEGATION.search(text[:match.start()]):
                continue
            if best is None or match.start() < best[0]:
                best = (match.start(), label)
            break
    return best[1] if best else None


def extract_yes_no(text):
    """``"yes"``/``"no"`` from the first yes/no word of an answer, or None."""
    match = re.search(r"\b(yes|no|yeah|yep|nope|true|false|correct|incorrect)\b",
                      (text or "").lower())
    if not match:
        return None
    return "yes" if match.group(1) in ("yes", "yeah", "yep", "true", "correct") else "no"


def _canonical_tokens(text):
    """SQuAD-normalised tokens with digits written as words where known ("2" -> "two")."""
    out = []
    for token in normalize_answer(text).split():
        out.append(NUMBER_WORDS.get(int(token), token) if token.isdigit() else token)
    return out


def exact_match(hyp, refs):
    """SQuAD exact match against one reference or the best of several (0 or 1)."""
    refs = [refs] if isinstance(refs, str) else list(refs)
    hyp_tokens = _canonical_tokens(hyp)
    return float(any(hyp_tokens == _canonical_tokens(r) for r in refs))


def token_f1(hyp, refs):
    """SQuAD token F1 against one reference or the best of several (0-1).

    Examples
    --------
    >>> round(token_f1("in the red house", "the red house"), 3)
    0.8
    """
    refs = [refs] if isinstance(refs, str) else list(refs)
    return max(_f1(_canonical_tokens(hyp), _canonical_tokens(r)) for r in refs)


def _f1(hyp_tokens, ref_tokens):
    if not hyp_tokens or not ref_tokens:
        return float(hyp_tokens == ref_tokens)
    common = sum((Counter(hyp_tokens) & Counter(ref_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(hyp_tokens), common / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


YES_NO_WORDS = ("yes", "no")


def is_yes_no(ref):
    """Whether a reference answer is a plain yes or no."""
    return normalize_answer(ref) in YES_NO_WORDS


def short_answer_match(hyp, ref):
    """AQA accuracy of one item (0 or 1): for a yes/no reference, the first yes/no word
    of the answer must agree ("Yes, there is." counts as yes); otherwise SQuAD exact
    match with digits read as number words ("2" equals "two")."""
    if is_yes_no(ref):
        return float(extract_yes_no(hyp) == normalize_answer(ref))
    return exact_match(hyp, ref)
