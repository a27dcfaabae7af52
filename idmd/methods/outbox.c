/* SPDX-License-Identifier: MIT */
/*
 * The mail outbox for operators: listOutbox, retryOutbox and dropOutbox (admin), and the
 * test-only testQueueMail (admin, only in an idmd started with --test-clock), which queues a
 * message as the password-reset flow does, in a unit of work of its own. No method returns a
 * message's text: it holds the link or code it carries.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "idm/json-util.h"
#include "idm/protocol.h"
#include "log.h"
#include "manager.h"
#include "methods/methods.h"
#include "outbox.h"

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000

static int method_outbox_list(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *items = NULL;
        _cleanup_free_ char *cursor = NULL;
        json_t *limit = json_object_get(params, "limit");
        size_t n = LIST_LIMIT_DEFAULT;
        int r;

        if (limit) {
                if (json_integer_value(limit) < 1 || json_integer_value(limit) > LIST_LIMIT_MAX)
                        return call_fail_param(call, "limit", "limit is 1 to 1000");
                n = (size_t) json_integer_value(limit);
        }
        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = outbox_list(t, json_object_get_string(params, "cursor"), n, &items, &cursor);
        if (r < 0)
                return r;
        return call_reply(call, json_pack("{s:O, s:s?}", "items", items, "cursor", cursor));
}

typedef struct RetryWork {
        char *id;               /* NULL: all */
        uint64_t now_usec;
        unsigned n;
} RetryWork;

static void retry_work_free(void *userdata) {
        RetryWork *w = userdata;

        free(w->id);
        free(w);
}

static int retry_write(StoreTxn *t, void *userdata) {
        RetryWork *w = userdata;

        return outbox_retry(t, w->id, w->now_usec, &w->n);
}

static void retry_done(Call *call, int r, void *userdata) {
        RetryWork *w = userdata;

        if (r == -ENOENT) {
                (void) call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND, NULL, "no such message in the outbox");
                return;
        }
        if (r < 0)
                return;
        log_info("%s: %u outbox messages made due now (uid %u).", call_request_id(call), w->n,
                 (unsigned) call_peer(call)->uid);
        outbox_kick(call_manager(call));
        (void) call_reply(call, json_pack("{s:i}", "retried", (int) w->n));
}

static int method_outbox_retry(Call *call, json_t *params) {
        const char *id = json_object_get_string(params, "id");
        RetryWork *w;

        w = calloc(1, sizeof(RetryWork));
        if (!w)
                return -ENOMEM;
        w->now_usec = now_realtime_usec();
        if (id) {
                w->id = strdup(id);
                if (!w->id) {
                        free(w);
                        return -ENOMEM;
                }
        }
        return call_write(call, retry_write, retry_done, w, retry_work_free);
}

static int drop_write(StoreTxn *t, void *userdata) {
        return outbox_drop(t, userdata);
}

static void drop_done(Call *call, int r, void *userdata) {
        if (r == -ENOENT) {
                (void) call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND, NULL, "no such message in the outbox");
                return;
        }
        if (r < 0)
                return;
        outbox_note_dropped(call_manager(call)->outbox);
        log_notice("%s: outbox message %s dropped undelivered (uid %u).", call_request_id(call),
                   (const char *) userdata, (unsigned) call_peer(call)->uid);
        (void) call_reply_empty(call);
}

static int method_outbox_drop(Call *call, json_t *params) {
        char *id = strdup(json_object_get_string(params, "id"));

        if (!id)
                return -ENOMEM;
        return call_write(call, drop_write, drop_done, id, free);
}

/* --- testQueueMail (tests only) --- */

typedef struct QueueWork {
        json_t *params;
} QueueWork;

static void queue_work_free(void *userdata) {
        QueueWork *w = userdata;

        json_decref(w->params);
        free(w);
}

static int queue_write(StoreTxn *t, void *userdata) {
        QueueWork *w = userdata;
        json_t *p = w->params;

        return outbox_queue(t, json_object_get_string(p, "kind"), json_object_get_string(p, "publisherId"),
                            json_object_get_string(p, "locale"), json_object_get_string(p, "to"),
                            json_object_get(p, "vars"));
}

static void queue_done(Call *call, int r, void *userdata) {
        switch (r) {
        case -EINVAL:
                (void) call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE, NULL,
                                 "an address or value cannot go into a message");
                return;
        case -ENOMSG:
                (void) call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND, NULL, "no template for this kind");
                return;
        case -EMSGSIZE:
                (void) call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE, NULL,
                                 "the message would be larger than 1 MiB");
                return;
        }
        if (r < 0)
                return;         /* -ENOSPC: 503 store_full, like any full store */
        outbox_kick(call_manager(call));
        (void) call_reply_empty(call);
}

static int method_outbox_test_queue(Call *call, json_t *params) {
        QueueWork *w = calloc(1, sizeof(QueueWork));

        if (!w)
                return -ENOMEM;
        w->params = json_incref(params);
        return call_write(call, queue_write, queue_done, w, queue_work_free);
}

const Method methods_outbox[] = {
        { .name = "listOutbox", .handler = method_outbox_list, .role = ROLE_ADMIN,
          .params = (const ParamSpec[]) {
                  { "cursor", PARAM_STRING, false, OUTBOX_ID_LEN },
                  { "limit", PARAM_INTEGER, false },
                  {} } },
        { .name = "retryOutbox", .handler = method_outbox_retry, .role = ROLE_ADMIN,
          .params = (const ParamSpec[]) { PARAM_ID("id", false, OUTBOX_ID_LEN), {} } },
        { .name = "dropOutbox", .handler = method_outbox_drop, .role = ROLE_ADMIN,
          .params = (const ParamSpec[]) { PARAM_ID("id", true, OUTBOX_ID_LEN), {} } },
        /* Without --test-clock it does not exist (rpc.c). */
        { .name = "testQueueMail", .handler = method_outbox_test_queue, .role = ROLE_ADMIN, .test_only = true,
          .params = (const ParamSpec[]) {
                  { "to", PARAM_STRING, true, 1024 },
                  PARAM_ID("kind", true, 64),
                  PARAM_ID("publisherId", false, 64),
                  PARAM_ID("locale", false, 64),
                  { "vars", PARAM_OBJECT, false },
                  {} } },
        {}
};
