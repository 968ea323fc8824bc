/* Downsampling of (timestamp ms, value) points into fixed buckets; see prts/metrics.h. */
#include "prts/lineindex.h" /* PRTS_OK, PRTS_E_NULL */
#include "prts/metrics.h"

#include <math.h>
#include <stdbool.h>

int prts_downsample(const int64_t *timestamps, const double *values, size_t n, int64_t start,
                    int64_t width, size_t buckets, uint64_t *count, double *sum, double *min,
                    double *max, double *last, int64_t *last_timestamp) {
    if (n > 0 && (timestamps == NULL || values == NULL)) return PRTS_E_NULL;
    if (buckets > 0 && (count == NULL || sum == NULL || min == NULL || max == NULL ||
                        last == NULL || last_timestamp == NULL))
        return PRTS_E_NULL;
    if (width <= 0 || buckets > PRTS_DOWNSAMPLE_MAX_BUCKETS) return PRTS_METRICS_E_RANGE;

    for (size_t b = 0; b < buckets; b++) {
        count[b] = 0;
        sum[b] = 0.0;
        min[b] = max[b] = last[b] = NAN;
        last_timestamp[b] = INT64_MIN;
    }
    /* Offsets from start are taken in uint64_t: t - start of two int64_t can exceed
     * INT64_MAX, and the range end start + width * buckets can overflow; span saturates,
     * and a saturated span means every offset (< 2**64 <= width * buckets) is in range. */
    uint64_t w = (uint64_t)width;
    bool saturated = buckets > 0 && w > UINT64_MAX / buckets;
    uint64_t span = saturated ? UINT64_MAX : w * buckets;
    /* The bucket being filled lives in locals: time series mostly come in order, and
     * read-modify-writes through the arrays would chain every point of a bucket to the
     * previous one through memory (store-forwarding latency), and cost a division each. */
    bool open = false;
    size_t cb = 0;
    uint64_t c_lo = 0, c_count = 0;
    double c_sum = 0.0, c_min = NAN, c_max = NAN, c_last = NAN;
    int64_t c_lt = INT64_MIN;
    for (size_t i = 0; i < n; i++) {
        double v = values[i];
        if (isnan(v)) return PRTS_METRICS_E_NAN;
        int64_t t = timestamps[i];
        if (t < start) continue;
        uint64_t d = (uint64_t)t - (uint64_t)start;
        if (d >= span && !saturated) continue;
        if (!open || d < c_lo || d - c_lo >= w) {
            if (open) {
                count[cb] = c_count;
                sum[cb] = c_sum;
                min[cb] = c_min;
                max[cb] = c_max;
                last[cb] = c_last;
                last_timestamp[cb] = c_lt;
            }
            open = true;
            cb = (size_t)(d / w);
            c_lo = (uint64_t)cb * w;
            c_count = count[cb];
            c_sum = sum[cb];
            c_min = min[cb];
            c_max = max[cb];
            c_last = last[cb];
            c_lt = last_timestamp[cb];
        }
        if (c_count++ == 0) {
            c_sum = c_min = c_max = c_last = v;
            c_lt = t;
            continue;
        }
        /* Selects, not branches: on unsorted input "is it later" is a coin toss that a
         * branch predictor loses half the time. >=: on a tie the later position wins. */
        bool later = t >= c_lt;
        c_sum += v;
        c_min = v < c_min ? v : c_min;
        c_max = v > c_max ? v : c_max;
        c_last = later ? v : c_last;
        c_lt = later ? t : c_lt;
    }
    if (open) {
        count[cb] = c_count;
        sum[cb] = c_sum;
        min[cb] = c_min;
        max[cb] = c_max;
        last[cb] = c_last;
        last_timestamp[cb] = c_lt;
    }
    return PRTS_OK;
}
