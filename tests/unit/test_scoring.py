"""Scoring: WER and its normaliser, METEOR (NLTK with offline WordNet, Java 1.5), label
extraction, SQuAD metrics, the CLI, and the LLM judge over a real local HTTP server."""

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from mowe.scoring import answers, judge, meteor
from mowe.scoring.normalize import normalize_answer, normalize_for_wer
from mowe.scoring.wer import corpus_wer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable


# ----------------------------------------------------------------------------- WER
def test_wer_counts_substitution_deletion_insertion():
    out = corpus_wer(["the cat sit on mat"], ["the cat sat on the mat"])
    assert (out.substitutions, out.deletions, out.insertions) == (1, 1, 0)
    assert out.wer == pytest.approx(2 / 6)
    out = corpus_wer(["the big cat sat on the mat"], ["the cat sat on the mat"])
    assert (out.substitutions, out.deletions, out.insertions) == (0, 0, 1)


def test_wer_is_corpus_level_not_mean_of_utterances():
    hyps = ["a b c d e f g h i j", "x"]
    refs = ["a b c d e f g h i j", "y"]
    # mean of utterance WERs would be 0.5; corpus level is 1 error / 11 words
    assert corpus_wer(hyps, refs).wer == pytest.approx(1 / 11)


def test_empty_hypothesis_normalised_and_plain():
    normalised = corpus_wer([""], ["the cat sat"])
    # AudioBench scores an empty text as the word "empty": 1 substitution + 2 deletions
    assert normalised.wer == pytest.approx(1.0)
    assert (normalised.substitutions, normalised.deletions) == (1, 2)
    plain = corpus_wer([""], ["the cat sat"], normalise=False)
    assert (plain.substitutions, plain.deletions, plain.insertions) == (0, 3, 0)


def test_plain_wer_sees_what_normalisation_forgives():
    hyps, refs = ["The colour is grey, isn't it?"], ["the color is gray is not it"]
    assert corpus_wer(hyps, refs).wer == 0.0
    assert corpus_wer(hyps, refs, normalise=False).wer > 0.4


@pytest.mark.parametrize("text, expected", [
    ("The COLOUR of the centre", "the color of the center"),     # spelling map
    ("I have 3 cats and 20 dogs", "i have three cats and twenty dogs"),
    ("twenty-one apples", "21 apples"),                          # only 0-20 and tens
    ("It isn't here, we're late", "it is not here we are late"),  # contractions
    ("hello [laughter] <unk> world (inaudible)", "hello world"),  # brackets
    ("uh I um think er so ah", "i think so"),                    # fillers
    ("Hello, world!!", "hello world"),                           # punctuation
    ("", "empty"), ("[noise]", "empty"),                         # nothing left
])
def test_wer_normaliser(text, expected):
    assert normalize_for_wer(text) == expected


# Cases worked through AudioBench's own preprocess_text_asr (AudioLLMs/AudioBench,
# src/dataset_src/text_normalizer/preprocess_text.py): Whisper's normaliser, then its
# digit words and contractions, its bracket regex, jiwer's RemoveMultipleSpaces,
# ExpandCommonEnglishContractions, RemoveKaldiNonWords, RemovePunctuation, then its
# filler regex (uh|umm|um|er|ah).
@pytest.mark.parametrize("text, expected", [
    ("Umm, I think so", "i think so"),           # "umm" is one of AudioBench's fillers
    ("umm umm", "empty"),
    ("hmm yes mm", "yes"),                       # Whisper's own ignore patterns
    # Whisper's normaliser turns braces into spaces before AudioBench's bracket regex
    # runs, so AudioBench keeps the word inside them
    ("hello {noise} world", "hello noise world"),
    ("HELLO <unk> world [laughter]", "hello world"),
    ("it costs $5", "it costs $five"),           # "$" is a symbol, not punctuation
    ("3.5 percent", "threefive"),                # digit words inside a decimal, then
                                                 # RemovePunctuation joins them (and drops %)
    ("Mr. Smith isn't here er", "mister smith is not here"),
])
def test_wer_normaliser_follows_audiobench(text, expected):
    assert normalize_for_wer(text) == expected


# ----------------------------------------------------------------------------- METEOR
def test_nltk_meteor_uses_wordnet_offline():
    hyps = ["a dog barks loudly", "quantum physics lecture notes", "a hound barks",
            "a cat barks"]
    refs = ["a dog barks loudly", "a dog barks loudly", "a dog barks", "a dog barks"]
    mean, items = meteor.meteor_nltk(hyps, refs)
    assert items[0] > 0.95
    assert items[1] < 0.05
    # "hound" matches "dog" only through WordNet synonyms; "cat" does not
    assert items[2] > items[3] + 0.2
    assert mean == pytest.approx(sum(items) / 4)


def test_wordnet_is_built_from_debian_files(tmp_path):
    from mowe.scoring.wordnet import build_wordnet, lexnames_text

    if not os.path.isdir("/usr/share/wordnet"):
        pytest.fail("Debian WordNet missing: tools/install.sh installs wordnet-base")
    data_dir = build_wordnet(str(tmp_path / "nltk_data"))
    folder = tmp_path / "nltk_data" / "corpora" / "wordnet"
    assert (folder / "data.noun").stat().st_size > 1_000_000
    assert (folder / "lexnames").read_text() == lexnames_text()
    assert len(lexnames_text().splitlines()) == 45
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    nltk.data.path.insert(0, data_dir)  # NLTK reads only folders on its data path
    try:
        reader = WordNetCorpusReader(str(folder), None)
        lemmas = {name for s in reader.synsets("hound") for name in s.lemma_names()}
        assert "dog" in lemmas  # cad.n.01: cad, bounder, blackguard, dog, hound, heel
    finally:
        nltk.data.path.remove(data_dir)
    assert build_wordnet(data_dir) == data_dir  # idempotent


def test_missing_wordnet_gives_install_command(tmp_path):
    from mowe.scoring.wordnet import build_wordnet

    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base"):
        build_wordnet(str(tmp_path / "x"), source_dir=str(tmp_path / "nowhere"))


def test_java_meteor_ranks_like_nltk():
    if not meteor.java_available():
        pytest.fail("Java missing: tools/install.sh installs default-jre-headless")
    hyps = ["a dog barks loudly", "quantum physics lecture notes", "a hound barks",
            "a cat barks"]
    refs = ["a dog barks loudly", "a dog barks loudly", "a dog barks", "a dog barks"]
    corpus, items = meteor.meteor_java(hyps, refs)
    assert items[0] > 0.95 and items[1] < 0.05
    assert items[2] > items[3]
    assert 0 < corpus < 1


# ----------------------------------------------------------------------------- answers
@pytest.mark.parametrize("text, label", [
    ("I think the speaker is quite happy.", "joy"),
    ("She is not angry, she is scared", "fear"),
    ("Anger.", "anger"),
    ("The emotion is sadness", "sadness"),
    ("sad", "sadness"),
    ("The speaker sounds surprised, maybe a little afraid", "surprise"),
    ("neutral", "neutral"),
    ("I don't know", None),
])
def test_emotion_extraction(text, label):
    assert answers.extract_emotion(text) == label


def test_squad_metrics():
    assert normalize_answer("The Red House!") == "red house"
    assert answers.exact_match("The Red House!", "red house") == 1.0
    assert answers.exact_match("2", "two") == 1.0
    assert answers.exact_match("a red house", ["blue car", "red house"]) == 1.0
    assert answers.token_f1("in the red house", "the red house") == pytest.approx(0.8)
    assert answers.token_f1("blue car", "red house") == 0.0
    assert answers.token_f1("", "") == 1.0 and answers.token_f1("", "x") == 0.0


def test_yes_no_and_short_answers():
    assert answers.short_answer_match("Yes, there is a beep.", "yes") == 1.0
    assert answers.short_answer_match("No.", "yes") == 0.0
    assert answers.short_answer_match("Nope", "no") == 1.0
    assert answers.short_answer_match("Two", "two") == 1.0
    assert answers.short_answer_match("high or low", "high") == 0.0


# ----------------------------------------------------------------------------- CLI
def write_hyps(path, rows):
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def test_score_cli_per_task(tmp_path):
    rows = [
        {"id": "a1", "task": "asr", "instruction": "Transcribe.", "hyp": "the cat sit on mat",
         "ref": "the cat sat on the mat"},
        {"id": "e1", "task": "er", "instruction": "Emotion?", "hyp": "The speaker is joyful.",
         "ref": "happy"},
        {"id": "e2", "task": "er", "instruction": "Emotion?", "hyp": "angry", "ref": "sad"},
        {"id": "q1", "task": "aqa", "instruction": "Is there a beep?", "hyp": "Yes.",
         "ref": "yes"},
        {"id": "q2", "task": "aqa", "instruction": "How many?", "hyp": "3", "ref": "two"},
        {"id": "s1", "task": "sqa", "instruction": "Who?", "hyp": "Anna", "ref": "anna"},
        {"id": "c1", "task": "ac", "instruction": "Caption.", "hyp": "a dog barks",
         "ref": ["a dog barks", "a dog is barking"]},
    ]
    write_hyps(tmp_path / "h.jsonl", rows)
    result = subprocess.run([PYTHON, "-m", "mowe.scoring", "score", "--hyp_file",
                             str(tmp_path / "h.jsonl"), "--out_dir", str(tmp_path / "s")],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    scores = json.loads((tmp_path / "s" / "scores.json").read_text())
    assert scores["asr"]["wer"] == pytest.approx(2 / 6)
    assert scores["er"]["accuracy"] == 0.5
    assert scores["aqa"]["accuracy"] == 0.5 and scores["aqa"]["yes_no_accuracy"] == 1.0
    assert scores["sqa"]["exact_match"] == 1.0
    assert scores["ac"]["meteor_nltk"] > 0.9 and scores["ac"]["meteor_java"] > 0.9
    assert scores["ac"]["primary"] == "meteor_nltk"
    items = [json.loads(l) for l in (tmp_path / "s" / "items.jsonl").read_text().splitlines()]
    assert len(items) == len(rows)
    assert "METEOR (NLTK)" in (tmp_path / "s" / "scores.md").read_text()

    # aggregate two experiments into one table
    out = subprocess.run([PYTHON, "-m", "mowe.scoring", "aggregate", str(tmp_path / "s"),
                          str(tmp_path / "s"), "--names", "sys_a", "sys_b", "--out",
                          str(tmp_path / "R.md")], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    table = (tmp_path / "R.md").read_text()
    assert "| sys_a |" in table and "| sys_b |" in table and "trivial answerer" in table
    assert "33.3" in table  # the ASR WER, in percent


@pytest.mark.parametrize("content, message", [
    ("not json\n", "not a JSON line"),
    ('{"id": "x", "task": "asr", "hyp": "a"}\n', "missing field"),
    ("", "no hypotheses"),
    ('{"id": "x", "task": "asr", "hyp": "a", "ref": "a"}\n' * 2, "duplicate id"),
])
def test_score_cli_bad_input(tmp_path, content, message):
    (tmp_path / "h.jsonl").write_text(content)
    result = subprocess.run([PYTHON, "-m", "mowe.scoring", "score", "--hyp_file",
                             str(tmp_path / "h.jsonl"), "--out_dir", str(tmp_path / "s")],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def run_score(hyp_file, out_dir, *extra):
    return subprocess.run([PYTHON, "-m", "mowe.scoring", "score", "--hyp_file", str(hyp_file),
                           "--out_dir", str(out_dir), "--no_java_meteor", *extra],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


GOOD_ROW = {"id": "ok", "task": "asr", "instruction": "Transcribe.", "hyp": "a b",
            "ref": "a b"}


def test_score_cli_unknown_task_warns_and_lists_known_tasks(tmp_path):
    write_hyps(tmp_path / "h.jsonl", [GOOD_ROW, {"id": "x1", "task": "xyz", "hyp": "a",
                                                 "ref": "b"}])
    result = run_score(tmp_path / "h.jsonl", tmp_path / "s")
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "'xyz'" in line]
    assert warning and "not a known task" in warning[0]
    assert "known: ac, aqa, asr, er, sqa" in warning[0]
    assert "unknown task" in next(line for line in result.stdout.splitlines()
                                  if line.startswith("xyz"))
    assert "'asr'" not in result.stderr  # known tasks are not warned about


@pytest.mark.parametrize("row, message", [
    ({"id": "u", "task": "asr", "hyp": "a", "ref": None}, "field 'ref'"),
    ({"id": "u", "task": "ASR", "hyp": "a", "ref": "  "}, "field 'ref' is empty"),
    ({"id": "u", "task": "sqa", "hyp": "a", "ref": 42}, "field 'ref' must be a string"),
    ({"id": "u", "task": "ac", "hyp": "a", "ref": []}, "field 'ref' must be a string"),
    ({"id": "u", "task": "ac", "hyp": "a", "ref": ["x", 1]}, "field 'ref' must be"),
    ({"id": ["u"], "task": "asr", "hyp": "a", "ref": "a"}, "field 'id' must be a string"),
    ({"id": "u", "task": None, "hyp": "a", "ref": "a"}, "field 'task'"),
    ({"id": "u", "task": "asr", "hyp": {"t": 1}, "ref": "a"}, "field 'hyp'"),
    ({"id": "u", "task": "er", "instruction": 3, "hyp": "a", "ref": "a"},
     "field 'instruction'"),
])
def test_score_cli_ill_typed_field_names_file_line_and_field(tmp_path, row, message):
    write_hyps(tmp_path / "h.jsonl", [GOOD_ROW, row])
    result = run_score(tmp_path / "h.jsonl", tmp_path / "s")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr  # one line
    assert f"{tmp_path / 'h.jsonl'}:2: {message}" in result.stderr


def test_score_cli_non_utf8_file_names_file_and_line(tmp_path):
    (tmp_path / "h.jsonl").write_bytes(json.dumps(GOOD_ROW).encode() + b"\n"
                                       + b'{"id": "u", "task": "asr", "hyp": "\xff\xfe", '
                                         b'"ref": "a"}\n')
    result = run_score(tmp_path / "h.jsonl", tmp_path / "s")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"{tmp_path / 'h.jsonl'}:2: not UTF-8" in result.stderr


def _chattr(flag, path):
    try:
        return subprocess.run(["chattr", flag, str(path)], capture_output=True,
                              timeout=10).returncode == 0
    except OSError:
        return False


def assert_one_line_error(result, path):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"cannot write {path}" in result.stderr


def test_score_cli_unwritable_outputs_name_the_path_and_leave_no_partial(tmp_path):
    write_hyps(tmp_path / "h.jsonl", [GOOD_ROW])
    out = tmp_path / "s"
    (out / "scores.json").mkdir(parents=True)  # a directory named scores.json
    result = run_score(tmp_path / "h.jsonl", out)
    assert_one_line_error(result, out / "scores.json")
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]

    # aggregate --out naming a directory
    good = tmp_path / "good"
    assert run_score(tmp_path / "h.jsonl", good).returncode == 0
    (tmp_path / "R.md").mkdir()
    result = subprocess.run([PYTHON, "-m", "mowe.scoring", "aggregate", str(good), "--out",
                             str(tmp_path / "R.md")], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert_one_line_error(result, tmp_path / "R.md")
    assert not (tmp_path / "R.md.partial").exists()


def test_score_cli_immutable_output_names_the_path_and_leaves_no_partial(tmp_path):
    write_hyps(tmp_path / "h.jsonl", [GOOD_ROW])
    out = tmp_path / "s"
    out.mkdir()
    (out / "scores.json").write_text("{}")
    if not _chattr("+i", out / "scores.json"):
        pytest.skip("chattr +i is not available here (needs root and a supporting fs)")
    try:
        result = run_score(tmp_path / "h.jsonl", out)
    finally:
        _chattr("-i", out / "scores.json")
    assert_one_line_error(result, out / "scores.json")
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]
    assert (out / "scores.json").read_text() == "{}"


def test_help_of_entry_points():
    for args in (["-m", "mowe.scoring", "--help"], ["-m", "mowe.scoring", "score", "--help"],
                 ["-m", "mowe.scoring", "aggregate", "--help"],
                 ["-m", "mowe.scoring.judge_server", "--help"]):
        result = subprocess.run([PYTHON, *args], capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 0 and "usage" in result.stdout.lower()


# ----------------------------------------------------------------------------- judge
def test_parse_rating():
    assert judge.parse_rating("Good.\nRating: 4") == 4
    assert judge.parse_rating("Rating: 3\n") == 3
    assert judge.parse_rating("**Rating: 5**") == 5
    assert judge.parse_rating("Rating: 4\nBut actually no.") is None
    assert judge.parse_rating("Rating: 9") is None
    assert judge.parse_rating("Rating: 2.5") is None
    assert judge.parse_rating("") is None


def test_template_loading(tmp_path):
    assert "Rating: <int>" in judge.load_template()
    (tmp_path / "t.txt").write_text("Q {question} A {answer}")
    with pytest.raises(ValueError, match="reference"):
        judge.load_template(str(tmp_path / "t.txt"))
    rendered = judge.render("{question}|{reference}|{answer}", "q {x}", "r", "a")
    assert rendered == "q {x}|r|a"


TEMPLATE = "Q: {question}\nRef: {reference}\nAns: {answer}"
JUDGE_ITEMS = [  # (question, reference, answer) -> the scripted judge's reply
    (("Is there a dog?", "yes", "yes"), "Same meaning.\nRating: 5"),
    (("What colour? SLOW-ONCE", "red", "blue"), "Wrong colour.\nRating: 0"),
    (("How many? FAIL-ONCE", "two", "three"), "I cannot grade this."),
    (("Which first? SLOW-ALWAYS", "hum", "beep"), "Wrong.\nRating: 1"),
]


@pytest.fixture(scope="module")
def scripted_judge(tmp_path_factory):
    """A tiny local model trained to reply to the judge prompts of JUDGE_ITEMS."""
    from mowe.utils.tiny_models import make_scripted_llama

    replies = {judge.render(TEMPLATE, *item): reply for item, reply in JUDGE_ITEMS}
    return make_scripted_llama(str(tmp_path_factory.mktemp("judge") / "model"), replies)


def test_hf_judge_backend(scripted_judge):
    backend = judge.HFJudge(scripted_judge, max_new_tokens=40)
    items = [dict(zip(("question", "reference", "answer"), item)) for item, _ in JUDGE_ITEMS]
    graded = judge.judge_items(items, backend, TEMPLATE, progress=False)
    assert graded["ratings"] == [5, 0, None, 1]
    summary = judge.summarise(graded["ratings"])
    assert summary["judge_parse_failures"] == 1
    assert summary["judge_score_failures_as_zero"] == pytest.approx(6 / 4)
    assert summary["judge_score_parsed_only"] == pytest.approx(6 / 3)


def _stats(url):
    with urllib.request.urlopen(url.rsplit("/v1", 1)[0] + "/stats", timeout=5) as response:
        return json.loads(response.read())["requests"]


def test_http_judge_retries_timeouts_parse_failures_and_cache(scripted_judge, tmp_path):
    # Margins: the client's timeout (4 s) leaves room for the four requests that queue
    # behind the server's one-at-a-time generation on a loaded machine (1.5 s did not:
    # every request timed out beside two trainings on 2 cores); the fault delay (10 s)
    # stays well past it, so the marked requests time out whatever the load.
    server = subprocess.Popen([PYTHON, os.path.join(REPO, "tests", "judge_fault_server.py"),
                               "--model", scripted_judge, "--delay", "10"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              cwd=REPO)
    try:
        line = server.stdout.readline()
        assert line.startswith("READY"), line
        url = line.split()[1]
        rows = [{"id": f"q{i}", "task": "aqa", "instruction": q, "ref": r, "hyp": a}
                for i, ((q, r, a), _) in enumerate(JUDGE_ITEMS)]
        write_hyps(tmp_path / "h.jsonl", rows)
        (tmp_path / "template.txt").write_text(TEMPLATE)
        command = [PYTHON, "-m", "mowe.scoring", "score", "--hyp_file",
                   str(tmp_path / "h.jsonl"), "--out_dir", str(tmp_path / "s"), "--judge",
                   "openai", "--judge_url", url, "--judge_model", "scripted",
                   "--judge_template", str(tmp_path / "template.txt"), "--judge_timeout",
                   "4", "--judge_retries", "1", "--judge_concurrency", "4",
                   "--judge_max_tokens", "40"]
        start = time.time()
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 0, result.stderr
        assert time.time() - start < 60
        scores = json.loads((tmp_path / "s" / "scores.json").read_text())["aqa"]
        # SLOW-ONCE timed out once and succeeded on retry; FAIL-ONCE got HTTP 500 once,
        # then a reply without a rating; SLOW-ALWAYS timed out on both attempts.
        assert scores["judge_parsed"] == 2
        assert scores["judge_parse_failures"] == 1
        assert scores["judge_request_errors"] == 1
        assert scores["judge_score_failures_as_zero"] == pytest.approx(5 / 4)
        assert scores["judge_score_parsed_only"] == pytest.approx(5 / 2)
        assert "retry 1/1" in result.stderr
        sent = _stats(url)
        assert sent == 4 + 3  # one retry each for SLOW-ONCE, FAIL-ONCE, SLOW-ALWAYS
        ratings = [json.loads(l)["judge_rating"] for l in
                   (tmp_path / "s" / "items.jsonl").read_text().splitlines()]
        assert ratings == [5, 0, None, None]

        # rerun: every successful judgement comes from the cache; only the failed
        # request (SLOW-ALWAYS) is tried again
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        assert result.returncode == 0, result.stderr
        assert _stats(url) == sent + 2
        again = json.loads((tmp_path / "s" / "scores.json").read_text())["aqa"]
        assert again["judge_requests"] == 1 and again["judge_parsed"] == 2
    finally:
        server.kill()
        server.wait()


def test_judge_server_cli_with_an_api_key(scripted_judge):
    """``python -m mowe.scoring.judge_server`` itself: it prints READY once listening, /health
    is open, the rest needs the key, and the judge client sends it."""
    env = {**os.environ, "MOWE_API_KEY": "judge-key"}
    env.pop("OPENAI_API_KEY", None)
    server = subprocess.Popen([PYTHON, "-m", "mowe.scoring.judge_server", "--model", scripted_judge,
                               "--port", "0", "--max_tokens", "40", "--max_queue", "4"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              cwd=REPO, env=env)
    try:
        line = server.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:"), line
        url = line.split()[1]
        with urllib.request.urlopen(url.rsplit("/v1", 1)[0] + "/health", timeout=10) as reply:
            assert json.loads(reply.read()) == {"status": "ok"}
        with pytest.raises(judge.JudgeError, match="401"):
            judge.OpenAIJudge(url, "scripted", retries=2, backoff=0.01)("hi")
        item = JUDGE_ITEMS[0]
        backend = judge.OpenAIJudge(url, "scripted", api_key="judge-key", max_tokens=40)
        assert backend(judge.render(TEMPLATE, *item[0])) == item[1]
    finally:
        server.kill()
        server.wait()


def test_http_judge_cache_alone_sends_nothing(scripted_judge, tmp_path):
    cache = judge.JudgeCache(str(tmp_path / "cache.jsonl"))

    class CountingBackend:
        id, concurrency, calls = "counting", 2, 0

        def __call__(self, prompt):
            CountingBackend.calls += 1
            return "ok\nRating: 3"

    items = [{"question": f"q{i}", "reference": "r", "answer": "a"} for i in range(5)]
    first = judge.judge_items(items, CountingBackend(), TEMPLATE, cache, progress=False)
    assert first["requests"] == 5 and CountingBackend.calls == 5
    # a line cut off by an interruption is ignored on reload
    with open(tmp_path / "cache.jsonl", "a") as handle:
        handle.write('{"key": "abc", "rep')
    reloaded = judge.JudgeCache(str(tmp_path / "cache.jsonl"))
    second = judge.judge_items(items, CountingBackend(), TEMPLATE, reloaded, progress=False)
    assert second["requests"] == 0 and CountingBackend.calls == 5
    assert second["ratings"] == [3] * 5


# ----------------------------------------------------- AudioBench's judge prompt (point 3)
AUDIOBENCH_TASK = ("Rate the model's answer based on its alignment with the reference "
                   "answer, focusing on accuracy and relevance to the reference provided. "
                   "Please be critical on the details.")


def test_audiobench_template_is_audiobenchs_prompt():
    text = judge.load_template("audiobench")
    prompt = judge.render(text, "What emotion?", "joy", "sadness")
    lines = prompt.split("\n")
    pad = " " * 12  # the indentation of AudioBench's triple-quoted PROMPT_TEMPLATE
    assert lines[:8] == [pad + "[Reference Answer]", pad + "joy", "", pad + "[Model Answer]",
                         pad + "sadness", "", pad + "[Question]", pad + "What emotion?"]
    assert pad + AUDIOBENCH_TASK in lines
    assert pad + ("Score0: The answer is completely misaligned, providing incorrect or "
                  "irrelevant information compared to the reference.") in lines
    assert lines[-1] == pad + "Rating: (int)" and "cannot decide" not in prompt
    assert sum(line.startswith(pad + "Score") for line in lines) == 6
    later = judge.load_template("audiobench_v2")
    assert later.splitlines()[0] == " " * 8 + "[Reference Answer]"
    assert (" " * 8 + AUDIOBENCH_TASK + " If the model response is something like 'cannot "
            "decide', please rate as 0.") in later.splitlines()
    assert "Rating: <int>" in judge.load_template("mowe") == judge.load_template()


@pytest.mark.parametrize("reply, rating", [
    ("Explanation: The reference answer is [joy], while the model's answer is [joy]. "
     "I think it matches.\nRating: 5", 5.0),
    ("Rating: 3.5", 3.5), ("Rating: 3.", 3.0), ("  4  \n", 4.0),
    ("Rating: 4/5", None), ("Rating: (int)", None), ("", None), ("Rating: nan", None),
    ("I would say 2", 2.0),  # AudioBench reads the last token whatever precedes it
])
def test_audiobench_rating_rule(reply, rating):
    assert judge.parse_rating_audiobench(reply) == rating


def test_score_rows_with_the_audiobench_template_and_rule():
    from mowe.scoring.task_metrics import score_rows

    replies = {"joy": "Explanation: fine.\nRating: 4.5", "anger": "No rating here."}

    def backend(prompt):
        return next(r for key, r in replies.items() if f"[Model Answer]\n{' ' * 12}{key}"
                    in prompt)

    backend.id, backend.concurrency = "stub", 1
    rows = [{"id": "a", "task": "er", "instruction": "What emotion?", "hyp": "joy",
             "ref": "joy"},
            {"id": "b", "task": "er", "instruction": "What emotion?", "hyp": "anger",
             "ref": "joy"}]
    name, parse = judge.template_parser("audiobench")
    assert name == "audiobench"
    scores, items = score_rows(rows, java_meteor=False, judge=backend,
                               judge_template=judge.load_template("audiobench"),
                               judge_parse=parse, judge_template_name="audiobench",
                               progress=False)
    entry = scores["er"]
    assert entry["judge_score_failures_as_zero"] == pytest.approx(2.25)  # (4.5 + 0) / 2
    assert entry["judge_parse_failures"] == 1 and entry["judge_template"] == "audiobench"
    assert [i["judge_rating"] for i in items] == [4.5, None]
    # the project's rubric keeps its own rule: a final "Rating: <int>" line
    assert judge.template_parser("mowe")[0] == "rating_line"
    assert judge.template_parser("my_rubric.txt")[0] == "rating_line"
    assert judge.template_parser("my_rubric.txt", "audiobench")[0] == "audiobench"
