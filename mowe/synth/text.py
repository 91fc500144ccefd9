"""Text generators for the synthetic corpus: sentences, passages and instructions.

Sentences come from templates over a vocabulary of several hundred words, so a test
set of unseen sentences is easy to draw. Which split a text belongs to is decided by a
hash of the text itself (:func:`split_of`), so no text can land in two splits.
"""

import hashlib

NAMES = ["anna", "ben", "carla", "david", "emma", "frank", "grace", "henry", "irene", "jack",
         "karen", "leo", "maria", "nick", "olivia", "peter", "rosa", "sam", "tina", "victor",
         "wendy", "oscar", "lucy", "martin", "nora", "paul", "ruth", "simon", "tom", "zoe"]
ADJECTIVES = ["red", "blue", "green", "small", "large", "old", "new", "quiet", "loud", "bright",
              "dark", "heavy", "light", "warm", "cold", "soft", "hard", "clean", "dirty", "quick",
              "slow", "happy", "sad", "strange", "simple", "famous", "empty", "full", "round",
              "narrow", "wide", "sweet", "bitter", "fresh", "wooden", "golden", "silver", "tiny"]
NOUNS = ["book", "chair", "table", "window", "garden", "river", "mountain", "letter", "phone",
         "bottle", "basket", "bicycle", "camera", "candle", "carpet", "coffee", "computer",
         "door", "flower", "guitar", "hammer", "jacket", "kettle", "ladder", "lamp", "map",
         "mirror", "notebook", "orange", "painting", "pencil", "piano", "pillow", "plate",
         "radio", "ribbon", "rope", "shirt", "shoe", "spoon", "stone", "ticket", "towel",
         "train", "tree", "umbrella", "violin", "wallet", "watch", "wheel", "apple", "bread",
         "cake", "cheese", "horse", "dog", "cat", "bird", "boat", "car", "bridge", "tower"]
VERBS = ["found", "bought", "carried", "painted", "opened", "closed", "cleaned", "moved",
         "dropped", "lifted", "washed", "fixed", "sold", "borrowed", "hid", "pushed",
         "pulled", "wrapped", "broke", "built", "watched", "brought", "left", "kept", "took"]
PLACES = ["kitchen", "station", "library", "market", "school", "office", "park", "museum",
          "harbor", "garage", "hospital", "bakery", "theater", "airport", "village", "castle",
          "beach", "forest", "hotel", "church", "farm", "factory", "studio", "stadium"]
TIMES = ["in the morning", "at noon", "in the afternoon", "in the evening", "at night",
         "on monday", "on tuesday", "on wednesday", "on thursday", "on friday",
         "on saturday", "on sunday", "last week", "yesterday", "after lunch"]
ADVERBS = ["slowly", "quickly", "carefully", "quietly", "happily", "suddenly", "gently",
           "finally", "nearly", "almost", "easily", "proudly"]
PREPOSITIONS = ["near", "behind", "inside", "next to", "under", "above", "outside"]

SENTENCE_TEMPLATES = [
    "{name} {verb} the {adj} {noun} {prep} the {place}",
    "the {adj} {noun} was {adverb} {verb} by {name}",
    "{name} {adverb} {verb} the {adj} {noun} {time}",
    "{time} {name} {verb} the {noun} and the {noun2}",
    "we {verb} the {adj} {noun} {prep} the {adj2} {place}",
    "{name} and {name2} {verb} the {noun} at the {place} {time}",
]


def split_of(text, valid_percent=10, test_percent=10):
    """The split a text belongs to, from a stable hash of the text."""
    bucket = int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) % 100
    if bucket < test_percent:
        return "test"
    if bucket < test_percent + valid_percent:
        return "valid"
    return "train"


def _pick(rng, words, avoid=None):
    while True:
        word = words[int(rng.integers(len(words)))]
        if word != avoid:
            return word


def with_article(phrase):
    """``a`` or ``an`` before ``phrase``."""
    return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"


def sentence(rng):
    """A random English sentence from the templates (lower case, no punctuation)."""
    template = SENTENCE_TEMPLATES[int(rng.integers(len(SENTENCE_TEMPLATES)))]
    name = _pick(rng, NAMES)
    noun = _pick(rng, NOUNS)
    adj = _pick(rng, ADJECTIVES)
    return template.format(name=name, name2=_pick(rng, NAMES, name), verb=_pick(rng, VERBS),
                           adj=adj, adj2=_pick(rng, ADJECTIVES, adj), noun=noun,
                           noun2=_pick(rng, NOUNS, noun), place=_pick(rng, PLACES),
                           prep=_pick(rng, PREPOSITIONS), adverb=_pick(rng, ADVERBS),
                           time=_pick(rng, TIMES))


def sentence_in_split(rng, split, max_tries=10000):
    """Draw sentences until one belongs to ``split``."""
    for _ in range(max_tries):
        text = sentence(rng)
        if split_of(text) == split:
            return text
    raise RuntimeError(f"no sentence for split {split} after {max_tries} draws")


def passage(rng):
    """A 3-sentence spoken passage and a question about it with a short answer.

    Returns
    -------
    text, question, answer : str
    """
    name = _pick(rng, NAMES)
    friend = _pick(rng, NAMES, name)
    place = _pick(rng, PLACES)
    thing = f"{_pick(rng, ADJECTIVES)} {_pick(rng, NOUNS)}"
    time = _pick(rng, TIMES)
    text = (f"{name} went to the {place} {time}. There {name} bought {with_article(thing)}. "
            f"Later {name} met {friend} and showed the {thing.split()[1]}.")
    questions = [
        (f"Where did {name} go?", f"the {place}"),
        (f"What did {name} buy?", with_article(thing)),
        (f"Who did {name} meet?", friend),
        (f"When did {name} go to the {place}?", time),
    ]
    question, answer = questions[int(rng.integers(len(questions)))]
    return text, question, answer


def passage_in_split(rng, split, max_tries=10000):
    """Draw passages until one belongs to ``split`` (decided by the passage text)."""
    for _ in range(max_tries):
        text, question, answer = passage(rng)
        if split_of(text) == split:
            return text, question, answer
    raise RuntimeError(f"no passage for split {split} after {max_tries} draws")


INSTRUCTIONS = {
    "asr": ["Transcribe the speech in this audio.", "What does the speaker say?",
            "Write down exactly what is said.", "Please transcribe this recording.",
            "Convert the spoken words into text.", "Give a transcript of the audio.",
            "What words are spoken in this clip?"],
    "er": ["What emotion does the speaker express? Answer with one of: {labels}.",
           "How does the speaker feel? Choose from {labels}.",
           "Identify the emotion in this voice ({labels}).",
           "Which emotion is conveyed by the tone of voice: {labels}?",
           "Classify the speaker's emotion as one of {labels}."],
    "ac": ["Describe the sounds in this recording.", "Write a caption for this audio.",
           "What can you hear in this clip?", "Give a short description of the audio.",
           "Summarize the sound events you hear."],
}
