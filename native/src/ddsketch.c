/* DDSketch: relative-error quantile sketch; see prts/metrics.h for the contract and format.
 *
 * Keys are int64_t internally (the key domain of a >= 1e-6 is about +-3.6e8, so no key
 * arithmetic can overflow) and i32 in the serialised form. Each store keeps its counts in a
 * window bins[0..cap) for keys off..off+cap-1; every count outside [lo, hi] is zero. Changes
 * that may need memory are split in two: window_prepare allocates (and may fail) without
 * touching the sketch, store_commit then moves the counts and cannot fail. That is what
 * makes add_many and merge all-or-nothing.
 */
#include "prts/metrics.h"
#include "prts/lineindex.h" /* PRTS_OK, PRTS_E_NULL, PRTS_E_CAPACITY */

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MIN_ACCURACY 1e-6
#define MAX_ACCURACY 0.5
/* A little spare room so that a window is not reallocated at every new key of a rising
 * stream; a window never exceeds 2 * max_bins + WINDOW_SPARE keys. */
#define WINDOW_MIN 64
#define WINDOW_SPARE 4

typedef struct {
    uint64_t *bins;
    int64_t off, cap;
    int64_t lo, hi; /* lowest and highest non-empty key; INT64_MAX, INT64_MIN when empty */
    uint64_t total;
} store;

struct prts_ddsketch {
    double accuracy, ln_gamma, inv_ln_gamma, rep_factor, min_indexable;
    int64_t key_min, key_max; /* keys of min_indexable and DBL_MAX: the positive key domain */
    int64_t max_bins;
    uint64_t count, zero;
    double sum, min, max;
    store neg, pos;
};

typedef struct {
    uint64_t *bins; /* NULL: the current window already fits */
    int64_t off, cap;
} window;

/* ceil(log(ax) / ln gamma) for ax >= min_indexable. A multiplication by the reciprocal
 * instead of a division (faster), and a hand-made ceil because without SSE4.1 ceil() is a
 * library call; tests/reference_metrics.py computes exactly the same doubles. */
static inline int64_t key_from(double ax, double inv_ln_gamma) {
    double y = log(ax) * inv_ln_gamma;
    int64_t k = (int64_t)y; /* |y| < 4e8: in range */
    return (double)k < y ? k + 1 : k;
}

static inline int64_t key_of(const prts_ddsketch *s, double ax) {
    return key_from(ax, s->inv_ln_gamma);
}

/* 2 gamma^k / (1 + gamma), within the relative accuracy of every value of bin k. It
 * overflows to +inf only for the top bin, and the quantile clamps to max anyway. */
static double rep_of(const prts_ddsketch *s, int64_t k) {
    return exp((double)k * s->ln_gamma) * s->rep_factor;
}

static void store_init(store *st) {
    memset(st, 0, sizeof *st);
    /* An empty range that no key is inside, and that store_put's min/max start from. */
    st->lo = INT64_MAX;
    st->hi = INT64_MIN;
}

/* Where the counts must go for a store to take keys [klo, khi] on top of what it holds:
 * the collapse floor (top key - max_bins + 1; every key below it is counted at it) and the
 * window [need_lo, need_hi] the result needs, widened by margin keys each side. */
static void store_plan(const store *st, int64_t klo, int64_t khi, int64_t max_bins,
                       int64_t margin, int64_t *floor_key, int64_t *need_lo, int64_t *need_hi) {
    int64_t top = khi, low = klo;
    if (st->total) {
        if (st->hi > top) top = st->hi;
        if (st->lo < low) low = st->lo;
    }
    int64_t f = top - max_bins + 1;
    low -= margin;
    *floor_key = f;
    *need_lo = low < f ? f : low;
    *need_hi = top + margin;
}

static int window_prepare(const store *st, int64_t need_lo, int64_t need_hi, int64_t max_bins,
                          window *w) {
    w->bins = NULL;
    if (st->cap > 0 && need_lo >= st->off && need_hi < st->off + st->cap) return PRTS_OK;
    int64_t span = need_hi - need_lo + 1;
    int64_t limit = 2 * max_bins + WINDOW_SPARE;
    int64_t cap = st->cap > WINDOW_MIN ? st->cap : WINDOW_MIN;
    while (cap < 2 * span && cap < limit) cap *= 2;
    if (cap > limit) cap = limit;
    if (cap < span) cap = span; /* unreachable: callers keep span <= max_bins + 2 */
    /* Leave most of the spare room on the side the store is growing towards. */
    int64_t spare = cap - span, below;
    if (st->cap == 0)
        below = spare / 2;
    else if (need_hi >= st->off + st->cap)
        below = spare / 4;
    else
        below = spare - spare / 4;
    /* cap <= 2 * PRTS_DDSKETCH_MAX_BINS + 4: the byte size cannot overflow size_t. */
    uint64_t *bins = calloc((size_t)cap, sizeof *bins);
    if (bins == NULL) return PRTS_METRICS_E_NOMEM;
    w->bins = bins;
    w->off = need_lo - below;
    w->cap = cap;
    return PRTS_OK;
}

static void window_discard(window *w) {
    free(w->bins);
    w->bins = NULL;
}

/* Install w (if any) and move every count below floor_key to floor_key. The caller's plan
 * guarantees that the window holds [max(lo, floor), max(hi, floor)]. */
static void store_commit(store *st, window *w, int64_t floor_key) {
    if (w->bins != NULL) {
        if (st->total) {
            for (int64_t j = st->lo; j <= st->hi; j++) {
                uint64_t c = st->bins[j - st->off];
                int64_t jj = j < floor_key ? floor_key : j;
                w->bins[jj - w->off] += c;
            }
        }
        free(st->bins);
        st->bins = w->bins;
        st->off = w->off;
        st->cap = w->cap;
        w->bins = NULL;
    } else if (st->total && st->lo < floor_key) {
        int64_t end = st->hi < floor_key ? st->hi : floor_key - 1;
        uint64_t moved = 0;
        for (int64_t j = st->lo; j <= end; j++) {
            moved += st->bins[j - st->off];
            st->bins[j - st->off] = 0;
        }
        st->bins[floor_key - st->off] += moved;
    }
    if (st->total) {
        if (st->lo < floor_key) st->lo = floor_key;
        if (st->hi < floor_key) st->hi = floor_key;
    }
}

/* Count n values at key k, which the window already holds and which is >= the floor. */
static inline void store_put(store *st, int64_t k, uint64_t n) {
    st->bins[k - st->off] += n;
    if (k < st->lo) st->lo = k;
    if (k > st->hi) st->hi = k;
    st->total += n;
}

/* The general path of adding one key: grow and collapse as needed. */
static int store_add_slow(store *st, int64_t k, int64_t max_bins) {
    int64_t floor_key, need_lo, need_hi;
    window w;
    store_plan(st, k, k, max_bins, 0, &floor_key, &need_lo, &need_hi);
    int rc = window_prepare(st, need_lo, need_hi, max_bins, &w);
    if (rc != PRTS_OK) return rc;
    store_commit(st, &w, floor_key);
    store_put(st, k < floor_key ? floor_key : k, 1);
    return PRTS_OK;
}

/* ---- creation --------------------------------------------------------------------- */

static bool params_valid(double accuracy, uint32_t max_bins) {
    return accuracy >= MIN_ACCURACY && accuracy <= MAX_ACCURACY &&
           max_bins >= PRTS_DDSKETCH_MIN_BINS && max_bins <= PRTS_DDSKETCH_MAX_BINS;
}

static prts_ddsketch *sketch_alloc(double accuracy, uint32_t max_bins) {
    prts_ddsketch *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    double gamma = (1.0 + accuracy) / (1.0 - accuracy);
    s->accuracy = accuracy;
    s->ln_gamma = log(gamma);
    s->inv_ln_gamma = 1.0 / s->ln_gamma;
    s->rep_factor = 2.0 / (1.0 + gamma);
    /* Below DBL_MIN * gamma a bin's representative would be subnormal and lose its
     * relative accuracy, so such values are only counted, as zeros. */
    s->min_indexable = DBL_MIN * gamma;
    s->key_min = key_of(s, s->min_indexable);
    s->key_max = key_of(s, DBL_MAX);
    s->max_bins = max_bins;
    s->min = INFINITY;
    s->max = -INFINITY;
    store_init(&s->neg);
    store_init(&s->pos);
    return s;
}

int prts_ddsketch_new(double relative_accuracy, uint32_t max_bins, prts_ddsketch **out) {
    if (out == NULL) return PRTS_E_NULL;
    *out = NULL;
    if (isnan(relative_accuracy)) return PRTS_METRICS_E_NAN;
    if (!params_valid(relative_accuracy, max_bins)) return PRTS_METRICS_E_RANGE;
    *out = sketch_alloc(relative_accuracy, max_bins);
    return *out == NULL ? PRTS_METRICS_E_NOMEM : PRTS_OK;
}

void prts_ddsketch_free(prts_ddsketch *s) {
    if (s == NULL) return;
    free(s->neg.bins);
    free(s->pos.bins);
    free(s);
}

/* ---- adding ----------------------------------------------------------------------- */

int prts_ddsketch_add(prts_ddsketch *s, double x) {
    if (s == NULL) return PRTS_E_NULL;
    if (isnan(x)) return PRTS_METRICS_E_NAN;
    if (isinf(x)) return PRTS_METRICS_E_INFINITE;
    if (s->count == UINT64_MAX) return PRTS_METRICS_E_OVERFLOW;
    double ax = fabs(x);
    if (ax >= s->min_indexable) {
        store *st = x > 0 ? &s->pos : &s->neg;
        int64_t k = x > 0 ? key_of(s, ax) : -key_of(s, ax);
        if (k >= st->lo && k <= st->hi) {
            st->bins[k - st->off]++;
            st->total++;
        } else {
            int rc = store_add_slow(st, k, s->max_bins);
            if (rc != PRTS_OK) return rc; /* before any other field changed */
        }
    } else {
        s->zero++;
    }
    s->count++;
    s->sum += x;
    if (x < s->min) s->min = x;
    if (x > s->max) s->max = x;
    return PRTS_OK;
}

/* Plan and reserve a store for a batch whose keys lie in [klo, khi] (plus a one-key margin,
 * see ins_put), so that the insert loop needs no memory and cannot fail. Returns the floor
 * the loop clamps to (every key below it ends there anyway, as the batch's top key makes it
 * the floor) and that top key. */
static int batch_prepare(const store *st, int64_t klo, int64_t khi, int64_t max_bins,
                         window *w, int64_t *floor_key, int64_t *top) {
    int64_t need_lo, need_hi;
    store_plan(st, klo, khi, max_bins, 1, floor_key, &need_lo, &need_hi);
    *top = need_hi - 1;
    return window_prepare(st, need_lo, need_hi, max_bins, w);
}

/* The insert loop's view of one store, in locals: the counts are uint64_t like the store's
 * own fields, so with st->bins[k]++ the compiler would have to assume that each increment
 * may change st->lo, st->hi, st->off or st->total, and reload them. */
typedef struct {
    uint64_t *bins;
    int64_t off, wlo, top, floor_key, lo, hi;
    uint64_t added;
} inserter;

static void ins_begin(inserter *in, const store *st, int64_t floor_key, int64_t top) {
    in->bins = st->bins;
    in->off = in->wlo = st->off;
    in->floor_key = floor_key;
    in->top = top;
    in->lo = st->lo;
    in->hi = st->hi;
    in->added = 0;
}

static void ins_end(const inserter *in, store *st) {
    if (in->added == 0) return;
    if (in->lo < st->lo) st->lo = in->lo;
    if (in->hi > st->hi) st->hi = in->hi;
    st->total += in->added;
}

static inline void ins_put(inserter *in, int64_t k) {
    /* Keys below the floor are counted at it (collapse). The window holds [floor, top] and
     * one key below the batch's lowest: every key of the batch lies there as long as log()
     * is monotonic, which a faithfully rounded log (glibc's) breaks by one key at most. The
     * other two clamps only keep memory safe should a libm break that. */
    if (k < in->floor_key) k = in->floor_key;
    if (k > in->top) k = in->top;
    if (k < in->wlo) k = in->wlo;
    in->bins[k - in->off]++;
    in->lo = k < in->lo ? k : in->lo;
    in->hi = k > in->hi ? k : in->hi;
    in->added++;
}

/* Keys are computed for a chunk of values first and counted after: a count increment
 * whose address depends on a log() result, followed by the next log() call, ran at half
 * speed (12.5 instead of 6.7 ns a value on this machine's EPYC), apparently the memory
 * disambiguation stalling the call's stack traffic behind the pending store. */
#define CHUNK 256

int prts_ddsketch_add_many(prts_ddsketch *s, const double *v, size_t n) {
    if (s == NULL || (n > 0 && v == NULL)) return PRTS_E_NULL;
    if (n == 0) return PRTS_OK;
    if (n > UINT64_MAX - s->count) return PRTS_METRICS_E_OVERFLOW;

    /* Pass 1, no side effects: refuse bad values, and find the key range each store must
     * take: the positive store's runs from the smallest value >= mi (pmin) to max, the
     * negative store's from min to the largest value <= -mi (nmax). The sum is accumulated
     * in array order, as repeated add() would. Written as selects so that it compiles to
     * min/max instructions rather than branches on the data. */
    double sum = s->sum, mn = s->min, mx = s->max, mi = s->min_indexable;
    double pmin = INFINITY, nmax = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double x = v[i];
        if (!isfinite(x)) return isnan(x) ? PRTS_METRICS_E_NAN : PRTS_METRICS_E_INFINITE;
        sum += x;
        mn = x < mn ? x : mn;
        mx = x > mx ? x : mx;
        double p = x >= mi ? x : INFINITY, q = x <= -mi ? x : -INFINITY;
        pmin = p < pmin ? p : pmin;
        nmax = q > nmax ? q : nmax;
    }
    /* Stores the batch adds to; mn and mx include the sketch's earlier values, but those
     * keys are in the stores already, so widening by them changes nothing. */
    bool has_pos = pmin != INFINITY, has_neg = nmax != -INFINITY;

    window wpos = {NULL, 0, 0}, wneg = {NULL, 0, 0};
    int64_t pfloor = 0, ptop = 0, nfloor = 0, ntop = 0;
    int rc = PRTS_OK;
    if (has_pos)
        rc = batch_prepare(&s->pos, key_of(s, pmin), key_of(s, mx), s->max_bins, &wpos, &pfloor,
                           &ptop);
    if (rc == PRTS_OK && has_neg)
        rc = batch_prepare(&s->neg, -key_of(s, -mn), -key_of(s, -nmax), s->max_bins, &wneg,
                           &nfloor, &ntop);
    if (rc != PRTS_OK) {
        window_discard(&wpos);
        window_discard(&wneg);
        return rc;
    }
    /* From here on nothing can fail. */
    if (has_pos) store_commit(&s->pos, &wpos, pfloor);
    if (has_neg) store_commit(&s->neg, &wneg, nfloor);

    inserter ip, in;
    ins_begin(&ip, &s->pos, pfloor, ptop);
    ins_begin(&in, &s->neg, nfloor, ntop);
    double inv = s->inv_ln_gamma;
    uint64_t zeros = 0;
    int64_t pkeys[CHUNK], nkeys[CHUNK];
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK, np = 0, nn = 0;
        for (size_t j = 0; j < m; j++) {
            double x = v[i + j], ax = fabs(x);
            if (ax < mi) {
                zeros++;
                continue;
            }
            int64_t k = key_from(ax, inv);
            if (x > 0)
                pkeys[np++] = k;
            else
                nkeys[nn++] = -k;
        }
        for (size_t j = 0; j < np; j++) ins_put(&ip, pkeys[j]);
        for (size_t j = 0; j < nn; j++) ins_put(&in, nkeys[j]);
    }
    ins_end(&ip, &s->pos);
    ins_end(&in, &s->neg);
    s->zero += zeros;
    s->count += n;
    s->sum = sum;
    s->min = mn;
    s->max = mx;
    return PRTS_OK;
}

/* ---- merging ---------------------------------------------------------------------- */

static void store_double(store *st) {
    for (int64_t j = st->lo; st->total && j <= st->hi; j++) st->bins[j - st->off] *= 2;
    st->total *= 2;
}

int prts_ddsketch_merge(prts_ddsketch *dst, const prts_ddsketch *src) {
    if (dst == NULL || src == NULL) return PRTS_E_NULL;
    if (dst->accuracy != src->accuracy) return PRTS_DDSKETCH_E_MISMATCH;
    if (src->count == 0) return PRTS_OK;
    if (src->count > UINT64_MAX - dst->count) return PRTS_METRICS_E_OVERFLOW;
    if (dst == src) { /* every per-bin count <= count, so none of these overflows */
        store_double(&dst->pos);
        store_double(&dst->neg);
        dst->zero *= 2;
        dst->count *= 2;
        dst->sum += dst->sum;
        return PRTS_OK;
    }

    const store *ss[2] = {&src->pos, &src->neg};
    store *ds[2] = {&dst->pos, &dst->neg};
    window w[2] = {{NULL, 0, 0}, {NULL, 0, 0}};
    int64_t floor_key[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
        if (ss[i]->total == 0) continue;
        int64_t need_lo, need_hi;
        store_plan(ds[i], ss[i]->lo, ss[i]->hi, dst->max_bins, 0, &floor_key[i], &need_lo,
                   &need_hi);
        int rc = window_prepare(ds[i], need_lo, need_hi, dst->max_bins, &w[i]);
        if (rc != PRTS_OK) {
            window_discard(&w[0]);
            window_discard(&w[1]);
            return rc;
        }
    }
    for (int i = 0; i < 2; i++) {
        if (ss[i]->total == 0) continue;
        store_commit(ds[i], &w[i], floor_key[i]);
        for (int64_t j = ss[i]->lo; j <= ss[i]->hi; j++) {
            uint64_t c = ss[i]->bins[j - ss[i]->off];
            if (c) store_put(ds[i], j < floor_key[i] ? floor_key[i] : j, c);
        }
    }
    dst->zero += src->zero;
    dst->count += src->count;
    dst->sum += src->sum;
    if (src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
    return PRTS_OK;
}

/* ---- reading ---------------------------------------------------------------------- */

int prts_ddsketch_quantile(const prts_ddsketch *s, double q, double *out) {
    if (s == NULL || out == NULL) return PRTS_E_NULL;
    if (isnan(q)) return PRTS_METRICS_E_NAN;
    if (!(q >= 0.0 && q <= 1.0)) return PRTS_METRICS_E_RANGE;
    if (s->count == 0) return PRTS_DDSKETCH_E_EMPTY;
    uint64_t last = s->count - 1;
    double rank = q * (double)last;
    /* (double)last may round up to 2**64, which does not convert back. */
    uint64_t r = rank >= 18446744073709551616.0 ? last : (uint64_t)rank;
    if (r > last) r = last;
    /* The lowest and highest ranks are known exactly. */
    if (r == 0) {
        *out = s->min;
        return PRTS_OK;
    }
    if (r == last) {
        *out = s->max;
        return PRTS_OK;
    }

    /* Walk the values upwards: negative store by rising key, zeros, positive store. */
    uint64_t seen = 0;
    double v = 0.0;
    bool found = false;
    for (int64_t j = s->neg.lo; s->neg.total && j <= s->neg.hi; j++) {
        seen += s->neg.bins[j - s->neg.off];
        if (seen > r) {
            v = -rep_of(s, -j);
            found = true;
            break;
        }
    }
    if (!found) {
        seen += s->zero;
        found = seen > r; /* v stays 0.0 */
    }
    for (int64_t j = s->pos.lo; !found && s->pos.total && j <= s->pos.hi; j++) {
        seen += s->pos.bins[j - s->pos.off];
        if (seen > r) {
            v = rep_of(s, j);
            found = true;
        }
    }
    /* The true quantile lies in [min, max]: clamping can only bring the estimate closer. */
    if (v < s->min) v = s->min;
    if (v > s->max) v = s->max;
    *out = v;
    return PRTS_OK;
}

uint64_t prts_ddsketch_count(const prts_ddsketch *s) { return s ? s->count : 0; }
double prts_ddsketch_sum(const prts_ddsketch *s) { return s ? s->sum : 0.0; }
double prts_ddsketch_min(const prts_ddsketch *s) { return s ? s->min : INFINITY; }
double prts_ddsketch_max(const prts_ddsketch *s) { return s ? s->max : -INFINITY; }
double prts_ddsketch_relative_accuracy(const prts_ddsketch *s) { return s ? s->accuracy : 0.0; }
uint32_t prts_ddsketch_max_bins(const prts_ddsketch *s) { return s ? (uint32_t)s->max_bins : 0; }

/* ---- serialisation ---------------------------------------------------------------- */

static const uint32_t crc_table[256] = {
    0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu,
    0xe963a535u, 0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u,
    0x09b64c2bu, 0x7eb17cbdu, 0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u,
    0xf3b97148u, 0x84be41deu, 0x1adad47du, 0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u,
    0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu, 0x14015c4fu, 0x63066cd9u,
    0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u, 0xa2677172u,
    0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
    0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u,
    0x26d930acu, 0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u,
    0xcfba9599u, 0xb8bda50fu, 0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u,
    0x2f6f7c87u, 0x58684c11u, 0xc1611dabu, 0xb6662d3du, 0x76dc4190u, 0x01db7106u,
    0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu, 0x9fbfe4a5u, 0xe8b8d433u,
    0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu, 0x086d3d2du,
    0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
    0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u,
    0x8bbeb8eau, 0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u,
    0x4db26158u, 0x3ab551ceu, 0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u,
    0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au, 0x346ed9fcu, 0xad678846u, 0xda60b8d0u,
    0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u, 0x5005713cu, 0x270241aau,
    0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u, 0xce61e49fu,
    0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
    0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au,
    0xead54739u, 0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u,
    0x0d6d6a3eu, 0x7a6a5aa8u, 0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u,
    0xf00f9344u, 0x8708a3d2u, 0x1e01f268u, 0x6906c2feu, 0xf762575du, 0x806567cbu,
    0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u, 0x10da7a5au, 0x67dd4accu,
    0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u, 0xa1d1937eu,
    0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
    0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u,
    0x316e8eefu, 0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u,
    0xcc0c7795u, 0xbb0b4703u, 0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u,
    0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u, 0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du,
    0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au, 0x9c0906a9u, 0xeb0e363fu,
    0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu, 0x0cb61b38u,
    0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
    0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u,
    0x88085ae6u, 0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u,
    0x616bffd3u, 0x166ccf45u, 0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u,
    0xa7672661u, 0xd06016f7u, 0x4969474du, 0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu,
    0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u, 0x47b2cf7fu, 0x30b5ffe9u,
    0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u, 0xcdd70693u,
    0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
    0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du,
};

/* CRC-32 as zlib.crc32 (reflected, polynomial 0xEDB88320): any single corrupted byte, and
 * any burst up to 32 bits, is caught before the content is interpreted. */
static uint32_t crc32_ieee(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static const uint8_t MAGIC[4] = {'P', 'D', 'D', 'S'};
#define OFF_VERSION 4
#define OFF_FLAGS 5
#define OFF_RESERVED 6
#define OFF_LENGTH 8
#define CRC_SIZE 4
/* Each store is at least a 4-byte key and a 1-byte bin count. */
#define MIN_SIZE (PRTS_DDSKETCH_HEADER_SIZE + 2 * 5 + CRC_SIZE)

static size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint64_t store_nbins(const store *st) {
    return st->total ? (uint64_t)(st->hi - st->lo + 1) : 0;
}

static size_t store_size(const store *st) {
    uint64_t nbins = store_nbins(st);
    size_t n = 4 + varint_size(nbins);
    for (uint64_t i = 0; i < nbins; i++) n += varint_size(st->bins[st->lo - st->off + (int64_t)i]);
    return n;
}

size_t prts_ddsketch_serialized_size(const prts_ddsketch *s) {
    if (s == NULL) return 0;
    /* At most 2 * 2**20 bins of 10 bytes: far below 2**32, the limit of the length field. */
    return PRTS_DDSKETCH_HEADER_SIZE + store_size(&s->neg) + store_size(&s->pos) + CRC_SIZE;
}

static uint8_t *put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}

static uint8_t *put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
    return p + 4;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
    return p + 8;
}

static uint8_t *put_f64(uint8_t *p, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return put_u64(p, bits);
}

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_store(uint8_t *p, const store *st) {
    uint64_t nbins = store_nbins(st);
    /* Keys lie within +-3.6e8 (see key_of): they fit an i32. */
    p = put_u32(p, nbins ? (uint32_t)(int32_t)st->lo : 0);
    p = put_varint(p, nbins);
    for (uint64_t i = 0; i < nbins; i++) p = put_varint(p, st->bins[st->lo - st->off + (int64_t)i]);
    return p;
}

int prts_ddsketch_serialize(const prts_ddsketch *s, uint8_t *buf, size_t capacity,
                            size_t *written) {
    if (s == NULL || written == NULL) return PRTS_E_NULL;
    size_t size = prts_ddsketch_serialized_size(s);
    *written = size;
    if (capacity < size) return PRTS_E_CAPACITY;
    if (buf == NULL) return PRTS_E_NULL;
    uint8_t *p = buf;
    memcpy(p, MAGIC, sizeof MAGIC);
    p += sizeof MAGIC;
    *p++ = PRTS_DDSKETCH_FORMAT_VERSION;
    *p++ = 0; /* flags */
    p = put_u16(p, 0);
    p = put_u32(p, (uint32_t)size);
    p = put_u32(p, (uint32_t)s->max_bins);
    p = put_f64(p, s->accuracy);
    p = put_u64(p, s->count);
    p = put_u64(p, s->zero);
    p = put_f64(p, s->sum);
    p = put_f64(p, s->min);
    p = put_f64(p, s->max);
    p = put_store(p, &s->neg);
    p = put_store(p, &s->pos);
    put_u32(p, crc32_ieee(buf, (size_t)(p - buf)));
    return PRTS_OK;
}

/* ---- deserialisation -------------------------------------------------------------- */

/* A bounded reader over buf[pos..end): every get checks the room first. */
typedef struct {
    const uint8_t *buf;
    size_t pos, end;
} reader;

static uint32_t get_u32_at(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64_at(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static double get_f64_at(const uint8_t *p) {
    uint64_t bits = get_u64_at(p);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

/* LEB128, canonical only: at most 10 bytes, no bits beyond 64, no trailing zero byte. */
static int get_varint(reader *r, uint64_t *out) {
    uint64_t v = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (r->pos >= r->end) return PRTS_DDSKETCH_E_LENGTH;
        uint8_t b = r->buf[r->pos++];
        if (i == 9 && b > 1) return PRTS_DDSKETCH_E_CORRUPT;
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if ((b & 0x80) == 0) {
            if (b == 0 && i > 0) return PRTS_DDSKETCH_E_CORRUPT;
            *out = v;
            return PRTS_OK;
        }
    }
    return PRTS_DDSKETCH_E_CORRUPT; /* unreachable: the tenth byte has no continuation bit */
}

/* Read one store whose keys must lie in [kmin, kmax]. */
static int get_store(reader *r, store *st, int64_t kmin, int64_t kmax, int64_t max_bins) {
    if (r->end - r->pos < 4) return PRTS_DDSKETCH_E_LENGTH;
    int64_t lo = (int32_t)get_u32_at(r->buf + r->pos);
    r->pos += 4;
    uint64_t nbins;
    int rc = get_varint(r, &nbins);
    if (rc != PRTS_OK) return rc;
    if (nbins == 0) return lo == 0 ? PRTS_OK : PRTS_DDSKETCH_E_CORRUPT;
    if (nbins > (uint64_t)max_bins) return PRTS_DDSKETCH_E_CORRUPT;
    /* Each count takes a byte at least: refuse before allocating for a lie. */
    if (nbins > r->end - r->pos) return PRTS_DDSKETCH_E_LENGTH;
    int64_t hi = lo + (int64_t)nbins - 1;
    if (lo < kmin || hi > kmax) return PRTS_DDSKETCH_E_CORRUPT;
    window w;
    rc = window_prepare(st, lo, hi, max_bins, &w);
    if (rc != PRTS_OK) return rc;
    store_commit(st, &w, INT64_MIN); /* st is empty: this only installs the window */
    uint64_t total = 0;
    for (int64_t k = lo; k <= hi; k++) {
        uint64_t c;
        rc = get_varint(r, &c);
        if (rc != PRTS_OK) return rc;
        if ((k == lo || k == hi) && c == 0) return PRTS_DDSKETCH_E_CORRUPT; /* not canonical */
        if (c > UINT64_MAX - total) return PRTS_DDSKETCH_E_CORRUPT;
        total += c;
        st->bins[k - st->off] = c;
    }
    st->lo = lo;
    st->hi = hi;
    st->total = total;
    return PRTS_OK;
}

/* Which part of the value line x falls in: 0 negative store, 1 zeros, 2 positive store. */
static int region_of(const prts_ddsketch *s, double x) {
    return x <= -s->min_indexable ? 0 : x < s->min_indexable ? 1 : 2;
}

static int check_content(const prts_ddsketch *s) {
    uint64_t parts[3] = {s->neg.total, s->zero, s->pos.total};
    uint64_t total = 0;
    for (int i = 0; i < 3; i++) {
        if (parts[i] > UINT64_MAX - total) return PRTS_DDSKETCH_E_CORRUPT;
        total += parts[i];
    }
    if (total != s->count) return PRTS_DDSKETCH_E_CORRUPT;
    if (s->count == 0) {
        uint64_t sum_bits;
        memcpy(&sum_bits, &s->sum, sizeof sum_bits);
        bool ok = sum_bits == 0 && s->min == INFINITY && s->max == -INFINITY;
        return ok ? PRTS_OK : PRTS_DDSKETCH_E_CORRUPT;
    }
    if (!isfinite(s->min) || !isfinite(s->max) || s->min > s->max) return PRTS_DDSKETCH_E_CORRUPT;
    /* min must sit in the lowest occupied part, max in the highest (sum is free: a sum of
     * finite values may legitimately have overflowed to inf, or to NaN). */
    int lowest = parts[0] ? 0 : parts[1] ? 1 : 2;
    int highest = parts[2] ? 2 : parts[1] ? 1 : 0;
    if (region_of(s, s->min) != lowest || region_of(s, s->max) != highest)
        return PRTS_DDSKETCH_E_CORRUPT;
    return PRTS_OK;
}

static int deserialize(const uint8_t *buf, size_t len, prts_ddsketch **out) {
    if (len < sizeof MAGIC) /* a prefix of the magic is a truncated sketch, anything else not */
        return memcmp(buf, MAGIC, len) == 0 ? PRTS_DDSKETCH_E_TRUNCATED : PRTS_DDSKETCH_E_MAGIC;
    if (memcmp(buf, MAGIC, sizeof MAGIC) != 0) return PRTS_DDSKETCH_E_MAGIC;
    if (len <= OFF_VERSION) return PRTS_DDSKETCH_E_TRUNCATED;
    if (buf[OFF_VERSION] != PRTS_DDSKETCH_FORMAT_VERSION) return PRTS_DDSKETCH_E_VERSION;
    if (len < OFF_LENGTH + 4) return PRTS_DDSKETCH_E_TRUNCATED;
    uint32_t declared = get_u32_at(buf + OFF_LENGTH);
    if (declared < MIN_SIZE) return PRTS_DDSKETCH_E_LENGTH;
    if (len < declared) return PRTS_DDSKETCH_E_TRUNCATED;
    if (len > declared) return PRTS_DDSKETCH_E_LENGTH;
    if (crc32_ieee(buf, len - CRC_SIZE) != get_u32_at(buf + len - CRC_SIZE))
        return PRTS_DDSKETCH_E_CHECKSUM;

    if (buf[OFF_FLAGS] != 0 || buf[OFF_RESERVED] != 0 || buf[OFF_RESERVED + 1] != 0)
        return PRTS_DDSKETCH_E_CORRUPT;
    uint32_t max_bins = get_u32_at(buf + 12);
    double accuracy = get_f64_at(buf + 16);
    if (!params_valid(accuracy, max_bins)) return PRTS_DDSKETCH_E_CORRUPT;
    prts_ddsketch *s = sketch_alloc(accuracy, max_bins);
    if (s == NULL) return PRTS_METRICS_E_NOMEM;
    s->count = get_u64_at(buf + 24);
    s->zero = get_u64_at(buf + 32);
    s->sum = get_f64_at(buf + 40);
    s->min = get_f64_at(buf + 48);
    s->max = get_f64_at(buf + 56);

    reader r = {buf, PRTS_DDSKETCH_HEADER_SIZE, len - CRC_SIZE};
    int rc = get_store(&r, &s->neg, -s->key_max, -s->key_min, s->max_bins);
    if (rc == PRTS_OK) rc = get_store(&r, &s->pos, s->key_min, s->key_max, s->max_bins);
    if (rc == PRTS_OK && r.pos != r.end) rc = PRTS_DDSKETCH_E_LENGTH;
    if (rc == PRTS_OK) rc = check_content(s);
    if (rc != PRTS_OK) {
        prts_ddsketch_free(s);
        return rc;
    }
    *out = s;
    return PRTS_OK;
}

int prts_ddsketch_deserialize(const uint8_t *buf, size_t len, prts_ddsketch **out) {
    if (out == NULL || (buf == NULL && len > 0)) return PRTS_E_NULL;
    *out = NULL;
    if (len == 0) return PRTS_DDSKETCH_E_TRUNCATED;
    return deserialize(buf, len, out);
}
