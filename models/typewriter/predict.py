"""A streaming demo model: it types its prompt back, one word at a time.

A small, CPU-only, deterministic Cog model whose output is an iterator of text
(``ConcatenateIterator[str]``, like a language model's tokens), so that a
gateway in front of it has a real stream to serve. Each word is yielded after
``seconds_per_token``; the prediction logs how many words it types, and when it is done.

Written against the ``BasePredictor``/``predict`` API, like models/inpaint.
"""

# cog declares inputs as Input(...) defaults of predict(): that is the API, not a bug.
# ruff: noqa: B008

import time

from cog import BasePredictor, ConcatenateIterator, Input

MAX_TOKENS = 256


class Predictor(BasePredictor):
    def setup(self) -> None:
        print("setup: typewriter ready")

    def predict(
        self,
        prompt: str = Input(description="The text to type back, word by word."),
        seconds_per_token: float = Input(
            description="How long to wait before each word.", default=0.1, ge=0.0, le=2.0
        ),
        max_tokens: int = Input(description="Stop after this many words.", default=64, ge=1, le=MAX_TOKENS),
    ) -> ConcatenateIterator[str]:
        words = prompt.split(" ")[:max_tokens]
        # Logged before and after, not per word: the words reach the gateway as output, not along with logs.
        print(f"typing {len(words)} words")
        for index, word in enumerate(words):
            _sleep(seconds_per_token)
            yield word if index == 0 else f" {word}"
        print(f"typed {len(words)} words")


def _sleep(seconds: float) -> None:
    # Short slices, so that a cancellation (an exception coglet injects) is noticed promptly.
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))
