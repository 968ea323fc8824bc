/* Metric engine: a mergeable DDSketch (relative-error quantiles) and time-bucket downsampling.
 *
 * Return codes: PRTS_OK (0) and PRTS_E_NULL / PRTS_E_CAPACITY from prts/lineindex.h, plus the
 * codes below. They sit in their own range (-100 and down) so that engines written in
 * parallel cannot give one number two meanings; appliance/native.py maps each to an
 * exception.
 *
 * DDSketch (Masson, Rim, Lee, VLDB 2019). A positive value x goes to the bin with key
 * ceil(log(x) / log(gamma)), gamma = (1 + a) / (1 - a), so bin k holds (gamma^(k-1), gamma^k]
 * and reports 2 gamma^k / (1 + gamma), which is within a relative error a of everything in
 * it. A negative value goes to a mirror store under key -ceil(log(-x) / log(gamma)), so that
 * in both stores a larger key means a larger value. Values with |x| below DBL_MIN * gamma
 * (zeros and subnormals) are only counted, and reported as 0. NaN and infinities are refused.
 *
 * Bounded memory, collapsing policy: each store keeps at most max_bins consecutive keys.
 * When a store would span more, every count below key (highest key - max_bins + 1) is
 * moved to that key ("collapse the lowest bins"). In the mirror store the lowest keys are
 * the most negative values, so in both stores it is the lowest values that lose accuracy
 * and the upper quantiles (latencies) keep their guarantee. The state is a function of the
 * multiset of values only, not of the order of insertion: hence merge(A, B) equals the
 * sketch of A's and B's values together (the float sum aside, which depends on order).
 * Memory: at most about 2 * (2 * max_bins + 4) * 8 bytes per sketch, grown on demand.
 *
 * Quantile q: with n the count, the element of rank r = min(floor(q * (n - 1)), n - 1)
 * (0-based, ascending) is looked up; the reported value is its bin's representative,
 * clamped to [min, max], except for ranks 0 and n - 1, which are min and max exactly.
 *
 * Serialised form (version 1, little-endian):
 *   0  "PDDS"  4 magic            4  u8 version = 1        5  u8 flags = 0   6 u16 reserved = 0
 *   8  u32 total length in bytes (all of it, checksum included)
 *  12  u32 max_bins              16  f64 relative accuracy
 *  24  u64 count                 32  u64 zero count
 *  40  f64 sum                   48  f64 min               56  f64 max
 *  64  negative store, then positive store, each: i32 lowest key, LEB128 number of bins,
 *      then that many LEB128 counts (the first and the last non-zero; an empty store is
 *      key 0 and 0 bins)
 *  end-4  u32 CRC-32 (IEEE, as zlib.crc32) of every byte before it
 * An empty sketch has count 0, sum 0, min +inf, max -inf. Deserialisation checks, in this
 * order: magic, version, declared length against the buffer, checksum, then the content;
 * canonical encodings only, so deserialise -> serialise gives back the same bytes.
 *
 * A sketch is not thread-safe: callers serialise access to one sketch.
 */
#ifndef PRTS_METRICS_H
#define PRTS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define PRTS_METRICS_E_NAN (-101)       /* a value was NaN */
#define PRTS_METRICS_E_INFINITE (-102)  /* a sketch was given an infinite value (no bin holds it) */
#define PRTS_METRICS_E_RANGE (-103)     /* a parameter is outside its documented range */
#define PRTS_METRICS_E_NOMEM (-104)     /* memory allocation failed; nothing was changed */
#define PRTS_METRICS_E_OVERFLOW (-105)  /* a count would pass 2**64 - 1; nothing was changed */
#define PRTS_DDSKETCH_E_MISMATCH (-106) /* merge of sketches with different relative accuracy */
#define PRTS_DDSKETCH_E_EMPTY (-107)    /* quantile of an empty sketch */
#define PRTS_DDSKETCH_E_MAGIC (-110)    /* the bytes do not start with "PDDS" */
#define PRTS_DDSKETCH_E_VERSION (-111)  /* a format version this build does not read */
#define PRTS_DDSKETCH_E_TRUNCATED (-112) /* the bytes end before the declared length */
#define PRTS_DDSKETCH_E_LENGTH (-113)   /* declared length and buffer or content disagree */
#define PRTS_DDSKETCH_E_CHECKSUM (-114) /* the CRC-32 does not match */
#define PRTS_DDSKETCH_E_CORRUPT (-115)  /* checksummed but inconsistent content */

#define PRTS_DDSKETCH_DEFAULT_MAX_BINS 2048
#define PRTS_DDSKETCH_MIN_BINS 16
#define PRTS_DDSKETCH_MAX_BINS 1048576
#define PRTS_DDSKETCH_FORMAT_VERSION 1
#define PRTS_DDSKETCH_HEADER_SIZE 64
#define PRTS_DOWNSAMPLE_MAX_BUCKETS 16777216

/* The relative accuracy a must lie in [1e-6, 0.5]; 0.01 is the default of appliance/native.py. */

typedef struct prts_ddsketch prts_ddsketch;

/* Create an empty sketch in *out (NULL on failure). */
int prts_ddsketch_new(double relative_accuracy, uint32_t max_bins, prts_ddsketch **out);
void prts_ddsketch_free(prts_ddsketch *sketch);

/* Add one value, or n values. Both are all-or-nothing: a NaN or infinite value anywhere in
 * the array, an allocation failure or a count overflow leaves the sketch as it was. */
int prts_ddsketch_add(prts_ddsketch *sketch, double value);
int prts_ddsketch_add_many(prts_ddsketch *sketch, const double *values, size_t n);

/* Add src's values into dst (src unchanged; dst == src doubles every count). Needs the same
 * relative accuracy; dst keeps its own max_bins. All-or-nothing like add. */
int prts_ddsketch_merge(prts_ddsketch *dst, const prts_ddsketch *src);

/* The q-quantile, q in [0, 1], into *out. */
int prts_ddsketch_quantile(const prts_ddsketch *sketch, double q, double *out);

uint64_t prts_ddsketch_count(const prts_ddsketch *sketch);
double prts_ddsketch_sum(const prts_ddsketch *sketch);
double prts_ddsketch_min(const prts_ddsketch *sketch); /* +inf when empty */
double prts_ddsketch_max(const prts_ddsketch *sketch); /* -inf when empty */
double prts_ddsketch_relative_accuracy(const prts_ddsketch *sketch);
uint32_t prts_ddsketch_max_bins(const prts_ddsketch *sketch);

/* Bytes that prts_ddsketch_serialize will write (0 for a NULL sketch). */
size_t prts_ddsketch_serialized_size(const prts_ddsketch *sketch);
/* Write the sketch to buf[0..capacity); *written gets the size, which is also what a too
 * small buffer is answered with, together with PRTS_E_CAPACITY. */
int prts_ddsketch_serialize(const prts_ddsketch *sketch, uint8_t *buf, size_t capacity,
                            size_t *written);
/* Read a sketch from exactly buf[0..len) into *out (NULL on failure). */
int prts_ddsketch_deserialize(const uint8_t *buf, size_t len, prts_ddsketch **out);

/* Downsample n points (timestamps[i] in ms, values[i]) into `buckets` buckets of `width` ms
 * from `start`: bucket b holds start + b * width <= t < start + (b + 1) * width. Points
 * outside every bucket are ignored; the input need not be sorted. For each bucket: count,
 * sum (in array order), min, max, and last = the value with the greatest timestamp (on a
 * tie, the later array position) with last_timestamp its timestamp. An empty bucket has
 * count 0, sum 0, min = max = last = NaN, last_timestamp = INT64_MIN. A NaN value anywhere
 * (even out of range) is refused with PRTS_METRICS_E_NAN; infinities are ordinary values.
 * width > 0 and buckets <= PRTS_DOWNSAMPLE_MAX_BUCKETS, else PRTS_METRICS_E_RANGE. The
 * outputs are unspecified after an error. */
int prts_downsample(const int64_t *timestamps, const double *values, size_t n, int64_t start,
                    int64_t width, size_t buckets, uint64_t *count, double *sum, double *min,
                    double *max, double *last, int64_t *last_timestamp);

#endif
