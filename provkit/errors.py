"""Every error provkit raises on purpose descends from :class:`ProvkitError`.

    ProvkitError                          what failed, the likely cause, what to do, a link
    ├── ConfigError (ValueError)          bad settings, parameters or command-line values
    │   ├── ReadOnlyError                 a call would change the tenant and writes were not allowed
    │   └── AmbiguousAppError             an app name matches several service principals (candidates listed)
    ├── SignInError                       the identity platform refused a token (AADSTS code named)
    ├── GraphError                        Graph answered with an error body (status, code, message, request-id)
    │   ├── PermissionDeniedError (PermissionError)  403: names the permission that is missing
    │   ├── NotFoundError (LookupError)   404: object id vs appId hint
    │   ├── ThrottledError                429s outlasted the retry budget
    │   └── GraphUnavailableError         503/504 or dropped connections outlasted the retry budget
    ├── CloudNotSupportedError            the API is not offered in that national cloud
    ├── InputError (ValueError)           a file or record that cannot be read (file and line named)
    └── StoreError                        the store on disk is unusable (file named, repair command given)

Each carries ``remedy`` and ``link`` so notebooks and the command line can show a short message
instead of a traceback.
"""

from __future__ import annotations

from typing import Any


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


class ReadOnlyError(ConfigError):
    """A call would change the tenant (restart, provision on demand, ...) and writes were not allowed."""


class AmbiguousAppError(ConfigError):
    """An app name matches several service principals; ``candidates`` holds one dict per match."""

    def __init__(
        self,
        message: str,
        *,
        candidates: list[dict[str, object]] | None = None,
        remedy: str | None = None,
        link: str | None = None,
    ) -> None:
        super().__init__(message, remedy=remedy, link=link)
        self.candidates = list(candidates or [])


class SignInError(ProvkitError):
    """The identity platform refused a token. ``aadsts`` is the code (``"AADSTS7000215"``) when one was given.

    ``error`` is the OAuth error (``invalid_client``); ``correlation_id`` and ``trace_id`` are what Microsoft
    support asks for. The message never holds a secret, an assertion or a token.
    """

    def __init__(
        self,
        message: str,
        *,
        aadsts: str | None = None,
        error: str | None = None,
        correlation_id: str | None = None,
        trace_id: str | None = None,
        remedy: str | None = None,
        link: str | None = None,
    ) -> None:
        super().__init__(message, remedy=remedy, link=link)
        self.aadsts = aadsts
        self.error = error
        self.correlation_id = correlation_id
        self.trace_id = trace_id


class GraphError(ProvkitError):
    """Graph answered with an error: HTTP ``status``, Graph error ``code`` and ``message``, and the ids support
    asks for (``request_id``, ``client_request_id``). ``method`` and ``url`` say which call failed.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        client_request_id: str | None = None,
        method: str | None = None,
        url: str | None = None,
        remedy: str | None = None,
        link: str | None = None,
    ) -> None:
        super().__init__(message, remedy=remedy, link=link)
        self.status = status
        self.code = code
        self.request_id = request_id
        self.client_request_id = client_request_id
        self.method = method
        self.url = url

    def __str__(self) -> str:
        head = " ".join(str(part) for part in (self.status, self.code) if part)
        where = f"{self.method} {self.url}" if self.method and self.url else ""
        # No status (a server that never answered): the line starts with the method, not with " on".
        lead = f"{head} on {where}" if head and where else head or where
        text = f"{lead}: {self.message}" if lead else self.message
        if self.request_id:
            text += f" (request-id {self.request_id})"
        if self.remedy:
            text += f"\nWhat to do: {self.remedy}"
        if self.link:
            text += f"\nSee: {self.link}"
        return text


class PermissionDeniedError(GraphError, PermissionError):
    """403: the calling app or user lacks a permission; ``permission`` names the one needed."""

    def __init__(self, message: str, *, permission: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.permission = permission


class NotFoundError(GraphError, LookupError):
    """404: the object does not exist, often because an appId was used where an object id was expected."""


class ThrottledError(GraphError):
    """429 answers outlasted the retry budget; ``retry_after`` is the last wait Graph asked for, in seconds."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class GraphUnavailableError(GraphError):
    """503/504 answers, dropped connections or truncated bodies outlasted the retry budget."""


class CloudNotSupportedError(ProvkitError):
    """The API is not offered in the configured national cloud (provisioning logs in China, 21Vianet)."""


class StoreError(ProvkitError):
    """The store on disk is unusable (a part or file that cannot be read, a folder that cannot be written)."""
