"""Model-as-judge scoring on a 0-5 scale, AudioBench style.

A prompt template is filled per item and sent to a judge backend: a local Hugging Face
model (:class:`HFJudge`) or any OpenAI-compatible server (:class:`OpenAIJudge`: vLLM
serving Llama-3-70B-Instruct, as AudioBench does, or ``python -m mowe judge-serve``).
Templates (:data:`TEMPLATES`) are named or given as a file with ``{question}``,
``{reference}`` and ``{answer}`` fields:

* ``audiobench`` — AudioBench's ``llama3_70b_as_judge`` prompt, verbatim (indentation
  included), with its parsing rule: the score is ``float`` of the reply's last
  whitespace-separated token, a failure scores 0 (:func:`parse_rating_audiobench`).
  Source: AudioLLMs/AudioBench ``src/dataset_src/eval_methods/eval_llama3_70b.py``
  (commit 0e689b4; the paper recipes' default).
* ``audiobench_v2`` — the same file's later prompt (commit 7c2338a), which adds "If the
  model response is something like 'cannot decide', please rate as 0." and a Score0
  line for refusals; same parsing rule.
* ``mowe`` — this project's own rubric; the grade is the integer on the reply's final
  ``Rating: <int>`` line (:func:`parse_rating`).

Replies are cached on disk (:class:`JudgeCache`), keyed by the backend, model and
prompt, so an interrupted scoring run resumes and a rerun sends no requests. A reply
without a valid rating is a parse failure: AudioBench scores it 0; both that score and
the mean over parsed replies are reported (AudioBench's later versions multiply the
0-5 mean by 20; the paper reports the 0-5 mean, as here).
"""

import hashlib
import json
import logging
import math
import os
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "judge_0to5.txt"
# name -> (bundled file, parsing rule)
TEMPLATES = {"mowe": ("judge_0to5.txt", "rating_line"),
             "audiobench": ("audiobench_llama3_70b.txt", "audiobench"),
             "audiobench_v2": ("audiobench_llama3_70b_v2.txt", "audiobench")}
_RATING = re.compile(r"rating\s*[:=]\s*\**\s*([0-9]+(?:\.[0-9]+)?)\s*\**\s*$",
                     re.IGNORECASE)


class JudgeError(RuntimeError):
    """A judge backend could not produce a reply (after its retries)."""


def load_template(path=None):
    """Read a judge prompt template: a name of :data:`TEMPLATES` or a file; None gives
    this project's 0-5 rubric.

    Raises
    ------
    ValueError
        When the template lacks one of the ``{question}``, ``{reference}``, ``{answer}``
        fields.
    """
    if path is None or path in TEMPLATES:
        name = TEMPLATES[path][0] if path else DEFAULT_TEMPLATE
        text = resources.files("mowe.scoring").joinpath("templates", name) \
            .read_text(encoding="utf-8")
    else:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"judge template {path} does not exist")
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    missing = [f for f in ("question", "reference", "answer") if "{" + f + "}" not in text]
    if missing:
        raise ValueError(f"judge template {path or DEFAULT_TEMPLATE} lacks the field(s) "
                         + ", ".join("{" + f + "}" for f in missing))
    return text


def render(template, question, reference, answer):
    """Fill a template; braces in the texts themselves are left alone."""
    fields = {"question": question, "reference": reference, "answer": answer}
    return re.sub(r"\{(question|reference|answer)\}", lambda m: str(fields[m.group(1)]),
                  template)


def parse_rating(reply, low=0, high=5):
    """The integer of the last non-empty line ``Rating: <int>``, or None.

    Examples
    --------
    >>> parse_rating("Close enough.\\nRating: 4")
    4
    >>> parse_rating("Rating: 7") is None
    True
    """
    lines = [line.strip() for line in (reply or "").strip().splitlines() if line.strip()]
    if not lines:
        return None
    match = _RATING.search(lines[-1])
    if not match:
        return None
    value = float(match.group(1))
    if value != int(value) or not low <= value <= high:
        return None
    return int(value)


def parse_rating_audiobench(reply):
    """AudioBench's rule: ``float`` of the last whitespace-separated token, or None.

    AudioBench (``eval_llama3_70b.py``) strips the reply, takes ``float(output.split()
    [-1])`` and scores 0 (``success = 0``) when that fails; None here is that failure
    (counted as 0 in ``judge_score_failures_as_zero``). The value is not range-checked,
    as in AudioBench; only a non-finite value (``nan``) is refused here.

    Examples
    --------
    >>> parse_rating_audiobench("Explanation: The reference answer is [joy]. Rating: 4")
    4.0
    >>> parse_rating_audiobench("Rating: 3.5"), parse_rating_audiobench("Rating: 4/5")
    (3.5, None)
    """
    try:
        value = float((reply or "").strip().split()[-1])
    except (ValueError, IndexError):
        return None
    return value if math.isfinite(value) else None


PARSERS = {"rating_line": parse_rating, "audiobench": parse_rating_audiobench}


def template_parser(template=None, parse="auto"):
    """The parsing rule of a template: ``parse`` or, when ``auto``, the rule that goes
    with a named template (``rating_line`` for files and the project's rubric).

    Returns
    -------
    (str, callable)
        The rule's name and function.
    """
    if parse == "auto":
        parse = TEMPLATES.get(template or "mowe", (None, "rating_line"))[1]
    if parse not in PARSERS:
        raise ValueError(f"unknown judge parsing rule {parse!r}; choose one of "
                         f"{sorted(PARSERS)}")
    return parse, PARSERS[parse]


class JudgeCache:
    """Append-only JSON-lines cache of judge replies, safe across threads.

    A line cut off by an interruption is ignored on load (and rewritten on the next run).
    """

    def __init__(self, path):
        self.path = path
        self.replies = {}
        self._lock = threading.Lock()
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    try:
                        entry = json.loads(line)
                        self.replies[entry["key"]] = entry["reply"]
                    except (json.JSONDecodeError, KeyError, TypeError):
                        continue

    @staticmethod
    def key(backend_id, prompt):
        return hashlib.sha256(f"{backend_id}\n{prompt}".encode("utf-8")).hexdigest()

    def get(self, key):
        return self.replies.get(key)

    def put(self, key, reply):
        with self._lock:
            self.replies[key] = reply
            if self.path:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"key": key, "reply": reply}) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())


class HFJudge:
    """A local Hugging Face causal LM as judge (greedy decoding, chat template applied).

    The default in this toolkit is the bundled SmolLM2-135M-Instruct: far too small to
    grade reliably — it is a smoke test of the pipeline, and reports say so.

    Parameters
    ----------
    model_dir : str
        Local model folder (``from_pretrained``; never downloads).
    max_new_tokens : int
    device : str
    """

    concurrency = 1

    def __init__(self, model_dir, max_new_tokens=128, device="cpu"):
        from mowe.scoring.judge_server import LocalGenerator

        if not os.path.isdir(model_dir):
            raise FileNotFoundError(f"judge model folder {model_dir} does not exist "
                                    "(python -m mowe provision --out DIR provides SmolLM2)")
        self.generator = LocalGenerator(model_dir, device, max_new_tokens)
        self.id = f"hf:{os.path.abspath(model_dir)}:{max_new_tokens}"

    def __call__(self, prompt):
        chat = bool(getattr(self.generator.tokenizer, "chat_template", None))
        messages = [{"role": "user", "content": prompt}]
        return self.generator.complete(messages if chat else prompt, chat=chat)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Follows no redirect: urllib's handler copies every header, ``Authorization``
    included, to wherever a redirect points (another host too), and turns a POST into
    a bodiless GET that no completions endpoint answers anyway. A 3xx becomes an
    :class:`urllib.error.HTTPError` instead."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


# urlopen's usual handlers (proxies, HTTPS, errors), with one that follows no 3xx
_OPENER = urllib.request.build_opener(_NoRedirects)


class OpenAIJudge:
    """Any OpenAI-compatible server as judge (vLLM, ``python -m mowe judge-serve``...).

    Requests go through the standard library: one JSON POST per item does not justify
    another client dependency, and this keeps retries and timeouts explicit. The API key
    goes to ``base_url``'s host only: redirects are not followed (a 3xx fails the item
    at once, naming where it pointed; give that URL as ``base_url`` if it is trusted).

    Parameters
    ----------
    base_url : str
        Server root, e.g. ``http://localhost:8000/v1``.
    model : str
        Model name the server expects.
    endpoint : str
        ``"chat"`` (``/chat/completions``: the server applies the chat template) or
        ``"completions"`` (``/completions``: the prompt is sent as is, as AudioBench does
        after applying the template itself).
    timeout : float
        Seconds per request.
    retries : int
        Further attempts after a failed or timed-out request (with exponential backoff).
    concurrency : int
        Requests in flight at once.
    api_key : str, optional
        Bearer token (default ``$OPENAI_API_KEY`` when set; for ``mowe.scoring.judge_server
        --api_key KEY``, the same KEY).
    max_tokens : int
    """

    def __init__(self, base_url, model, endpoint="chat", timeout=60.0, retries=3,
                 concurrency=8, api_key=None, max_tokens=256, backoff=0.5):
        if endpoint not in ("chat", "completions"):
            raise ValueError(f"endpoint must be 'chat' or 'completions', not {endpoint!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.endpoint = endpoint
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.concurrency = max(1, int(concurrency))
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self.max_tokens = max_tokens
        self.backoff = backoff
        self.id = f"openai:{self.base_url}:{model}:{endpoint}:{max_tokens}"

    def _request(self, prompt):
        if self.endpoint == "chat":
            url = self.base_url + "/chat/completions"
            body = {"model": self.model, "max_tokens": self.max_tokens, "temperature": 0,
                    "messages": [{"role": "user", "content": prompt}]}
        else:
            url = self.base_url + "/completions"
            body = {"model": self.model, "max_tokens": self.max_tokens, "temperature": 0,
                    "prompt": prompt}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"),
                                         headers=headers, method="POST")
        with _OPENER.open(request, timeout=self.timeout) as response:
            reply = json.loads(response.read().decode("utf-8"))
        choice = reply["choices"][0]
        return choice["message"]["content"] if self.endpoint == "chat" else choice["text"]

    def __call__(self, prompt):
        last = None
        for attempt in range(self.retries + 1):
            try:
                return self._request(prompt)
            except (urllib.error.URLError, TimeoutError, OSError, KeyError, IndexError,
                    ValueError) as error:
                last = error
                if isinstance(error, urllib.error.HTTPError) and 300 <= error.code < 400:
                    last = (f"HTTP {error.code} redirect to "
                            f"{error.headers.get('Location', '?')!r}, not followed (the API "
                            "key would go along); give the final URL as the judge URL")
                    break  # nor will a redirect
                if isinstance(error, urllib.error.HTTPError) and 400 <= error.code < 500 \
                        and error.code != 429:
                    break  # a client error will not go away on retry
                if attempt < self.retries:
                    logger.warning("judge request failed (%s); retry %d/%d", error,
                                   attempt + 1, self.retries)
                    time.sleep(self.backoff * 2 ** attempt)
        raise JudgeError(f"judge at {self.base_url} failed after {self.retries + 1} "
                         f"attempt(s): {last}")


def judge_items(items, backend, template, cache=None, progress=True, parse=parse_rating):
    """Grade items with a judge backend, using and filling the cache.

    Parameters
    ----------
    items : list of dict
        Each with ``question``, ``reference``, ``answer``.
    backend : callable
        ``backend(prompt) -> reply``, with ``id`` and ``concurrency`` attributes.
    template : str
        The prompt template text.
    cache : JudgeCache, optional
    parse : callable
        ``parse(reply) -> rating or None`` (:data:`PARSERS`).

    Returns
    -------
    dict
        ``ratings`` (int or None per item), ``replies``, ``requests`` (sent this run),
        ``errors`` (items whose request failed after retries; their rating is None).
    """
    from tqdm import tqdm

    cache = cache or JudgeCache(None)
    prompts = [render(template, it["question"], it["reference"], it["answer"]) for it in items]
    keys = [JudgeCache.key(backend.id, p) for p in prompts]
    todo = [i for i, k in enumerate(keys) if cache.get(k) is None]
    errors = []

    def run(index):
        try:
            cache.put(keys[index], backend(prompts[index]))
        except JudgeError as error:
            logger.error("item %d: %s", index, error)
            errors.append(index)

    bar = tqdm(total=len(todo), desc="judge", disable=not progress or not todo)
    with ThreadPoolExecutor(max_workers=getattr(backend, "concurrency", 1)) as pool:
        for _ in pool.map(run, todo):
            bar.update(1)
    bar.close()
    replies = [cache.get(k) for k in keys]
    ratings = [parse(r) if r is not None else None for r in replies]
    return {"ratings": ratings, "replies": replies, "requests": len(todo),
            "errors": sorted(errors)}


def summarise(ratings, errors=()):
    """Judge scores of one task: AudioBench-style (failures count 0) and parsed-only."""
    n = len(ratings)
    parsed = [r for r in ratings if r is not None]
    return {
        "judge_score_failures_as_zero": sum(parsed) / n if n else 0.0,
        "judge_score_parsed_only": sum(parsed) / len(parsed) if parsed else None,
        "judge_parsed": len(parsed),
        "judge_parse_failures": n - len(parsed) - len(errors),
        "judge_request_errors": len(errors),
        "judge_items": n,
    }
