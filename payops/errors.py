"""The one exception tree of payops: every error raised on purpose derives from PayopsError.

    PayopsError            a refusal payops means to make (not a bug)     exit 1    HTTP 500
    ├── BadInput           the input is wrong; the same call fails again  exit 2    HTTP 422
    ├── NotFound           the input names something that does not exist  exit 2    HTTP 404
    ├── Conflict           the state forbids it now (not pending, done)   exit 1    HTTP 409
    └── Unavailable        a dependency is busy or down: try again later  exit 75   HTTP 503

The exit codes are mapped once, in payops/cli_errors.py; the HTTP statuses once, in api/errors.py.
Subclasses keep the built-in base that callers already catch (`class EventError(BadInput, ValueError)`),
so an `except ValueError` still sees them. Palm-pay's PalmPayError and the API's ApiError carry their own
code and status (the palm-pay spec's), and derive from the root only.

Part of the kernel (with payops.models and payops.settings): any layer may import it; it imports nothing.
"""

from __future__ import annotations

__all__ = ["EX_FAILURE", "EX_OK", "EX_TEMPFAIL", "EX_USAGE", "BadInput", "Conflict", "NotFound", "PayopsError",
           "Unavailable"]

# Process exit statuses, for the CLI and for a scheduler running `payops tick` (sysexits.h for 75).
EX_OK = 0  # done (or nothing to do yet)
EX_FAILURE = 1  # the system refused or failed: look at stderr
EX_USAGE = 2  # the input is wrong: retrying the same command will not help
EX_TEMPFAIL = 75  # busy or unreachable (a lock another process holds): try again later


class PayopsError(Exception):
    """Root: an error payops raises on purpose, with a message fit for its user (never a secret)."""


class BadInput(PayopsError):
    """The caller's input (an option, a file, a request, a model's answer) is not acceptable."""


class NotFound(PayopsError):
    """The input names a thing (a decision, a link, a prompt) that does not exist."""


class Conflict(PayopsError):
    """The thing exists, but its state forbids the request now (already answered, not in force)."""


class Unavailable(PayopsError):
    """Something payops needs is busy, down or out of budget; the same request may succeed later."""
