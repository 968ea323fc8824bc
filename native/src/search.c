/* Literal search over a stored log.
 *
 * A needle is found by a prefilter on two of its bytes, the rarest ones by a frequency
 * ranking of log text (the "packed pair" idea of Rust's memchr crate, which ripgrep uses):
 * vectors compare 64 candidate starts per step against both bytes (four SSE2 or two AVX2
 * compares of each), and only positions where both agree are compared in full. Folding
 * ASCII case costs one OR per vector: for a letter, (b | 0x20) == lower(letter) holds for
 * exactly its two cases.
 *
 * Line numbers are counted as the search goes, block by block, so the bytes being counted
 * are still in cache from the search: counting newlines in a second pass over a large log
 * would read it from memory twice.
 */
#include "prts/search.h"

#include <string.h>

#include "newlines.h"
#include "prts/lineindex.h" /* the return codes shared by every engine */

#ifdef PRTS_NEWLINES_X86
#define PRTS_SEARCH_X86 1
#endif

/* Bytes searched before the newlines in them are counted: small enough to stay in L2. */
#define BLOCK ((size_t)64 * 1024)

typedef struct finder {
    const uint8_t *needle;
    size_t len;
    int fold;
    size_t i1, i2;  /* offsets in the needle of the two bytes the prefilter compares */
    uint8_t t1, t2; /* those bytes, lower-cased when folding a letter */
    uint8_t m1, m2; /* 0x20 when folding a letter, else 0: (b | m) == t is the test */
} finder;

static inline int is_upper(uint8_t c) { return (uint8_t)(c - 'A') < 26; }
static inline int is_alpha(uint8_t c) { return (uint8_t)((c | 0x20) - 'a') < 26; }
static inline uint8_t lower(uint8_t c) { return is_upper(c) ? (uint8_t)(c | 0x20) : c; }

/* Bytes from most to least frequent in build and test logs (prose, paths, numbers, ANSI
 * colour sequences); a byte not listed is rarer than every listed one. */
static const char COMMON_BYTES[] =
    " etaosinr\nl/.dcu-m=p_h01g:f2b[y3k,54\x1bw6)(9v87x\"'<>TESRAICLNODPMFBUGHjqWzKV+;*YX#JQZ@$%&!?|~^`\\{}";

static int rarity(uint8_t c) {
    const char *hit = c ? strchr(COMMON_BYTES, c) : NULL;
    return hit ? (int)(hit - COMMON_BYTES) : 255;
}

static int needle_rarity(uint8_t c, int fold) {
    if (fold && is_alpha(c)) {
        int a = rarity(lower(c)), b = rarity((uint8_t)(lower(c) & ~0x20));
        return a < b ? a : b; /* a folded letter is as common as its commoner case */
    }
    return rarity(c);
}

static void finder_init(finder *f, const uint8_t *needle, size_t len, int fold) {
    f->needle = needle;
    f->len = len;
    f->fold = fold;
    size_t i1 = 0;
    int r1 = -1;
    for (size_t i = 0; i < len; i++) {
        int r = needle_rarity(needle[i], fold);
        if (r > r1) r1 = r, i1 = i;
    }
    uint8_t key1 = fold ? lower(needle[i1]) : needle[i1];
    /* The second byte should differ from the first, or the pair tests one byte twice;
     * a needle of one repeated byte falls back to its last position. */
    size_t i2 = len - 1;
    int r2 = -1;
    for (size_t i = 0; i < len; i++) {
        uint8_t key = fold ? lower(needle[i]) : needle[i];
        int r = needle_rarity(needle[i], fold);
        if (key != key1 && r > r2) r2 = r, i2 = i;
    }
    f->i1 = i1;
    f->i2 = i2;
    f->m1 = (uint8_t)(fold && is_alpha(needle[i1]) ? 0x20 : 0);
    f->m2 = (uint8_t)(fold && is_alpha(needle[i2]) ? 0x20 : 0);
    f->t1 = (uint8_t)(needle[i1] | f->m1);
    f->t2 = (uint8_t)(needle[i2] | f->m2);
}

/* Whether a needle starts at s, given that the prefilter's two bytes agree. */
static inline int matches_at(const finder *f, const uint8_t *s) {
    if (!f->fold) return memcmp(s, f->needle, f->len) == 0;
    for (size_t i = 0; i < f->len; i++)
        if (lower(s[i]) != lower(f->needle[i])) return 0;
    return 1;
}

static inline int candidate(const finder *f, const uint8_t *s) {
    return (uint8_t)(s[f->i1] | f->m1) == f->t1 && (uint8_t)(s[f->i2] | f->m2) == f->t2 &&
           matches_at(f, s);
}

/* Each find_* returns the first match starting in [p, stop), or NULL. The caller
 * guarantees that a needle starting before stop ends within the buffer. */

static const uint8_t *find_bytewise(const finder *f, const uint8_t *p, const uint8_t *stop) {
    for (; p < stop; p++)
        if (candidate(f, p)) return p;
    return NULL;
}

/* libc's memchr is vectorised on every architecture glibc supports, so scanning for the
 * rarest byte with it is the portable fast path; a folded letter needs two scans, and the
 * later hit of each is kept rather than searched again. */
static const uint8_t *find_portable(const finder *f, const uint8_t *p, const uint8_t *stop) {
    const uint8_t *to = stop + f->i1; /* the rare byte of a start in [p, stop) is before this */
    const uint8_t *lo = NULL, *up = f->m1 ? NULL : to;
    while (p < stop) {
        const uint8_t *from = p + f->i1;
        if (lo == NULL || lo < from) {
            lo = memchr(from, f->t1, (size_t)(to - from));
            if (lo == NULL) lo = to;
        }
        if (up == NULL || up < from) {
            up = memchr(from, f->t1 & ~0x20, (size_t)(to - from));
            if (up == NULL) up = to;
        }
        const uint8_t *hit = lo < up ? lo : up;
        if (hit == to) return NULL;
        const uint8_t *s = hit - f->i1;
        if (candidate(f, s)) return s;
        p = s + 1;
    }
    return NULL;
}

#ifdef PRTS_SEARCH_X86

/* The vector searches scan 64 candidate starts per step, and must not call anything in
 * that loop: a call clobbers every vector register and the compiler would then keep the
 * broadcast bytes on the stack. So a scan_* function only reports the first step with a
 * candidate, as a mask of its starts, and find_with checks them. */
typedef const uint8_t *(*scan_fn)(const finder *, const uint8_t *, const uint8_t *, uint64_t *);

static const uint8_t *find_with(scan_fn scan, const finder *f, const uint8_t *p, const uint8_t *stop) {
    for (;;) {
        uint64_t mask;
        p = scan(f, p, stop, &mask);
        if (mask == 0) return find_bytewise(f, p, stop); /* fewer than 64 starts are left */
        for (; mask; mask &= mask - 1) {
            const uint8_t *s = p + __builtin_ctzll(mask);
            if (matches_at(f, s)) return s;
        }
        p += 64;
    }
}

/* SSE2 is part of x86-64, so these need no target attribute. */
static inline __m128i pairs_sse2(const finder *f, const uint8_t *p, __m128i t1, __m128i t2, __m128i m1, __m128i m2) {
    __m128i a = _mm_loadu_si128((const __m128i *)(p + f->i1));
    __m128i b = _mm_loadu_si128((const __m128i *)(p + f->i2));
    return _mm_and_si128(_mm_cmpeq_epi8(_mm_or_si128(a, m1), t1), _mm_cmpeq_epi8(_mm_or_si128(b, m2), t2));
}

static const uint8_t *scan_sse2(const finder *f, const uint8_t *p, const uint8_t *stop, uint64_t *mask) {
    const __m128i t1 = _mm_set1_epi8((char)f->t1), t2 = _mm_set1_epi8((char)f->t2);
    const __m128i m1 = _mm_set1_epi8((char)f->m1), m2 = _mm_set1_epi8((char)f->m2);
    for (; stop - p >= 64; p += 64) {
        __m128i e0 = pairs_sse2(f, p, t1, t2, m1, m2), e1 = pairs_sse2(f, p + 16, t1, t2, m1, m2);
        __m128i e2 = pairs_sse2(f, p + 32, t1, t2, m1, m2), e3 = pairs_sse2(f, p + 48, t1, t2, m1, m2);
        if (_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(e0, e1), _mm_or_si128(e2, e3)))) {
            *mask = (uint64_t)(unsigned)_mm_movemask_epi8(e0) | (uint64_t)(unsigned)_mm_movemask_epi8(e1) << 16 |
                    (uint64_t)(unsigned)_mm_movemask_epi8(e2) << 32 | (uint64_t)(unsigned)_mm_movemask_epi8(e3) << 48;
            return p;
        }
    }
    *mask = 0;
    return p;
}

static const uint8_t *find_sse2(const finder *f, const uint8_t *p, const uint8_t *stop) {
    return find_with(scan_sse2, f, p, stop);
}

__attribute__((target("avx2"))) static inline __m256i pairs_avx2(const finder *f, const uint8_t *p, __m256i t1,
                                                                 __m256i t2, __m256i m1, __m256i m2) {
    __m256i a = _mm256_loadu_si256((const __m256i *)(p + f->i1));
    __m256i b = _mm256_loadu_si256((const __m256i *)(p + f->i2));
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_or_si256(a, m1), t1),
                            _mm256_cmpeq_epi8(_mm256_or_si256(b, m2), t2));
}

__attribute__((target("avx2"))) static const uint8_t *scan_avx2(const finder *f, const uint8_t *p,
                                                                const uint8_t *stop, uint64_t *mask) {
    const __m256i t1 = _mm256_set1_epi8((char)f->t1), t2 = _mm256_set1_epi8((char)f->t2);
    const __m256i m1 = _mm256_set1_epi8((char)f->m1), m2 = _mm256_set1_epi8((char)f->m2);
    for (; stop - p >= 64; p += 64) {
        __m256i e0 = pairs_avx2(f, p, t1, t2, m1, m2), e1 = pairs_avx2(f, p + 32, t1, t2, m1, m2);
        __m256i any = _mm256_or_si256(e0, e1);
        if (!_mm256_testz_si256(any, any)) {
            *mask = (uint64_t)(unsigned)_mm256_movemask_epi8(e0) | (uint64_t)(unsigned)_mm256_movemask_epi8(e1) << 32;
            return p;
        }
    }
    *mask = 0;
    return p;
}

static const uint8_t *find_avx2(const finder *f, const uint8_t *p, const uint8_t *stop) {
    return find_with(scan_avx2, f, p, stop);
}

#endif

typedef struct engine {
    const uint8_t *(*find)(const finder *, const uint8_t *, const uint8_t *);
    uint64_t (*count)(const uint8_t *lo, const uint8_t *p, const uint8_t *end); /* '\n' in [p, end) */
} engine;

static const engine ENGINES[] = {
    [PRTS_SEARCH_PORTABLE] = {find_portable, prts_newlines_portable},
#ifdef PRTS_SEARCH_X86
    [PRTS_SEARCH_SSE2] = {find_sse2, prts_newlines_sse2},
    [PRTS_SEARCH_AVX2] = {find_avx2, prts_newlines_avx2},
#endif
};

static int supported(int impl) {
    switch (impl) {
    case PRTS_SEARCH_PORTABLE: return 1;
#ifdef PRTS_SEARCH_X86
    case PRTS_SEARCH_SSE2: return 1;
    case PRTS_SEARCH_AVX2: return prts_newlines_have_avx2();
#endif
    default: return 0;
    }
}

/* Written only by prts_search_select; a search reads it once. */
static int chosen = PRTS_SEARCH_AUTO;

static int best(void) {
    if (supported(PRTS_SEARCH_AVX2)) return PRTS_SEARCH_AVX2;
    if (supported(PRTS_SEARCH_SSE2)) return PRTS_SEARCH_SSE2;
    return PRTS_SEARCH_PORTABLE;
}

int prts_search_select(int impl) {
    if (impl != PRTS_SEARCH_AUTO && !supported(impl)) return PRTS_SEARCH_E_ARGUMENT;
    chosen = impl;
    return PRTS_OK;
}

int prts_search(const uint8_t *buf, size_t len, const uint8_t *needle, size_t needle_len,
                unsigned int flags, uint64_t base, prts_search_cursor *cursor,
                uint64_t *lines, uint64_t *offsets, size_t *count) {
    if (cursor == NULL || count == NULL || needle == NULL || (len > 0 && buf == NULL) ||
        (*count > 0 && (lines == NULL || offsets == NULL)))
        return PRTS_E_NULL;
    if (needle_len == 0 || cursor->pos > len || (flags & ~(unsigned)PRTS_SEARCH_IGNORE_CASE))
        return PRTS_SEARCH_E_ARGUMENT;
    size_t capacity = *count, found = 0;
    *count = 0;
    if (len == 0) return PRTS_OK; /* also keeps NULL + 0 out of the arithmetic below */
    int impl = chosen;
    const engine *e = &ENGINES[impl == PRTS_SEARCH_AUTO ? best() : impl];
    finder f;
    finder_init(&f, needle, needle_len, (flags & PRTS_SEARCH_IGNORE_CASE) != 0);

    const uint8_t *p = buf + cursor->pos, *end = buf + len;
    /* Starts in [p, stop) leave room for the whole needle. */
    const uint8_t *stop = (size_t)(end - p) >= needle_len ? end - needle_len + 1 : p;
    const uint8_t *counted = p; /* newlines before here are in line */
    uint64_t line = cursor->line;
    while (p < stop) {
        const uint8_t *block_end = (size_t)(stop - p) > BLOCK ? p + BLOCK : stop;
        const uint8_t *m = e->find(&f, p, block_end);
        if (m == NULL) {
            line += e->count(buf, counted, block_end);
            counted = p = block_end;
            continue;
        }
        line += e->count(buf, counted, m);
        counted = m;
        if (found == capacity) {
            cursor->pos = (uint64_t)(m - buf);
            cursor->line = line;
            *count = found;
            return PRTS_SEARCH_MORE;
        }
        lines[found] = line;
        offsets[found] = base + (uint64_t)(m - buf);
        found++;
        p = m + needle_len;
    }
    cursor->pos = len;
    cursor->line = line + e->count(buf, counted, end);
    *count = found;
    return PRTS_OK;
}
