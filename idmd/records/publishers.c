/* SPDX-License-Identifier: MIT */
/*
 * Publishers and offers in the store (records/publishers.h): tables, keys and record shapes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "idm/time-util.h"
#include "records/publishers.h"
#include "tokens.h"

/* What callers see of a publisher and of an offer: every other field stays inside (today the
 * token's hash). Dates are kept as microseconds and shown as RFC 3339. */
static const char *const publisher_fields[] = {
        "publisherId", "name", "allowedRedirectUris", "resetUrl", "resetMode", "remoteAuthUrl", "ssoUrl",
        "ssoPages", "deviceVerificationUrl", "unixUsers", "unixShell",
};
static const char *const offer_fields[] = { "offerId", "publisherId", "title" };

static json_t *public_copy(json_t *rec, const char *const *fields, size_t n_fields) {
        json_t *o = json_object(), *v;
        char buf[32];

        if (!o)
                return NULL;
        for (size_t i = 0; i < n_fields; i++)
                if ((v = json_object_get(rec, fields[i])) && json_object_set(o, fields[i], v) < 0)
                        return json_decref(o), NULL;
        v = json_object_get(rec, "createdDate");
        if (json_is_integer(v) &&
            json_object_set_new(o, "createdDate", json_string(format_rfc3339((uint64_t) json_integer_value(v), buf))) < 0)
                return json_decref(o), NULL;
        return o;
}

json_t *publisher_public(json_t *rec) {
        return public_copy(rec, publisher_fields, ELEMENTSOF(publisher_fields));
}

json_t *offer_public(json_t *rec) {
        return public_copy(rec, offer_fields, ELEMENTSOF(offer_fields));
}

int publisher_get(StoreTxn *t, const char *publisher_id, json_t **ret) {
        return store_get(t, STORE_PUBLISHERS, publisher_id, ret);
}

int publisher_exists(StoreTxn *t, const char *publisher_id) {
        return store_exists(t, STORE_PUBLISHERS, publisher_id);
}

int publisher_find_by_token(StoreTxn *t, const char *token, char **ret) {
        _cleanup_(json_decrefp) json_t *link = NULL;
        char hash[TOKEN_HASH_STRLEN + 1];
        const char *id;
        int r;

        token_hash(token, hash);
        r = store_get(t, STORE_PUBLISHER_TOKENS, hash, &link);
        if (r < 0)
                return r;
        id = json_object_get_string(link, "publisherId");
        if (!id)
                return -EPROTO;
        *ret = strdup(id);
        return *ret ? 0 : -ENOMEM;
}

static int publisher_link_token(StoreTxn *t, json_t *rec, const char *token) {
        _cleanup_(json_decrefp) json_t *link = json_pack("{s:s}", "publisherId", json_object_get_string(rec, "publisherId"));
        const char *old = json_object_get_string(rec, "tokenHash");
        char hash[TOKEN_HASH_STRLEN + 1];
        int r;

        if (!link)
                return -ENOMEM;
        if (old) {
                r = store_del(t, STORE_PUBLISHER_TOKENS, old);
                if (r < 0 && r != -ENOENT)
                        return r;
        }
        token_hash(token, hash);
        r = store_put(t, STORE_PUBLISHER_TOKENS, hash, link, STORE_PUT_NO_OVERWRITE);
        if (r < 0)
                return r;
        return json_object_set_new(rec, "tokenHash", json_string(hash)) < 0 ? -ENOMEM : 0;
}

int publisher_save(StoreTxn *t, json_t *rec, bool create, const char *token) {
        int r;

        if (create) {
                /* The record may come back from a unit of work that ran before (store growth). */
                (void) json_object_del(rec, "tokenHash");
                for (unsigned attempt = 0;; attempt++) {
                        _cleanup_free_ char *id = NULL;

                        r = token_random_digits(PUBLISHER_ID_DIGITS, &id);
                        if (r < 0)
                                return r;
                        if (json_object_set_new(rec, "publisherId", json_string(id)) < 0)
                                return -ENOMEM;
                        r = publisher_exists(t, id);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                break;
                        if (attempt >= 16)
                                return -EEXIST;
                }
        }
        if (token) {
                r = publisher_link_token(t, rec, token);
                if (r < 0)
                        return r;
        }
        return store_put(t, STORE_PUBLISHERS, json_object_get_string(rec, "publisherId"), rec,
                         create ? STORE_PUT_NO_OVERWRITE : STORE_PUT_DEFAULT);
}

int publishers_foreach(StoreTxn *t, StoreForeachFn fn, void *userdata) {
        return store_foreach(t, STORE_PUBLISHERS, NULL, NULL, fn, userdata);
}

int offer_get(StoreTxn *t, const char *offer_id, json_t **ret) {
        return store_get(t, STORE_OFFERS, offer_id, ret);
}

int offer_add(StoreTxn *t, json_t *rec) {
        return store_put(t, STORE_OFFERS, json_object_get_string(rec, "offerId"), rec, STORE_PUT_NO_OVERWRITE);
}

int offer_remove(StoreTxn *t, const char *offer_id, const char *publisher_id) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        int r;

        r = store_get(t, STORE_OFFERS, offer_id, &rec);
        if (r < 0)
                return r;
        /* Another publisher's offer is "not found" to this one. */
        if (!streq_ptr(json_object_get_string(rec, "publisherId"), publisher_id))
                return -ENOENT;
        return store_del(t, STORE_OFFERS, offer_id);
}

typedef struct OffersOf {
        const char *publisher_id;
        StoreForeachFn fn;
        void *userdata;
} OffersOf;

static int offers_of(const char *key, json_t *value, void *userdata) {
        OffersOf *o = userdata;

        if (!streq_ptr(json_object_get_string(value, "publisherId"), o->publisher_id))
                return 0;
        return o->fn(key, value, o->userdata);
}

int offers_foreach(StoreTxn *t, const char *publisher_id, StoreForeachFn fn, void *userdata) {
        /* Offers are keyed by their id alone (unique across publishers), so this walks them all:
         * a publisher has few, and the walk is a read. */
        return store_foreach(t, STORE_OFFERS, NULL, NULL, offers_of,
                             &(OffersOf) { .publisher_id = publisher_id, .fn = fn, .userdata = userdata });
}
