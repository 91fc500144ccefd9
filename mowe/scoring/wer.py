"""Corpus-level word error rate through jiwer."""

from dataclasses import asdict, dataclass

from mowe.scoring.normalize import EMPTY, normalize_for_wer, normalize_plain


@dataclass
class WordErrors:
    """Edit counts of a corpus; ``wer = (S + D + I) / (S + D + hits)``."""

    substitutions: int
    deletions: int
    insertions: int
    hits: int
    reference_words: int
    wer: float

    def as_dict(self):
        return asdict(self)


def corpus_wer(hyps, refs, normalise=True):
    """Corpus-level WER of paired hypotheses and references.

    Parameters
    ----------
    hyps, refs : list of str
        Transcripts, paired by position.
    normalise : bool
        True: AudioBench's normalisation (:func:`normalize_for_wer`; an empty text is
        scored as the word "empty", as AudioBench does). False: lower-cased text with
        punctuation kept — the plain WER; an empty hypothesis deletes every reference word.

    Returns
    -------
    WordErrors
    """
    import jiwer

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    if not refs:
        raise ValueError("no transcripts to score")
    clean = normalize_for_wer if normalise else normalize_plain
    pairs = [(clean(r), clean(h)) for h, r in zip(hyps, refs)]
    if not normalise:
        # jiwer refuses empty references; a reference with no words cannot be scored.
        pairs = [(r, h) for r, h in pairs if r]
        if not pairs:
            raise ValueError("every reference transcript is empty")
    # jiwer cannot align against an empty hypothesis string: score it against a word
    # that never matches, then count that word's substitution as a deletion instead.
    holes = [i for i, (_, h) in enumerate(pairs) if not h]
    out = jiwer.process_words([r for r, _ in pairs], [h or "\u2205" for _, h in pairs])
    substitutions, deletions = out.substitutions, out.deletions
    insertions = out.insertions
    for i in holes:
        # The placeholder is one word: it either substituted one reference word or was
        # inserted (never for a non-empty reference). Turn it into a deletion.
        substitutions -= 1
        deletions += 1
    reference_words = substitutions + deletions + out.hits
    errors = substitutions + deletions + insertions
    return WordErrors(substitutions, deletions, insertions, out.hits, reference_words,
                      errors / max(reference_words, 1))


__all__ = ["WordErrors", "corpus_wer", "EMPTY"]
