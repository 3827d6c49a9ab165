"""The one exception type the CLI turns into a plain message and a non-zero exit."""


class CbtLlmError(Exception):
    """A user-facing error: bad input, bad configuration, or a failed external call, with no traceback."""


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first non-blank line of an exception's message (its ``message`` attribute when it has one)."""
    text = getattr(err, "message", None)
    text = text if isinstance(text, str) else str(err)
    line = next((line.strip() for line in text.splitlines() if line.strip()), type(err).__name__)
    return line[:limit]
