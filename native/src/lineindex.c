#include "prts/lineindex.h"

#include <string.h>

#include "newlines.h"

/* Line starts are the buffer's start and the byte after every '\n' but a final one. The
 * vector versions find 16 or 32 bytes' newlines with one compare; memchr per line, the
 * portable way, pays a call per line, which is most of the time for lines of log text. */

typedef uint64_t (*newline_counter)(const uint8_t *lo, const uint8_t *p, const uint8_t *end);
typedef size_t (*line_filler)(const uint8_t *buf, size_t len, uint64_t base, uint64_t *out, size_t capacity);

/* Each filler writes the first `capacity` line starts (plus base) to out and returns how
 * many there are in all. */
#ifndef PRTS_NEWLINES_X86
static size_t fill_portable(const uint8_t *buf, size_t len, uint64_t base, uint64_t *out, size_t capacity) {
    size_t i = 0;
    if (i < capacity) out[i] = base;
    i++;
    const uint8_t *p = buf, *end = buf + len;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (++p == end) break; /* a final newline ends a line, it does not start one */
        if (i < capacity) out[i] = base + (uint64_t)(p - buf);
        i++;
    }
    return i;
}
#endif

#ifdef PRTS_NEWLINES_X86

/* Starts after the newlines marked in mask, whose bit 0 is buf[at]. */
#define FILL_MASK(mask, at)                                                    \
    for (; mask; mask &= mask - 1) {                                           \
        size_t start = (at) + (size_t)__builtin_ctz(mask) + 1;                 \
        if (start == len) break;                                               \
        if (i < capacity) out[i] = base + start;                               \
        i++;                                                                   \
    }

static size_t fill_sse2(const uint8_t *buf, size_t len, uint64_t base, uint64_t *out, size_t capacity) {
    const __m128i nl = _mm_set1_epi8('\n');
    size_t i = 0, k = 0;
    if (i < capacity) out[i] = base;
    i++;
    for (; len - k >= 16; k += 16) {
        unsigned mask = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(buf + k)), nl));
        FILL_MASK(mask, k)
    }
    for (; k < len; k++) {
        unsigned mask = buf[k] == '\n';
        FILL_MASK(mask, k)
    }
    return i;
}

__attribute__((target("avx2"))) static size_t fill_avx2(const uint8_t *buf, size_t len, uint64_t base,
                                                        uint64_t *out, size_t capacity) {
    const __m256i nl = _mm256_set1_epi8('\n');
    size_t i = 0, k = 0;
    if (i < capacity) out[i] = base;
    i++;
    for (; len - k >= 32; k += 32) {
        unsigned mask = (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)(buf + k)), nl));
        FILL_MASK(mask, k)
    }
    for (; k < len; k++) {
        unsigned mask = buf[k] == '\n';
        FILL_MASK(mask, k)
    }
    return i;
}

#undef FILL_MASK

#endif

static newline_counter counter(void) {
#ifdef PRTS_NEWLINES_X86
    return prts_newlines_have_avx2() ? prts_newlines_avx2 : prts_newlines_sse2;
#else
    return prts_newlines_portable;
#endif
}

static line_filler filler(void) {
#ifdef PRTS_NEWLINES_X86
    return prts_newlines_have_avx2() ? fill_avx2 : fill_sse2;
#else
    return fill_portable;
#endif
}

size_t prts_line_count(const uint8_t *buf, size_t len) {
    if (buf == NULL || len == 0) return 0;
    return 1 + (size_t)counter()(buf, buf, buf + len) - (buf[len - 1] == '\n');
}

int prts_line_starts(const uint8_t *buf, size_t len, uint64_t base, uint64_t *out,
                     size_t *count) {
    if (count == NULL || (len > 0 && buf == NULL)) return PRTS_E_NULL;
    size_t capacity = out == NULL ? 0 : *count;
    size_t needed = len == 0 ? 0 : filler()(buf, len, base, out, capacity);
    *count = needed;
    return needed > capacity ? PRTS_E_CAPACITY : PRTS_OK;
}
