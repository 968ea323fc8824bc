/* Literal search over a stored log: every non-overlapping match of a byte string, as
 * (line number, byte offset), left to right. */
#ifndef PRTS_SEARCH_H
#define PRTS_SEARCH_H

#include <stddef.h>
#include <stdint.h>

/* Flags for prts_search. */
#define PRTS_SEARCH_IGNORE_CASE 1 /* fold ASCII letters only; other bytes match exactly */

/* Returned by prts_search when the output is full and another match remains. */
#define PRTS_SEARCH_MORE 1
/* An argument outside its documented range (the search's own code; engines number theirs apart). */
#define PRTS_SEARCH_E_ARGUMENT (-20)

/* Implementations for prts_search_select; the tests run every one the CPU has. */
#define PRTS_SEARCH_AUTO 0     /* the fastest one this CPU supports */
#define PRTS_SEARCH_PORTABLE 1 /* libc memchr only; what non-x86 machines run */
#define PRTS_SEARCH_SSE2 2
#define PRTS_SEARCH_AVX2 3

/* Where a search resumes: a byte position in the buffer and the line number there. */
typedef struct prts_search_cursor {
    uint64_t pos;  /* in [0, len]; 0 for a first call */
    uint64_t line; /* line number of buf[pos]; the caller's first line number for a first call */
} prts_search_cursor;

/* Search buf[cursor->pos..len) for needle[0..needle_len) and write each match's line
 * number to lines[i] and its offset in buf plus base to offsets[i]. Lines are counted by
 * '\n' from cursor->line. Matches do not overlap: the search goes on after each match.
 *
 * On entry *count is the capacity of lines and offsets (either may be NULL when it is 0).
 * On return *count is the number of matches written, and:
 *   PRTS_OK           the buffer is exhausted (the cursor is at len, with the line there);
 *   PRTS_SEARCH_MORE  the output is full and at least one more match exists: the cursor
 *                     is at that match, so the next call with the same cursor returns it
 *                     first. A capacity of 0 therefore answers "where is the next match?";
 *                     a capacity of N stops after N matches (a result limit).
 *   PRTS_E_NULL       a pointer was NULL (buf may be NULL only when len is 0);
 *   PRTS_SEARCH_E_ARGUMENT  needle_len is 0, or cursor->pos > len, or flags has an unknown bit.
 * On an error nothing is written and the cursor is unchanged.
 * The search is pure (no allocation, no global state except the implementation choice);
 * the caller's buffer is only read. */
int prts_search(const uint8_t *buf, size_t len, const uint8_t *needle, size_t needle_len,
                unsigned int flags, uint64_t base, prts_search_cursor *cursor,
                uint64_t *lines, uint64_t *offsets, size_t *count);

/* Choose the implementation prts_search uses in this process (PRTS_SEARCH_AUTO after
 * load). Returns PRTS_OK, or PRTS_SEARCH_E_ARGUMENT when impl is unknown or the CPU lacks
 * it. Meant for tests and benchmarks: it is not synchronised with running searches. */
int prts_search_select(int impl);

#endif
