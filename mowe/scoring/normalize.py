"""Text normalisation for scoring.

* :func:`normalize_for_wer` — AudioBench's ASR normalisation: lower case, bracketed
  text dropped, Whisper's English normaliser (with the British->American spelling map,
  which ``whisper-normalizer`` ships and ``transformers`` does not), the numbers 0-20
  and the tens written as words, punctuation and extra spaces removed, fillers dropped;
  an empty result becomes ``"empty"`` so that jiwer can score it.
* :func:`normalize_answer` — SQuAD's answer normalisation (lower case, no punctuation,
  no articles, single spaces), used for exact match and token F1.
"""

import re
import string
from functools import lru_cache

FILLERS = ("uh", "um", "er", "ah")
EMPTY = "empty"
NUMBER_WORDS = {
    0: "zero", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six",
    7: "seven", 8: "eight", 9: "nine", 10: "ten", 11: "eleven", 12: "twelve",
    13: "thirteen", 14: "fourteen", 15: "fifteen", 16: "sixteen", 17: "seventeen",
    18: "eighteen", 19: "nineteen", 20: "twenty", 30: "thirty", 40: "forty",
    50: "fifty", 60: "sixty", 70: "seventy", 80: "eighty", 90: "ninety",
}
_BRACKETS = re.compile(r"[<\[(][^<>\[\]()]*[>\])]")
_DIGITS = re.compile(r"\b\d+\b")
_FILLER = re.compile(r"\b(?:" + "|".join(FILLERS) + r")\b")


@lru_cache(maxsize=1)
def _whisper_normalizer():
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError as error:  # pragma: no cover - install_requires has it
        raise ImportError("the WER normaliser needs `pip install whisper-normalizer`") from error
    return EnglishTextNormalizer()


def _number_to_words(match):
    value = int(match.group(0))
    return NUMBER_WORDS.get(value, match.group(0))


def normalize_for_wer(text):
    """AudioBench-compatible ASR normalisation of one transcript.

    Parameters
    ----------
    text : str
        A hypothesis or reference transcript.

    Returns
    -------
    str
        The normalised transcript; ``"empty"`` when nothing is left.

    Examples
    --------
    >>> normalize_for_wer("The colour of 3 apples [laughs], uh, isn't it?")
    'the color of three apples is not it'
    """
    text = _BRACKETS.sub(" ", (text or "").lower())
    text = _whisper_normalizer()(text)
    text = _DIGITS.sub(_number_to_words, text)
    text = text.translate(str.maketrans({c: " " for c in string.punctuation}))
    text = " ".join(_FILLER.sub(" ", text).split())
    return text or EMPTY


def normalize_plain(text):
    """Lower case and whitespace only (the un-normalised WER's view of a transcript)."""
    return " ".join((text or "").lower().split())


def normalize_answer(text):
    """SQuAD answer normalisation: lower case, no punctuation, no articles, single spaces.

    Examples
    --------
    >>> normalize_answer("The Eiffel tower!")
    'eiffel tower'
    """
    text = (text or "").lower()
    text = "".join(c for c in text if c not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())
