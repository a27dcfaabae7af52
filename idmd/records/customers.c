/* SPDX-License-Identifier: MIT */
/*
 * Customers in the store (records/customers.h): tables, keys and record shape.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "lockout.h"
#include "records/capture.h"
#include "records/consents.h"
#include "records/customers.h"
#include "records/remote.h"
#include "records/device.h"
#include "records/resets.h"
#include "records/unixusers.h"
#include "sessions.h"
#include "tokens.h"
#include "validate.h"

int customer_email_key(const char *publisher_id, const char *email, char **ret) {
        _cleanup_free_ char *lower = email_normalize(email);

        if (!lower)
                return -ENOMEM;
        return asprintf(ret, "%s:%s", publisher_id, lower) < 0 ? -ENOMEM : 0;
}

static int external_id_key(const char *publisher_id, const char *external_id, char **ret) {
        return asprintf(ret, "%s:%s", publisher_id, external_id) < 0 ? -ENOMEM : 0;
}

static int purge_job_key(const char *customer_id, char **ret) {
        return asprintf(ret, CUSTOMER_PURGE_PREFIX "%s", customer_id) < 0 ? -ENOMEM : 0;
}

/* Whether a purge job of customer_id is queued (customer_purge_step()): 1, 0, or an error. */
static int purging(StoreTxn *t, const char *customer_id) {
        _cleanup_free_ char *key = NULL;
        int r;

        r = purge_job_key(customer_id, &key);
        if (r < 0)
                return r;
        return store_exists(t, STORE_META, key);
}

int customer_get(StoreTxn *t, const char *customer_id, json_t **ret) {
        return store_get(t, STORE_CUSTOMERS, customer_id, ret);
}

int customer_prefetch(StoreTxn *t, const char *customer_id) {
        return store_prefetch(t, STORE_CUSTOMERS, customer_id);
}

int customer_exists(StoreTxn *t, const char *customer_id) {
        return store_exists(t, STORE_CUSTOMERS, customer_id);
}

/* Follows an index entry to the customer record. */
static int customer_by_index(StoreTxn *t, StoreTable index, const char *key, json_t **ret) {
        _cleanup_(json_decrefp) json_t *link = NULL;
        const char *id;
        int r;

        r = store_get(t, index, key, &link);
        if (r < 0)
                return r;
        id = json_object_get_string(link, "customerId");
        if (!id)
                return -EPROTO;
        return customer_get(t, id, ret);
}

int customer_find_by_email(StoreTxn *t, const char *publisher_id, const char *email, json_t **ret) {
        _cleanup_free_ char *key = NULL;
        int r;

        if (!email_is_valid(email))
                return -ENOENT;
        r = customer_email_key(publisher_id, email, &key);
        if (r < 0)
                return r;
        return customer_by_index(t, STORE_CUSTOMERS_BY_EMAIL, key, ret);
}

int customer_find_by_external_id(StoreTxn *t, const char *publisher_id, const char *external_id, json_t **ret) {
        _cleanup_free_ char *key = NULL;
        int r;

        r = external_id_key(publisher_id, external_id, &key);
        if (r < 0)
                return r;
        return customer_by_index(t, STORE_CUSTOMERS_BY_EXTERNAL_ID, key, ret);
}

int customer_create(StoreTxn *t, json_t *rec, const UnixUidRange *unix_range, const char **ret_taken) {
        const char *pid = json_object_get_string(rec, "publisherId");
        const char *external_id = json_object_get_string(rec, "externalId");
        _cleanup_free_ char *email_key = NULL, *ext_key = NULL;
        _cleanup_(json_decrefp) json_t *link = NULL;
        int r;

        *ret_taken = NULL;
        if (!pid || !json_object_get_string(rec, "email"))
                return -EINVAL;
        r = customer_email_key(pid, json_object_get_string(rec, "email"), &email_key);
        if (r < 0)
                return r;

        for (unsigned attempt = 0;; attempt++) {
                _cleanup_free_ char *id = NULL;

                r = token_random_digits(CUSTOMER_ID_DIGITS, &id);
                if (r < 0)
                        return r;
                if (json_object_set_new(rec, "customerId", json_string(id)) < 0)
                        return -ENOMEM;
                /* Not the id of a deleted customer whose records are still being purged: the
                 * purge would take the new customer's for them. */
                r = purging(t, id);
                if (r == 0)
                        r = store_put(t, STORE_CUSTOMERS, id, rec, STORE_PUT_NO_OVERWRITE);
                else if (r > 0)
                        r = -EEXIST;
                if (r != -EEXIST || attempt >= 16)
                        break;
        }
        if (r < 0)
                return r;

        link = json_pack("{s:O}", "customerId", json_object_get(rec, "customerId"));
        if (!link)
                return -ENOMEM;
        r = store_put(t, STORE_CUSTOMERS_BY_EMAIL, email_key, link, STORE_PUT_NO_OVERWRITE);
        if (r == -EEXIST)
                *ret_taken = "email";
        if (r < 0)
                return r;
        if (external_id) {
                r = external_id_key(pid, external_id, &ext_key);
                if (r < 0)
                        return r;
                r = store_put(t, STORE_CUSTOMERS_BY_EXTERNAL_ID, ext_key, link, STORE_PUT_NO_OVERWRITE);
                if (r == -EEXIST)
                        *ret_taken = "externalId";
                if (r < 0)
                        return r;
        }
        if (!unix_range)
                return 0;
        r = customer_unix_on_create(t, rec, unix_range);
        return r < 0 ? r : 0;
}

int customer_link_external_id(StoreTxn *t, json_t *rec, const char *external_id) {
        const char *pid = json_object_get_string(rec, "publisherId");
        _cleanup_free_ char *ext_key = NULL;
        _cleanup_(json_decrefp) json_t *link = NULL;
        int r;

        if (!pid || !json_object_get_string(rec, "customerId") || json_object_get(rec, "externalId"))
                return -EINVAL;
        r = external_id_key(pid, external_id, &ext_key);
        if (r < 0)
                return r;
        link = json_pack("{s:O}", "customerId", json_object_get(rec, "customerId"));
        if (!link)
                return -ENOMEM;
        r = store_put(t, STORE_CUSTOMERS_BY_EXTERNAL_ID, ext_key, link, STORE_PUT_NO_OVERWRITE);
        if (r < 0)
                return r;
        if (json_object_set_new(rec, "externalId", json_string(external_id)) < 0)
                return -ENOMEM;
        return customer_put(t, rec);
}

int customer_put(StoreTxn *t, json_t *rec) {
        const char *id = json_object_get_string(rec, "customerId");

        if (!id)
                return -EINVAL;
        return store_put(t, STORE_CUSTOMERS, id, rec, STORE_PUT_DEFAULT);
}

typedef struct RecordVisit {
        CustomerRecordFn fn;
        void *userdata;
} RecordVisit;

static int visit_token_record(const char *key, void *userdata) {
        RecordVisit *v = userdata;

        return v->fn(STORE_TOKENS, key, v->userdata);
}

/* The records that keys lead to: all of customer_foreach_record()'s but those only a walk over
 * the token table finds. */
/* fn for the record at key (NULL or "": none) if there is one; 0 if not. fn's or the store's
 * error. */
static int visit_if_present(StoreTxn *t, StoreTable table, const char *key, CustomerRecordFn fn, void *userdata) {
        int r;

        if (!key || !key[0])
                return 0;
        r = store_exists(t, table, key);
        if (r <= 0)
                return r;
        return fn(table, key, userdata);
}

static int foreach_keyed_record(StoreTxn *t, const char *customer_id, CustomerRecordFn fn, void *userdata) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        _cleanup_free_ char *email_key = NULL, *ext_key = NULL, *consents_key = NULL, *capture_key = NULL,
                *lock_key = NULL, *limit = NULL, *uid_key = NULL;
        const char *pid, *email, *external_id;
        int r;

        r = customer_get(t, customer_id, &rec);
        if (r < 0)
                return r;
        pid = json_object_get_string(rec, "publisherId");
        email = json_object_get_string(rec, "email");
        external_id = json_object_get_string(rec, "externalId");
        if (!pid || !email)
                return -EPROTO;

        r = fn(STORE_CUSTOMERS, customer_id, userdata);
        if (r < 0)
                return r;
        r = customer_email_key(pid, email, &email_key);
        if (r < 0)
                return r;
        r = fn(STORE_CUSTOMERS_BY_EMAIL, email_key, userdata);
        if (r < 0)
                return r;
        if (external_id) {
                r = external_id_key(pid, external_id, &ext_key);
                if (r < 0)
                        return r;
                r = fn(STORE_CUSTOMERS_BY_EXTERNAL_ID, ext_key, userdata);
                if (r < 0)
                        return r;
        }

        /* The uid index entry (the uid itself stays used: the counter never goes back). */
        r = customer_unix_uid_key(rec, &uid_key);
        if (r < 0)
                return r;
        r = visit_if_present(t, STORE_UNIX_UIDS, uid_key, fn, userdata);
        if (r < 0)
                return r;

        r = consent_answers_key(customer_id, &consents_key);
        if (r < 0)
                return r;
        r = visit_if_present(t, STORE_CONSENTS, consents_key, fn, userdata);
        if (r < 0)
                return r;

        r = capture_answers_key(customer_id, &capture_key);
        if (r < 0)
                return r;
        r = visit_if_present(t, STORE_CAPTURE, capture_key, fn, userdata);
        if (r < 0)
                return r;

        /* The reset flow's record of the address (none for an address too long to have one). */
        r = reset_key(pid, email, &limit);
        if (r < 0 && r != -E2BIG)
                return r;
        r = visit_if_present(t, STORE_TOKENS, limit, fn, userdata);
        if (r < 0)
                return r;

        r = lockout_key(pid, email, &lock_key);
        if (r < 0 && r != -E2BIG)
                return r;
        r = visit_if_present(t, STORE_LOCKOUTS, lock_key, fn, userdata);
        return r < 0 ? r : 0;
}

int customer_foreach_record(StoreTxn *t, const char *customer_id, CustomerRecordFn fn, void *userdata) {
        int r;

        r = foreach_keyed_record(t, customer_id, fn, userdata);
        if (r < 0)
                return r;
        return session_foreach_customer_record(t, customer_id, visit_token_record,
                                               &(RecordVisit) { .fn = fn, .userdata = userdata });
}

static int count_one(const char *key, json_t *value, void *userdata) {
        (*(uint64_t *) userdata)++;
        return 0;
}

/* The kind of a timed record of a customer's (sessions.h) under key, or NULL. */
static const char *timed_kind(const char *key) {
        static const char *const kinds[] = { SESSION_KIND_PAM, RESET_KIND, REMOTE_KIND_REMOTE, REMOTE_KIND_SSO,
                                             DEVICE_KIND };

        for (size_t i = 0; i < ELEMENTSOF(kinds); i++)
                if (strncmp(key, kinds[i], strlen(kinds[i])) == 0 && key[strlen(kinds[i])] == ':')
                        return kinds[i];
        return NULL;
}

/* ---- the purge of what a deleted customer left in the token table ---- */

/* The job of customer_id: {cursor?}, where its walk goes on (absent: from the start). */
static int purge_job_put(StoreTxn *t, const char *customer_id, const char *cursor) {
        _cleanup_(json_decrefp) json_t *job = json_object();
        _cleanup_free_ char *key = NULL;
        int r;

        if (!job || (cursor && json_object_set_new(job, "cursor", json_string(cursor)) < 0))
                return -ENOMEM;
        r = purge_job_key(customer_id, &key);
        if (r < 0)
                return r;
        return store_put(t, STORE_META, key, job, STORE_PUT_DEFAULT);
}

/* A record of another module naming the customer: a timed one goes with its expiry entry. */
static int purge_other(StoreTxn *t, const char *key, void *userdata) {
        const char *kind = timed_kind(key);

        return kind ? session_timed_del(t, kind, key) : store_del(t, STORE_TOKENS, key);
}

typedef struct PurgeJob {
        char *key;
        json_t *job;
} PurgeJob;

static int first_job(const char *key, json_t *value, void *userdata) {
        PurgeJob *j = userdata;

        j->key = strdup(key);
        if (!j->key)
                return -ENOMEM;
        j->job = json_incref(value);
        return 1;
}

static int stop_at_first(const char *key, json_t *value, void *userdata) {
        return 1;
}

int customer_purge_step(StoreTxn *t, unsigned max, unsigned *ret_deleted) {
        _cleanup_free_ char *next = NULL;
        PurgeJob j = {};
        const char *customer_id;
        int r, n;

        if (ret_deleted)
                *ret_deleted = 0;
        r = store_foreach(t, STORE_META, CUSTOMER_PURGE_PREFIX, NULL, first_job, &j);
        if (r <= 0)
                return r;
        customer_id = j.key + strlen(CUSTOMER_PURGE_PREFIX);
        n = session_purge_customer_step(t, customer_id, json_object_get_string(j.job, "cursor"), max,
                                        purge_other, NULL, &next);
        if (n >= 0)
                r = next ? purge_job_put(t, customer_id, next) : store_del(t, STORE_META, j.key);
        free(j.key);
        json_decref(j.job);
        if (n < 0)
                return n;
        if (r < 0)
                return r;
        if (ret_deleted)
                *ret_deleted = (unsigned) n;
        /* Whether a job is left: this one, or another. */
        return store_foreach(t, STORE_META, CUSTOMER_PURGE_PREFIX, NULL, stop_at_first, NULL);
}

int customer_purges_pending(StoreTxn *t, uint64_t *ret) {
        uint64_t n = 0;
        int r;

        r = store_foreach(t, STORE_META, CUSTOMER_PURGE_PREFIX, NULL, count_one, &n);
        if (r < 0)
                return r;
        *ret = n;
        return 0;
}

static int collect_record(StoreTable table, const char *key, void *userdata) {
        return json_array_append_new(userdata, json_pack("[i, s]", (int) table, key)) < 0 ? -ENOMEM : 0;
}

int customer_delete(StoreTxn *t, const char *customer_id) {
        _cleanup_(json_decrefp) json_t *doomed = json_array();
        size_t i;
        json_t *d;
        int r, n;

        if (!doomed)
                return -ENOMEM;
        /* Named first, deleted after: no writes while the walks are under way. What only a walk
         * over the token table finds is left to the purge (customer_purge_step()). */
        r = foreach_keyed_record(t, customer_id, collect_record, doomed);
        if (r < 0)
                return r;
        /* Live sessions, with their expiry index entries. */
        n = session_delete_customer(t, customer_id);
        if (n < 0)
                return n;
        r = purge_job_put(t, customer_id, NULL);
        if (r < 0)
                return r;
        json_array_foreach(doomed, i, d) {
                StoreTable table = (StoreTable) json_integer_value(json_array_get(d, 0));
                const char *key = json_string_value(json_array_get(d, 1));

                const char *kind = table == STORE_TOKENS ? timed_kind(key) : NULL;

                if (kind)
                        r = session_timed_del(t, kind, key);    /* with its index entry; 1: deleted */
                else {
                        r = store_del(t, table, key);           /* tokens: gone already (-ENOENT) */
                        if (r == 0)
                                r = 1;
                }
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return r;
                n += r;
        }
        return n;
}

typedef struct ByEmail {
        StoreTxn *t;
        CustomerFn fn;
        void *userdata;
} ByEmail;

static int visit_by_email(const char *key, json_t *link, void *userdata) {
        ByEmail *b = userdata;
        _cleanup_(json_decrefp) json_t *rec = NULL;
        const char *id = json_object_get_string(link, "customerId");
        int r;

        if (!id)
                return -EPROTO;
        r = customer_get(b->t, id, &rec);
        if (r == -ENOENT)
                return 0;       /* an index entry without its record: not a customer */
        if (r < 0)
                return r;
        return b->fn(rec, b->userdata);
}

int customers_foreach_by_email(StoreTxn *t, const char *publisher_id, const char *email_prefix, const char *after_email,
                               CustomerFn fn, void *userdata) {
        _cleanup_free_ char *prefix = NULL, *after = NULL, *lower_prefix = NULL;
        int r;

        /* The index keys are "<publisherId>:<lower-cased e-mail>". */
        lower_prefix = email_normalize(strempty(email_prefix));
        if (!lower_prefix)
                return -ENOMEM;
        if (asprintf(&prefix, "%s:%s", publisher_id, lower_prefix) < 0)
                return -ENOMEM;
        if (after_email) {
                r = customer_email_key(publisher_id, after_email, &after);
                if (r < 0)
                        return r;
        }
        return store_foreach(t, STORE_CUSTOMERS_BY_EMAIL, prefix, after, visit_by_email,
                             &(ByEmail) { .t = t, .fn = fn, .userdata = userdata });
}
