"""A dead letter is the record whole when it fits the producer's limit, else cut to fit and marked."""

from consumers.dead_letter import ERROR_MESSAGE_LIMIT, MAX_REQUEST_BYTES, TRUNCATED, dead_letter, letter_size
from ledger.core.records import QuarantineRow


def row(*, key: bytes | None = b"k", value: bytes | None = b"v", headers=(("trace", b"t-1"),),
        reason: str = "not Avro") -> QuarantineRow:
    return QuarantineRow(topic="p.usage.training", partition=3, offset=41, key=key, value=value, headers=headers,
                         error_code="undecodable", error_class="DecodeError", reason=reason)


def test_a_letter_that_fits_is_the_record_whole_with_its_provenance():
    letter = dead_letter(row())
    assert (letter.key, letter.value, letter.truncated) == (b"k", b"v", False)
    assert letter.headers == (
        ("trace", b"t-1"), ("learnright.original.topic", b"p.usage.training"),
        ("learnright.original.partition", b"3"), ("learnright.original.offset", b"41"),
        ("learnright.error.code", b"undecodable"), ("learnright.error.class", b"DecodeError"),
        ("learnright.error.message", b"not Avro"))


def test_a_letter_exactly_at_the_limit_is_whole_and_one_byte_more_is_cut():
    whole = dead_letter(row(value=b""))
    exact = b"x" * (MAX_REQUEST_BYTES - whole.size - 2)  # the length's varint grows from 1 to 3 bytes
    assert dead_letter(row(value=exact)).size == MAX_REQUEST_BYTES
    assert not dead_letter(row(value=exact)).truncated
    over = dead_letter(row(value=exact + b"y"))
    assert over.truncated and over.size <= MAX_REQUEST_BYTES
    assert dict(over.headers)[TRUNCATED] == str(len(exact) + 1).encode()


def test_a_cut_letter_keeps_the_longest_prefix_that_fits():
    value = bytes(range(256)) * 4200  # 1,075,200 bytes: over the limit alone
    letter = dead_letter(row(value=value))
    assert letter.size <= MAX_REQUEST_BYTES
    assert value.startswith(letter.value)
    assert letter_size(letter.key, value[:len(letter.value) + 1], letter.headers) > MAX_REQUEST_BYTES
    assert dict(letter.headers)["trace"] == b"t-1" and letter.key == b"k"


def test_a_huge_error_message_is_cut_without_splitting_a_character():
    reason = "é" * 600_000  # 1.2 MB of two-byte characters
    letter = dead_letter(row(reason=reason))
    message = dict(letter.headers)["learnright.error.message"]
    assert len(message) == ERROR_MESSAGE_LIMIT and message.decode() == "é" * (ERROR_MESSAGE_LIMIT // 2)
    assert letter.value == b"v" and dict(letter.headers)[TRUNCATED] == b"1"


def test_huge_original_headers_are_dropped_and_counted_and_the_value_kept():
    headers = (("a", b"x" * 700_000), ("b", b"y" * 400_000))
    letter = dead_letter(row(headers=headers, value=b"payload"))
    names = dict(letter.headers)
    assert "a" not in names and "b" not in names
    assert names["learnright.truncated.headers"] == b"2" and names[TRUNCATED] == b"7"
    assert letter.value == b"payload" and letter.size <= MAX_REQUEST_BYTES


def test_a_huge_key_is_cut_last():
    key = b"K" * 1_100_000
    letter = dead_letter(row(key=key, value=None, headers=()))
    assert letter.size <= MAX_REQUEST_BYTES and key.startswith(letter.key) and len(letter.key) > 1_000_000
    assert dict(letter.headers)["learnright.truncated.key"] == b"1100000"
    assert letter.value is None
