"""The one exception type for a user's mistake.

Anything raised as :class:`SynthdataError` is printed by the CLI as a single line and exits non-zero,
without a traceback. Bugs (every other exception) keep their traceback.
"""


class SynthdataError(Exception):
    """A problem with the user's input: a path, a file, a parameter. The message says how to fix it."""


class GateFailed(SynthdataError):
    """A synthetic dataset failed the quality gate: its evaluation is written, it is not publishable."""


class RepoBusy(SynthdataError):
    """Another process holds a lock this run needs (DVC's repository lock, or another synthdata run's lock on an
    output folder): transient, worth retrying (exit code 75)."""


def shorten(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut to ``limit`` characters with a note of how much was left out: a user's
    value quoted in an error line never floods the terminal."""
    text = " ".join(text.split())
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"
