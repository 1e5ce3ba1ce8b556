"""Every error provkit raises on purpose descends from :class:`ProvkitError`.

    ProvkitError                      what failed, the likely cause, what to do, a link
    ├── ConfigError (ValueError)      bad settings, parameters or command-line values
    ├── SignInError                   the identity platform refused a token (AADSTS code named)
    ├── GraphError                    Graph answered with an error body (code, message, request-id)
    │   ├── PermissionError_          403: names the permission that is missing
    │   ├── NotFoundError (LookupError) 404: object id vs appId hint
    │   └── ThrottledError            429s outlasted the retry budget
    ├── CloudNotSupportedError        the API is not offered in that national cloud
    └── InputError (ValueError)       a file or record that cannot be read (file and line named)

Each carries ``remedy`` and ``link`` so notebooks and the command line can show a short message
instead of a traceback.
"""

from __future__ import annotations


class ProvkitError(Exception):
    """Root of provkit's errors: a message, what to do about it, and a link where one exists."""

    def __init__(self, message: str, *, remedy: str | None = None, link: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.remedy = remedy
        self.link = link

    def __str__(self) -> str:
        text = self.message
        if self.remedy:
            text += f"\nWhat to do: {self.remedy}"
        if self.link:
            text += f"\nSee: {self.link}"
        return text


class ConfigError(ProvkitError, ValueError):
    """A setting, parameter or command-line value is missing or wrong."""


class InputError(ProvkitError, ValueError):
    """A file or a record in it cannot be read; ``file`` and ``line`` (1-based, or None) say where."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        remedy: str | None = None,
        link: str | None = None,
    ) -> None:
        super().__init__(message, remedy=remedy, link=link)
        self.file = file
        self.line = line
