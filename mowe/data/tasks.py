"""The tasks the toolkit knows: the five audio tasks of the MoWE paper.

Every manifest entry's ``task`` must be one of :data:`TASKS`; scoring, instruction pools
and the synthetic corpus are keyed by these names.

Example
-------
>>> "asr" in TASKS
True
"""

TASKS = ("asr", "er", "aqa", "sqa", "ac")

TASK_NAMES = {
    "asr": "automatic speech recognition",
    "er": "emotion recognition",
    "aqa": "audio question answering",
    "sqa": "speech question answering",
    "ac": "audio captioning",
}
