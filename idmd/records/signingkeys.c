/* SPDX-License-Identifier: MIT */
/*
 * The signing keys as records of a shared store (signingkeys.h): reading, settling and rotating
 * them in a unit of work, and a keyring brought up to date from them. What a key record holds,
 * and the rules of rotation, are tokens.c's; this file only knows where the records live.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "idm/cleanup.h"
#include "records/signingkeys.h"

#define SIGNING_KEY_PREFIX "signing-key:"
#define SIGNING_KEY_PREFIX_LEN (sizeof(SIGNING_KEY_PREFIX) - 1)

static int take_key(const char *key, json_t *value, void *userdata) {
        json_t *records = userdata;

        return json_object_set(records, key + SIGNING_KEY_PREFIX_LEN, value) < 0 ? -ENOMEM : 0;
}

int signing_keys_read(StoreTxn *t, json_t **ret) {
        json_auto_t *records = NULL;
        int r;

        if (!t || !ret)
                return -EINVAL;
        records = json_object();
        if (!records)
                return -ENOMEM;
        r = store_foreach(t, STORE_META, SIGNING_KEY_PREFIX, NULL, take_key, records);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(records);
        return 0;
}

static int record_key(const char *kid, char **ret) {
        return asprintf(ret, SIGNING_KEY_PREFIX "%s", kid) < 0 ? -ENOMEM : 0;
}

int signing_keys_update(StoreTxn *t, uint64_t now_usec, uint64_t retain_usec, KeyRecordsFlags flags,
                        json_t **ret_records, unsigned *ret_dropped) {
        json_auto_t *records = NULL, *before = NULL;
        const char *kid;
        json_t *rec;
        int r;

        r = signing_keys_read(t, &records);
        if (r < 0)
                return r;
        /* Reading the records into keys wipes their secrets: compare against a copy. */
        before = json_deep_copy(records);
        if (!before)
                return -ENOMEM;
        r = key_records_update(records, now_usec, retain_usec, flags, ret_dropped);
        if (r < 0)
                return r;

        json_object_foreach(before, kid, rec) {
                _cleanup_free_ char *key = NULL;

                if (json_object_get(records, kid))
                        continue;
                r = record_key(kid, &key);
                if (r < 0)
                        return r;
                r = store_del(t, STORE_META, key);
                if (r < 0)
                        return r;
        }
        json_object_foreach(records, kid, rec) {
                _cleanup_free_ char *key = NULL;

                if (json_equal(rec, json_object_get(before, kid)))
                        continue;
                r = record_key(kid, &key);
                if (r < 0)
                        return r;
                r = store_put(t, STORE_META, key, rec, STORE_PUT_DEFAULT);
                if (r < 0)
                        return r;
        }
        if (ret_records)
                *ret_records = TAKE_PTR(records);
        return 0;
}

int signing_keys_import(StoreTxn *t, json_t *records) {
        const char *kid;
        json_t *rec;
        int r;

        if (!t || !json_is_object(records))
                return -EINVAL;
        json_object_foreach(records, kid, rec) {
                _cleanup_free_ char *key = NULL;

                r = record_key(kid, &key);
                if (r < 0)
                        return r;
                r = store_put(t, STORE_META, key, rec, STORE_PUT_NO_OVERWRITE);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Reads of the keys may wait, so two can overlap: one that began before another was applied
 * must not be applied after it (it would bring back older keys). Numbered as they begin; one loop
 * thread. */
static uint64_t syncs_begun, sync_applied;

static int apply(Keyring *k, json_t *records, uint64_t seq, uint64_t now_usec, uint64_t retain_usec) {
        int r;

        if (seq < sync_applied)
                return 0;
        r = keyring_set_records(k, records, now_usec, retain_usec);
        if (r >= 0)
                sync_applied = seq;
        return r;
}

int signing_keys_sync(StoreTxn *t, Keyring *k, uint64_t now_usec, uint64_t retain_usec) {
        json_auto_t *records = NULL;
        uint64_t seq = ++syncs_begun;
        int r;

        if (!k)
                return -EINVAL;
        r = signing_keys_read(t, &records);
        if (r < 0)
                return r;
        return apply(k, records, seq, now_usec, retain_usec);
}

int signing_keys_take(Keyring *k, json_t *records, uint64_t now_usec, uint64_t retain_usec) {
        if (!k || !records)
                return -EINVAL;
        return apply(k, records, ++syncs_begun, now_usec, retain_usec);
}

int signing_keys_sync_unknown_kid(StoreTxn *t, Keyring *k, uint64_t now_usec, uint64_t retain_usec) {
        static uint64_t last_usec;      /* of the last read for an unknown kid (one loop thread) */
        static bool read_once;

        /* A clock set back counts as time passed: a read too many, never none for good. */
        if (read_once && now_usec >= last_usec && now_usec - last_usec < SIGNING_KEYS_SYNC_MIN_USEC)
                return 0;
        read_once = true;
        last_usec = now_usec;
        return signing_keys_sync(t, k, now_usec, retain_usec);
}
