/* Counting and finding '\n' bytes, with SSE2 (part of x86-64) or AVX2 (checked at run
 * time), else libc's memchr. Private to the engines: search.c numbers its matches' lines
 * with it, lineindex.c indexes lines with it. Every function is static, so each engine
 * compiles its own copy and none of this is exported from the module. */
#ifndef PRTS_NEWLINES_H
#define PRTS_NEWLINES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define PRTS_NEWLINES_X86 1
#endif

/* Newlines in [p, end). lo is where the buffer starts (lo <= p): a vector load may reach
 * back to it, so the last few bytes are counted by one load instead of byte by byte. */

static inline uint64_t prts_newlines_portable(const uint8_t *lo, const uint8_t *p, const uint8_t *end) {
    (void)lo;
    uint64_t n = 0;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) n++, p++;
    return n;
}

#ifdef PRTS_NEWLINES_X86

/* The newlines among the last rest (< width) bytes before end, or -1 when one load of
 * width bytes ending at end would reach before lo. */
#define PRTS_NEWLINES_TAIL(width, load, cmpeq, movemask, set1)                                          \
    do {                                                                                                \
        size_t rest = (size_t)(end - p);                                                                \
        if (rest > 0 && (size_t)(end - lo) >= (width)) {                                                \
            uint64_t bits = (uint64_t)(unsigned)movemask(cmpeq(load((const void *)(end - (width))), set1('\n'))); \
            for (bits >>= (width) - rest; bits; bits &= bits - 1) n++;                                  \
        } else {                                                                                        \
            for (; p < end; p++) n += *p == '\n';                                                       \
        }                                                                                               \
    } while (0)

static inline uint64_t prts_newlines_sse2(const uint8_t *lo, const uint8_t *p, const uint8_t *end) {
    const __m128i nl = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
    uint64_t n = 0;
    while (end - p >= 16) {
        /* Byte lanes count up to 255 hits before they are summed into n. */
        size_t rounds = (size_t)(end - p) / 16;
        if (rounds > 255) rounds = 255;
        __m128i acc = zero;
        for (size_t i = 0; i < rounds; i++, p += 16)
            acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)p), nl));
        __m128i sums = _mm_sad_epu8(acc, zero);
        n += (uint64_t)_mm_cvtsi128_si64(sums) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(sums, sums));
    }
    PRTS_NEWLINES_TAIL(16, _mm_loadu_si128, _mm_cmpeq_epi8, _mm_movemask_epi8, _mm_set1_epi8);
    return n;
}

__attribute__((target("avx2"))) static inline uint64_t prts_newlines_avx2(const uint8_t *lo, const uint8_t *p,
                                                                         const uint8_t *end) {
    const __m256i nl = _mm256_set1_epi8('\n'), zero = _mm256_setzero_si256();
    uint64_t n = 0;
    while (end - p >= 32) {
        size_t rounds = (size_t)(end - p) / 32;
        if (rounds > 255) rounds = 255;
        __m256i acc = zero;
        for (size_t i = 0; i < rounds; i++, p += 32)
            acc = _mm256_sub_epi8(acc, _mm256_cmpeq_epi8(_mm256_loadu_si256((const __m256i *)p), nl));
        __m256i sums = _mm256_sad_epu8(acc, zero);
        n += (uint64_t)_mm256_extract_epi64(sums, 0) + (uint64_t)_mm256_extract_epi64(sums, 1) +
             (uint64_t)_mm256_extract_epi64(sums, 2) + (uint64_t)_mm256_extract_epi64(sums, 3);
    }
    PRTS_NEWLINES_TAIL(32, _mm256_loadu_si256, _mm256_cmpeq_epi8, _mm256_movemask_epi8, _mm256_set1_epi8);
    return n;
}

#undef PRTS_NEWLINES_TAIL

static inline int prts_newlines_have_avx2(void) { return __builtin_cpu_supports("avx2"); }

#endif

#endif
