"""Text normalisation for scoring.

* :func:`normalize_for_wer` — AudioBench's ASR preprocessing (``preprocess_text_asr`` in
  AudioLLMs/AudioBench ``src/dataset_src/text_normalizer/preprocess_text.py``), step for
  step: lower case; Whisper's English normaliser (with the British->American spelling
  map, which ``whisper-normalizer`` ships and ``transformers`` does not); the numbers
  0-20 and the tens written as words and a list of contractions expanded; text inside
  ``[] () {} <>`` removed; jiwer's RemoveMultipleSpaces, ExpandCommonEnglishContractions,
  RemoveKaldiNonWords, RemovePunctuation; the fillers uh, umm, um, er, ah removed. An
  empty result becomes ``"empty"`` so that jiwer can score it. Whitespace is collapsed
  at the end (AudioBench leaves double spaces, which jiwer's word split ignores).
* :func:`normalize_answer` — SQuAD's answer normalisation (lower case, no punctuation,
  no articles, single spaces), used for exact match and token F1.
"""

import re
import string
from functools import lru_cache

FILLERS = ("uh", "umm", "um", "er", "ah")  # AudioBench's remove_non_speech_elements
EMPTY = "empty"
NUMBER_WORDS = {
    0: "zero", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six",
    7: "seven", 8: "eight", 9: "nine", 10: "ten", 11: "eleven", 12: "twelve",
    13: "thirteen", 14: "fourteen", 15: "fifteen", 16: "sixteen", 17: "seventeen",
    18: "eighteen", 19: "nineteen", 20: "twenty", 30: "thirty", 40: "forty",
    50: "fifty", 60: "sixty", 70: "seventy", 80: "eighty", 90: "ninety",
}
# AudioBench's normalize_text contractions (applied after Whisper's normaliser)
CONTRACTIONS = {
    "i'm": "i am", "you're": "you are", "he's": "he is", "she's": "she is",
    "it's": "it is", "we're": "we are", "they're": "they are", "i've": "i have",
    "you've": "you have", "we've": "we have", "they've": "they have", "isn't": "is not",
    "aren't": "are not", "wasn't": "was not", "weren't": "were not", "hasn't": "has not",
    "haven't": "have not", "hadn't": "had not", "doesn't": "does not", "don't": "do not",
    "didn't": "did not", "that's": "that is",
}
# AudioBench's remove_parentheses: anything between [] () {} <> (no nesting)
_BRACKETS = re.compile(r"(\[|\(|\{|\<)[^\(\)\\n\[\]]*(\]|\)|\}|\>)")
_NUMBERS = [(re.compile(r"\b" + str(value) + r"\b"), word) for value, word in NUMBER_WORDS.items()]
_CONTRACTIONS = [(re.compile(r"\b" + key + r"\b"), value) for key, value in CONTRACTIONS.items()]
_FILLER = re.compile(r"\b(" + "|".join(FILLERS) + r")\b")


@lru_cache(maxsize=1)
def _whisper_normalizer():
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError as error:  # pragma: no cover - install_requires has it
        raise ImportError("the WER normaliser needs `pip install whisper-normalizer`") from error
    return EnglishTextNormalizer()


@lru_cache(maxsize=1)
def _jiwer_cleanup():
    import jiwer

    return jiwer.Compose([jiwer.RemoveMultipleSpaces(), jiwer.ExpandCommonEnglishContractions(),
                          jiwer.RemoveKaldiNonWords(), jiwer.RemovePunctuation()])


def normalize_for_wer(text):
    """AudioBench's ASR preprocessing of one transcript (``preprocess_text_asr``).

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
    >>> normalize_for_wer("The colour of 3 apples [laughs], umm, isn't it?")
    'the color of three apples is not it'
    """
    text = _whisper_normalizer()((text or "").lower())
    for pattern, word in _NUMBERS:
        text = pattern.sub(word, text)
    for pattern, expanded in _CONTRACTIONS:
        text = pattern.sub(expanded, text)
    text = _BRACKETS.sub("", text)
    text = _jiwer_cleanup()(text)
    text = " ".join(_FILLER.sub("", text).split())
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
