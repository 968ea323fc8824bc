/* Line index: byte offsets of the line starts in a buffer. */
#ifndef PRTS_LINEINDEX_H
#define PRTS_LINEINDEX_H

#include <stddef.h>
#include <stdint.h>

/* Return codes shared by every PRTS engine; appliance/native.py maps each to an exception. */
#define PRTS_OK 0
#define PRTS_E_NULL (-1)     /* a required pointer was NULL */
#define PRTS_E_CAPACITY (-2) /* the output array is too small; *count holds the size needed */

/* Number of line starts in buf[0..len): 0 for an empty buffer, else 1 + the number of
 * '\n' bytes that are followed by at least one more byte. */
size_t prts_line_count(const uint8_t *buf, size_t len);

/* Write the offset of every line start in buf[0..len) to out[0..*count), each plus base
 * (so a caller indexing a file chunk by chunk gets file offsets). On entry *count is
 * the capacity of out; on return it is the number of line starts. When that is more than
 * the capacity, PRTS_E_CAPACITY is returned and out holds the first ones. */
int prts_line_starts(const uint8_t *buf, size_t len, uint64_t base, uint64_t *out,
                     size_t *count);

#endif
