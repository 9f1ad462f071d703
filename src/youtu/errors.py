"""The one user-error type, importable from anywhere without pulling in torch or the configs.

`ConfigError` (a ValueError) means: something the user supplied (a config key, a file, a folder,
a request) is wrong, and the message names the problem and the fix. The CLI prints it without a
traceback and exits with status 2. Internal invariants use `assert`, not this.
"""


class ConfigError(ValueError):
    """A value or input a user supplied is wrong; the message names it and says how to fix it."""
