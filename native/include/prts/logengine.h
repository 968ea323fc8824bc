/* Streaming log engine: every byte a CI job prints passes through it once.
 *
 * One pass turns raw terminal output into stored log text:
 *
 *   bytes -> UTF-8 decoding -> terminal handling -> lines -> secret masking -> output
 *
 * The engine is fed chunks of any size, down to one byte; its output depends only on the
 * concatenated input, never on how it was split. The pure-Python oracle of every rule
 * below is tests/reference_logengine.py.
 *
 * UTF-8. Input is decoded as Python's bytes.decode("utf-8", "replace") does: each maximal
 * invalid subsequence becomes one U+FFFD. Invalid bytes never reach the output.
 *
 * Terminal handling works on the decoded code points:
 * - '\n' ends a line; '\r' followed by '\n' (or by more '\r's and then '\n') too. A '\r'
 *   followed by anything else discards the current line's text so far, so progress-bar
 *   overwrites ("10%\r55%\r100%\n") keep the final text ("100%"). At the end of the
 *   stream a pending '\r' discards nothing.
 * - Tab is text. Every other control character (C0, DEL, C1 U+0080..U+009F) is dropped.
 * - ESC sequences are dropped entirely: CSI (ESC [ params intermediates final), OSC
 *   (ESC ] ... ended by BEL or ST = ESC \), DCS/SOS/PM/APC (ESC P/X/^/_ ... ended by ST),
 *   and the other ESC sequences (ESC intermediates final). ESC anywhere starts a new
 *   sequence. Inside CSI or ESC a code point outside the sequence's grammar (a control
 *   character, DEL, non-ASCII) abandons the sequence and is read as text; a '\n' inside
 *   a string sequence (OSC, DCS, ...) abandons it too, so a missing terminator costs at
 *   most the rest of a line. A sequence still unfinished after PRTS_LOG_MAX_SEQUENCE code
 *   points (ESC included) is abandoned and what follows is text again.
 * - CSI ... m without intermediates or private markers (< = > ?) is SGR and sets the
 *   style: 0 or empty reset; 1 bold, 2 dim, 3 italic, 4 underline, 7 inverse, 9 strike;
 *   22 (bold and dim off), 23, 24, 27, 29 reset them; 30-37, 90-97, 38;5;n, 38;2;r;g;b
 *   set the foreground, 39 resets it; 40-47, 100-107, 48;... and 49 the background. The
 *   colon forms 38:5:n, 38:2:r:g:b and 38:2:colourspace:r:g:b (and 48:...) are understood,
 *   4:0 is underline off and 4:1..4:5 underline on; any other parameter with colons is
 *   ignored. A number saturates at 65535; an index or component above 255 makes its
 *   colour ignored; 38/48 cut short by the end of the parameters ends the SGR. Other
 *   codes are ignored. The style persists across lines until reset, and a basic colour
 *   is the same as its 256-palette index (31 == 38;5;1).
 *
 * Lines. A line is held until its end, because a '\r' may still discard it. A line whose
 * text would grow past max_line bytes is first force-broken: the held text, except its
 * last (longest pattern - 1) bytes (backed off to a code point boundary) where a match
 * may still begin, is emitted as a line of its own. The kept bytes start the next piece.
 *
 * Masking runs on each line's visible text: every occurrence of every pattern (given by
 * the caller; appliance/logmask.py derives them from secrets) is masked, and each maximal
 * run of masked bytes (overlapping or adjacent occurrences merge) becomes "[MASKED]" in
 * the style of the run's first byte. Across a forced break, a masked run the break
 * splits is masked on both sides, and a match may start in the kept bytes, so no match
 * escapes. Patterns must be valid UTF-8 without '\n', PRTS_LOG_MIN_PATTERN..
 * PRTS_LOG_MAX_PATTERN bytes long; max_line must be at least PRTS_LOG_MIN_MAX_LINE and
 * at least twice the longest pattern.
 *
 * Output of each feed or finish: the completed lines, each ending in '\n'; the absolute
 * offset (in the whole output stream) of each line's start; and style runs: maximal
 * spans of one non-default style, as PRTS_LOG_RUN_FIELDS uint64 values each
 * (absolute start, length, fg, bg, flags). A run never includes a '\n'. A colour is 0
 * (default), PRTS_LOG_COLOR_PALETTE | index, or PRTS_LOG_COLOR_RGB | r << 16 | g << 8 | b.
 *
 * Memory: the held line (max_line bytes, plus its style changes), the pattern tables,
 * and the output buffers of the last call, which grow to the largest call's output.
 * An engine is not thread-safe. */
#ifndef PRTS_LOGENGINE_H
#define PRTS_LOGENGINE_H

#include <stddef.h>
#include <stdint.h>

/* Return codes besides PRTS_OK and PRTS_E_NULL (prts/lineindex.h). */
#define PRTS_LOG_E_NOMEM (-30)    /* allocation failed; the engine is unusable after a feed */
#define PRTS_LOG_E_PATTERN (-31)  /* a pattern is too short, too long, not UTF-8 or has '\n' */
#define PRTS_LOG_E_MAX_LINE (-32) /* max_line is below the minimum for the patterns */
#define PRTS_LOG_E_STATE (-33)    /* feed or finish after finish, or after a failure */

#define PRTS_LOG_MIN_PATTERN 6
#define PRTS_LOG_MAX_PATTERN 262144
#define PRTS_LOG_MAX_PATTERNS 1048576
#define PRTS_LOG_MIN_MAX_LINE 64
#define PRTS_LOG_MAX_MAX_LINE 1073741824
#define PRTS_LOG_DEFAULT_MAX_LINE 1048576
#define PRTS_LOG_MAX_SEQUENCE 4096

#define PRTS_LOG_COLOR_PALETTE 0x1000000
#define PRTS_LOG_COLOR_RGB 0x2000000
#define PRTS_LOG_BOLD 0x1
#define PRTS_LOG_DIM 0x2
#define PRTS_LOG_ITALIC 0x4
#define PRTS_LOG_UNDERLINE 0x8
#define PRTS_LOG_INVERSE 0x10
#define PRTS_LOG_STRIKE 0x20
#define PRTS_LOG_RUN_FIELDS 5

/* Implementations of the byte scanner for prts_log_select; the tests run each one the
 * CPU has. */
#define PRTS_LOG_AUTO 0
#define PRTS_LOG_PORTABLE 1
#define PRTS_LOG_SSE2 2
#define PRTS_LOG_AVX2 3

typedef struct prts_log_engine prts_log_engine;

/* What one feed or finish produced. The pointers stay valid until the next call on the
 * engine (or its free); each may be NULL when its count is 0. */
typedef struct prts_log_output {
    const uint8_t *text;
    size_t text_len;
    const uint64_t *line_starts;
    size_t line_count;
    const uint64_t *runs; /* run_count * PRTS_LOG_RUN_FIELDS values */
    size_t run_count;
} prts_log_output;

/* Make an engine masking patterns[i] = the lengths[i] bytes that follow patterns[i - 1]
 * in the buffer patterns (count may be 0: terminal handling only). Returns PRTS_OK and
 * sets *engine, or PRTS_E_NULL, PRTS_LOG_E_PATTERN, PRTS_LOG_E_MAX_LINE or
 * PRTS_LOG_E_NOMEM (and *engine is NULL). */
int prts_log_engine_new(const uint8_t *patterns, const size_t *lengths, size_t count, size_t max_line,
                        prts_log_engine **engine);

/* Free an engine and its buffers; NULL is allowed. */
void prts_log_engine_free(prts_log_engine *engine);

/* Process data[0..len) and describe the output in *out. Returns PRTS_OK, PRTS_E_NULL,
 * PRTS_LOG_E_STATE or PRTS_LOG_E_NOMEM. */
int prts_log_feed(prts_log_engine *engine, const uint8_t *data, size_t len, prts_log_output *out);

/* End the stream: emit the last line if it has text. Afterwards the engine only frees. */
int prts_log_finish(prts_log_engine *engine, prts_log_output *out);

/* Choose the byte scanner every engine in this process uses (PRTS_LOG_AUTO after load).
 * Returns PRTS_OK, or PRTS_E_NULL when impl is unknown or the CPU lacks it. Meant for
 * tests and benchmarks; not synchronised with engines running in other threads. */
int prts_log_select(int impl);

#endif
