"""Pull the final answer out of a model response: the last ``<answer>…</answer>`` or ``\\boxed{…}``.

Both extractors run in time linear in the response length whatever it contains (no backtracking
regular expressions: ``re.finditer(r"<answer>(.*?)</answer>")`` is quadratic on a response made of
many unclosed ``<answer>`` tags), and both give up on answers longer than ``max_chars``.
"""

from __future__ import annotations

ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
DEFAULT_MAX_ANSWER_CHARS = 4096
_BOX_COMMANDS = ("\\boxed", "\\fbox")


def last_tagged_answer(response: str) -> str | None:
    """Text between the last ``</answer>`` and the nearest ``<answer>`` before it, stripped.

    Returns ``None`` when there is no complete tag pair. Nested or repeated tags leave their markers
    inside the content, which the answer parsers then reject; length limits are theirs to apply.
    """
    close = response.rfind(ANSWER_CLOSE)
    if close < 0:
        return None
    open_ = response.rfind(ANSWER_OPEN, 0, close)
    if open_ < 0:
        return None
    return response[open_ + len(ANSWER_OPEN) : close].strip()


def _matching_brace(text: str, open_index: int, max_chars: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``open_index``, or -1 (unclosed or too long)."""
    depth = 0
    stop = min(len(text), open_index + max_chars + 2)
    for index in range(open_index, stop):
        char = text[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return index
    return -1


def last_boxed_answer(response: str, max_chars: int = DEFAULT_MAX_ANSWER_CHARS) -> str | None:
    """Content of the last ``\\boxed{…}`` (or ``\\fbox{…}``, or ``\\boxed x``), braces balanced.

    Returns ``None`` when there is no box, when the last box is unclosed, or when its content is
    longer than ``max_chars``. A ``\\boxed`` that cannot be read does not fall back to an earlier
    one: the model's final answer is the last one it wrote.
    """
    start = max(response.rfind(command) for command in _BOX_COMMANDS)
    if start < 0:
        return None
    command = next(c for c in _BOX_COMMANDS if response.startswith(c, start))
    after = start + len(command)
    while after < len(response) and after - start < 64 and response[after] == " ":
        after += 1
    if response.startswith("{", after):
        close = _matching_brace(response, after, max_chars)
        if close < 0:
            return None
        return response[after + 1 : close].strip()
    if after == start + len(command):
        return None
    # "\boxed 5" (no braces): the answer runs to the next "$" or whitespace.
    token = response[after : after + max_chars + 1].split("$", 1)[0].split(None, 1)
    if not token or len(token[0]) > max_chars:
        return None
    return token[0]
