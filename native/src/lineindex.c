#include "prts/lineindex.h"

#include <string.h>

size_t prts_line_count(const uint8_t *buf, size_t len) {
    if (buf == NULL || len == 0) return 0;
    size_t n = 1;
    const uint8_t *p = buf, *end = buf + len;
    /* memchr is vectorised by glibc; a byte loop is several times slower. */
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (++p == end) break; /* a final newline ends a line, it does not start one */
        n++;
    }
    return n;
}

int prts_line_starts(const uint8_t *buf, size_t len, uint64_t base, uint64_t *out,
                     size_t *count) {
    if (count == NULL || (len > 0 && buf == NULL)) return PRTS_E_NULL;
    size_t needed = prts_line_count(buf, len);
    if (needed > *count || (needed > 0 && out == NULL)) {
        *count = needed;
        return PRTS_E_CAPACITY;
    }
    *count = needed;
    if (needed == 0) return PRTS_OK;
    size_t i = 0;
    out[i++] = base;
    const uint8_t *p = buf, *end = buf + len;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        if (++p == end) break;
        out[i++] = base + (uint64_t)(p - buf);
    }
    return PRTS_OK;
}
