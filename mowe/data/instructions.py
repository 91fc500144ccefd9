"""Instruction pools of the real-corpus recipes, one list of paraphrases per task.

The preparation scripts (``egs/<corpus>/local/prepare.py``) draw one instruction per
item with a seeded :class:`random.Random`, so a rerun with the same seed writes the
same manifests. ER instructions name the label set (``{labels}``); the AQA and SQA
pools wrap a question (``{question}``) and are only used when a recipe is asked to
(by default the question text itself is the instruction, as in AudioBench).

Example
-------
>>> import random
>>> text = draw_instruction("er", random.Random(0), labels="happy, sad")
>>> "happy, sad" in text
True
"""

INSTRUCTIONS = {
    "asr": [
        "Transcribe this recording word for word.",
        "Write out everything the speaker says.",
        "What is being said in this audio? Give the exact words.",
        "Produce a verbatim transcript of the speech.",
        "Listen carefully and type the spoken sentence.",
        "Turn the speech in this clip into written text.",
        "Please write down the words you hear.",
        "Give me the transcription of this utterance.",
    ],
    "er": [
        "Which emotion does the speaker convey? Pick one of: {labels}.",
        "Listen to the voice and name the speaker's emotion ({labels}).",
        "How is the speaker feeling right now? Options: {labels}.",
        "Judging by the tone of voice, which of these fits best: {labels}?",
        "Classify the emotional state of the speaker as one of {labels}.",
        "What mood comes through in this utterance? Choose from {labels}.",
        "Tell me the emotion expressed here, using one of these labels: {labels}.",
        "Which label fits this voice best: {labels}?",
    ],
    "aqa": [
        "Listen to the sound clip and answer: {question}",
        "Based on what you hear, {question}",
        "Answer this question about the audio: {question}",
        "{question} Answer from what can be heard in the recording.",
        "Use the audio to respond to the question: {question}",
        "Here is a question about the sounds in this clip. {question}",
    ],
    "sqa": [
        "Listen to the spoken passage and answer: {question}",
        "According to the speaker, {question}",
        "Answer using the information in the speech: {question}",
        "{question} The answer is in the recording.",
        "After hearing the passage, reply briefly: {question}",
        "Question about the spoken text: {question}",
    ],
    "ac": [
        "Write a one-sentence caption for this audio.",
        "Describe what can be heard in the recording.",
        "Which sounds occur in this clip? Describe them briefly.",
        "Summarise the acoustic scene in a short sentence.",
        "Give a brief description of the audio events.",
        "What is happening in this sound recording?",
        "Caption the audio: mention the main sound sources.",
        "Describe the sounds in this clip as a short caption.",
    ],
}


def draw_instruction(task, rng, **fields):
    """One instruction of ``task``'s pool, drawn with ``rng`` and filled with ``fields``.

    Parameters
    ----------
    task : str
        ``asr``, ``er``, ``aqa``, ``sqa`` or ``ac``.
    rng : random.Random
        The seeded generator of the split being prepared.
    **fields
        Values of the placeholders: ``labels`` for ER, ``question`` for AQA/SQA.

    Returns
    -------
    str
    """
    if task not in INSTRUCTIONS:
        raise KeyError(f"no instruction pool for task {task!r}; known: {sorted(INSTRUCTIONS)}")
    return rng.choice(INSTRUCTIONS[task]).format(**fields)
