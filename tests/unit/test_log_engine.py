"""The C log engine against the plain-Python reference, on every byte scanner this CPU has.

Hypothesis builds logs out of the pieces real job output is made of (text, UTF-8, SGR and
other escape sequences, progress-bar carriage returns, control characters, invalid
UTF-8, secrets and their encodings, sometimes split by an escape sequence) and feeds them
in random chunk splits; the concatenated output must equal the reference's exactly. Unit
cases pin each rule of native/include/prts/logengine.h to an example.
"""

from __future__ import annotations

import contextlib
import platform
import random
import threading
from array import array

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import logmask, native
from appliance._native import ffi, lib
from reference_logengine import BOLD, DIM, INVERSE, ITALIC, PALETTE, RGB, STRIKE, UNDERLINE, reference_process

IMPLEMENTATIONS = {"portable": lib.PRTS_LOG_PORTABLE, "sse2": lib.PRTS_LOG_SSE2, "avx2": lib.PRTS_LOG_AVX2}
SUPPORTED = [name for name, value in IMPLEMENTATIONS.items() if lib.prts_log_select(value) == lib.PRTS_OK]
lib.prts_log_select(lib.PRTS_LOG_AUTO)
BLOCK = 64 * 1024  # the fast path works in blocks of this size: data around their edges is tested


@contextlib.contextmanager
def scanner(name: str):
    native.select_log_scanner(IMPLEMENTATIONS[name])
    try:
        yield
    finally:
        native.select_log_scanner(lib.PRTS_LOG_AUTO)


def run_chunks(engine: native.LogEngine, data: bytes, cuts=()) -> tuple[bytes, list[int], list[tuple]]:
    """Feed data split at cuts; return the concatenated text, line starts and runs."""
    bounds = [0, *sorted(cuts), len(data)]
    outputs = [engine.feed(data[a:b]) for a, b in zip(bounds, bounds[1:])] + [engine.finish()]
    return (b"".join(o.text for o in outputs), [s for o in outputs for s in o.line_starts],
            [r for o in outputs for r in o.run_tuples()])


def check(data: bytes, patterns=(), *, max_line: int = 1 << 20, cuts=()) -> tuple[bytes, list[int], list[tuple]]:
    engine = native.LogEngine.from_patterns(patterns, max_line=max_line)
    got = run_chunks(engine, data, cuts)
    assert got == reference_process(data, patterns, max_line)
    text, starts, runs = got
    assert starts == [0, *(i + 1 for i, b in enumerate(text[:-1]) if b == 0x0A)][: text.count(b"\n")]
    text.decode("utf-8")  # strict: the output is always valid UTF-8
    return got


def text_of(data: bytes, secrets=(), **kwargs) -> bytes:
    return native.process_log(data, secrets, **kwargs).text


def test_every_vector_scanner_is_tested_on_x86():
    if platform.machine() in ("x86_64", "AMD64"):
        assert {"portable", "sse2"} <= set(SUPPORTED)


# -- hypothesis: the engine equals the reference -------------------------------------------

SECRET_CHARS = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789-_.~+/=:@!$%^&*() \"\\'<>é日😀\t"
secret_text = st.text(SECRET_CHARS, min_size=6, max_size=14).filter(lambda s: len(s.encode()) >= 6)

SGR_CODES = [0, 1, 2, 3, 4, 5, 7, 9, 22, 23, 24, 27, 29, 30, 31, 37, 38, 39, 40, 47, 48, 49, 90, 97, 100, 107,
             2, 5, 255, 256, 65535, 10**12]


@st.composite
def sgr(draw) -> bytes:
    codes = draw(st.lists(st.sampled_from(SGR_CODES), max_size=7))
    text = "".join(str(c) + draw(st.sampled_from([";", ";", ":", ""])) for c in codes)
    marker = draw(st.sampled_from(["", "", "", "?", ">"]))
    intermediate = draw(st.sampled_from(["", "", "", "", " ", "!"]))
    return b"\x1b[" + (marker + text + intermediate).encode() + b"m"


PIECES = [
    b"hello", b" ", b"error: ", b"\t", b"x" * 70, "ünï".encode(), "日本語".encode(), "😀".encode(), b"0123456789",
    b"\n", b"\n", b"\n", b"\r\n", b"\r", b"\r\r\n", b"10%\r", b"\x1b[2K", b"\x1b[1A", b"\x1b[?25l", b"\x1b[1 m",
    b"\x1b]0;title\x07", b"\x1b]8;;https://example.com\x1b\\", b"\x1b]8;;\x1b\\", b"\x1bP1$r\x07data\x1b\\",
    b"\x1b(B", b"\x1b=", b"\x1b", b"\x1b[", b"\x1b]", b"\x1bP", b"\x1b[1", b"\x1b[38;5", b"\x07", b"\x00", b"\x08",
    b"\x7f", b"\xc2\x85", b"\xc2\x9b", b"\x9b", b"\xff", b"\xc0\xaf", b"\xe2\x82", b"\xed\xa0\x80", b"\xf0\x9f",
    b"\xf4\x90\x80\x80",
]


@st.composite
def planted(draw, secrets: list[str]) -> bytes:
    """A secret as a job might print it: raw, encoded, or split by an escape sequence."""
    secret = draw(st.sampled_from(secrets))
    form = draw(st.sampled_from(logmask.secret_patterns([secret])))
    if draw(st.booleans()):
        return form
    cut = draw(st.integers(1, len(form) - 1))
    while cut < len(form) and form[cut] & 0xC0 == 0x80:  # split between characters
        cut += 1
    return form[:cut] + draw(sgr()) + form[cut:]


@st.composite
def plain_lines(draw, secrets: list[str]) -> bytes:
    """Whole lines of plain text, secrets at their starts and ends: what the fast path
    copies as one block straight from the input."""
    text = st.sampled_from([b"", b"hello world", "日本語 ok".encode(), b"x" * 70, b"\tindented"])
    forms = st.sampled_from([p for s in secrets for p in logmask.secret_patterns([s])] or [b"none"])
    line = st.builds(lambda a, f, b: a + f + b, text, forms, text) if secrets else text
    return b"\n".join(draw(st.lists(line, min_size=2, max_size=6))) + b"\n"


@st.composite
def job_logs(draw):
    secrets = draw(st.lists(secret_text, max_size=3))
    piece = st.one_of(st.sampled_from(PIECES), sgr(), st.binary(max_size=6), plain_lines(secrets),
                      *[planted(secrets)] * 2 * bool(secrets))
    count = draw(st.integers(0, 120))
    data = b"".join(draw(st.lists(piece, min_size=count, max_size=count)))
    patterns = logmask.secret_patterns(secrets)
    longest = max(map(len, patterns), default=0)
    max_line = max(draw(st.sampled_from([64, 80, 150, 1 << 20])), 2 * longest)
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=8))
    return data, secrets, patterns, max_line, cuts


@pytest.mark.parametrize("impl", SUPPORTED)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=job_logs())
def test_equals_reference_on_job_logs(impl, case):
    data, secrets, patterns, max_line, cuts = case
    with scanner(impl):
        text, _, _ = check(data, patterns, max_line=max_line, cuts=cuts)
    for secret in secrets:
        assert secret.encode() not in text


@pytest.mark.parametrize("impl", SUPPORTED)
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 600), max_size=6))
def test_equals_reference_on_random_bytes(impl, data, cuts):
    with scanner(impl):
        check(data, [b"secret", b"abcdef"], max_line=64,
              cuts=[c for c in cuts if c <= len(data)])


@settings(max_examples=150, deadline=None)
@given(data=job_logs())
def test_one_byte_feeds_equal_one_feed(data):
    data, _, patterns, max_line, _ = data
    whole = run_chunks(native.LogEngine.from_patterns(patterns, max_line=max_line), data)
    engine = native.LogEngine.from_patterns(patterns, max_line=max_line)
    assert run_chunks(engine, data, range(1, len(data))) == whole


@pytest.mark.parametrize("impl", SUPPORTED)
def test_block_edges(impl):
    """Lines, secrets and multi-byte characters around the fast path's block boundaries."""
    rng = random.Random(7)
    secret = "s3cr3t-Tøken"
    patterns = logmask.secret_patterns([secret])
    lines = []
    size = 0
    while size < 3 * BLOCK + 5000:
        kind = rng.random()
        if kind < 0.1:
            line = "x" * rng.randrange(200) + secret
        elif kind < 0.15:
            line = "\x1b[32mok\x1b[0m " + "日" * rng.randrange(50)
        elif kind < 0.18:
            line = "y" * rng.randrange(BLOCK // 2, BLOCK + 100)
        else:
            line = "".join(rng.choice("abc déf😀\t") for _ in range(rng.randrange(120)))
        lines.append(line.encode() + b"\n")
        size += len(lines[-1])
    data = b"".join(lines)
    for shift in range(0, 12, 3):  # move everything across the block boundary
        shifted = b"z" * shift + data
        with scanner(impl):
            check(shifted, patterns)
            check(shifted, patterns, max_line=1000, cuts=[BLOCK - 1, BLOCK + 7, 2 * BLOCK + 100])


# -- terminal handling ------------------------------------------------------------------------


@pytest.mark.parametrize("data, expected", [
    (b"10%\r55%\r100%\n", b"100%\n"),
    (b"abc\r\n", b"abc\n"),
    (b"abc\r\r\n", b"abc\n"),  # CRLF written through a pty with onlcr
    (b"abc\r", b"abc\n"),  # a pending \r at the end erases nothing
    (b"abc\rxy", b"xy\n"),
    (b"abc\rxyz\r", b"xyz\n"),
    (b"progress 50%\r\x1b[Kdone\n", b"done\n"),
    (b"progress\r\x1b[K\n", b"\n"),
    (b"a\n\n\nb", b"a\n\n\nb\n"),
    (b"", b""),
    (b"\n", b"\n"),
    (b"\r", b""),
    (b"tab\there\n", b"tab\there\n"),
    (b"bell\x07 back\x08space\x00nul\x7fdel\x0bvt\n", b"bell backspacenuldelvt\n"),
    ("c1:\u0085\u009b|nbsp:\u00a0\n".encode(), "c1:|nbsp:\u00a0\n".encode()),
    (b"\x1b]0;window title\x07text\n", b"text\n"),
    (b"\x1b]8;;https://example.com/a?b=c\x1b\\link\x1b]8;;\x1b\\ after\n", b"link after\n"),
    (b"\x1bP1$r0m\x07still dcs\x1b\\after\n", b"after\n"),  # BEL does not end DCS
    (b"\x1b_apc\x1b\\\x1b^pm\x1b\\\x1bXsos\x1b\\ok\n", b"ok\n"),
    (b"\x1b[2J\x1b[H\x1b[1;5H\x1b[10A\x1b[?25l\x1b[?1049h\x1b[6n\x1b[!p\x1b[ q\x1b[>4;2m\x1b[s\x1b[uok\n", b"ok\n"),
    (b"\x1b(B\x1b)0\x1b#8\x1b7\x1b8\x1b=\x1b>\x1bcok\n", b"ok\n"),
    (b"\x1b[1\nnext\n", b"\nnext\n"),  # a line end abandons an escape sequence
    (b"\x1b]0;title\nnext\n", b"\nnext\n"),  # ... and a string sequence
    (b"\x1b[1\xc3\xa9m\n", "\u00e9m\n".encode()),  # non-ASCII abandons CSI and is text
    (b"\x1b\x1b[31mred\n", b"red\n"),
    (b"\x1b\x07text\n", b"text\n"),
    (b"\x1b[31", b""),  # unfinished at the end of the stream: dropped
    (b"\x1b]0;unterminated", b""),
])
def test_terminal_rules(data, expected):
    for impl in SUPPORTED:
        with scanner(impl):
            assert text_of(data) == expected
    check(data)


def test_progress_bars_written_in_pieces():
    frames = [f"\r[{'#' * i:<10}] {i * 10}%".encode() for i in range(11)]
    data = b"Downloading\n" + b"".join(frames) + b"\n"
    assert text_of(data) == b"Downloading\n[##########] 100%\n"
    check(data, cuts=range(1, len(data)))


def test_unterminated_sequence_is_bounded():
    data = b"\x1b]" + b"a" * 5000 + b"\n"  # an OSC without terminator on one long line
    # ESC and ']' and 4094 'a's make 4096 code points: the sequence is abandoned there.
    assert text_of(data) == b"a" * (5000 - 4094) + b"\n"
    check(data)
    csi = b"\x1b[" + b"1;" * 3000 + b"31mX\n"
    check(csi)
    assert text_of(csi).endswith(b"31mX\n")


@pytest.mark.parametrize("impl", SUPPORTED)
@pytest.mark.parametrize("length", [4094, 4095, 4096, 4097, 4098])
def test_sequences_at_the_length_bound(impl, length):
    """Sequences of about PRTS_LOG_MAX_SEQUENCE code points: the fast path, which counts
    bytes, must give up exactly where the slow path abandons them."""
    csi = b"\x1b[" + (b"1;" * length)[: length - 5] + b"31m"
    osc = b"\x1b]" + b"t" * (length - 3) + b"\x07"
    dcs_like = b"\x1b" + b"(" * (length - 2) + b"B"
    for sequence in (csi, osc, dcs_like):
        assert len(sequence) == length
        with scanner(impl):
            check(b"a" + sequence + b"after\n" + b"z" * 40)


def test_escape_split_at_every_byte():
    data = b"\x1b[1;38;2;10;20;30mbold\x1b]8;;http://x\x1b\\ \x1b[0m\r\nplain\n"
    check(data, cuts=range(1, len(data)))


# -- SGR ------------------------------------------------------------------------------------


def runs_of(data: bytes) -> list[tuple]:
    return native.process_log(data).run_tuples()


@pytest.mark.parametrize("sgr, fg, bg, flags", [
    (b"1", 0, 0, BOLD), (b"2", 0, 0, DIM), (b"3", 0, 0, ITALIC), (b"4", 0, 0, UNDERLINE),
    (b"7", 0, 0, INVERSE), (b"9", 0, 0, STRIKE), (b"1;2;3;4;7;9", 0, 0, 63),
    (b"31", PALETTE | 1, 0, 0), (b"37", PALETTE | 7, 0, 0), (b"90", PALETTE | 8, 0, 0), (b"97", PALETTE | 15, 0, 0),
    (b"41", 0, PALETTE | 1, 0), (b"107", 0, PALETTE | 15, 0),
    (b"38;5;1", PALETTE | 1, 0, 0), (b"38;5;208", PALETTE | 208, 0, 0), (b"48;5;17", 0, PALETTE | 17, 0),
    (b"38;2;255;128;0", RGB | 0xFF8000, 0, 0), (b"48;2;1;2;3", 0, RGB | 0x010203, 0),
    (b"38:5:208", PALETTE | 208, 0, 0), (b"38:2::255:128:0", RGB | 0xFF8000, 0, 0),
    (b"38:2:255:128:0", RGB | 0xFF8000, 0, 0), (b"48:2:0:1:2:3", 0, RGB | 0x010203, 0),
    (b"4:3", 0, 0, UNDERLINE), (b"1;31;42", PALETTE | 1, PALETTE | 2, BOLD),
    (b"38;5;256;1", 0, 0, BOLD),  # an index above 255 is ignored, and consumed
    (b"38;2;1;2;300;4", 0, 0, UNDERLINE),
    (b"38;7;1", 0, 0, INVERSE | BOLD),  # unknown selector: 38 is ignored, 7 and 1 are codes
    (b"00001;0031", PALETTE | 1, 0, BOLD),
    (b"99999999999999999999;1", 0, 0, BOLD),
])
def test_sgr_sets_style(sgr, fg, bg, flags):
    data = b"\x1b[" + sgr + b"mX\n"
    assert runs_of(data) == [(0, 1, fg, bg, flags)]
    check(data)


@pytest.mark.parametrize("reset, remaining", [
    (b"0", None), (b"", None), (b";", None), (b"22", (PALETTE | 1, PALETTE | 2, ITALIC | UNDERLINE | INVERSE | STRIKE)),
    (b"23", (PALETTE | 1, PALETTE | 2, BOLD | DIM | UNDERLINE | INVERSE | STRIKE)),
    (b"24;27;29", (PALETTE | 1, PALETTE | 2, BOLD | DIM | ITALIC)),
    (b"4:0", (PALETTE | 1, PALETTE | 2, BOLD | DIM | ITALIC | INVERSE | STRIKE)),
    (b"39", (0, PALETTE | 2, 63)), (b"49", (PALETTE | 1, 0, 63)),
])
def test_sgr_resets(reset, remaining):
    data = b"\x1b[1;2;3;4;7;9;31;42m\x1b[" + reset + b"mX\n"
    assert runs_of(data) == ([] if remaining is None else [(0, 1, *remaining)])


@pytest.mark.parametrize("sequence", [b"\x1b[?1m", b"\x1b[>1m", b"\x1b[1 m", b"\x1b[=1m", b"\x1b[<1m",
                                      b"\x1b[1;1;1;1;1;1;1;1;1;1;1 m", b"\x1b[1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1?m",
                                      b"\x1b[1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1 !\"m"])
def test_sgr_lookalikes_do_not_style(sequence):
    for impl in SUPPORTED:
        with scanner(impl):
            assert runs_of(sequence + b"X" * 40 + b"\n") == []  # text after: vector loads reach past


@pytest.mark.parametrize("impl", SUPPORTED)
def test_many_sgr_sequences_alike_in_their_first_bytes(impl):
    """More distinct SGR parameter strings than the engine caches, equal in their first 8
    bytes: each must still get its own colour."""
    data = b"".join(b"\x1b[38;2;10;20;%dmX\n" % i for i in range(256)) * 2
    with scanner(impl):
        _, _, runs = check(data)
    assert [r[2] for r in runs[:256]] == [RGB | 10 << 16 | 20 << 8 | i for i in range(256)]


def test_style_persists_across_lines_and_runs_exclude_newlines():
    data = b"\x1b[31mred\nstill red\n\x1b[0mplain \x1b[1mbold\x1b[22m\n"
    text, starts, runs = check(data)
    assert text == b"red\nstill red\nplain bold\n"
    assert starts == [0, 4, 14]
    assert runs == [(0, 3, PALETTE | 1, 0, 0), (4, 9, PALETTE | 1, 0, 0), (20, 4, 0, 0, BOLD)]


def test_runs_merge_across_redundant_sgr_and_split_on_change():
    assert runs_of(b"\x1b[31ma\x1b[31mb\x1b[1mc\n") == [(0, 2, PALETTE | 1, 0, 0), (2, 1, PALETTE | 1, 0, BOLD)]


def test_runs_and_line_starts_are_absolute_across_feeds():
    engine = native.LogEngine()
    first = engine.feed(b"one\n\x1b[32mtw")
    second = engine.feed(b"o\nthree\n")
    assert (first.text, list(first.line_starts), first.run_tuples()) == (b"one\n", [0], [])
    assert (second.text, list(second.line_starts)) == (b"two\nthree\n", [4, 8])
    assert second.run_tuples() == [(4, 3, PALETTE | 2, 0, 0), (8, 5, PALETTE | 2, 0, 0)]
    assert engine.finish().text == b""


# -- UTF-8 ----------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [
    b"\xff", b"\xfe\xff", b"\x80", b"\xbf\x80", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xe0\x9f\xbf",
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf0\x80\x80\x80", b"\xf0\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5\x80",
    b"\xe2\x82", b"\xe2\x82x", b"\xe2x\x82", b"\xf0\x9f\x98", b"\xf0\x9f\x98\x80", b"\xe2\x82\xac", b"\xc3\xa9",
    b"a\xc3", b"\xc3\xc3\xa9", b"\xf0\x9f\x98\x80\x80",
])
def test_invalid_utf8_is_replaced_as_python_does(data):
    line = b"<" + data + b">\n"
    expected = line.decode("utf-8", "replace").encode()
    for cuts in ([], range(1, len(line))):
        engine = native.LogEngine()
        assert run_chunks(engine, line, cuts)[0] == expected
    check(line)


def test_a_character_cut_off_at_the_end_becomes_one_replacement():
    assert text_of(b"abc\xe2\x82") == "abc\ufffd\n".encode()


def test_long_non_ascii_text_passes_through():
    data = ("Grüße, 世界! 😀 " * 5000 + "\n").encode()
    assert text_of(data) == data
    check(data, cuts=[1, 2, 3, BLOCK + 1])


# -- masking --------------------------------------------------------------------------------


def test_masks_overlapping_and_adjacent_matches_as_one():
    patterns = [b"abcdef", b"defghi", b"ghijkl", b"zzzzzz"]
    text, _, _ = check(b"xx abcdefghijkl yy zzzzzzzzzzzz abcdef\n", patterns)
    assert text == b"xx [MASKED] yy [MASKED] [MASKED]\n"


def test_mask_takes_the_style_of_its_first_byte():
    data = b"\x1b[31msec\x1b[1mret-value\x1b[0m tail\n"
    text, _, runs = check(data, [b"secret-value"])
    assert text == b"[MASKED] tail\n"
    assert runs == [(0, 8, PALETTE | 1, 0, 0)]


def test_a_secret_split_by_sgr_or_dropped_controls_is_masked():
    secret = "correct-horse"
    for data in (b"correct-\x1b[1mhorse\n", b"correct-\x07hor\x00se\n", b"corr\x1b]0;t\x07ect-horse\n",
                 b"xxx\rcorrect-horse\n"):
        assert text_of(data, [secret]) == b"[MASKED]\n"


def test_secrets_at_line_starts_and_ends_within_one_block():
    data = b"abc\nsecret-value xyz\n\nsecret-value\nend secret-value\nsecret-valuesecret-value\n"
    text, starts, _ = check(data, [b"secret-value"])
    assert text == b"abc\n[MASKED] xyz\n\n[MASKED]\nend [MASKED]\n[MASKED]\n"
    assert starts == [0, 4, 17, 18, 27, 40]


def test_secret_held_back_across_feeds():
    engine = native.LogEngine(["hunter2-password"])
    outputs = [engine.feed(b"login hunter2-pa"), engine.feed(b"ssword ok"), engine.feed(b"\n"), engine.finish()]
    assert [o.text for o in outputs] == [b"", b"", b"login [MASKED] ok\n", b""]


def test_no_patterns_no_masking():
    assert text_of(b"[MASKED] stays as it was\n") == b"[MASKED] stays as it was\n"


# -- forced line breaks -----------------------------------------------------------------------


def test_long_line_is_broken_keeping_back_a_possible_match():
    patterns = [b"0123456789"]  # hold = 9 bytes
    data = b"a" * 100 + b"\n"
    text, starts, _ = check(data, patterns, max_line=64)
    assert text == b"a" * 55 + b"\n" + b"a" * 45 + b"\n"
    assert starts == [0, 56]


def test_match_across_a_forced_break_is_masked_on_both_sides():
    patterns = [b"SECRETSECRET"]
    for at in range(40, 80):
        data = b"a" * at + b"SECRETSECRET" + b"b" * 60 + b"\n"
        text, _, _ = check(data, patterns, max_line=64, cuts=[at + 3])
        assert b"SECRET" not in text and b"SECRE" not in text.replace(b"[MASKED]", b"")


def test_overlapping_matches_longer_than_max_line():
    """A masked run may be longer than a line: every piece of it stays masked."""
    data = b"x" + b"a" * 1000 + b"y\n"
    text, _, _ = check(data, [b"aaaaaa"], max_line=64)
    assert set(text.replace(b"[MASKED]", b"").replace(b"\n", b"")) == {ord("x"), ord("y")}


def test_forced_break_never_splits_a_character():
    data = "é" * 100 + "\n"
    text, _, _ = check(data.encode(), max_line=65)
    assert all(len(line) <= 65 for line in text.split(b"\n"))


def test_force_break_keeps_style_across_pieces():
    data = b"\x1b[31m" + b"r" * 100 + b"\x1b[1m" + b"b" * 100 + b"\n"
    check(data, [b"rrrbbb"], max_line=64)


def test_huge_line_is_bounded_by_max_line():
    engine = native.LogEngine(["needle-in-haystack"], max_line=4096)
    lines = 0
    for _ in range(200):
        out = engine.feed(b"h" * 50_000 + b"needle-in-haystack")
        assert all(len(line) <= 4096 for line in out.text.split(b"\n"))
        assert b"needle" not in out.text
        lines += len(out.line_starts)
    assert lines > 2000  # about 50,000 / (4096 - 17) pieces a feed


# -- arguments and errors -------------------------------------------------------------------


@pytest.mark.parametrize("secret, error", [
    ("qzxq5", logmask.SecretTooShortError), (b"12345", logmask.SecretTooShortError),
    ("x" * (64 * 1024 + 1), logmask.SecretTooLongError), (b"\xff\xfe\xfd\xfc\xfb\xfa", logmask.SecretEncodingError),
    ("bell\x07char", logmask.SecretEncodingError), ("esc\x1b[31m", logmask.SecretEncodingError),
    ("c1\u0085control", logmask.SecretEncodingError), ("qzxq\ud800qzxq", logmask.SecretEncodingError),
])
def test_bad_secrets_are_refused_by_name(secret, error):
    with pytest.raises(error, match="secret #1") as info:
        native.LogEngine(["fine-secret", secret])
    assert isinstance(info.value, logmask.SecretError) and isinstance(info.value, ValueError)
    if isinstance(secret, str) and len(secret) > 3:
        assert secret[:4] not in str(info.value)  # the message never quotes the secret


@pytest.mark.parametrize("secrets", ["a-single-string", b"a-single-bytes", [123456789]])
def test_secrets_must_be_a_collection_of_str_or_bytes(secrets):
    with pytest.raises(TypeError):
        native.LogEngine(secrets)


@pytest.mark.parametrize("pattern", [b"short", b"x" * (lib.PRTS_LOG_MAX_PATTERN + 1), b"line\nbreak", b"\xff" * 8,
                                     b"\xe2\x82abcdef"])
def test_bad_patterns_are_refused(pattern):
    with pytest.raises(native.LogPatternError):
        native.LogEngine.from_patterns([b"good-pattern", pattern])


@pytest.mark.parametrize("max_line", [0, 63, lib.PRTS_LOG_MAX_MAX_LINE + 1, 1.5, True, "64"])
def test_bad_max_line_is_refused(max_line):
    with pytest.raises(native.LogMaxLineError):
        native.LogEngine(max_line=max_line)


def test_max_line_must_hold_two_longest_patterns():
    with pytest.raises(native.LogMaxLineError, match="twice the longest pattern"):
        native.LogEngine.from_patterns([b"p" * 40], max_line=79)
    native.LogEngine.from_patterns([b"p" * 40], max_line=80)


def test_feed_after_finish_and_chunk_types():
    engine = native.LogEngine()
    with pytest.raises(TypeError, match="bytes-like"):
        engine.feed("text")
    assert engine.feed(bytearray(b"a\n")).text == b"a\n"
    assert engine.feed(memoryview(b"b\n")).text == b"b\n"
    assert engine.feed(b"").text == b""
    engine.finish()
    with pytest.raises(native.LogStateError):
        engine.feed(b"x")
    with pytest.raises(native.LogStateError):
        engine.finish()


def test_c_return_codes():
    out = ffi.new("prts_log_output *")
    engine = ffi.new("prts_log_engine **")
    assert lib.prts_log_engine_new(ffi.NULL, ffi.NULL, 0, 64, ffi.NULL) == lib.PRTS_E_NULL
    assert lib.prts_log_engine_new(ffi.NULL, ffi.NULL, 1, 64, engine) == lib.PRTS_E_NULL
    assert lib.prts_log_engine_new(ffi.NULL, ffi.NULL, 0, 63, engine) == lib.PRTS_LOG_E_MAX_LINE
    lengths = ffi.new("size_t[]", [5])
    assert lib.prts_log_engine_new(b"short", lengths, 1, 64, engine) == lib.PRTS_LOG_E_PATTERN
    assert engine[0] == ffi.NULL
    assert lib.prts_log_engine_new(ffi.NULL, ffi.NULL, 0, 64, engine) == lib.PRTS_OK
    ptr = ffi.gc(engine[0], lib.prts_log_engine_free)
    assert lib.prts_log_feed(ptr, ffi.NULL, 1, out) == lib.PRTS_E_NULL
    assert lib.prts_log_feed(ptr, b"x", 1, ffi.NULL) == lib.PRTS_E_NULL
    assert lib.prts_log_feed(ffi.NULL, b"x", 1, out) == lib.PRTS_E_NULL
    assert lib.prts_log_feed(ptr, b"ab\n", 3, out) == lib.PRTS_OK and out.line_count == 1
    assert lib.prts_log_finish(ptr, out) == lib.PRTS_OK
    assert lib.prts_log_feed(ptr, b"x", 1, out) == lib.PRTS_LOG_E_STATE
    assert lib.prts_log_select(99) == lib.PRTS_E_NULL
    lib.prts_log_engine_free(ffi.NULL)
    for code, error in [(lib.PRTS_LOG_E_NOMEM, native.LogMemoryError), (lib.PRTS_LOG_E_STATE, native.LogStateError),
                        (lib.PRTS_LOG_E_PATTERN, native.LogPatternError), (lib.PRTS_E_NULL, native.NativeArgumentError)]:
        with pytest.raises(error):
            native._check(code, "test")


def test_output_types():
    out = native.process_log(b"\x1b[1ma\nb")
    assert isinstance(out.text, bytes)
    assert isinstance(out.line_starts, array) and out.line_starts.typecode == "Q"
    assert isinstance(out.runs, array) and len(out.runs) == 2 * native.LogOutput.RUN_FIELDS  # bold goes on
    assert list(out.line_starts) == [0, 2] and out.text == b"a\nb\n"


def test_strip_ansi():
    assert native.strip_ansi(b"\x1b[1;31mred\x1b[0m \x1b]0;t\x07ok\r\n") == b"red ok\n"


def test_engine_is_safe_to_share_between_threads():
    engine = native.LogEngine(["shared-secret"])
    outputs = []

    def work():
        for _ in range(200):
            outputs.append(engine.feed(b"line with shared-secret in it\n"))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    line = b"line with [MASKED] in it\n"
    assert all(o.text == line for o in outputs)
    assert sorted(s for o in outputs for s in o.line_starts) == [i * len(line) for i in range(800)]
