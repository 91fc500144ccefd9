"""Free-form English sentences that ship offline: WordNet's example sentences.

Princeton WordNet (Debian's ``wordnet-base``, already installed for METEOR; licence:
the WordNet 3.0 licence, which allows use, copying and redistribution) holds about
48,000 quoted usage examples in its synset glosses ("he played Bach on the organ", "I
got an upgrade to first class when coach class was full"): natural sentences written by
lexicographers, with names, numbers and punctuation as they occur. Kept: 4 to 20 words
of plain characters (letters, digits, spaces and ``, . ' ? ! - : $ %``): about 34,000.

Each sentence belongs to one split by a hash of its lower-cased text
(:func:`mowe.synth.text.split_of`), so training and test never share a sentence, even
one that differs only in case.

Example
-------
>>> pool = FreeformText(["the cat sat on the mat", "she sells sea shells"])
>>> sorted(pool.sentences("train") + pool.sentences("valid") + pool.sentences("test"))
['she sells sea shells', 'the cat sat on the mat']
"""

import functools
import glob
import os
import re

from mowe.synth.text import split_of

WORDNET_DIR = os.environ.get("MOWE_WORDNET_DIR", "/usr/share/wordnet")
MIN_WORDS, MAX_WORDS = 4, 20
_PLAIN = re.compile(r"^[A-Za-z0-9 ,.'?!:$%-]+$")


class FreeTextMissingError(FileNotFoundError):
    """WordNet's data files are missing; the message says how to install them."""


def wordnet_examples(wordnet_dir=WORDNET_DIR):
    """The usable example sentences of WordNet's ``data.*`` files, sorted, unique.

    Raises
    ------
    FreeTextMissingError
        No ``data.noun``/``data.verb``/... in ``wordnet_dir``.
    """
    paths = sorted(glob.glob(os.path.join(wordnet_dir, "data.*")))
    if not paths:
        raise FreeTextMissingError(
            f"no WordNet data files (data.noun, data.verb, ...) in {wordnet_dir}: install "
            "Debian's wordnet-base (tools/install.sh does) or set MOWE_WORDNET_DIR")
    found = set()
    for path in paths:
        with open(path, encoding="latin-1") as handle:
            for line in handle:
                # licence header lines start with two spaces; a synset's gloss follows "|"
                if line.startswith("  ") or "|" not in line:
                    continue
                for quoted in re.findall(r'"([^"]+)"', line.split("|", 1)[1]):
                    sentence = " ".join(quoted.split())
                    if _PLAIN.match(sentence) and \
                            MIN_WORDS <= len(sentence.split()) <= MAX_WORDS:
                        found.add(sentence)
    return sorted(found)


class FreeformText:
    """Sentences split into train/valid/test by a hash of their lower-cased text.

    Arguments
    ---------
    sentences : list of str, optional
        The pool (default: :func:`wordnet_examples`).
    """

    def __init__(self, sentences=None):
        pool = wordnet_examples() if sentences is None else sentences
        self._by_split = {"train": [], "valid": [], "test": []}
        for sentence in pool:
            self._by_split[split_of(sentence.lower())].append(sentence)

    def sentences(self, split):
        """Every sentence of ``split``, in a fixed order."""
        return list(self._by_split[split])

    def sentence_in_split(self, rng, split):
        """One sentence of ``split`` drawn with ``rng`` (a numpy Generator)."""
        pool = self._by_split[split]
        if not pool:
            raise ValueError(f"no free-form sentence belongs to the {split} split")
        return pool[int(rng.integers(len(pool)))]


@functools.lru_cache(maxsize=1)
def default_pool():
    """The WordNet pool, read once per process."""
    return FreeformText()
