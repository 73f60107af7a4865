"""The exception tree.

    GitPaasError                 root of everything gitpaas raises on purpose
    ├── UserError                a message for the person at the terminal (exit 1)
    │   ├── NotFound             no such app, key, release, domain ...
    │   ├── Forbidden            the key may not do that (exit 1)
    │   ├── Conflict             the name or host is taken, the app is busy
    │   └── InvalidInput         a name, key or value breaks the rules
    ├── DeployError              a deploy failed; the message says which stage and why
    └── ServiceError             Docker, Redis or MySQL failed or is unreachable

Anything that is not a ``GitPaasError`` is internal: the user sees one line with an
incident id and the log gets the traceback (see ``commands.registry.run_command``).
"""

from __future__ import annotations


class GitPaasError(Exception):
    """Root of all errors raised on purpose by gitpaas."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UserError(GitPaasError):
    """An error the user can act on; shown as `` !     message``."""


class NotFound(UserError):
    """The named thing does not exist (or the key may not know it does)."""


class Forbidden(UserError):
    """The authenticated key may not do this."""


class Conflict(UserError):
    """The name, host or lock is already taken."""


class InvalidInput(UserError):
    """A name, value or argument breaks the rules."""


class DeployError(GitPaasError):
    """A deploy failed; the previous release keeps serving."""


class ServiceError(GitPaasError):
    """A backing service (Docker, Redis, MySQL) failed or is unreachable."""

    exit_code = 2
