"""The error types a user sees, importable from anywhere without pulling in torch or the configs.

`ConfigError` (a ValueError) means: something the user supplied (a config key, a file, a folder,
a request) is wrong, and the message names the problem and the fix. The CLI prints it without a
traceback and exits with status 2. `RunError` means the command could not finish for a reason
outside the input (a worker process died or failed to start): one line, exit status 1.
Internal invariants use `assert`, not these.
"""


class ConfigError(ValueError):
    """A value or input a user supplied is wrong; the message names it and says how to fix it."""


class RunError(RuntimeError):
    """A command could not finish (a worker died, failed to start); the message says why and what to do."""
