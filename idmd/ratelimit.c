/* SPDX-License-Identifier: MIT */
/*
 * Token buckets and concurrency caps per method class, plus per-source buckets in a bounded
 * table with least-recently-used eviction. Pure logic: time comes from the caller.
 *
 * The per-source table is a binary search tree from libc (tsearch(3), a red-black tree in
 * glibc) keyed by (class, source), threaded on a doubly linked list in order of last use. Both
 * operations a request needs (find or add, then move to the front) are O(log n); when the table
 * is full the entry at the back of the list is reused for the new source.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <search.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

#define USEC_PER_SEC_F 1e6
/* Refills are sums of fractions: 0.2 + 0.8 may come out as 0.99999999999999989. A bucket this
 * close to a whole token has one (the excess admitted is a billionth of a token per request). */
#define TOKEN_EPSILON 1e-9

typedef struct Bucket {
        double tokens;
        uint64_t last_usec;
} Bucket;

typedef struct RateLimitEntry RateLimitEntry;
struct RateLimitEntry {
        RateLimitEntry *newer, *older;          /* the use list */
        MethodClass class;
        Bucket bucket;
        unsigned in_flight;                     /* admitted and not yet released */
        char key[RATELIMIT_SOURCE_MAX];
};

struct RateLimiter {
        RateLimitClassConfig classes[_METHOD_CLASS_MAX];
        Bucket global[_METHOD_CLASS_MAX];
        unsigned in_flight[_METHOD_CLASS_MAX];
        unsigned in_flight_max[_METHOD_CLASS_MAX];
        uint64_t rejected_rate[_METHOD_CLASS_MAX];
        uint64_t rejected_busy[_METHOD_CLASS_MAX];

        void *tree;                             /* tsearch root of RateLimitEntry */
        RateLimitEntry *newest, *oldest;
        size_t n_entries, max_entries;
        uint64_t evicted;
};

static int entry_compare(const void *a, const void *b) {
        const RateLimitEntry *x = a, *y = b;

        if (x->class != y->class)
                return x->class < y->class ? -1 : 1;
        return strcmp(x->key, y->key);
}

/* A source's share of its class: half the rate and half the burst, at least one token, so one
 * source can take at most half of what the class allows and the rest stays for the others. */
static double source_rate(const RateLimitClassConfig *cc) {
        return cc->rate / 2.0;
}

static double source_burst(const RateLimitClassConfig *cc) {
        return cc->burst >= 2 ? (double) (cc->burst / 2) : 1.0;
}

/* A source's share of the class's concurrency: half, at least one, for the same reason. */
static unsigned source_concurrency(const RateLimitClassConfig *cc) {
        return cc->concurrency >= 2 ? cc->concurrency / 2 : 1;
}

static void bucket_refill(Bucket *b, double rate, double burst, uint64_t now_usec) {
        if (now_usec <= b->last_usec)   /* same instant, or a caller's clock that went back */
                return;
        b->tokens += (double) (now_usec - b->last_usec) * rate / USEC_PER_SEC_F;
        if (b->tokens > burst)
                b->tokens = burst;
        b->last_usec = now_usec;
}

static bool bucket_has_token(const Bucket *b) {
        return b->tokens >= 1.0 - TOKEN_EPSILON;
}

/* Microseconds until the bucket holds one whole token (>= 1), rounded up. */
static uint64_t bucket_wait(const Bucket *b, double rate) {
        double usec = (1.0 - TOKEN_EPSILON - b->tokens) * USEC_PER_SEC_F / rate;
        uint64_t u;

        if (!(usec >= 1.0))
                return 1;
        if (usec > 1e15)        /* ~30 years: keeps the conversion defined for absurd configs */
                return UINT64_C(1000000000000000);
        u = (uint64_t) usec;
        return (double) u < usec ? u + 1 : u;
}

int ratelimit_new(const RateLimitClassConfig classes[static _METHOD_CLASS_MAX], size_t max_sources,
                  RateLimiter **ret) {
        RateLimiter *rl;

        assert(classes);
        assert(ret);

        if (max_sources == 0)
                return -EINVAL;
        for (MethodClass c = 0; c < _METHOD_CLASS_MAX; c++)
                if (!(classes[c].rate > 0) || !isfinite(classes[c].rate) || classes[c].burst == 0 ||
                    classes[c].concurrency == 0)
                        return -EINVAL;

        rl = calloc(1, sizeof(RateLimiter));
        if (!rl)
                return -ENOMEM;
        memcpy(rl->classes, classes, sizeof(rl->classes));
        rl->max_entries = max_sources;
        /* Full buckets; the first refill (any time > 0) caps them at burst again. */
        for (MethodClass c = 0; c < _METHOD_CLASS_MAX; c++)
                rl->global[c].tokens = classes[c].burst;

        *ret = rl;
        return 0;
}

int ratelimit_set_classes(RateLimiter *rl, const RateLimitClassConfig classes[static _METHOD_CLASS_MAX]) {
        assert(rl);
        assert(classes);

        for (MethodClass c = 0; c < _METHOD_CLASS_MAX; c++)
                if (!(classes[c].rate > 0) || !isfinite(classes[c].rate) || classes[c].burst == 0 ||
                    classes[c].concurrency == 0)
                        return -EINVAL;
        /* Buckets keep their tokens (capped at the new burst by their next refill); requests in
         * flight stay counted. */
        memcpy(rl->classes, classes, sizeof(rl->classes));
        return 0;
}

RateLimiter *ratelimit_free(RateLimiter *rl) {
        if (!rl)
                return NULL;
        tdestroy(rl->tree, free);
        free(rl);
        return NULL;
}

static void list_unlink(RateLimiter *rl, RateLimitEntry *e) {
        if (e->newer)
                e->newer->older = e->older;
        else
                rl->newest = e->older;
        if (e->older)
                e->older->newer = e->newer;
        else
                rl->oldest = e->newer;
        e->newer = e->older = NULL;
}

static void list_push_newest(RateLimiter *rl, RateLimitEntry *e) {
        e->older = rl->newest;
        e->newer = NULL;
        if (rl->newest)
                rl->newest->newer = e;
        rl->newest = e;
        if (!rl->oldest)
                rl->oldest = e;
}

static RateLimitEntry *source_find(RateLimiter *rl, MethodClass c, const char *key) {
        RateLimitEntry probe = { .class = c };
        void *node;

        (void) snprintf(probe.key, sizeof(probe.key), "%s", key);
        node = tfind(&probe, &rl->tree, entry_compare);
        return node ? *(RateLimitEntry **) node : NULL;
}

/* The entry of (class, key), made (with a full bucket) if needed, now the most recently used.
 * -EBUSY when the table is full of sources with requests in flight: those are never evicted, or
 * a flood of fresh sources could reset a busy source's concurrency count. */
static int source_entry(RateLimiter *rl, MethodClass c, const char *key, uint64_t now_usec,
                        RateLimitEntry **ret) {
        RateLimitEntry probe = { .class = c }, *e;
        void *node;

        e = source_find(rl, c, key);
        if (e) {
                list_unlink(rl, e);
                list_push_newest(rl, e);
                *ret = e;
                return 0;
        }
        (void) snprintf(probe.key, sizeof(probe.key), "%s", key);

        if (rl->n_entries >= rl->max_entries) {
                /* Full: reuse the least recently used entry that has nothing in flight. There are
                 * at most as many busy entries as requests in flight, so the walk is short. */
                for (e = rl->oldest; e && e->in_flight > 0; e = e->newer)
                        ;
                if (!e)
                        return -EBUSY;
                list_unlink(rl, e);
                (void) tdelete(e, &rl->tree, entry_compare);
                rl->n_entries--;
                rl->evicted++;
        } else {
                e = malloc(sizeof(RateLimitEntry));
                if (!e)
                        return -ENOMEM;
        }

        *e = probe;
        e->bucket = (Bucket) { .tokens = source_burst(&rl->classes[c]), .last_usec = now_usec };
        node = tsearch(e, &rl->tree, entry_compare);
        if (!node) {
                free(e);
                return -ENOMEM;
        }
        assert(*(RateLimitEntry **) node == e);
        list_push_newest(rl, e);
        rl->n_entries++;
        *ret = e;
        return 0;
}

/* Counts a refusal for want of a concurrency place (or a table entry) and says when to retry. */
static int refuse_busy(RateLimiter *rl, MethodClass c, uint64_t *ret_retry_after_usec) {
        rl->rejected_busy[c]++;
        if (ret_retry_after_usec)
                *ret_retry_after_usec = RATELIMIT_BUSY_RETRY_USEC;
        return -EBUSY;
}

int ratelimit_acquire(RateLimiter *rl, MethodClass c, const RateLimitSource *src, uint64_t now_usec,
                      uint64_t *ret_retry_after_usec) {
        const RateLimitClassConfig *cc;
        RateLimitEntry *e;
        Bucket *g;
        uint64_t wait = 0;
        int r;

        assert(rl);
        assert(c >= 0 && c < _METHOD_CLASS_MAX);
        assert(src);

        cc = &rl->classes[c];
        g = &rl->global[c];

        r = source_entry(rl, c, src->key, now_usec, &e);
        if (r == -EBUSY)
                return refuse_busy(rl, c, ret_retry_after_usec);
        if (r < 0)
                return r;

        bucket_refill(&e->bucket, source_rate(cc), source_burst(cc), now_usec);
        bucket_refill(g, cc->rate, cc->burst, now_usec);

        if (!bucket_has_token(&e->bucket))
                wait = bucket_wait(&e->bucket, source_rate(cc));
        if (!bucket_has_token(g)) {
                uint64_t w = bucket_wait(g, cc->rate);
                if (w > wait)
                        wait = w;
        }
        if (wait > 0) {
                rl->rejected_rate[c]++;
                if (ret_retry_after_usec)
                        *ret_retry_after_usec = wait;
                return -EAGAIN;
        }

        if (rl->in_flight[c] >= cc->concurrency || e->in_flight >= source_concurrency(cc))
                return refuse_busy(rl, c, ret_retry_after_usec);

        e->bucket.tokens -= 1.0;
        e->in_flight++;
        g->tokens -= 1.0;
        rl->in_flight[c]++;
        if (rl->in_flight[c] > rl->in_flight_max[c])
                rl->in_flight_max[c] = rl->in_flight[c];
        return 0;
}

int ratelimit_move(RateLimiter *rl, MethodClass c, const RateLimitSource *from, const RateLimitSource *to,
                   uint64_t now_usec, uint64_t *ret_retry_after_usec) {
        const RateLimitClassConfig *cc;
        RateLimitEntry *e, *old;
        int r;

        assert(rl);
        assert(c >= 0 && c < _METHOD_CLASS_MAX);
        assert(from);
        assert(to);

        if (streq(from->key, to->key))
                return 0;
        cc = &rl->classes[c];

        r = source_entry(rl, c, to->key, now_usec, &e);
        if (r == -EBUSY)
                return refuse_busy(rl, c, ret_retry_after_usec);
        if (r < 0)
                return r;
        bucket_refill(&e->bucket, source_rate(cc), source_burst(cc), now_usec);
        if (!bucket_has_token(&e->bucket)) {
                rl->rejected_rate[c]++;
                if (ret_retry_after_usec)
                        *ret_retry_after_usec = bucket_wait(&e->bucket, source_rate(cc));
                return -EAGAIN;
        }
        if (e->in_flight >= source_concurrency(cc))
                return refuse_busy(rl, c, ret_retry_after_usec);

        e->bucket.tokens -= 1.0;
        e->in_flight++;
        /* The first source gets back what it gave. It may have been evicted meanwhile only if it
         * had nothing in flight, which it had: it is still there. */
        old = source_find(rl, c, from->key);
        if (old) {
                old->bucket.tokens += 1.0;
                if (old->bucket.tokens > source_burst(cc))
                        old->bucket.tokens = source_burst(cc);
                if (old->in_flight > 0)
                        old->in_flight--;
        }
        return 0;
}

void ratelimit_release(RateLimiter *rl, MethodClass c, const RateLimitSource *src) {
        RateLimitEntry *e;

        assert(rl);
        assert(c >= 0 && c < _METHOD_CLASS_MAX);
        assert(src);
        assert(rl->in_flight[c] > 0);

        if (rl->in_flight[c] > 0)
                rl->in_flight[c]--;
        e = source_find(rl, c, src->key);
        assert(e && e->in_flight > 0);
        if (e && e->in_flight > 0)
                e->in_flight--;
}

void ratelimit_stats(const RateLimiter *rl, RateLimitStats *ret) {
        assert(rl);
        assert(ret);

        *ret = (RateLimitStats) {
                .sources = rl->n_entries,
                .max_sources = rl->max_entries,
                .evicted = rl->evicted,
        };
        memcpy(ret->rejected_rate, rl->rejected_rate, sizeof(ret->rejected_rate));
        memcpy(ret->rejected_busy, rl->rejected_busy, sizeof(ret->rejected_busy));
        memcpy(ret->in_flight, rl->in_flight, sizeof(ret->in_flight));
        memcpy(ret->in_flight_max, rl->in_flight_max, sizeof(ret->in_flight_max));
}

/* --- sources --- */

static char ascii_tolower(char c) {
        return c >= 'A' && c <= 'Z' ? (char) (c - 'A' + 'a') : c;
}

/* FNV-1a (64 bit) of the lower-cased string: only to shorten long host names into a key. */
static uint64_t fnv1a64_lower(const char *s) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (; *s; s++) {
                h ^= (unsigned char) ascii_tolower(*s);
                h *= UINT64_C(0x100000001b3);
        }
        return h;
}

void ratelimit_source_init(RateLimitSource *ret, uid_t uid, bool trusted, const char *address) {
        unsigned char a6[sizeof(struct in6_addr)];
        struct in_addr a4;
        char text[INET6_ADDRSTRLEN];
        char host[RATELIMIT_SOURCE_MAX - sizeof("host:") + 1];
        size_t n;

        assert(ret);

        if (!trusted || !address || !address[0]) {
                (void) snprintf(ret->key, sizeof(ret->key), "uid:%u", (unsigned) uid);
                return;
        }

        if (inet_pton(AF_INET, address, &a4) == 1 && inet_ntop(AF_INET, &a4, text, sizeof(text))) {
                (void) snprintf(ret->key, sizeof(ret->key), "ip:%s", text);
                return;
        }
        if (inet_pton(AF_INET6, address, a6) == 1) {
                struct in6_addr in6;

                memcpy(&in6, a6, sizeof(in6));
                if (IN6_IS_ADDR_V4MAPPED(&in6)) {
                        memcpy(&a4, a6 + 12, sizeof(a4));
                        if (inet_ntop(AF_INET, &a4, text, sizeof(text))) {
                                (void) snprintf(ret->key, sizeof(ret->key), "ip:%s", text);
                                return;
                        }
                }
                memset(a6 + 8, 0, 8);   /* the /64 */
                if (inet_ntop(AF_INET6, a6, text, sizeof(text))) {
                        (void) snprintf(ret->key, sizeof(ret->key), "ip6:%s/64", text);
                        return;
                }
        }

        /* A host name (PAM's rhost may be one). Case does not matter in DNS. */
        n = strlen(address);
        if (n < sizeof(host)) {
                for (size_t i = 0; i <= n; i++)
                        host[i] = ascii_tolower(address[i]);
                (void) snprintf(ret->key, sizeof(ret->key), "host:%s", host);
        } else
                (void) snprintf(ret->key, sizeof(ret->key), "host#%016llx",
                                (unsigned long long) fnv1a64_lower(address));
}
