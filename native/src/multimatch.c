/* Multi-pattern matcher: a sampled q-gram filter with exact verification.
 *
 * With ~1,000 patterns an Aho-Corasick automaton costs a dependent table walk per text
 * byte over tables far larger than L1, which alone is slower than the engine's goal. The
 * filter instead looks at one 4-byte window (a q-gram) every `stride` bytes:
 *
 * - An occurrence of a pattern of length m >= GRAM + stride - 1 covers `stride`
 *   consecutive window starts, so exactly one sampled window lies inside it, at an offset
 *   j < stride from its start. Registering each pattern's windows at offsets 0..stride-1
 *   therefore guarantees every occurrence is seen; stride = shortest pattern - GRAM + 1.
 * - A sampled window is hashed into a bitmap of all registered windows (a few bits per
 *   thousand set, so most samples cost a multiply and one bit test in L1/L2); on a hit,
 *   the registered (pattern, offset) entries of its hash bucket are compared in full.
 *
 * Every occurrence found at one sample contains that sample's window, so all of them
 * overlap and their union is one span; and samples come in increasing order with starts
 * above every earlier sample's starts. So the union of all occurrences is built on the
 * fly with one open span and no sorting, in memory independent of how many matches a
 * hostile text holds.
 */
#include "multimatch.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "prts/lineindex.h"
#include "prts/logengine.h"

#define GRAM 4
/* A longer stride samples less often but registers more windows per pattern, which
 * grows the bitmap out of L1/L2; 16 keeps it within 2^21 bits for 2,000 patterns. */
#define MAX_STRIDE 16
/* Bitmap bits per registered window: ~1.5% of random windows hit the bitmap. */
#define BITS_PER_ENTRY 64
#define MIN_BITMAP_LOG2 12
#define MAX_BITMAP_LOG2 23
#define HASH_MUL 0x9E3779B1u /* Fibonacci hashing: the high bits of the product mix all input bits */

typedef struct entry {
    uint32_t gram;    /* the window, as loaded */
    uint32_t pattern; /* index into starts/lens */
    uint32_t offset;  /* where the window starts in the pattern (< stride) */
} entry;

struct prts_mm {
    uint8_t *blob; /* all patterns back to back */
    size_t *starts;
    uint32_t *lens;
    size_t count, longest, stride;
    uint64_t *bitmap;
    unsigned bitmap_shift; /* 32 - log2(bitmap bits) */
    uint32_t *bucket_first; /* entries of bucket b: [bucket_first[b], bucket_first[b + 1]) */
    unsigned bucket_shift;
    entry *entries;
};

static inline uint32_t load_gram(const uint8_t *p) {
    uint32_t g;
    memcpy(&g, p, sizeof g); /* unaligned load; any byte order works as long as it is one */
    return g;
}

static inline uint32_t gram_hash(uint32_t g) { return g * HASH_MUL; }

static unsigned log2_ceil(size_t n) {
    unsigned b = 0;
    while (b < 63 && ((size_t)1 << b) < n) b++;
    return b;
}

/* Whether p[0..n) is valid UTF-8 (the rules of prts/logengine.h's decoder). */
static bool valid_utf8(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t b = p[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint8_t lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) {
            len = 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            len = 3;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            len = 4;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
        } else {
            return false;
        }
        if (n - i < len || p[i + 1] < lo || p[i + 1] > hi) return false;
        for (size_t k = 2; k < len; k++)
            if ((p[i + k] & 0xC0) != 0x80) return false;
        i += len;
    }
    return true;
}

void prts_mm_free(prts_mm *m) {
    if (m == NULL) return;
    free(m->blob);
    free(m->starts);
    free(m->lens);
    free(m->bitmap);
    free(m->bucket_first);
    free(m->entries);
    free(m);
}

size_t prts_mm_longest(const prts_mm *m) { return m->longest; }

int prts_mm_new(const uint8_t *patterns, const size_t *lengths, size_t count, prts_mm **out) {
    *out = NULL;
    if (count == 0 || count > PRTS_LOG_MAX_PATTERNS) return PRTS_LOG_E_PATTERN;
    size_t total = 0, shortest = SIZE_MAX, longest = 0;
    for (size_t i = 0; i < count; i++) {
        size_t len = lengths[i];
        if (len < PRTS_LOG_MIN_PATTERN || len > PRTS_LOG_MAX_PATTERN) return PRTS_LOG_E_PATTERN;
        /* No '\n': the engine relies on matches never spanning a line end. UTF-8: a valid
         * pattern only matches on code point boundaries, so masking keeps lines valid. */
        if (!valid_utf8(patterns + total, len) || memchr(patterns + total, '\n', len) != NULL)
            return PRTS_LOG_E_PATTERN;
        if (len > SIZE_MAX - total) return PRTS_LOG_E_PATTERN;
        total += len;
        if (len < shortest) shortest = len;
        if (len > longest) longest = len;
    }

    prts_mm *m = calloc(1, sizeof *m);
    if (m == NULL) return PRTS_LOG_E_NOMEM;
    m->count = count;
    m->longest = longest;
    m->stride = shortest - GRAM + 1;
    if (m->stride > MAX_STRIDE) m->stride = MAX_STRIDE;
    size_t nentries = count * m->stride;
    unsigned bitmap_log2 = log2_ceil(nentries * BITS_PER_ENTRY);
    if (bitmap_log2 < MIN_BITMAP_LOG2) bitmap_log2 = MIN_BITMAP_LOG2;
    if (bitmap_log2 > MAX_BITMAP_LOG2) bitmap_log2 = MAX_BITMAP_LOG2;
    unsigned bucket_log2 = log2_ceil(nentries);
    if (bucket_log2 < 1) bucket_log2 = 1; /* a shift by 32 would be undefined */
    m->bitmap_shift = 32 - bitmap_log2;
    m->bucket_shift = 32 - bucket_log2;
    size_t nbuckets = (size_t)1 << bucket_log2;

    m->blob = malloc(total);
    m->starts = malloc(count * sizeof *m->starts);
    m->lens = malloc(count * sizeof *m->lens);
    m->bitmap = calloc(((size_t)1 << bitmap_log2) / 64, sizeof *m->bitmap);
    m->bucket_first = calloc(nbuckets + 1, sizeof *m->bucket_first);
    m->entries = malloc(nentries * sizeof *m->entries);
    if (!m->blob || !m->starts || !m->lens || !m->bitmap || !m->bucket_first || !m->entries) {
        prts_mm_free(m);
        return PRTS_LOG_E_NOMEM;
    }
    memcpy(m->blob, patterns, total);
    for (size_t i = 0, at = 0; i < count; at += lengths[i], i++) {
        m->starts[i] = at;
        m->lens[i] = (uint32_t)lengths[i];
    }

    /* Counting sort of the entries by bucket: count, prefix-sum, place. */
    for (size_t i = 0; i < count; i++)
        for (size_t j = 0; j < m->stride; j++) {
            uint32_t h = gram_hash(load_gram(m->blob + m->starts[i] + j));
            m->bitmap[(h >> m->bitmap_shift) / 64] |= (uint64_t)1 << ((h >> m->bitmap_shift) % 64);
            m->bucket_first[(h >> m->bucket_shift) + 1]++;
        }
    for (size_t b = 0; b < nbuckets; b++) m->bucket_first[b + 1] += m->bucket_first[b];
    uint32_t *fill = malloc(nbuckets * sizeof *fill);
    if (fill == NULL) {
        prts_mm_free(m);
        return PRTS_LOG_E_NOMEM;
    }
    memcpy(fill, m->bucket_first, nbuckets * sizeof *fill);
    for (size_t i = 0; i < count; i++)
        for (size_t j = 0; j < m->stride; j++) {
            uint32_t g = load_gram(m->blob + m->starts[i] + j);
            entry *e = &m->entries[fill[gram_hash(g) >> m->bucket_shift]++];
            e->gram = g;
            e->pattern = (uint32_t)i;
            e->offset = (uint32_t)j;
        }
    free(fill);
    *out = m;
    return PRTS_OK;
}

static int push_span(prts_mm_spans *spans, size_t start, size_t end) {
    if (spans->len == spans->cap) {
        size_t cap = spans->cap ? 2 * spans->cap : 16;
        if (cap > SIZE_MAX / sizeof *spans->v) return PRTS_LOG_E_NOMEM;
        prts_mm_span *v = realloc(spans->v, cap * sizeof *v);
        if (v == NULL) return PRTS_LOG_E_NOMEM;
        spans->v = v;
        spans->cap = cap;
    }
    spans->v[spans->len].start = start;
    spans->v[spans->len].end = end;
    spans->len++;
    return PRTS_OK;
}

/* The union of the occurrences that contain the window sampled at text[i], as [*lo, *hi);
 * returns false when there is none. */
static bool verify(const prts_mm *m, const uint8_t *text, size_t n, size_t i, uint32_t g, uint32_t h,
                   size_t *lo, size_t *hi) {
    bool found = false;
    uint32_t b = h >> m->bucket_shift;
    for (uint32_t k = m->bucket_first[b]; k < m->bucket_first[b + 1]; k++) {
        const entry *e = &m->entries[k];
        if (e->gram != g || e->offset > i) continue;
        size_t start = i - e->offset, len = m->lens[e->pattern];
        if (len > n - start || memcmp(text + start, m->blob + m->starts[e->pattern], len) != 0) continue;
        if (!found || start < *lo) *lo = start;
        if (!found || start + len > *hi) *hi = start + len;
        found = true;
    }
    return found;
}

static inline uint64_t bitmap_bit(const prts_mm *m, uint32_t h) {
    uint32_t bit = h >> m->bitmap_shift;
    return (m->bitmap[bit / 64] >> (bit % 64)) & 1;
}

/* The union being built: an open span [start, end) that later samples may still extend. */
typedef struct union_state {
    bool open;
    size_t start, end;
} union_state;

/* Verify the bitmap hit at sample i and merge what it finds into the union. */
static int sample_hit(const prts_mm *m, const uint8_t *text, size_t n, size_t i, union_state *u,
                      prts_mm_spans *spans) {
    uint32_t g = load_gram(text + i);
    size_t lo = 0, hi = 0;
    if (!verify(m, text, n, i, g, gram_hash(g), &lo, &hi)) return PRTS_OK;
    if (u->open && lo <= u->end) {
        if (hi > u->end) u->end = hi;
        return PRTS_OK;
    }
    if (u->open) {
        int rc = push_span(spans, u->start, u->end);
        if (rc != PRTS_OK) return rc;
    }
    u->open = true;
    u->start = lo;
    u->end = hi;
    return PRTS_OK;
}

int prts_mm_scan(const prts_mm *m, const uint8_t *text, size_t n, size_t premask, prts_mm_spans *spans) {
    union_state u = {premask > 0, 0, premask};
    const size_t stride = m->stride;
    size_t i = 0;
    if (n >= GRAM) {
        const size_t last = n - GRAM; /* the last window start */
        /* Four samples a step with one branch: almost every sample misses the bitmap. */
        for (; last >= 3 * stride && i <= last - 3 * stride; i += 4 * stride) {
            uint64_t b0 = bitmap_bit(m, gram_hash(load_gram(text + i)));
            uint64_t b1 = bitmap_bit(m, gram_hash(load_gram(text + i + stride)));
            uint64_t b2 = bitmap_bit(m, gram_hash(load_gram(text + i + 2 * stride)));
            uint64_t b3 = bitmap_bit(m, gram_hash(load_gram(text + i + 3 * stride)));
            if ((b0 | b1 | b2 | b3) == 0) continue;
            uint64_t hits[4] = {b0, b1, b2, b3};
            for (size_t k = 0; k < 4; k++) {
                if (!hits[k]) continue;
                int rc = sample_hit(m, text, n, i + k * stride, &u, spans);
                if (rc != PRTS_OK) return rc;
            }
        }
        for (; i <= last; i += stride) {
            if (!bitmap_bit(m, gram_hash(load_gram(text + i)))) continue;
            int rc = sample_hit(m, text, n, i, &u, spans);
            if (rc != PRTS_OK) return rc;
        }
    }
    return u.open ? push_span(spans, u.start, u.end) : PRTS_OK;
}
