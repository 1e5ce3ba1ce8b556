"""Paging ahead: send the call for a collection's next page as soon as the page before has arrived, before it is
parsed, and keep its answer only if the parsed page names the same next link.

Under Graph's reporting throttle the calls of one window go one after another, each waiting for the page before
to name its ``@odata.nextLink``. Parsing a 1,000-entry page (about 3 MB of JSON) takes 0.07-0.2 s, and before
this it sat between each answer and the next call, so a window's five calls reached the service later and later.
The link can be found in the raw body with a cheap scan, so the next call leaves while the page is parsed. The
parse waits (up to :data:`SEND_WAIT`) for that call to be on its way: ``json.loads`` lets no other thread run, so
a call started just before it would otherwise leave only after it.

The scan is only a guess: the parsed page is the truth. :class:`PageChain` hands the consumer the answer of the
call sent ahead only when that call went to the URL the parsed page names; otherwise (the scan found another
link, or one where the page has none) that answer is dropped unread and the parsed link is followed, so no entry
is lost or read twice. A call sent ahead retries on its own (429 with Retry-After, 5xx, dropped connections,
truncated bodies) exactly as a call sent in turn, and its error reaches the consumer when it asks for that page.

At most one call goes ahead of the page being parsed: page k+1's answer may send the call for page k+2 only once
page k has been handed over, so a slow consumer holds back the paging instead of piling pages up in memory.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from provkit.errors import ProvkitError

__all__ = ["PageChain", "next_link_in"]

log = logging.getLogger("provkit.data.graph")

# A Graph collection page is a JSON object with the top-level key "@odata.nextLink" when more pages follow.
# Documented example (reference 1.6, from the v1.0 provisioningObjectSummary list page): the link comes before
# "value". inference: JSON objects are unordered, and other servers (the simulator, proxies that re-serialise)
# put it after "value", so the scan looks in both places. The link is a JSON string and may hold escapes.
_LINK = re.compile(rb'"@odata\.nextLink"\s*:\s*("(?:[^"\\]|\\.)*")')
_VALUE = b'"value"'

GetPage = Callable[
    [str, Mapping[str, str] | None, Callable[[bytes], None], Callable[[], None]], "dict[str, Any] | None"
]
# How long the thread that received a page waits for the next page's call to leave before parsing the page:
# parsing holds the interpreter (json.loads does not let other threads run), so a call started just before it
# would leave only after it. A call the throttle holds back does not leave within this; the parse goes on then.
SEND_WAIT = 0.02


def next_link_in(body: bytes) -> str | None:
    """The ``@odata.nextLink`` of a page's raw JSON body, found without parsing it: before the ``"value"`` key, or
    after the last ``]`` (past the entries). None when neither place holds one, or it cannot be read. A guess,
    cheap on a 3 MB page: whoever uses it checks it against the parsed page."""
    value_at = body.find(_VALUE)
    found = _LINK.search(body, 0, value_at) if value_at >= 0 else _LINK.search(body)
    if found is None and value_at >= 0:
        found = _LINK.search(body, max(body.rfind(b"]"), value_at))
    if found is None:
        return None
    try:
        link = json.loads(found.group(1))
    except ValueError:
        return None
    return link if isinstance(link, str) and link else None


class _Call:
    """One page's GET, run in the consumer's thread or, when sent ahead, in a thread of its own."""

    def __init__(self, chain: PageChain, url: str, query: Mapping[str, str] | None, index: int) -> None:
        self.chain = chain
        self.url = url
        self.query = query
        self.index = index  # the page's number in the collection, from 1
        self.guess: str | None = None  # the next link the raw body names (set when the answer arrives)
        self.next: _Call | None = None  # the call sent for the page after this one
        self.dropped = False
        self._done = threading.Event()
        self.going = threading.Event()  # the call is being sent (or has ended)
        self._page: dict[str, Any] | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._page = self.chain.get(self.url, self.query, self._arrived, self.going.set) or {}
        except BaseException as exc:  # handed to the consumer by result(), in order
            self._error = exc
        finally:
            self.going.set()
            self._done.set()

    def start(self) -> None:
        # A daemon: a call sent ahead whose page nobody wants any more must not hold the process open.
        threading.Thread(target=self.run, name="provkit-page-ahead", daemon=True).start()

    def _arrived(self, body: bytes) -> None:
        try:
            self.guess = next_link_in(body)
            following = self.chain.send_after(self)
        except Exception as exc:  # the guess is an optimisation: the parsed link is followed regardless
            log.debug("no call sent ahead of page %d: %s", self.index + 1, exc)
            return
        if following is not None:
            following.going.wait(SEND_WAIT)  # let it leave before this page's parse holds the interpreter

    def result(self) -> dict[str, Any]:
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._page is not None
        return self._page


class PageChain:
    """The calls of one collection's paging, each next page's call sent when the page before arrives.

    ``get(url, query, on_body)`` makes one call with retries and returns the parsed page, calling ``on_body`` with
    each successful raw body before parsing it; ``resolve(link)`` turns a next link into the URL to call, raising
    :class:`provkit.errors.ProvkitError` for one that must not be called (then nothing is sent ahead, and the
    consumer meets the same error when it follows the parsed link). ``sent_ahead`` and ``dropped`` count the
    calls sent ahead and those whose answer was not used.
    """

    def __init__(self, get: GetPage, resolve: Callable[[str], str]) -> None:
        self.get = get
        self._resolve = resolve
        self._lock = threading.Lock()
        self._last: _Call | None = None  # the call whose page was handed over last
        self._taken = 0  # pages handed over
        self._closed = False
        self.sent_ahead = 0
        self.dropped = 0

    def take(self, url: str, query: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The page at ``url`` (with ``query``): the answer of the call sent ahead when it went there, else that of
        a call made now (the one sent ahead, anywhere else, is dropped unread). Raises what the call raised."""
        with self._lock:
            ahead = self._last.next if self._last is not None else None
            if ahead is not None and (ahead.dropped or query is not None or ahead.url != url):
                self._drop(ahead)
                ahead = None
            call = ahead or _Call(self, url, query, self._taken + 1)
            if ahead is None and self._last is not None:
                self._last.next = call  # nothing else may be sent for this page now
        if ahead is None:
            call.run()
        page = call.result()
        link = page.get("@odata.nextLink")
        with self._lock:
            following = call.next
            if following is not None and not self._leads_to(link, following):
                # The scan got it wrong: drop that answer now, before it sends a call of its own.
                self._drop(following)
                following = None
            self._last, self._taken = call, call.index
        # A page that arrived while the consumer was behind has waited to send its successor's call: send it now.
        self.send_after(call)
        if following is not None:
            self.send_after(following)
        return page

    def send_after(self, call: _Call) -> _Call | None:
        """Send the call for the page after ``call``'s, to the link its raw body names, if none was sent yet and
        the consumer has taken the page before ``call``'s (at most one call ahead of the page being parsed).
        Returns the call sent, if any."""
        with self._lock:
            if (
                self._closed
                or call.dropped
                or call.next is not None
                or call.guess is None
                or call.index > self._taken + 1
            ):
                return None
            try:
                url = self._resolve(call.guess)
            except ProvkitError:
                return None
            if url == call.url:
                return None  # a link back to itself: the consumer stops that paging
            following = call.next = _Call(self, url, None, call.index + 1)
            self.sent_ahead += 1
        following.start()
        return following

    def _leads_to(self, link: object, call: _Call) -> bool:
        """Whether the parsed page's next ``link`` is where ``call`` went."""
        if not isinstance(link, str) or not link:
            return False
        try:
            return self._resolve(link) == call.url
        except ProvkitError:
            return False

    def _drop(self, call: _Call) -> None:
        """Under the lock: ``call`` and any sent after it are not wanted; their answers are never read."""
        dropping: _Call | None = call
        while dropping is not None:
            if not dropping.dropped:
                dropping.dropped = True
                self.dropped += 1
            dropping = dropping.next

    def close(self) -> None:
        """The paging ended (or its consumer stopped): drop what was sent ahead and send nothing more."""
        with self._lock:
            self._closed = True
            if self._last is not None and self._last.next is not None:
                self._drop(self._last.next)
