/* Streaming log engine: UTF-8 decoding, terminal handling, line assembly, secret masking
 * and the line index, in one pass (contract: prts/logengine.h).
 *
 * Two paths give the same result (the tests hold both to tests/reference_logengine.py):
 * - The slow path feeds one byte at a time through the UTF-8 decoder and the terminal
 *   state machine, into the held line. It handles everything: escape sequences, '\r',
 *   control characters, invalid UTF-8, chunk boundaries inside any of those.
 * - The fast path takes over whenever the parser is in plain text (no sequence, no
 *   pending '\r', no partial UTF-8 character):
 *   - a vector scan runs over up to BLOCK bytes of printable text, tabs, valid
 *     non-control UTF-8 and newlines, noting the newlines, and stops at any other byte;
 *   - whole lines in that stretch get one matcher pass and are copied to the output in
 *     one piece, straight from the input (only a line holding a secret is handled alone);
 *   - text of a line cut by an escape sequence goes straight to the end of the output
 *     (the open line) and is masked in place when the line ends;
 *   - the sequences CI tools print (CSI, in particular SGR, ASCII OSC, short ESC
 *     sequences), "\r\n" and stray control characters are parsed inline; an SGR
 *     sequence's effect on the style is cached by its parameter bytes.
 *   Anything else goes back to the slow path. Real build logs carry an escape sequence
 *   every 16 bytes or so, which makes the inline parsing as hot as the scan.
 */
#include "prts/logengine.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "multimatch.h"
#include "prts/lineindex.h" /* the return codes shared by every engine */

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PRTS_LOG_X86 1
#endif

/* Bytes the fast path scans, masks and copies as one block: small enough to stay in L2
 * between the three passes, large enough to amortise the per-block work. */
#define BLOCK ((size_t)64 * 1024)

static const uint8_t REPLACEMENT[3] = {0xEF, 0xBF, 0xBD}; /* U+FFFD */
static const uint8_t MASK[8] = {'[', 'M', 'A', 'S', 'K', 'E', 'D', ']'};

#define TRY(expr)                                                                                            \
    do {                                                                                                     \
        int rc_ = (expr);                                                                                    \
        if (rc_ != PRTS_OK) return rc_;                                                                      \
    } while (0)

/* A style packed in 64 bits so that comparing two is one instruction: fg in bits 0-25,
 * bg in 26-51, flags in 52-57. 0 is the default style. */
typedef uint64_t style_t;
#define COLOR_BITS 26
#define COLOR_MASK (((uint64_t)1 << COLOR_BITS) - 1)
#define FLAG_SHIFT (2 * COLOR_BITS)
static inline uint32_t style_fg(style_t s) { return (uint32_t)(s & COLOR_MASK); }
static inline uint32_t style_bg(style_t s) { return (uint32_t)((s >> COLOR_BITS) & COLOR_MASK); }
static inline uint32_t style_flags(style_t s) { return (uint32_t)(s >> FLAG_SHIFT); }
static inline style_t style_pack(uint32_t fg, uint32_t bg, uint32_t flags) {
    return (style_t)fg | (style_t)bg << COLOR_BITS | (style_t)flags << FLAG_SHIFT;
}

enum { GROUND, ESCAPE, ESCAPE_INTERMEDIATE, CSI, OSC, STRING };

/* Parameters a CSI sequence can hold: one more than its separators. */
#define MAX_SGR_ITEMS (PRTS_LOG_MAX_SEQUENCE / 2 + 1)

/* The ';'-separated parameters of one SGR sequence, read in one pass: the value of each
 * (NOT_A_NUMBER for one with sub-parameters); item i is params[start[i] .. start[i+1]-1). */
typedef struct sgr_items {
    uint32_t value[MAX_SGR_ITEMS];
    uint16_t start[MAX_SGR_ITEMS + 1];
} sgr_items;

typedef struct sgr_effect {
    style_t clear, set;
} sgr_effect;

/* A parsed SGR parameter string of up to SGR_KEY bytes. The key is the bytes, zero-padded
 * (parameter bytes are never 0, so it also tells the length); an empty slot holds a key
 * of 0xFF bytes, which no parameter string has. */
#define SGR_CACHE 64
#define SGR_KEY 16
typedef struct sgr_cached {
    uint64_t key[2];
    sgr_effect effect;
} sgr_cached;

/* From offset `at` of the current line (held or open) on, text has style `style`. */
typedef struct transition {
    size_t at;
    style_t style;
} transition;

/* Advance over plain bytes (printable ASCII, tab, valid non-C1 UTF-8) and newlines from p,
 * appending the offset from origin of each newline to nl; return the first other byte
 * (or end). */
typedef const uint8_t *(*scan_fn)(const uint8_t *p, const uint8_t *end, const uint8_t *origin, uint32_t *nl,
                                  size_t *count);

struct prts_log_engine {
    size_t max_line;
    prts_mm *matcher; /* NULL without patterns */
    size_t hold;      /* longest pattern - 1: what a forced break keeps back */
    scan_fn scan;
    bool vectors; /* the SSE2 escape parsing too; off with PRTS_LOG_PORTABLE, so tests reach
                   * the scalar code non-x86 machines run */
    bool finished, failed;

    /* UTF-8 decoder: the start of a character split across feeds. */
    uint8_t utf8[4];
    unsigned utf8_len, utf8_need;

    /* Terminal state. */
    int state;
    uint32_t seq_len; /* code points of the current escape sequence, ESC included */
    bool csi_intermediate;
    size_t csi_len;
    bool cr_pending;
    style_t style;

    /* The held line: visible text not yet emitted, capacity max_line. A line the fast
     * path sees whole is built in place at the end of the output instead (the "open"
     * line, text[text_len .. text_len + open)), saving a copy; it moves to the held
     * line when the slow path takes over, the line grows past max_line, or a call ends.
     * At most one of line_len and open is non-zero. */
    uint8_t *line;
    size_t line_len, open;
    transition *tr; /* style changes in the current line; tr[0].at == 0 when it has text */
    size_t tr_len, tr_cap;
    size_t premask; /* leading bytes of line already known to be masked */

    /* Scratch. */
    prts_mm_spans spans;
    uint32_t *newlines; /* BLOCK entries */

    /* Output of the current call. text lies text_shift bytes into its allocation: each call
     * moves it (it is empty then) to sit half a page away from the input, because when
     * the two are a multiple of 4096 bytes apart, as page-aligned buffers are, every store
     * of copied text falsely aliases a load ("4K aliasing") and copying slows by a third. */
    uint8_t *text, *text_alloc;
    size_t text_len, text_cap, text_shift;
    uint64_t *starts;
    size_t starts_len, starts_cap;
    uint64_t *runs;
    size_t runs_len, runs_cap; /* in uint64 values */
    uint64_t text_base;        /* absolute offset of text[0] in the output stream */

    /* The large arrays last, so that the fields above share a few cache lines. */
    sgr_cached sgr_cache[SGR_CACHE];
    char csi[PRTS_LOG_MAX_SEQUENCE]; /* CSI parameter bytes */
    sgr_items sgr;                   /* scratch of parse_sgr */
};

/* -- growable buffers ---------------------------------------------------------------- */

/* Make room for extra more elements; RESERVE checks inline whether there is room. */
static int grow(void **buf, size_t *cap, size_t len, size_t extra, size_t elem) {
    if (extra > SIZE_MAX / elem - len) return PRTS_LOG_E_NOMEM;
    size_t need = len + extra, ncap = *cap ? *cap : 256;
    while (ncap < need) ncap = ncap > SIZE_MAX / elem / 2 ? need : 2 * ncap;
    void *p = realloc(*buf, ncap * elem);
    if (p == NULL) return PRTS_LOG_E_NOMEM;
    *buf = p;
    *cap = ncap;
    return PRTS_OK;
}

/* Room for extra more bytes of text (see text_shift). */
static int grow_text(prts_log_engine *e, size_t extra) {
    size_t shifted_len = e->text_shift + e->text_len, cap = e->text_cap + e->text_shift;
    TRY(grow((void **)&e->text_alloc, &cap, shifted_len, extra, 1));
    e->text = e->text_alloc + e->text_shift;
    e->text_cap = cap - e->text_shift;
    return PRTS_OK;
}

#define RESERVE_TEXT(e, extra) ((extra) <= (e)->text_cap - (e)->text_len ? PRTS_OK : grow_text((e), (extra)))

#define RESERVE(e, field, extra)                                                                             \
    ((extra) <= (e)->field##_cap - (e)->field##_len                                                          \
         ? PRTS_OK                                                                                           \
         : grow((void **)&(e)->field, &(e)->field##_cap, (e)->field##_len, (extra), sizeof *(e)->field))

/* -- output -------------------------------------------------------------------------- */

static inline uint64_t out_pos(const prts_log_engine *e) { return e->text_base + e->text_len; }

/* Record len bytes at absolute offset start as having style s, extending the previous run
 * when it ends there with the same style. */
static inline int add_run(prts_log_engine *e, uint64_t start, uint64_t len, style_t s) {
    if (s == 0 || len == 0) return PRTS_OK;
    if (e->runs_len > 0) {
        uint64_t *last = e->runs + e->runs_len - PRTS_LOG_RUN_FIELDS;
        if (last[0] + last[1] == start && style_pack((uint32_t)last[2], (uint32_t)last[3], (uint32_t)last[4]) == s) {
            last[1] += len;
            return PRTS_OK;
        }
    }
    TRY(RESERVE(e, runs, PRTS_LOG_RUN_FIELDS));
    uint64_t *r = e->runs + e->runs_len;
    r[0] = start;
    r[1] = len;
    r[2] = style_fg(s);
    r[3] = style_bg(s);
    r[4] = style_flags(s);
    e->runs_len += PRTS_LOG_RUN_FIELDS;
    return PRTS_OK;
}

/* Copy src[a..b) to the output; tr[*ti] is the transition in force at a. */
static int put_text(prts_log_engine *e, const uint8_t *src, size_t a, size_t b, const transition *tr,
                    size_t ntr, size_t *ti) {
    uint64_t at = out_pos(e);
    memcpy(e->text + e->text_len, src + a, b - a);
    e->text_len += b - a;
    while (a < b) {
        while (*ti + 1 < ntr && tr[*ti + 1].at <= a) ++*ti;
        size_t piece_end = *ti + 1 < ntr && tr[*ti + 1].at < b ? tr[*ti + 1].at : b;
        TRY(add_run(e, at, piece_end - a, tr[*ti].style));
        at += piece_end - a;
        a = piece_end;
    }
    return PRTS_OK;
}

/* Emit src[0..n) as one line plus '\n', styled by the transitions tr[0..ntr) (tr[0].at
 * == 0), each span (its offsets minus origin lie within [0, n]) replaced by the mask. */
static int emit_line(prts_log_engine *e, const uint8_t *src, size_t n, const prts_mm_span *sp, size_t ns,
                     size_t origin, const transition *tr, size_t ntr) {
    /* ns <= n / PRTS_LOG_MIN_PATTERN + 1 and n <= max_line: no overflow. */
    TRY(RESERVE_TEXT(e, n + 1 + ns * sizeof MASK));
    TRY(RESERVE(e, starts, 1));
    e->starts[e->starts_len++] = out_pos(e);
    size_t pos = 0, ti = 0;
    for (size_t k = 0;; k++) {
        size_t stop = k < ns ? sp[k].start - origin : n;
        if (stop > pos) TRY(put_text(e, src, pos, stop, tr, ntr, &ti));
        if (k == ns) break;
        while (ti + 1 < ntr && tr[ti + 1].at <= stop) ti++;
        TRY(add_run(e, out_pos(e), sizeof MASK, tr[ti].style));
        memcpy(e->text + e->text_len, MASK, sizeof MASK);
        e->text_len += sizeof MASK;
        pos = sp[k].end - origin;
    }
    e->text[e->text_len++] = '\n';
    return PRTS_OK;
}

/* Emit the complete lines of p[from..nl[k-1]] (line i ends at the '\n' at p + nl[i]),
 * unmasked, in the current style: copied in one piece. */
static int emit_plain_lines(prts_log_engine *e, const uint8_t *p, size_t from, const uint32_t *nl, size_t k) {
    size_t n = nl[k - 1] + 1 - from;
    TRY(RESERVE_TEXT(e, n));
    TRY(RESERVE(e, starts, k));
    uint64_t base = out_pos(e) - from; /* output offset of p[0] */
    memcpy(e->text + e->text_len, p + from, n);
    e->text_len += n;
    uint64_t *starts = e->starts + e->starts_len;
    starts[0] = base + from;
    for (size_t i = 1; i < k; i++) starts[i] = base + nl[i - 1] + 1;
    e->starts_len += k;
    if (e->style != 0)
        for (size_t i = 0; i < k; i++) TRY(add_run(e, starts[i], base + nl[i] - starts[i], e->style));
    return PRTS_OK;
}

/* Emit the complete lines of p[from..nl[k-1]], all in the current style, straight from
 * the input: one matcher pass over all of them, then the lines holding a secret one by
 * one and the stretches between them in one piece each. */
static int emit_block(prts_log_engine *e, const uint8_t *p, size_t from, const uint32_t *nl, size_t k) {
    e->spans.len = 0;
    if (e->matcher != NULL) TRY(prts_mm_scan(e->matcher, p + from, nl[k - 1] + 1 - from, 0, &e->spans));
    const transition t = {0, e->style};
    size_t i = 0, si = 0, ls = from; /* line i starts at p + ls; spans from si on are still to come */
    while (i < k) {
        /* Spans never cross a '\n' (no pattern holds one): the next span is in one line. */
        size_t j = i;
        while (j < k && (si == e->spans.len || e->spans.v[si].start + from > nl[j])) j++;
        if (j > i) {
            TRY(emit_plain_lines(e, p, ls, nl + i, j - i));
            ls = nl[j - 1] + 1;
            i = j;
        }
        if (i == k) break;
        size_t first = si;
        while (si < e->spans.len && e->spans.v[si].start + from < nl[i]) si++;
        TRY(emit_line(e, p + ls, nl[i] - ls, e->spans.v + first, si - first, ls - from, &t, 1));
        ls = nl[i++] + 1;
    }
    return PRTS_OK;
}

/* -- the held line ------------------------------------------------------------------- */

static int end_line(prts_log_engine *e) {
    e->spans.len = 0;
    if (e->matcher != NULL) TRY(prts_mm_scan(e->matcher, e->line, e->line_len, e->premask, &e->spans));
    transition only = {0, e->style};
    bool styled = e->tr_len > 0;
    TRY(emit_line(e, e->line, e->line_len, e->spans.v, e->spans.len, 0, styled ? e->tr : &only,
                  styled ? e->tr_len : 1));
    e->line_len = e->tr_len = e->premask = 0;
    return PRTS_OK;
}

static void discard_line(prts_log_engine *e) { e->line_len = e->tr_len = e->premask = 0; }

/* The held line is full: emit all of it but the last `hold` bytes, where a match may
 * still begin, backed off to a code point boundary. A masked run the cut splits goes on
 * masked at the start of what is kept. */
static int force_break(prts_log_engine *e) {
    e->spans.len = 0;
    if (e->matcher != NULL) TRY(prts_mm_scan(e->matcher, e->line, e->line_len, e->premask, &e->spans));
    size_t cut = e->line_len - e->hold; /* max_line >= 2 * longest keeps this positive */
    while (cut > 0 && cut < e->line_len && (e->line[cut] & 0xC0) == 0x80) cut--;
    size_t ns = 0, carried = 0;
    for (; ns < e->spans.len && e->spans.v[ns].start < cut; ns++) {
        if (e->spans.v[ns].end > cut) {
            carried = e->spans.v[ns].end - cut;
            e->spans.v[ns].end = cut;
        }
    }
    TRY(emit_line(e, e->line, cut, e->spans.v, ns, 0, e->tr, e->tr_len));

    memmove(e->line, e->line + cut, e->line_len - cut);
    e->line_len -= cut;
    e->premask = carried;
    size_t first = 0; /* the transition in force at cut becomes the first one */
    while (first + 1 < e->tr_len && e->tr[first + 1].at <= cut) first++;
    for (size_t i = first; i < e->tr_len; i++) {
        e->tr[i - first].at = i == first ? 0 : e->tr[i].at - cut;
        e->tr[i - first].style = e->tr[i].style;
    }
    e->tr_len -= first;
    return PRTS_OK;
}

/* Add visible text p[0..n) (whole code points) in the current style to the held line. */
static int append(prts_log_engine *e, const uint8_t *p, size_t n) {
    while (n > 0) {
        size_t take = n, room = e->max_line - e->line_len;
        if (take > room) {
            take = room;
            while (take > 0 && (p[take] & 0xC0) == 0x80) take--; /* whole code points only */
        }
        if (take > 0) {
            if (e->tr_len == 0 || e->tr[e->tr_len - 1].style != e->style) {
                TRY(RESERVE(e, tr, 1));
                e->tr[e->tr_len].at = e->line_len;
                e->tr[e->tr_len].style = e->style;
                e->tr_len++;
            }
            memcpy(e->line + e->line_len, p, take);
            e->line_len += take;
            p += take;
            n -= take;
        }
        if (n > 0) TRY(force_break(e));
    }
    return PRTS_OK;
}

/* -- the open line ------------------------------------------------------------------ */

/* Room for n more bytes of the open line, and COPY_SLACK more for copy_text. */
#define COPY_SLACK 32
static inline int ensure_text(prts_log_engine *e, size_t n) {
    if (e->text_cap - e->text_len - e->open >= n + COPY_SLACK) return PRTS_OK;
    return RESERVE_TEXT(e, e->open + n + COPY_SLACK);
}

/* memcpy for the short text runs between escape sequences: a call to memcpy spends most
 * of its time mispredicting which size class it got. Copies 32 bytes whenever both
 * buffers have them (dst has COPY_SLACK to spare), so short runs take no branch at all. */
static inline void copy_text(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t *src_end) {
    if (n <= 32 && src_end - src >= 32) {
        memcpy(dst, src, 16);
        memcpy(dst + 16, src + 16, 16);
    } else {
        memcpy(dst, src, n);
    }
}

/* Move the open line into the held line. */
static void close_open(prts_log_engine *e) {
    if (e->open == 0) return; /* nothing open; the held line may hold text */
    memcpy(e->line, e->text + e->text_len, e->open);
    e->line_len = e->open;
    e->open = 0;
}

/* Add visible text src[0..n) (whole code points) in the current style to the current
 * line, open or held; src_end bounds what may be read past src + n. */
static int line_add(prts_log_engine *e, const uint8_t *src, size_t n, const uint8_t *src_end) {
    if (n == 0) return PRTS_OK;
    if (e->line_len > 0 || e->open + n > e->max_line) {
        close_open(e);
        return append(e, src, n);
    }
    TRY(ensure_text(e, n));
    if (e->tr_len == 0 || e->tr[e->tr_len - 1].style != e->style) {
        TRY(RESERVE(e, tr, 1));
        e->tr[e->tr_len].at = e->open;
        e->tr[e->tr_len].style = e->style;
        e->tr_len++;
    }
    copy_text(e->text + e->text_len + e->open, src, n, src_end);
    e->open += n;
    return PRTS_OK;
}

/* End the current line, open or held. An open line without secrets is committed where it
 * is; one with a secret goes through the held line to be masked. */
static int line_end(prts_log_engine *e) {
    if (e->line_len > 0) return end_line(e);
    size_t n = e->open;
    e->spans.len = 0;
    if (e->matcher != NULL) TRY(prts_mm_scan(e->matcher, e->text + e->text_len, n, 0, &e->spans));
    if (e->spans.len > 0) {
        close_open(e);
        return end_line(e);
    }
    TRY(ensure_text(e, 1));
    TRY(RESERVE(e, starts, 1));
    uint64_t start = out_pos(e);
    e->starts[e->starts_len++] = start;
    for (size_t i = 0; i < e->tr_len; i++) {
        size_t to = i + 1 < e->tr_len ? e->tr[i + 1].at : n;
        TRY(add_run(e, start + e->tr[i].at, to - e->tr[i].at, e->tr[i].style));
    }
    e->text[e->text_len + n] = '\n';
    e->text_len += n + 1;
    e->open = e->tr_len = 0;
    return PRTS_OK;
}

/* -- SGR ----------------------------------------------------------------------------- */

/* A number too large for any SGR code or colour component: what a parameter with
 * sub-parameters counts as where a plain number is needed. */
#define NOT_A_NUMBER ((uint32_t)1 << 20)

/* Fields of a packed style. */
#define FG_FIELD COLOR_MASK
#define BG_FIELD (COLOR_MASK << COLOR_BITS)
#define FLAG(f) ((style_t)(f) << FLAG_SHIFT)

/* An SGR sequence acts on the packed style as style = (style & ~clear) | set: each code
 * does (a flag on or off, a colour field replaced, everything reset), and so does any
 * sequence of codes. So a sequence's effect does not depend on the style it meets, and
 * the engine caches effects by parameter bytes: CI tools repeat a handful of sequences. */
static inline sgr_effect then(sgr_effect a, sgr_effect b) {
    sgr_effect r = {a.clear | b.clear, (a.set & ~b.clear) | b.set};
    return r;
}

static inline style_t apply_effect(style_t s, sgr_effect f) { return (s & ~f.clear) | f.set; }

/* Saturating decimal step: v <= 65535 before keeps v * 10 + 9 in range. */
static inline uint32_t digit_step(uint32_t v, char c) {
    v = v * 10 + (uint32_t)(c - '0');
    return v > 65535 ? 65535 : v;
}

static uint32_t rgb(uint32_t r, uint32_t g, uint32_t b) {
    return r > 255 || g > 255 || b > 255 ? 0 : PRTS_LOG_COLOR_RGB | r << 16 | g << 8 | b;
}

/* Set the foreground (which == 38) or background colour; an invalid colour (0) is
 * ignored, not a reset. */
static sgr_effect color_effect(uint32_t which, uint32_t color) {
    sgr_effect none = {0, 0}, fg = {FG_FIELD, color}, bg = {BG_FIELD, (style_t)color << COLOR_BITS};
    return color == 0 ? none : which == 38 ? fg : bg;
}

/* A parameter with sub-parameters, p[0..n) (digits and ':'; an empty one is 0). */
static sgr_effect colon_effect(const char *p, size_t n) {
    uint32_t v[6] = {0};
    size_t count = 0;
    uint32_t value = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != ':') {
            value = digit_step(value, p[i]);
            continue;
        }
        if (count < 6) v[count] = value;
        count++;
        value = 0;
    }
    sgr_effect none = {0, 0}, underline_off = {FLAG(PRTS_LOG_UNDERLINE), 0}, underline_on = {0, FLAG(PRTS_LOG_UNDERLINE)};
    if ((v[0] == 38 || v[0] == 48) && count >= 3) {
        if (v[1] == 5 && v[2] <= 255) return color_effect(v[0], PRTS_LOG_COLOR_PALETTE | v[2]);
        if (v[1] == 2 && count >= 6) return color_effect(v[0], rgb(v[3], v[4], v[5]));
        if (v[1] == 2 && count == 5) return color_effect(v[0], rgb(v[2], v[3], v[4]));
    } else if (v[0] == 4 && count >= 2) {
        if (v[1] == 0) return underline_off;
        if (v[1] <= 5) return underline_on;
    }
    return none;
}

#define FG(i) {FG_FIELD, PRTS_LOG_COLOR_PALETTE | (style_t)(i)}
#define BG(i) {BG_FIELD, (style_t)(PRTS_LOG_COLOR_PALETTE | (i)) << COLOR_BITS}
#define SGR_CODES 108

/* The effect of each plain code; codes not listed do nothing. */
static const sgr_effect SGR_EFFECT[SGR_CODES] = {
    [0] = {~(style_t)0, 0},
    [1] = {0, FLAG(PRTS_LOG_BOLD)}, [2] = {0, FLAG(PRTS_LOG_DIM)}, [3] = {0, FLAG(PRTS_LOG_ITALIC)},
    [4] = {0, FLAG(PRTS_LOG_UNDERLINE)}, [7] = {0, FLAG(PRTS_LOG_INVERSE)}, [9] = {0, FLAG(PRTS_LOG_STRIKE)},
    [22] = {FLAG(PRTS_LOG_BOLD | PRTS_LOG_DIM), 0}, [23] = {FLAG(PRTS_LOG_ITALIC), 0},
    [24] = {FLAG(PRTS_LOG_UNDERLINE), 0}, [27] = {FLAG(PRTS_LOG_INVERSE), 0}, [29] = {FLAG(PRTS_LOG_STRIKE), 0},
    [30] = FG(0), [31] = FG(1), [32] = FG(2), [33] = FG(3), [34] = FG(4), [35] = FG(5), [36] = FG(6), [37] = FG(7),
    [39] = {FG_FIELD, 0},
    [40] = BG(0), [41] = BG(1), [42] = BG(2), [43] = BG(3), [44] = BG(4), [45] = BG(5), [46] = BG(6), [47] = BG(7),
    [49] = {BG_FIELD, 0},
    [90] = FG(8), [91] = FG(9), [92] = FG(10), [93] = FG(11), [94] = FG(12), [95] = FG(13), [96] = FG(14),
    [97] = FG(15),
    [100] = BG(8), [101] = BG(9), [102] = BG(10), [103] = BG(11), [104] = BG(12), [105] = BG(13), [106] = BG(14),
    [107] = BG(15),
};

/* The effect of CSI params m; params holds parameter bytes only (0x30..0x3F, n < 4096). */
static sgr_effect parse_sgr(sgr_items *it, const char *params, size_t n) {
    sgr_effect f = {0, 0};
    for (size_t i = 0; i < n; i++)
        if (params[i] >= '<') return f; /* a private marker (< = > ?): not SGR */
    size_t count = 0;
    uint32_t value = 0;
    bool colon = false;
    it->start[0] = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || params[i] == ';') {
            it->value[count++] = colon ? NOT_A_NUMBER : value;
            it->start[count] = (uint16_t)(i + 1);
            value = 0;
            colon = false;
        } else if (params[i] == ':') {
            colon = true;
        } else {
            value = digit_step(value, params[i]);
        }
    }
    const uint32_t *v = it->value;
    for (size_t i = 0; i < count;) {
        uint32_t code = v[i];
        if (code == NOT_A_NUMBER) {
            f = then(f, colon_effect(params + it->start[i], (size_t)(it->start[i + 1] - 1 - it->start[i])));
            i++;
        } else if (code != 38 && code != 48) {
            if (code < SGR_CODES) f = then(f, SGR_EFFECT[code]);
            i++;
        } else if (i + 1 < count && v[i + 1] == 5) {
            if (i + 2 >= count) break; /* cut short: the SGR ends */
            if (v[i + 2] <= 255) f = then(f, color_effect(code, PRTS_LOG_COLOR_PALETTE | v[i + 2]));
            i += 3;
        } else if (i + 1 < count && v[i + 1] == 2) {
            if (i + 4 >= count) break;
            f = then(f, color_effect(code, rgb(v[i + 2], v[i + 3], v[i + 4])));
            i += 5;
        } else {
            i++; /* 38/48 with another selector (or none) is ignored; the selector is read as a code */
        }
    }
    return f;
}

static inline size_t sgr_slot(uint64_t key0, uint64_t key1) {
    return (size_t)(((key0 ^ key1 << 1) * 0x9E3779B97F4A7C15u) >> 58) % SGR_CACHE;
}

/* The effect of the SGR parameters p[0..n), through the cache when the key is given. */
static sgr_effect cached_sgr(prts_log_engine *e, uint64_t key0, uint64_t key1, const uint8_t *p, size_t n) {
    sgr_cached *c = &e->sgr_cache[sgr_slot(key0, key1)];
    if (c->key[0] == key0 && c->key[1] == key1) return c->effect;
    c->key[0] = key0;
    c->key[1] = key1;
    c->effect = parse_sgr(&e->sgr, (const char *)p, n);
    return c->effect;
}

/* parse_sgr through the cache, for parameters anywhere (the fast path has its own key). */
static sgr_effect sgr_effect_of(prts_log_engine *e, const uint8_t *p, size_t n) {
    if (n > SGR_KEY) return parse_sgr(&e->sgr, (const char *)p, n);
    uint8_t bytes[SGR_KEY] = {0};
    memcpy(bytes, p, n);
    uint64_t key[2];
    memcpy(key, bytes, sizeof key);
    return cached_sgr(e, key[0], key[1], p, n);
}

/* -- terminal state machine ---------------------------------------------------------- */

static inline bool visible(uint32_t cp) { return cp == '\t' || (cp >= 0x20 && !(cp >= 0x7F && cp <= 0x9F)); }

static int ground(prts_log_engine *e, uint32_t cp, const uint8_t *enc, size_t n) {
    if (cp == '\n') {
        e->cr_pending = false;
        return end_line(e);
    }
    if (cp == '\r') {
        e->cr_pending = true;
        return PRTS_OK;
    }
    if (e->cr_pending) {
        e->cr_pending = false;
        discard_line(e);
    }
    if (cp == 0x1B) {
        e->state = ESCAPE;
        e->seq_len = 1;
        return PRTS_OK;
    }
    return visible(cp) ? append(e, enc, n) : PRTS_OK;
}

/* Drop the sequence so far and read the code point as text. */
static int abandon(prts_log_engine *e, uint32_t cp, const uint8_t *enc, size_t n) {
    e->state = GROUND;
    return ground(e, cp, enc, n);
}

static int on_codepoint(prts_log_engine *e, uint32_t cp, const uint8_t *enc, size_t n) {
    if (e->state == GROUND) return ground(e, cp, enc, n);
    if (cp == 0x1B) {
        e->state = ESCAPE;
        e->seq_len = 1;
        return PRTS_OK;
    }
    switch (e->state) {
    case ESCAPE:
        if (cp == '[') {
            e->state = CSI;
            e->csi_len = 0;
            e->csi_intermediate = false;
        } else if (cp == ']') {
            e->state = OSC;
        } else if (cp == 'P' || cp == 'X' || cp == '^' || cp == '_') {
            e->state = STRING;
        } else if (cp >= 0x20 && cp <= 0x2F) {
            e->state = ESCAPE_INTERMEDIATE;
        } else if (cp >= 0x30 && cp <= 0x7E) {
            e->state = GROUND;
            return PRTS_OK;
        } else {
            return abandon(e, cp, enc, n);
        }
        break;
    case ESCAPE_INTERMEDIATE:
        if (cp >= 0x30 && cp <= 0x7E) {
            e->state = GROUND;
            return PRTS_OK;
        }
        if (!(cp >= 0x20 && cp <= 0x2F)) return abandon(e, cp, enc, n);
        break;
    case CSI:
        if (cp >= 0x30 && cp <= 0x3F) {
            /* seq_len bounds csi_len below the buffer size */
            if (!e->csi_intermediate && e->csi_len < sizeof e->csi) e->csi[e->csi_len++] = (char)cp;
        } else if (cp >= 0x20 && cp <= 0x2F) {
            e->csi_intermediate = true;
        } else if (cp >= 0x40 && cp <= 0x7E) {
            e->state = GROUND;
            if (cp == 'm' && !e->csi_intermediate)
                e->style = apply_effect(e->style, sgr_effect_of(e, (const uint8_t *)e->csi, e->csi_len));
            return PRTS_OK;
        } else {
            return abandon(e, cp, enc, n);
        }
        break;
    default: /* OSC, STRING */
        if (cp == 0x07 && e->state == OSC) {
            e->state = GROUND;
            return PRTS_OK;
        }
        if (cp == '\n') return abandon(e, cp, enc, n);
        break;
    }
    if (++e->seq_len >= PRTS_LOG_MAX_SEQUENCE) e->state = GROUND;
    return PRTS_OK;
}

/* -- UTF-8 --------------------------------------------------------------------------- */

/* Feed one byte to the decoder, which hands each finished code point on: one U+FFFD per
 * maximal invalid subsequence, as Python's decoder. */
static int decode_byte(prts_log_engine *e, uint8_t b) {
    for (;;) {
        if (e->utf8_len == 0) {
            if (b < 0x80) return on_codepoint(e, b, &b, 1);
            unsigned need = b >= 0xC2 && b <= 0xDF ? 2 : b >= 0xE0 && b <= 0xEF ? 3 : b >= 0xF0 && b <= 0xF4 ? 4 : 0;
            if (need == 0) return on_codepoint(e, 0xFFFD, REPLACEMENT, sizeof REPLACEMENT);
            e->utf8[0] = b;
            e->utf8_len = 1;
            e->utf8_need = need;
            return PRTS_OK;
        }
        uint8_t lo = 0x80, hi = 0xBF;
        if (e->utf8_len == 1) {
            uint8_t lead = e->utf8[0];
            if (lead == 0xE0) lo = 0xA0;
            if (lead == 0xED) hi = 0x9F; /* no surrogates */
            if (lead == 0xF0) lo = 0x90; /* no overlong forms */
            if (lead == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
        }
        if (b < lo || b > hi) {
            e->utf8_len = 0;
            TRY(on_codepoint(e, 0xFFFD, REPLACEMENT, sizeof REPLACEMENT));
            continue; /* b starts afresh */
        }
        e->utf8[e->utf8_len++] = b;
        if (e->utf8_len < e->utf8_need) return PRTS_OK;
        uint8_t enc[4];
        size_t n = e->utf8_len;
        memcpy(enc, e->utf8, n);
        e->utf8_len = 0;
        uint32_t cp = enc[0] & (0x7F >> n);
        for (size_t i = 1; i < n; i++) cp = cp << 6 | (enc[i] & 0x3F);
        return on_codepoint(e, cp, enc, n);
    }
}

/* Length of the valid UTF-8 character at p if it is not a C1 control, else 0 (the slow
 * path then decides: replacement, dropped control, or a character the end cut off). */
static inline size_t plain_utf8_len(const uint8_t *p, const uint8_t *end) {
    uint8_t b = p[0];
    size_t avail = (size_t)(end - p);
    if (b >= 0xC2 && b <= 0xDF) {
        if (avail < 2 || (p[1] & 0xC0) != 0x80 || (b == 0xC2 && p[1] < 0xA0)) return 0;
        return 2;
    }
    uint8_t lo = 0x80, hi = 0xBF;
    size_t len;
    if (b >= 0xE0 && b <= 0xEF) {
        len = 3;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (avail < len || p[1] < lo || p[1] > hi || (p[2] & 0xC0) != 0x80) return 0;
    if (len == 4 && (p[3] & 0xC0) != 0x80) return 0;
    return len;
}

/* -- the byte scanners --------------------------------------------------------------- */

static const uint8_t *scan_portable(const uint8_t *p, const uint8_t *end, const uint8_t *origin, uint32_t *nl,
                                    size_t *count) {
    while (p < end) {
        uint8_t b = *p;
        if ((b >= 0x20 && b < 0x7F) || b == '\t') {
            p++;
        } else if (b == '\n') {
            nl[(*count)++] = (uint32_t)(p - origin);
            p++;
        } else if (b >= 0x80) {
            size_t len = plain_utf8_len(p, end);
            if (len == 0) return p;
            p += len;
        } else {
            return p;
        }
    }
    return p;
}

#if PRTS_LOG_X86
static inline void note_newlines(unsigned mask, const uint8_t *p, const uint8_t *origin, uint32_t *nl,
                                 size_t *count) {
    uint32_t base = (uint32_t)(p - origin);
    while (mask) {
        nl[(*count)++] = base + (uint32_t)__builtin_ctz(mask);
        mask &= mask - 1;
    }
}

/* A byte is special when it is a control other than tab (newlines are sorted out by the
 * caller), DEL, or not ASCII: as signed bytes, below 0x20 or equal to 0x7F. */
__attribute__((target("sse2"))) static const uint8_t *scan_sse2(const uint8_t *p, const uint8_t *end,
                                                                const uint8_t *origin, uint32_t *nl,
                                                                size_t *count) {
    const __m128i space = _mm_set1_epi8(0x20), tab = _mm_set1_epi8('\t'), del = _mm_set1_epi8(0x7F),
                  lf = _mm_set1_epi8('\n');
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i ctl = _mm_andnot_si128(_mm_cmpeq_epi8(v, tab), _mm_cmpgt_epi8(space, v));
        unsigned special = (unsigned)_mm_movemask_epi8(_mm_or_si128(ctl, _mm_cmpeq_epi8(v, del)));
        unsigned lines = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, lf));
        unsigned stop = special & ~lines;
        if (stop == 0) {
            note_newlines(lines, p, origin, nl, count);
            p += 16;
            continue;
        }
        unsigned at = (unsigned)__builtin_ctz(stop);
        note_newlines(lines & ((1u << at) - 1), p, origin, nl, count);
        p += at;
        size_t len = *p >= 0x80 ? plain_utf8_len(p, end) : 0;
        if (len == 0) return p;
        p += len;
    }
    return scan_portable(p, end, origin, nl, count);
}

__attribute__((target("avx2"))) static const uint8_t *scan_avx2(const uint8_t *p, const uint8_t *end,
                                                                const uint8_t *origin, uint32_t *nl,
                                                                size_t *count) {
    const __m256i space = _mm256_set1_epi8(0x20), tab = _mm256_set1_epi8('\t'), del = _mm256_set1_epi8(0x7F),
                  lf = _mm256_set1_epi8('\n');
    while (end - p >= 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)p);
        __m256i ctl = _mm256_andnot_si256(_mm256_cmpeq_epi8(v, tab), _mm256_cmpgt_epi8(space, v));
        unsigned special = (unsigned)_mm256_movemask_epi8(_mm256_or_si256(ctl, _mm256_cmpeq_epi8(v, del)));
        unsigned lines = (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, lf));
        unsigned stop = special & ~lines;
        if (stop == 0) {
            note_newlines(lines, p, origin, nl, count);
            p += 32;
            continue;
        }
        unsigned at = (unsigned)__builtin_ctz(stop);
        note_newlines(lines & (unsigned)(((uint64_t)1 << at) - 1), p, origin, nl, count);
        p += at;
        size_t len = *p >= 0x80 ? plain_utf8_len(p, end) : 0;
        if (len == 0) return p;
        p += len;
    }
    return scan_sse2(p, end, origin, nl, count);
}
#endif

static int selected_impl = PRTS_LOG_AUTO;

static scan_fn scanner(int impl) {
#if PRTS_LOG_X86
    if (impl == PRTS_LOG_AUTO) impl = __builtin_cpu_supports("avx2") ? PRTS_LOG_AVX2 : PRTS_LOG_SSE2;
    if (impl == PRTS_LOG_AVX2) return __builtin_cpu_supports("avx2") ? scan_avx2 : NULL;
    if (impl == PRTS_LOG_SSE2) return __builtin_cpu_supports("sse2") ? scan_sse2 : NULL;
#endif
    if (impl == PRTS_LOG_AUTO || impl == PRTS_LOG_PORTABLE) return scan_portable;
    return NULL;
}

int prts_log_select(int impl) {
    if (scanner(impl) == NULL) return PRTS_E_NULL;
    selected_impl = impl;
    return PRTS_OK;
}

/* -- the fast path ------------------------------------------------------------------- */

static inline bool in_range(uint8_t b, uint8_t lo, uint8_t hi) { return (uint8_t)(b - lo) <= (uint8_t)(hi - lo); }

/* The end of the CSI parameter bytes (0x30..0x3F) from q, at most stop. Parameter
 * lengths vary from sequence to sequence, so a byte loop mispredicts its exit every time;
 * parameter bytes are exactly those whose high nibble is 3, one vector compare. */
static inline const uint8_t *skip_params(const uint8_t *q, const uint8_t *stop, bool vectors) {
#if PRTS_LOG_X86
    while (vectors && stop - q >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)q);
        __m128i param = _mm_cmpeq_epi8(_mm_and_si128(v, _mm_set1_epi8((char)0xF0)), _mm_set1_epi8(0x30));
        unsigned other = ~(unsigned)_mm_movemask_epi8(param) & 0xFFFF;
        if (other) return q + __builtin_ctz(other);
        q += 16;
    }
#else
    (void)vectors;
#endif
    while (q < stop && in_range(*q, 0x30, 0x3F)) q++;
    return q;
}

/* The special bytes from p on in plain text, while they start something complete that is
 * common in CI output: a whole CSI sequence, an ASCII OSC sequence, a short ESC sequence,
 * a "\r\n", a control character to drop. Handles them as the slow path would and sets
 * *next to what follows; *next is p when the first is anything else (partial, malformed,
 * long, non-ASCII), which the slow path then takes byte by byte. The text before p is in
 * the current line. Runs of sequences ("\x1b[0m\x1b[32m") are handled in one call. */
static int fast_special(prts_log_engine *e, const uint8_t *p, const uint8_t *end, const uint8_t **next) {
    *next = p;
    while (p < end) {
        uint8_t b = *p;
        if (b == '\r') {
            if (end - p < 2 || p[1] != '\n') return PRTS_OK;
            TRY(line_end(e));
            *next = p += 2;
            continue;
        }
        if (b != 0x1B) {
            if (b >= 0x20 && b != 0x7F) return PRTS_OK; /* text */
            if (b == '\n' || b == '\t') return PRTS_OK; /* the scanner's */
            *next = ++p;                                 /* a control character: dropped */
            continue;
        }
        if (end - p < 2) return PRTS_OK;
        /* A sequence of more than PRTS_LOG_MAX_SEQUENCE code points (here: bytes) is left
         * to the slow path, which abandons it. */
        size_t room = (size_t)(end - p) < PRTS_LOG_MAX_SEQUENCE ? (size_t)(end - p) : PRTS_LOG_MAX_SEQUENCE;
        const uint8_t *q = p + 2, *stop = p + room;
        uint8_t c = p[1];
        if (c == '[') {
#if PRTS_LOG_X86
            if (e->vectors && stop - q > SGR_KEY) {
                /* The common case in one vector: the parameters end within 16 bytes, and
                 * the loaded bytes masked to them are the SGR cache key. */
                static const uint8_t keep[2 * SGR_KEY] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                                          0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF};
                __m128i v = _mm_loadu_si128((const __m128i *)q);
                __m128i param = _mm_cmpeq_epi8(_mm_and_si128(v, _mm_set1_epi8((char)0xF0)), _mm_set1_epi8(0x30));
                unsigned other = ~(unsigned)_mm_movemask_epi8(param) & 0xFFFF;
                if (other != 0) {
                    unsigned n = (unsigned)__builtin_ctz(other);
                    uint8_t final = q[n];
                    if (final == 'm') {
                        __m128i key = _mm_and_si128(v, _mm_loadu_si128((const __m128i *)(keep + SGR_KEY - n)));
                        uint64_t key0 = (uint64_t)_mm_cvtsi128_si64(key);
                        uint64_t key1 = (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(key, key));
                        e->style = apply_effect(e->style, cached_sgr(e, key0, key1, q, n));
                        *next = p = q + n + 1;
                        continue;
                    }
                    if (in_range(final, 0x40, 0x7E)) { /* any other CSI: dropped */
                        *next = p = q + n + 1;
                        continue;
                    }
                }
            }
#endif
            q = skip_params(q, stop, e->vectors);
            const uint8_t *params_end = q;
            while (q < stop && in_range(*q, 0x20, 0x2F)) q++;
            if (q == stop || !in_range(*q, 0x40, 0x7E)) return PRTS_OK;
            if (*q == 'm' && q == params_end)
                e->style = apply_effect(e->style, sgr_effect_of(e, p + 2, (size_t)(params_end - (p + 2))));
            p = q + 1;
        } else if (c == ']') {
            while (q < stop && in_range(*q, 0x20, 0x7E)) q++;
            if (q == stop || (*q != 0x07 && *q != 0x1B)) return PRTS_OK;
            p = *q == 0x07 ? q + 1 : q; /* ESC ends the string and starts a sequence, as in ground */
        } else if (in_range(c, 0x20, 0x2F)) {
            while (q < stop && in_range(*q, 0x20, 0x2F)) q++;
            if (q == stop || !in_range(*q, 0x30, 0x7E)) return PRTS_OK;
            p = q + 1;
        } else if (in_range(c, 0x30, 0x7E) && c != 'P' && c != 'X' && c != '^' && c != '_') {
            p += 2;
        } else {
            return PRTS_OK;
        }
        *next = p;
    }
    return PRTS_OK;
}

/* Handle plain text from *pp on, block by block; return with *pp at the first byte the
 * slow path must see, or at end. Entered in ground state with nothing pending. */
static int fast_path(prts_log_engine *e, const uint8_t **pp, const uint8_t *end) {
    const uint8_t *p = *pp;
    for (;;) {
        const uint8_t *limit = (size_t)(end - p) > BLOCK ? p + BLOCK : end;
        size_t k = 0, i = 0, cur = 0;
        const uint32_t *nl = e->newlines;
        const uint8_t *stop = e->scan(p, limit, p, e->newlines, &k);
        if ((e->line_len > 0 || e->open > 0) && k > 0) { /* the current line ends at the first newline */
            TRY(line_add(e, p, nl[0], end));
            TRY(line_end(e));
            cur = nl[0] + 1;
            i = 1;
        }
        while (i < k) {
            size_t j = i, next = cur; /* lines i..j-1 fit max_line: emit them as a block */
            while (j < k && nl[j] - next <= e->max_line) next = nl[j++] + 1;
            if (j > i) TRY(emit_block(e, p, cur, nl + i, j - i));
            cur = next;
            i = j;
            if (i < k) { /* a line longer than max_line is force-broken in the held line */
                TRY(line_add(e, p + cur, nl[i] - cur, end));
                TRY(line_end(e));
                cur = nl[i++] + 1;
            }
        }
        TRY(line_add(e, p + cur, (size_t)(stop - (p + cur)), end));
        p = stop;
        if (stop == end) break;
        if (stop < limit) {
            TRY(fast_special(e, stop, end, &p));
            if (p == stop) break;
        }
    }
    close_open(e);
    *pp = p;
    return PRTS_OK;
}

/* -- API ----------------------------------------------------------------------------- */

void prts_log_engine_free(prts_log_engine *e) {
    if (e == NULL) return;
    prts_mm_free(e->matcher);
    free(e->line);
    free(e->tr);
    free(e->spans.v);
    free(e->newlines);
    free(e->text_alloc);
    free(e->starts);
    free(e->runs);
    free(e);
}

int prts_log_engine_new(const uint8_t *patterns, const size_t *lengths, size_t count, size_t max_line,
                        prts_log_engine **engine) {
    if (engine == NULL) return PRTS_E_NULL;
    *engine = NULL;
    if (count > 0 && (patterns == NULL || lengths == NULL)) return PRTS_E_NULL;
    if (max_line < PRTS_LOG_MIN_MAX_LINE || max_line > PRTS_LOG_MAX_MAX_LINE) return PRTS_LOG_E_MAX_LINE;
    prts_log_engine *e = calloc(1, sizeof *e);
    if (e == NULL) return PRTS_LOG_E_NOMEM;
    e->max_line = max_line;
    e->scan = scanner(selected_impl);
    e->vectors = e->scan != scan_portable;
    memset(e->sgr_cache, 0xFF, sizeof e->sgr_cache); /* no key matches an empty slot */
    if (count > 0) {
        int rc = prts_mm_new(patterns, lengths, count, &e->matcher);
        if (rc != PRTS_OK) {
            prts_log_engine_free(e);
            return rc;
        }
        size_t longest = prts_mm_longest(e->matcher);
        if (max_line / 2 < longest) {
            prts_log_engine_free(e);
            return PRTS_LOG_E_MAX_LINE;
        }
        e->hold = longest - 1;
    }
    e->line = malloc(max_line);
    e->newlines = malloc(BLOCK * sizeof *e->newlines);
    if (e->line == NULL || e->newlines == NULL) {
        prts_log_engine_free(e);
        return PRTS_LOG_E_NOMEM;
    }
    *engine = e;
    return PRTS_OK;
}

static int begin_call(prts_log_engine *e, const uint8_t *data, prts_log_output *out) {
    if (e == NULL || out == NULL) return PRTS_E_NULL;
    if (e->finished || e->failed) return PRTS_LOG_E_STATE;
    e->text_base += e->text_len;
    e->text_len = e->starts_len = e->runs_len = 0;
    if (data != NULL && e->text_alloc != NULL) {
        size_t cap = e->text_cap + e->text_shift;
        e->text_shift = (size_t)(((uintptr_t)data + 2048 - (uintptr_t)e->text_alloc) % 4096);
        if (e->text_shift >= cap) e->text_shift = 0;
        e->text = e->text_alloc + e->text_shift;
        e->text_cap = cap - e->text_shift;
    }
    memset(out, 0, sizeof *out);
    return PRTS_OK;
}

static int end_call(prts_log_engine *e, int rc, prts_log_output *out) {
    if (rc != PRTS_OK) {
        e->failed = true; /* the state is half-updated: refuse to go on rather than guess */
        e->text_len = e->open = e->starts_len = e->runs_len = 0;
        return rc;
    }
    out->text = e->text;
    out->text_len = e->text_len;
    out->line_starts = e->starts;
    out->line_count = e->starts_len;
    out->runs = e->runs;
    out->run_count = e->runs_len / PRTS_LOG_RUN_FIELDS;
    return PRTS_OK;
}

static int feed(prts_log_engine *e, const uint8_t *p, const uint8_t *end) {
    while (p < end) {
        if (e->state == GROUND && !e->cr_pending && e->utf8_len == 0) {
            TRY(fast_path(e, &p, end));
            if (p == end) break;
        }
        TRY(decode_byte(e, *p++));
    }
    return PRTS_OK;
}

int prts_log_feed(prts_log_engine *e, const uint8_t *data, size_t len, prts_log_output *out) {
    if (len > 0 && data == NULL) return PRTS_E_NULL;
    int rc = begin_call(e, data, out);
    if (rc != PRTS_OK) return rc;
    return end_call(e, len > 0 ? feed(e, data, data + len) : PRTS_OK, out);
}

static int finish(prts_log_engine *e) {
    if (e->utf8_len > 0) { /* a character the stream cut off */
        e->utf8_len = 0;
        TRY(on_codepoint(e, 0xFFFD, REPLACEMENT, sizeof REPLACEMENT));
    }
    e->cr_pending = false;
    e->state = GROUND;
    return e->line_len > 0 ? end_line(e) : PRTS_OK;
}

int prts_log_finish(prts_log_engine *e, prts_log_output *out) {
    int rc = begin_call(e, NULL, out);
    if (rc != PRTS_OK) return rc;
    rc = end_call(e, finish(e), out);
    e->finished = true;
    return rc;
}
