"""Offline WordNet for NLTK, built from Debian's ``wordnet-base`` dictionary files.

NLTK's METEOR needs the WordNet corpus, which NLTK's downloader fetches from the
internet. Debian's ``wordnet-base`` + ``wordnet-sense-index`` packages (installed by
``tools/install.sh``) hold the same WordNet 3.0 database files; this module copies them
into an NLTK data folder as ``corpora/wordnet/`` and adds the standard ``lexnames``
file, which Debian does not ship, so that ``nltk.corpus.wordnet`` loads with no network.
"""

import logging
import os
import shutil
import tempfile

logger = logging.getLogger(__name__)

DEBIAN_WORDNET_DIR = "/usr/share/wordnet"
REQUIRED_FILES = ("data.noun", "data.verb", "data.adj", "data.adv", "index.noun",
                  "index.verb", "index.adj", "index.adv", "index.sense", "noun.exc",
                  "verb.exc", "adj.exc", "adv.exc")
# WordNet 3.0's lexicographer file list (number, name, syntactic category), part of the
# WordNet distribution (dict/lexnames) but missing from Debian's package.
LEXNAMES = """adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact
noun.attribute noun.body noun.cognition noun.communication noun.event noun.feeling
noun.food noun.group noun.location noun.motive noun.object noun.person noun.phenomenon
noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape noun.state
noun.substance noun.time verb.body verb.change verb.cognition verb.communication
verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion
verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl""".split()
_CATEGORY = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


def default_data_dir():
    """Where the NLTK data folder is built: ``$MOWE_NLTK_DATA`` or ``~/.cache/mowe/nltk_data``."""
    return os.environ.get("MOWE_NLTK_DATA") or os.path.join(
        os.path.expanduser("~"), ".cache", "mowe", "nltk_data")


def lexnames_text():
    """The content of WordNet 3.0's ``lexnames`` file."""
    return "".join(f"{number:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n"
                   for number, name in enumerate(LEXNAMES))


def build_wordnet(data_dir=None, source_dir=DEBIAN_WORDNET_DIR):
    """Make ``<data_dir>/corpora/wordnet`` from the Debian files (atomically); idempotent.

    Parameters
    ----------
    data_dir : str, optional
        NLTK data folder (default :func:`default_data_dir`).
    source_dir : str
        Folder with the WordNet database files.

    Returns
    -------
    str
        The NLTK data folder.

    Raises
    ------
    FileNotFoundError
        When the Debian files are missing, with the command that installs them.
    """
    data_dir = data_dir or default_data_dir()
    target = os.path.join(data_dir, "corpora", "wordnet")
    if os.path.isfile(os.path.join(target, "lexnames")):
        return data_dir
    missing = [n for n in REQUIRED_FILES if not os.path.isfile(os.path.join(source_dir, n))]
    if missing:
        raise FileNotFoundError(
            f"WordNet database files missing from {source_dir} ({', '.join(missing[:3])}...): "
            "install them with `apt-get install wordnet-base wordnet-sense-index` "
            "(tools/install.sh does this when run as root)")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".wordnet-", dir=os.path.dirname(target))
    for name in os.listdir(source_dir):
        path = os.path.join(source_dir, name)
        if os.path.isfile(path):
            shutil.copyfile(path, os.path.join(staging, name))
    with open(os.path.join(staging, "lexnames"), "w", encoding="utf-8") as handle:
        handle.write(lexnames_text())
    try:
        os.rename(staging, target)
    except OSError:  # another process won the race
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("built NLTK WordNet from %s in %s", source_dir, target)
    return data_dir


def load_wordnet(data_dir=None):
    """Return NLTK's WordNet reader, building the offline copy first when needed."""
    import nltk

    try:
        from nltk.corpus import wordnet
        wordnet.ensure_loaded()
        return wordnet
    except LookupError:
        pass
    data_dir = build_wordnet(data_dir)
    if data_dir not in nltk.data.path:
        nltk.data.path.insert(0, data_dir)
    from nltk.corpus import wordnet
    wordnet.ensure_loaded()
    return wordnet
