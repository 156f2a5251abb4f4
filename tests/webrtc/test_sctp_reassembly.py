"""The bound on aiortc's SCTP reassembly (relay/webrtc/internals.py): a data-channel
message over the limit is dropped fragment by fragment, a blank stand-in just over the
limit takes its place in the stream's order, and the messages around it are untouched.
Fed synthetic DATA chunks, no network."""

from __future__ import annotations

from collections.abc import Iterator

from aiortc.rtcsctptransport import (
    SCTP_DATA_FIRST_FRAG,
    SCTP_DATA_LAST_FRAG,
    SCTP_DATA_UNORDERED,
    DataChunk,
)

from relay.webrtc.internals import BoundedInboundStream

LIMIT = 1000
STRING = 51  # WebRTC string PPID


class Sender:
    """Splits messages into DATA chunks as a peer's SCTP does (consecutive TSNs)."""

    def __init__(self) -> None:
        self.tsn = 100
        self.seq = 0

    def chunks(self, data: bytes, size: int = 300, *, ordered: bool = True) -> list[DataChunk]:
        pieces = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
        out = []
        for index, piece in enumerate(pieces):
            flags = (SCTP_DATA_FIRST_FRAG if index == 0 else 0) | (
                SCTP_DATA_LAST_FRAG if index == len(pieces) - 1 else 0) | (
                0 if ordered else SCTP_DATA_UNORDERED)
            chunk = DataChunk(flags=flags)
            chunk.tsn, chunk.stream_id, chunk.protocol = self.tsn, 1, STRING
            chunk.stream_seq, chunk.user_data = self.seq, piece
            self.tsn += 1
            out.append(chunk)
        if ordered:
            self.seq += 1
        return out


def feed(stream: BoundedInboundStream, chunks: list[DataChunk]) -> Iterator[tuple[int, bytes]]:
    """What the transport does per chunk: add it, charge the window, pop messages.
    Yields (window change, message) pairs."""
    for chunk in chunks:
        stream.add_chunk(chunk)
        charged = len(chunk.user_data)
        for _, _, message in stream.pop_messages():
            yield charged, message
            charged = 0
        if charged:
            yield charged, b""


def messages(stream: BoundedInboundStream, chunks: list[DataChunk]) -> list[bytes]:
    return [message for _, message in feed(stream, chunks) if message]


def test_sctp_reassembly_passes_messages_up_to_the_limit_whole() -> None:
    stream, send = BoundedInboundStream(LIMIT), Sender()
    small, exact = b"a" * 10, b"b" * LIMIT
    assert messages(stream, send.chunks(small) + send.chunks(exact)) == [small, exact]
    assert stream.dropped == 0 and stream.reassembly == []


def test_sctp_reassembly_drops_an_oversize_message_as_it_arrives() -> None:
    stream, send = BoundedInboundStream(LIMIT), Sender()
    before, huge, after = b"x" * 5, b"h" * 100_000, b"y" * 7
    chunks = send.chunks(before) + send.chunks(huge) + send.chunks(after)
    got = []
    for chunk in chunks:
        got += messages(stream, [chunk])
        assert sum(len(c.user_data) for c in stream.reassembly) <= LIMIT  # never more held
    assert got[0] == before and got[2] == after
    stand_in = got[1]
    assert len(stand_in) > LIMIT and stand_in.strip() == b""  # over the limit, blank
    assert stream.dropped == 1 and stream.reassembly == []


def test_sctp_reassembly_gives_the_receive_window_back() -> None:
    stream, send = BoundedInboundStream(LIMIT), Sender()
    window = 0
    for charged, message in feed(stream, send.chunks(b"h" * 50_000) + send.chunks(b"z")):
        window += charged - len(message)
    # Within one fragment of even (the stand-in is as long as what was held of it).
    assert -300 <= window <= 0


def test_sctp_reassembly_late_fragments_of_a_dropped_message_do_not_block_the_stream() -> None:
    stream, send = BoundedInboundStream(LIMIT), Sender()
    huge = send.chunks(b"h" * 5000)
    late = huge.pop(3)  # arrives after the message's last fragment
    got = messages(stream, huge)
    assert len(got) == 1 and len(got[0]) > LIMIT
    assert messages(stream, [late]) == []
    assert messages(stream, send.chunks(b"next")) == [b"next"]


def test_sctp_reassembly_an_oversize_unordered_message_is_dropped_without_a_stand_in() -> None:
    stream, send = BoundedInboundStream(LIMIT), Sender()
    got = messages(stream, send.chunks(b"u" * 5000, ordered=False)
                   + send.chunks(b"ok", ordered=False) + send.chunks(b"in order"))
    assert got == [b"ok", b"in order"]
    assert stream.dropped == 1


def test_sctp_reassembly_stand_in_waits_for_the_messages_before_it() -> None:
    stream, send = BoundedInboundStream(LIMIT), Sender()
    first = send.chunks(b"f" * 600)
    lost = first.pop(1)  # the first message's second fragment comes last
    huge, after = send.chunks(b"h" * 5000), send.chunks(b"after")
    assert messages(stream, first + huge + after) == []  # all wait for the first
    got = messages(stream, [lost])
    assert got[0] == b"f" * 600 and len(got[1]) > LIMIT and got[2] == b"after"
