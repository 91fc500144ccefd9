"""Free-form English sentences that ship offline: WordNet's example sentences.

Princeton WordNet (Debian's ``wordnet-base``, already installed for METEOR; licence:
the WordNet 3.0 licence, which allows use, copying and redistribution) holds about
48,000 quoted usage examples in its synset glosses ("he played Bach on the organ", "I
got an upgrade to first class when coach class was full"): natural sentences written by
lexicographers, with names, numbers and punctuation as they occur. Kept: 4 to 20 words
of plain characters (letters, digits, spaces and ``, . ' ? ! - : $ %``): about 34,000.

Spoken QA (:class:`WordQuestions`): a WordNet example is spoken and the question gives
the definition of its synset ("Which word in the recording means 'a keyboard
instrument ...'?"); the answer is the word as it occurs in the sentence, heard only in
the audio. About 23,000 such items (kept: definitions of 2-14 plain words without the
answer word; one question per sentence).

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
MAX_DEFINITION_WORDS = 14
_PLAIN = re.compile(r"^[A-Za-z0-9 ,.'?!:$%-]+$")
_PARENTHESIS = re.compile(r"\([^()]*\)")


class FreeTextMissingError(FileNotFoundError):
    """WordNet's data files are missing; the message says how to install them."""


def _glossed_examples(wordnet_dir):
    """Yield ``(example, lemmas, definition)`` for every quoted example of every synset
    in WordNet's ``data.*`` files (format: wndb(5WN); lemmas with spaces for ``_``).

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
    for path in paths:
        with open(path, encoding="latin-1") as handle:
            for line in handle:
                # licence header lines start with two spaces; a synset's gloss follows "|"
                if line.startswith("  ") or "|" not in line:
                    continue
                head, gloss = line.split("|", 1)
                fields = head.split()
                # offset lex_filenum ss_type w_cnt(hex) [word lex_id]...; adjectives may
                # carry a syntactic marker such as "(a)" after the word
                count = int(fields[3], 16)
                lemmas = [re.sub(r"\([a-z]+\)$", "", word).replace("_", " ")
                          for word in fields[4:4 + 2 * count:2]]
                definition = gloss.split('"', 1)[0].split(";", 1)[0]
                definition = " ".join(_PARENTHESIS.sub(" ", definition).split())
                for quoted in re.findall(r'"([^"]+)"', gloss):
                    yield " ".join(quoted.split()), lemmas, definition


def _usable(sentence):
    return bool(_PLAIN.match(sentence)) and MIN_WORDS <= len(sentence.split()) <= MAX_WORDS


def wordnet_examples(wordnet_dir=WORDNET_DIR):
    """The usable example sentences of WordNet's ``data.*`` files, sorted, unique.

    Raises
    ------
    FreeTextMissingError
        No ``data.noun``/``data.verb``/... in ``wordnet_dir``.
    """
    return sorted({sentence for sentence, _, _ in _glossed_examples(wordnet_dir)
                   if _usable(sentence)})


def wordnet_word_questions(wordnet_dir=WORDNET_DIR):
    """``(sentence, word, definition)`` triples: a usable example sentence, the word of
    its synset that it contains (as spelt in the sentence) and the synset's definition.

    A spoken-QA item asks which word of the spoken sentence has that meaning; the answer
    is in the audio only. Kept: definitions of 2 to :data:`MAX_DEFINITION_WORDS` plain
    words that do not contain the answer word. Sorted, one triple per sentence (its first
    synset in file order).
    """
    chosen = {}
    for sentence, lemmas, definition in _glossed_examples(wordnet_dir):
        if sentence in chosen or not _usable(sentence) or not _PLAIN.match(definition) \
                or not 2 <= len(definition.split()) <= MAX_DEFINITION_WORDS:
            continue
        for lemma in lemmas:
            found = re.search(r"\b" + re.escape(lemma) + r"\b", sentence, re.IGNORECASE)
            if found and not re.search(r"\b" + re.escape(lemma) + r"\b", definition,
                                       re.IGNORECASE):
                chosen[sentence] = (sentence, found.group(0), definition)
                break
    return sorted(chosen.values())


def _split_by_sentence(items, sentence_of):
    """``{split: [item, ...]}``, each item in the split of its sentence's lower-cased hash."""
    by_split = {"train": [], "valid": [], "test": []}
    for item in items:
        by_split[split_of(sentence_of(item).lower())].append(item)
    return by_split


def _draw(by_split, rng, split, what):
    """One item of ``split`` drawn with ``rng``; a named error for an empty split."""
    pool = by_split[split]
    if not pool:
        raise ValueError(f"no free-form {what} belongs to the {split} split")
    return pool[int(rng.integers(len(pool)))]


class FreeformText:
    """Sentences split into train/valid/test by a hash of their lower-cased text.

    Arguments
    ---------
    sentences : list of str, optional
        The pool (default: :func:`wordnet_examples`).
    """

    def __init__(self, sentences=None):
        pool = wordnet_examples() if sentences is None else sentences
        self._by_split = _split_by_sentence(pool, lambda sentence: sentence)

    def sentences(self, split):
        """Every sentence of ``split``, in a fixed order."""
        return list(self._by_split[split])

    def sentence_in_split(self, rng, split):
        """One sentence of ``split`` drawn with ``rng`` (a numpy Generator)."""
        return _draw(self._by_split, rng, split, "sentence")


# How a spoken-QA item asks for the word (one drawn per item).
WORD_QUESTIONS = (
    'Which word in the recording means "{definition}"?',
    'The speaker uses a word that means "{definition}". Which word is it?',
    'What word does the speaker say that means "{definition}"?',
    'Find the spoken word meaning "{definition}".',
)


class WordQuestions:
    """Spoken-QA items from :func:`wordnet_word_questions`, split like
    :class:`FreeformText` (by a hash of the lower-cased sentence), so an SQA test
    sentence is never an ASR or SQA training sentence.

    Arguments
    ---------
    triples : list of (str, str, str), optional
        ``(sentence, word, definition)`` (default: :func:`wordnet_word_questions`).

    Example
    -------
    >>> import numpy as np
    >>> pool = WordQuestions([("he played Bach on the organ", "organ",
    ...                        "wind instrument whose sound is produced by pipes")])
    >>> split = [s for s in ("train", "valid", "test") if pool.triples(s)][0]
    >>> passage, question, answer = pool.item_in_split(np.random.default_rng(0), split)
    >>> answer, "pipes" in question
    ('organ', True)
    """

    def __init__(self, triples=None):
        pool = wordnet_word_questions() if triples is None else triples
        self._by_split = _split_by_sentence(map(tuple, pool), lambda triple: triple[0])

    def triples(self, split):
        """Every ``(sentence, word, definition)`` of ``split``, in a fixed order."""
        return list(self._by_split[split])

    def item_in_split(self, rng, split):
        """``(passage, question, answer)`` of ``split`` drawn with ``rng``."""
        sentence, word, definition = _draw(self._by_split, rng, split, "question")
        template = WORD_QUESTIONS[int(rng.integers(len(WORD_QUESTIONS)))]
        return sentence, template.format(definition=definition), word


@functools.lru_cache(maxsize=1)
def default_questions():
    """The WordNet word questions, read once per process."""
    return WordQuestions()


@functools.lru_cache(maxsize=1)
def default_pool():
    """The WordNet pool, read once per process."""
    return FreeformText()
