from __future__ import annotations

from callstream.rtp.packet import RtpPacket
from callstream.rtp.reorder import ReorderBuffer


def _packet(sequence_number: int, ssrc: int = 7) -> RtpPacket:
    return RtpPacket(0, sequence_number & 0xFFFF, 160 * sequence_number, ssrc, b"")


def _push(buffer: ReorderBuffer, *sequence_numbers: int, ssrc: int = 7) -> list[int]:
    delivered: list[int] = []
    for sequence_number in sequence_numbers:
        delivered += [p.sequence_number for p in buffer.push(_packet(sequence_number, ssrc))]
    return delivered


def test_in_order_packets_are_delivered_at_once() -> None:
    buffer = ReorderBuffer()
    for sequence_number in range(100, 110):
        packet = _packet(sequence_number)
        assert buffer.push(packet) == [packet]
    assert (buffer.lost, buffer.duplicates, buffer.late, len(buffer)) == (0, 0, 0, 0)


def test_swapped_pair_is_put_back_in_order() -> None:
    buffer = ReorderBuffer()
    assert _push(buffer, 1) == [1]
    assert _push(buffer, 3) == []
    assert len(buffer) == 1
    assert _push(buffer, 2) == [2, 3]
    assert _push(buffer, 4) == [4]
    assert buffer.lost == 0


def test_gap_released_when_capacity_is_held() -> None:
    buffer = ReorderBuffer(capacity=3)
    assert _push(buffer, 10, 12, 13) == [10]
    assert _push(buffer, 14) == [12, 13, 14]
    assert buffer.lost == 1
    # The missing one arriving afterwards is late, a second copy a duplicate.
    assert _push(buffer, 11) == []
    assert _push(buffer, 11) == []
    assert (buffer.late, buffer.duplicates) == (1, 1)
    assert _push(buffer, 15) == [15]


def test_gap_released_when_a_packet_lands_capacity_past_it() -> None:
    buffer = ReorderBuffer(capacity=5)
    assert _push(buffer, 1) == [1]
    assert _push(buffer, 20) == [20]  # a burst of 18 lost packets costs no wait
    assert buffer.lost == 18
    assert _push(buffer, 22, 26) == [22]  # 26 gives up on 21; 23-25 may still come
    assert buffer.lost == 18 + 1
    assert _push(buffer, 27) == []
    assert _push(buffer, 28) == [26, 27, 28]
    assert buffer.lost == 18 + 1 + 3


def test_duplicates_of_held_and_delivered_packets() -> None:
    buffer = ReorderBuffer()
    assert _push(buffer, 1, 3, 3, 1) == [1]
    assert buffer.duplicates == 2
    assert _push(buffer, 2) == [2, 3]


def test_flush_releases_everything_skipping_gaps() -> None:
    buffer = ReorderBuffer(capacity=10)
    assert _push(buffer, 1, 3, 6, 4) == [1]
    assert [p.sequence_number for p in buffer.flush()] == [3, 4, 6]
    assert buffer.lost == 2
    assert buffer.flush() == []
    assert _push(buffer, 7) == [7]
    assert _push(buffer, 5) == []
    assert buffer.late == 1


def test_sequence_wrap_around() -> None:
    buffer = ReorderBuffer()
    assert _push(buffer, 65533, 65534, 0) == [65533, 65534]
    assert _push(buffer, 65535) == [65535, 0]
    assert _push(buffer, 2, 1) == [1, 2]
    assert _push(buffer, 65535) == []
    assert buffer.duplicates == 1
    assert buffer.lost == 0


def test_ssrc_change_is_a_new_stream() -> None:
    buffer = ReorderBuffer()
    assert _push(buffer, 100, 102) == [100]
    assert _push(buffer, 5000, ssrc=8) == [102, 5000]
    assert _push(buffer, 5001, ssrc=8) == [5001]
    assert buffer.resets == 1
    assert buffer.lost == 1


def test_big_jump_is_a_new_stream() -> None:
    buffer = ReorderBuffer()
    assert _push(buffer, 100, 101, 30000, 30001) == [100, 101, 30000, 30001]
    assert _push(buffer, 102) == [102]  # far behind again: also treated as a new stream
    assert buffer.resets == 2
    assert (buffer.lost, buffer.late, buffer.duplicates) == (0, 0, 0)


def test_random_reordering_delivers_each_packet_once_in_order() -> None:
    import random

    rng = random.Random(4733)
    order = list(range(65500, 65500 + 400))
    for start in range(1, len(order) - 3, 3):  # the first packet starts the stream
        window = order[start : start + 3]
        rng.shuffle(window)
        order[start : start + 3] = window
    buffer = ReorderBuffer()
    delivered = _push(buffer, *order) + [p.sequence_number for p in buffer.flush()]
    assert delivered == [number & 0xFFFF for number in range(65500, 65900)]
    assert (buffer.lost, buffer.late, buffer.duplicates) == (0, 0, 0)
