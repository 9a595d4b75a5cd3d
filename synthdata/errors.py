"""The one exception type for a user's mistake.

Anything raised as :class:`SynthdataError` is printed by the CLI as a single line and exits non-zero,
without a traceback. Bugs (every other exception) keep their traceback.
"""


class SynthdataError(Exception):
    """A problem with the user's input: a path, a file, a parameter. The message says how to fix it."""


class GateFailed(SynthdataError):
    """A synthetic dataset failed the quality gate: its evaluation is written, it is not publishable."""


class RepoBusy(SynthdataError):
    """Another dvc process holds the repository lock: transient, worth retrying (exit code 75)."""
