"""When the server's event loop hands a request to a thread (anastrozole_cds/worker.py): only
once it has arrived whole, whatever pieces it comes in; refused early when it cannot be."""

from __future__ import annotations

from anastrozole_cds.worker import MAX_HEAD_BYTES, Arrival

LIMIT = 1000
HEAD = b"POST /cds-services/x HTTP/1.1\r\nHost: x\r\n"


def fed_byte_by_byte(request: bytes) -> list[bool]:
    arrival = Arrival(LIMIT)
    return [arrival.feed(request[i : i + 1]).complete for i in range(len(request))]


def test_a_request_with_a_length_arrives_with_its_last_byte() -> None:
    request = HEAD + b"Content-Length: 5\r\n\r\nhello"
    assert fed_byte_by_byte(request) == [False] * (len(request) - 1) + [True]


def test_a_chunked_request_arrives_with_its_last_chunk_and_trailers() -> None:
    request = HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\n\r\n"
    assert fed_byte_by_byte(request) == [False] * (len(request) - 1) + [True]


def test_chunks_already_walked_are_not_walked_again() -> None:
    """A body dripped one byte per chunk costs the loop linear work, not quadratic."""
    arrival = Arrival(LIMIT)
    arrival.feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
    for _ in range(200):
        assert not arrival.feed(b"1\r\nx\r\n").complete
    assert arrival.total == 200 and arrival.position == 200 * 6
    assert arrival.feed(b"0\r\n\r\n").complete


def test_a_body_over_the_limit_is_refused_as_soon_as_it_says_so_or_passes_it() -> None:
    declared = Arrival(LIMIT).feed(HEAD + b"Content-Length: 1001\r\n\r\n")
    assert declared.status == 413
    chunked = Arrival(LIMIT)
    chunked.feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
    assert chunked.feed(b"3e8\r\n" + b"x" * 1000 + b"\r\n").status is None
    assert chunked.feed(b"1\r\n").status == 413


def test_headers_larger_than_the_limit_are_refused() -> None:
    arrival = Arrival(LIMIT)
    assert arrival.feed(HEAD + b"X-Big: " + b"a" * MAX_HEAD_BYTES).status == 431


def test_a_client_that_expects_100_continue_is_told_to_send_its_body() -> None:
    found = Arrival(LIMIT).feed(HEAD + b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert not found.complete and found.expects_continue


def test_what_is_not_http_framing_is_left_to_gunicorns_parser() -> None:
    """It reads the same bytes and answers 400: the loop does not wait for ever."""
    assert Arrival(LIMIT).feed(HEAD + b"Content-Length: x\r\n\r\n").complete
    bad_chunk = Arrival(LIMIT).feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert bad_chunk.complete
