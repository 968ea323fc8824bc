/* Multi-pattern matcher of the log engine (internal: not declared to cffi).
 *
 * Finds every occurrence of every pattern in a text and reports their union as sorted,
 * merged spans: what secret masking needs, in one pass over the text. */
#ifndef PRTS_MULTIMATCH_H
#define PRTS_MULTIMATCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct prts_mm prts_mm;

typedef struct prts_mm_span {
    size_t start, end; /* [start, end) */
} prts_mm_span;

/* A growable list of spans owned by the caller (zero-initialise; free v). */
typedef struct prts_mm_spans {
    prts_mm_span *v;
    size_t len, cap;
} prts_mm_spans;

/* Build a matcher for the patterns laid out as in prts_log_engine_new (count >= 1).
 * Returns PRTS_OK, PRTS_LOG_E_PATTERN or PRTS_LOG_E_NOMEM. */
int prts_mm_new(const uint8_t *patterns, const size_t *lengths, size_t count, prts_mm **matcher);

void prts_mm_free(prts_mm *matcher);

/* Length of the longest pattern. */
size_t prts_mm_longest(const prts_mm *matcher);

/* Append to spans the union of [0, premask) and every occurrence of every pattern in
 * text[0..n), as maximal spans in increasing order (overlapping or adjacent occurrences
 * merge). Returns PRTS_OK or PRTS_LOG_E_NOMEM. */
int prts_mm_scan(const prts_mm *matcher, const uint8_t *text, size_t n, size_t premask, prts_mm_spans *spans);

#endif
