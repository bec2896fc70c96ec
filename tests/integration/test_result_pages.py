"""``Job.iter_results()`` and ``Job.results()`` across more than one 20,000-item
page (README: they "read them page by page (following ``next_offset``)"; the
API's page is "at most 20,000"), for a function job run by the live stack's
worker: every item's value once, in item order, one request per page (the
first 100 came with the wait's answer)."""

from __future__ import annotations

import httpx
import pytest

from jobsys import Client
from tests.support.live import LiveStack

pytestmark = pytest.mark.integration

#: The server's maximum page, as the README says it (not imported from the code).
PAGE = 20_000
#: What the answer to a wait brings along (README: "its first 100 outcomes").
INLINE = 100
#: Two pages after those: a full one and a partial last one.
ITEMS = INLINE + PAGE + 1_234


def triple(x: int) -> int:
    return 3 * x


class CountingTransport(httpx.HTTPTransport):
    """An HTTP transport that keeps the query of every results request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.pages: list[dict[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/results"):
            self.pages.append(dict(request.url.params))
        return super().handle_request(request)


def test_results_and_iter_results_follow_every_page_once_in_order(stack: LiveStack) -> None:
    transport = CountingTransport()
    with Client(stack.url, token=stack.token(), transport=transport) as c:
        # Chunks of 7,000 do not line up with the pages: the second starts inside one.
        job = c.map(triple, range(ITEMS), chunk_size=7_000).wait(timeout=120)
        assert job.status == "completed", job.error
        expected = [3 * x for x in range(ITEMS)]
        # The answer that told of the end brought the first INLINE outcomes along;
        # the pages follow on from there.
        pages = [
            {"offset": str(offset), "limit": str(PAGE)} for offset in range(INLINE, ITEMS, PAGE)
        ]
        assert len(pages) == 2
        assert transport.pages == []

        iterated = job.iter_results()
        assert next(iterated) == 0
        # One page at a time, not all up front: the first came with the wait, and
        # at most the next is being fetched (in the background) while it is read.
        asked = list(transport.pages)
        assert asked in ([], pages[:1]), asked
        assert [0, *iterated] == expected
        assert transport.pages == pages

        transport.pages.clear()
        assert job.results() == expected
        assert transport.pages == pages
