"""The one exception type for user mistakes: printed as one line, never as a traceback."""


class UserError(Exception):
    """Bad input from the user: the message names the file/key, the value and what is allowed."""


class DryRun(Exception):
    """A stage asked only to estimate: the pipeline prints the message and stops, caching nothing."""
