/* SPDX-License-Identifier: MIT */
/*
 * JSON-RPC 2.0 envelope handling for idmd: parsing a request line (with the nesting limit),
 * batches and notifications, the method tables, parameter validation, role checks, dispatch,
 * statistics, and the construction of replies and errors. One place for the error model.
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "connection.h"
#include "coro.h"
#include "idm/json-util.h"
#include "idm/protocol.h"
#include "idm/utf8.h"
#include "log.h"
#include "message-ids.h"
#include "manager.h"
#include "methods/methods.h"
#include "rpc.h"

struct Call {
        unsigned n_ref;
        Connection *connection;
        Slot *slot;
        size_t slot_index;
        json_t *id;             /* NULL for a notification */
        const Method *method;
        size_t method_index;    /* rpc_method_index(method) */
        Role role;
        char *publisher_id;
        char *customer_id;
        char *session_id;
        json_t *customer_record;        /* read with the token's check, for the handler */
        uint64_t start_usec;
        bool replied;
        bool in_flight;         /* counted in the class's in-flight number */
        bool rate_acquired;     /* admitted by the rate limiter: released in call_finish() */
        RateLimitSource rate_source;    /* the source it is counted against */
        CallError error;                /* a refusal recorded by call_fail(), answered by rpc.c */
        uint64_t connection_id, seq;    /* the request id "c<connection_id>.<seq>" */
        char request_id[48];            /* formatted when first asked for: "" until then */
};

/* Writes on behalf of calls (call_write()) queued and not done yet, and those done: what a
 * reply kept by a method depends on may be changing while the first is not zero
 * (rpc_writes_settled()). */
static unsigned writes_in_flight;
static uint64_t writes_done;

static const Method *const method_tables[] = {
        methods_server,
        methods_publishers,
        methods_tokens,
        methods_customers,
        methods_pam,
        methods_consents,
        methods_capture,
        methods_reset,
        methods_remote,
        methods_device,
        methods_lockouts,
        methods_locales,
        methods_outbox,
};

static bool method_exists(const Method *m) {
        return !m->test_only || test_clock_enabled();
}

/* Every method by name, for a binary search instead of a string comparison with each (built
 * on first use; the tables are constant). A name in two tables: the first one counts, as in a
 * walk of the tables. */
typedef struct MethodEntry {
        const Method *method;
        size_t index;           /* rpc_method_index() */
} MethodEntry;

static MethodEntry *method_index;
static size_t n_methods_total;

static int method_entry_compare(const void *a, const void *b) {
        const MethodEntry *x = a, *y = b;
        int k = strcmp(x->method->name, y->method->name);

        return k != 0 ? k : (x->index > y->index) - (x->index < y->index);
}

static const MethodEntry *method_index_get(size_t *ret_n) {
        size_t n = 0;

        if (!method_index) {
                MethodEntry *e;

                for (size_t t = 0; t < ELEMENTSOF(method_tables); t++)
                        for (const Method *m = method_tables[t]; m->name; m++)
                                n++;
                e = calloc(n, sizeof(MethodEntry));
                if (!e) {
                        *ret_n = 0;
                        return NULL;
                }
                n = 0;
                for (size_t t = 0; t < ELEMENTSOF(method_tables); t++)
                        for (const Method *m = method_tables[t]; m->name; m++, n++)
                                e[n] = (MethodEntry) { .method = m, .index = n };
                qsort(e, n, sizeof(MethodEntry), method_entry_compare);
                method_index = e;
                n_methods_total = n;
        }
        *ret_n = n_methods_total;
        return method_index;
}

static const MethodEntry *method_lookup(const char *name) {
        size_t n, lo = 0, hi;
        const MethodEntry *e = method_index_get(&n);

        if (!e)
                return NULL;    /* out of memory: the callers walk the tables */
        /* The first entry whose name is not below name. */
        hi = n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (strcmp(e[mid].method->name, name) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < n && streq(e[lo].method->name, name) ? &e[lo] : NULL;
}

/* The method of that name and its rpc_method_index(), or NULL. */
static const Method *find_method(const char *name, size_t *ret_index) {
        const MethodEntry *e = method_lookup(name);

        if (!e && !method_index) {      /* no index (out of memory): the walk of the tables */
                size_t i = 0;

                for (size_t t = 0; t < ELEMENTSOF(method_tables); t++)
                        for (const Method *m = method_tables[t]; m->name; m++, i++)
                                if (streq(m->name, name)) {
                                        *ret_index = i;
                                        return method_exists(m) ? m : NULL;
                                }
                return NULL;
        }
        if (!e || !method_exists(e->method))
                return NULL;
        *ret_index = e->index;
        return e->method;
}

const Method *rpc_find_method(const char *name) {
        size_t index;

        return find_method(name, &index);
}

void rpc_foreach_method(void (*fn)(const Method *m, size_t index, void *userdata), void *userdata) {
        size_t i = 0;

        for (size_t t = 0; t < ELEMENTSOF(method_tables); t++)
                for (const Method *m = method_tables[t]; m->name; m++, i++)
                        if (method_exists(m))
                                fn(m, i, userdata);
}

size_t rpc_n_methods(void) {
        size_t n = 0;

        if (method_index_get(&n))
                return n;
        for (size_t t = 0; t < ELEMENTSOF(method_tables); t++)
                for (const Method *m = method_tables[t]; m->name; m++)
                        n++;
        return n;
}

size_t rpc_method_index(const Method *method) {
        const MethodEntry *e = method->name ? method_lookup(method->name) : NULL;
        size_t i = 0;

        if (e && e->method == method)
                return e->index;

        for (size_t t = 0; t < ELEMENTSOF(method_tables); t++)
                for (const Method *m = method_tables[t]; m->name; m++, i++)
                        if (m == method)
                                return i;
        return SIZE_MAX;
}

static const char *default_message(int code) {
        switch (code) {
        case IDM_RPC_PARSE_ERROR:
                return "Parse error";
        case IDM_RPC_INVALID_REQUEST:
                return "Invalid request";
        case IDM_RPC_METHOD_NOT_FOUND:
                return "Method not found";
        case IDM_RPC_INVALID_PARAMS:
                return "Invalid params";
        case IDM_RPC_INTERNAL_ERROR:
                return "Internal error";
        case IDM_ERR_BAD_REQUEST:
                return "Bad request";
        case IDM_ERR_UNAUTHORIZED:
                return "Unauthorized";
        case IDM_ERR_FORBIDDEN:
                return "Forbidden";
        case IDM_ERR_NOT_FOUND:
                return "Not found";
        case IDM_ERR_CONFLICT:
                return "Conflict";
        case IDM_ERR_UNPROCESSABLE:
                return "Unprocessable";
        case IDM_ERR_LOCKED:
                return "Locked";
        case IDM_ERR_PENDING:
                return "Pending";
        case IDM_ERR_TOO_MANY:
                return "Too many requests";
        case IDM_ERR_UNAVAILABLE:
                return "Service unavailable";
        default:
                return "Error";
        }
}

/* Never fails for want of valid text: a message that is not valid UTF-8 (a bug: messages are
 * cut on character boundaries) falls back to the code's default text. */
static json_t *error_object(int code, const char *reason, json_t *data, const char *message) {
        json_t *text;

        if (!data)
                data = json_object();
        if (!data)
                return NULL;
        if (reason)
                (void) json_object_set_new(data, "reason", json_string(reason));
        text = json_string(message ?: default_message(code));
        if (!text)
                text = json_string(default_message(code));
        return json_pack("{s:i, s:o, s:o}", "code", code, "message", text, "data", data);
}

static json_t *error_reply(json_t *id, int code, const char *reason, json_t *data, const char *message) {
        json_t *e = error_object(code, reason, data, message);

        if (!e)
                return NULL;
        return json_pack("{s:s, s:O?, s:o}", "jsonrpc", "2.0", "id", id ?: json_null(), "error", e);
}

json_t *rpc_error_reply(json_t *id, int code, const char *reason, const char *message) {
        return error_reply(id, code, reason, NULL, message);
}

char *rpc_format_error_line(int code, const char *reason, const char *message) {
        json_t *j = error_reply(NULL, code, reason, NULL, message);
        char *s, *line;

        if (!j)
                return NULL;
        s = json_dumps(j, JSON_COMPACT);
        json_decref(j);
        if (!s)
                return NULL;
        if (asprintf(&line, "%s\n", s) < 0)
                line = NULL;
        free(s);
        return line;
}

/* --- calls --- */

static int strdup_replace(char **p, const char *s) {
        char *c = NULL;

        if (s && !(c = strdup(s)))
                return -ENOMEM;
        free(*p);
        *p = c;
        return 0;
}


Manager *call_manager(Call *call) {
        return call->connection->manager;
}

Connection *call_connection(Call *call) {
        return call->connection;
}

const Peer *call_peer(Call *call) {
        return &call->connection->peer;
}

Role call_role(Call *call) {
        return call->role;
}

static void call_log_fill(const void *owner, LogRequest *ret) {
        const Call *call = owner;

        *ret = (LogRequest) {
                .request_id = call_request_id((Call *) call),
                .method = call->method ? call->method->name : NULL,
                .publisher_id = call->publisher_id,
                .customer_id = call->customer_id,
                .peer_uid = (long long) call->connection->peer.uid,
        };
}

LogScope call_log_scope(Call *call) {
        return log_scope_set(call_log_fill, call);
}

const char *call_request_id(Call *call) {
        /* Formatted only when a log line or a handler asks for it, not for every request. */
        if (!call->request_id[0])
                (void) snprintf(call->request_id, sizeof(call->request_id), "c%llu.%llu",
                                (unsigned long long) call->connection_id, (unsigned long long) call->seq);
        return call->request_id;
}

const char *call_publisher_id(Call *call) {
        return call->publisher_id;
}

const char *call_customer_id(Call *call) {
        return call->customer_id;
}

int call_set_publisher(Call *call, const char *publisher_id) {
        if (strdup_replace(&call->publisher_id, publisher_id) < 0)
                return -ENOMEM;
        if (call->role < ROLE_PUBLISHER)
                call->role = ROLE_PUBLISHER;
        return 0;
}

const char *call_session_id(Call *call) {
        return call->session_id;
}

int call_set_customer(Call *call, const char *customer_id, const char *publisher_id, const char *session_id) {
        if (strdup_replace(&call->customer_id, customer_id) < 0 ||
            strdup_replace(&call->publisher_id, publisher_id) < 0 ||
            strdup_replace(&call->session_id, session_id) < 0)
                return -ENOMEM;
        if (call->role < ROLE_CUSTOMER)
                call->role = ROLE_CUSTOMER;
        return 0;
}

void call_keep_customer_record(Call *call, json_t *rec) {
        json_decref(call->customer_record);
        call->customer_record = rec;
}

json_t *call_take_customer_record(Call *call) {
        return TAKE_PTR(call->customer_record);
}

Call *call_ref(Call *call) {
        if (call)
                call->n_ref++;
        return call;
}

static void call_free(Call *call) {
        if (!call->replied) {
                /* A handler dropped its call without replying: a bug, but never leave a client
                 * waiting for ever. */
                log_error("%s: no reply from method '%s', answering internal error",
                          call_request_id(call), call->method ? call->method->name : "?");
                call->n_ref = 1;
                (void) call_reply_error(call, IDM_RPC_INTERNAL_ERROR, IDM_REASON_INTERNAL, NULL, NULL);
        }
        json_decref(call->id);
        json_decref(call->error.data);
        free(call->publisher_id);
        free(call->customer_id);
        free(call->session_id);
        json_decref(call->customer_record);
        connection_unref(call->connection);
        free(call);
}

Call *call_unref(Call *call) {
        if (!call)
                return NULL;
        if (--call->n_ref == 0)
                call_free(call);
        return NULL;
}

bool call_replied(Call *call) {
        return call->replied;
}

typedef struct CallWrite {
        Call *call;
        int (*work)(StoreTxn *t, void *w);
        CallWriteDone done;
        void *w;
        void (*free_w)(void *w);
} CallWrite;

static int call_write_work(StoreTxn *t, void *userdata) {
        CallWrite *cw = userdata;

        return cw->work(t, cw->w);
}

/* One line per episode of a full store (and one when writes succeed again), not one per refusal. */
static void store_full_episode(Manager *m, bool full) {
        if (m->store_full == full)
                return;
        m->store_full = full;
        if (full)
                log_event(LOG_LEVEL_ERR, IDM_MESSAGE_STORE_FULL, NULL, NULL, IDM_REASON_STORE_FULL,
                          "The store in %s is full: writes are refused with 503 store_full, reads go on.",
                          m->config->state_dir);
        else
                log_struct(LOG_LEVEL_NOTICE, IDM_MESSAGE_STORE_WRITABLE, "The store in %s takes writes again.",
                           m->config->state_dir);
}

static void call_write_done(int r, void *userdata) {
        CallWrite *cw = userdata;
        Call *call = cw->call;
        LogScope previous = call_log_scope(call);

        /* Whatever it wrote is durable (or nothing was): replies kept by methods are made again. */
        assert(writes_in_flight > 0);
        writes_in_flight--;
        writes_done++;
        if (r >= 0)
                store_full_episode(call_manager(call), false);
        connection_write_end(call->connection);
        cw->done(call, r, cw->w);
        (void) call_reply_failure(call, r);    /* a refusal done recorded, or the store's error */
        if (cw->free_w)
                cw->free_w(cw->w);
        free(cw);
        log_scope_restore(&previous);
        call_unref(call);
}

int call_write(Call *call, int (*work)(StoreTxn *t, void *w), CallWriteDone done, void *w, void (*free_w)(void *w)) {
        CallWrite *cw;
        int r;

        cw = malloc(sizeof(CallWrite));
        if (!cw) {
                done(call, -ENOMEM, w);
                (void) call_reply_failure(call, -ENOMEM);
                if (free_w)
                        free_w(w);
                return 0;
        }
        *cw = (CallWrite) { .call = call_ref(call), .work = work, .done = done, .w = w, .free_w = free_w };
        connection_write_begin(call->connection);
        writes_in_flight++;
        r = store_submit(call_manager(call)->store, call_write_work, call_write_done, cw);
        if (r < 0)
                call_write_done(r, cw);
        return 0;
}

static unsigned latency_bucket(uint64_t usec) {
        uint64_t limit = 1000;  /* 1 ms, then ×4 */

        for (unsigned i = 0; i < LATENCY_BUCKETS - 1; i++, limit *= 4)
                if (usec < limit)
                        return i;
        return LATENCY_BUCKETS - 1;
}

/* The statistics, the in-flight count and the rate limiter's slot of a call being answered. */
static void call_account(Call *call, bool error) {
        Manager *m = call_manager(call);

        assert(!call->replied);
        call->replied = true;

        if (call->method) {
                size_t i = call->method_index;
                if (i < rpc_n_methods()) {
                        MethodStats *st = &m->method_stats[i];
                        st->calls++;
                        if (error)
                                st->errors++;
                        st->latency[latency_bucket(now_monotonic_usec() - call->start_usec)]++;
                }
        }
        if (call->in_flight) {
                call->in_flight = false;
                m->class_in_flight[call->method->class]--;
        }
        if (call->rate_acquired) {
                call->rate_acquired = false;
                ratelimit_release(m->ratelimit, call->method->class, &call->rate_source);
        }
}

/* A successful reply already serialized (iov, n: its parts; none for a notification). */
static void call_finish_text(Call *call, const struct iovec *iov, size_t n) {
        call_account(call, false);
        connection_slot_done_iov(call->connection, call->slot, call->slot_index, iov, n);
}

static void call_finish(Call *call, json_t *reply, bool error) {
        call_account(call, error);

        if (!call->id) {        /* notification: no output */
                json_decref(reply);
                reply = NULL;
        }
        connection_slot_done(call->connection, call->slot, call->slot_index, reply);
}

/* n in decimal into buf (at least 21 bytes, no NUL); returns the length. */
static size_t format_integer(json_int_t n, char *buf) {
        char tmp[24];
        size_t k = 0, len = 0;
        /* The magnitude as unsigned: -INT64_MIN does not fit a json_int_t. */
        unsigned long long u = n < 0 ? 0ULL - (unsigned long long) n : (unsigned long long) n;

        do {
                tmp[k++] = (char) ('0' + u % 10);
                u /= 10;
        } while (u > 0);
        if (n < 0)
                buf[len++] = '-';
        while (k > 0)
                buf[len++] = tmp[--k];
        return len;
}

/* A store that other idmd instances write too (PostgreSQL) is never settled: nothing read from it
 * is kept. */
static bool store_shared;

bool rpc_writes_settled(uint64_t *ret_generation) {
        *ret_generation = writes_done;
        return writes_in_flight == 0 && !store_shared;
}

int call_reply_text(Call *call, const char *result, size_t len) {
        static const char head[] = "{\"jsonrpc\":\"2.0\",\"id\":", mid[] = ",\"result\":", tail[] = "}";
        char id[1600];  /* a string id of 256 bytes, each escaped as \u00XX at worst */
        size_t id_len;

        if (!result)
                return call_reply(call, NULL);
        if (!call->id) {        /* a notification: nothing to write */
                call_finish_text(call, NULL, 0);
                return 0;
        }
        /* As json_dumps() writes the id inside the whole reply (call_reply()): integers in
         * decimal ("%lld"), the rest by jansson. */
        if (json_is_integer(call->id))
                id_len = format_integer(json_integer_value(call->id), id);
        else
                id_len = json_dumpb(call->id, id, sizeof(id), JSON_COMPACT | JSON_ENCODE_ANY);
        if (id_len == 0 || id_len > sizeof(id))
                return call_reply(call, json_loadb(result, len, JSON_DECODE_ANY, NULL));

        struct iovec iov[] = {
                { (void *) head, sizeof(head) - 1 },
                { id, id_len },
                { (void *) mid, sizeof(mid) - 1 },
                { (void *) result, len },
                { (void *) tail, sizeof(tail) - 1 },
        };
        call_finish_text(call, iov, ELEMENTSOF(iov));
        return 0;
}

int call_reply_empty(Call *call) {
        return call_reply(call, json_object());
}

int call_reply(Call *call, json_t *result) {
        json_t *reply;

        /* NULL is what json_pack() returns on OOM: never turn it into a success. */
        if (!result) {
                log_error("%s: out of memory building a result", call_request_id(call));
                return call_reply_error(call, IDM_RPC_INTERNAL_ERROR, IDM_REASON_INTERNAL, NULL, NULL);
        }
        reply = json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", call->id ?: json_null(), "result", result);
        if (!reply) {
                log_error("%s: out of memory building a reply", call_request_id(call));
                return call_reply_error(call, IDM_RPC_INTERNAL_ERROR, IDM_REASON_INTERNAL, NULL, NULL);
        }
        call_finish(call, reply, false);
        return 0;
}

int call_reply_error(Call *call, int code, const char *reason, json_t *data, const char *message) {
        json_t *reply = error_reply(call->id, code, reason, data, message);

        if (!reply)     /* OOM: still answer, in the smallest form we can */
                reply = json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", call->id ?: json_null(),
                                  "error", "code", IDM_RPC_INTERNAL_ERROR, "message", "Internal error");
        log_debug("%s: %s → error %d %s", call_request_id(call), call->method ? call->method->name : "-", code,
                  strempty(reason));
        call_finish(call, reply, true);
        return 0;
}

int call_reply_errorf(Call *call, int code, const char *reason, const char *format, ...) {
        char buf[512];
        va_list ap;

        va_start(ap, format);
        (void) vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);
        return call_reply_error(call, code, reason, NULL, buf);
}

/* The -errno that goes with an answer's code, for the code paths (and logs) that look at it. */
static int code_to_errno(int code) {
        switch (code) {
        case IDM_ERR_UNAUTHORIZED:
                return -EACCES;
        case IDM_ERR_FORBIDDEN:
                return -EPERM;
        case IDM_ERR_NOT_FOUND:
                return -ENOENT;
        case IDM_ERR_CONFLICT:
                return -EEXIST;
        case IDM_ERR_LOCKED:
                return -ENOLCK;
        case IDM_ERR_TOO_MANY:
        case IDM_ERR_UNAVAILABLE:
                return -EAGAIN;
        case IDM_RPC_INTERNAL_ERROR:
                return -EIO;
        default:
                return -EINVAL;
        }
}

int call_failv(Call *call, int code, const char *reason, json_t *data, const char *format, va_list ap) {
        /* The first refusal recorded is the one answered (a later one is a consequence). */
        if (call->error.code != 0) {
                json_decref(data);
                return code_to_errno(call->error.code);
        }
        call->error.code = code;
        call->error.reason = reason;
        call->error.data = data;
        if (format)
                (void) vsnprintf(call->error.message, sizeof(call->error.message), format, ap);
        else
                call->error.message[0] = 0;
        return code_to_errno(code);
}

int call_fail(Call *call, int code, const char *reason, json_t *data, const char *format, ...) {
        va_list ap;
        int r;

        va_start(ap, format);
        r = call_failv(call, code, reason, data, format, ap);
        va_end(ap);
        return r;
}

int call_fail_param(Call *call, const char *param, const char *message) {
        return call_fail(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS, json_pack("{s:s}", "param", param),
                         "%s", message);
}

int call_reply_failure(Call *call, int r) {
        CallError *e = &call->error;

        if (call->replied)
                return 0;
        if (e->code != 0) {
                json_t *data = TAKE_PTR(e->data);

                return call_reply_error(call, e->code, e->reason, data, e->message[0] ? e->message : NULL);
        }
        return call_reply_errno(call, r < 0 ? r : -EPROTO);
}

int call_reply_invalid_param(Call *call, const char *param, const char *message) {
        return call_reply_error(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                                json_pack("{s:s}", "param", param), message);
}

int call_reply_errno(Call *call, int r) {
        if (r == -ENOSPC) {
                store_full_episode(call_manager(call), true);
                return call_reply_error(call, IDM_ERR_UNAVAILABLE, IDM_REASON_STORE_FULL, NULL,
                                        "The store is full; nothing was written");
        }
        if (r == -EAGAIN)
                return call_reply_error(call, IDM_ERR_UNAVAILABLE, IDM_REASON_UNAVAILABLE, NULL,
                                        "The service is overloaded; try again later");
        if (r == -ENOTCONN || r == -ETIMEDOUT)
                return call_reply_error(call, IDM_ERR_UNAVAILABLE, IDM_REASON_STORE_UNAVAILABLE, NULL,
                                        "The store cannot be reached; try again later");
        /* -EBUSY is a programming error here (a write while a snapshot is alive, a unit of work
         * inside another), never overload: logged and answered as an internal error below, and
         * fatal in builds with assertions (the test suite's). Rate-limit refusals never come
         * this way. */
        assert(r != -EBUSY);
        log_error_errno(r, "%s: method '%s' failed: %m", call_request_id(call),
                        call->method ? call->method->name : "-");
        return call_reply_error(call, IDM_RPC_INTERNAL_ERROR, IDM_REASON_INTERNAL, NULL, NULL);
}

/* --- params --- */

static const char *param_type_name(ParamType t) {
        switch (t) {
        case PARAM_STRING:
                return "a string";
        case PARAM_INTEGER:
                return "an integer";
        case PARAM_BOOLEAN:
                return "a boolean";
        case PARAM_OBJECT:
                return "an object";
        case PARAM_ARRAY:
                return "an array";
        default:
                return "a value";
        }
}

static bool param_type_ok(ParamType t, json_t *v) {
        switch (t) {
        case PARAM_STRING:
                return json_is_string(v);
        case PARAM_INTEGER:
                return json_is_integer(v);
        case PARAM_BOOLEAN:
                return json_is_boolean(v);
        case PARAM_OBJECT:
                return json_is_object(v);
        case PARAM_ARRAY:
                return json_is_array(v);
        default:
                return true;
        }
}

int rpc_check_params(const Method *method, json_t *params, const char **ret_param, char *message,
                     size_t message_size) {
        const char *key;
        json_t *value;

        json_object_foreach(params, key, value) {
                const ParamSpec *spec = NULL;

                for (const ParamSpec *p = method->params; p && p->name; p++)
                        if (streq(p->name, key)) {
                                spec = p;
                                break;
                        }
                *ret_param = key;
                if (!spec) {
                        /* Cut on a character boundary: half a character is not valid UTF-8. */
                        (void) snprintf(message, message_size, "unknown parameter '%.*s'",
                                        (int) utf8_prefix_len(key, 64), key);
                        return -EINVAL;
                }
                if (!param_type_ok(spec->type, value)) {
                        (void) snprintf(message, message_size, "parameter '%s' must be %s", key,
                                        param_type_name(spec->type));
                        return -EINVAL;
                }
                if (spec->type == PARAM_STRING) {
                        size_t max = spec->max ?: PARAM_STRING_MAX_DEFAULT;
                        if (json_string_length(value) > max) {
                                (void) snprintf(message, message_size, "parameter '%s' is longer than %zu bytes",
                                                key, max);
                                return -EINVAL;
                        }
                        if (json_string_length(value) < spec->min) {
                                (void) snprintf(message, message_size, "parameter '%s' must not be empty", key);
                                return -EINVAL;
                        }
                        /* jansson keeps strings with NUL only with JSON_ALLOW_NUL, which we never
                         * set; check anyway: a NUL would cut C strings short. */
                        if (strlen(json_string_value(value)) != json_string_length(value)) {
                                (void) snprintf(message, message_size, "parameter '%s' contains a NUL byte", key);
                                return -EINVAL;
                        }
                } else if (spec->type == PARAM_ARRAY) {
                        size_t max = spec->max ?: 100;
                        if (json_array_size(value) > max) {
                                (void) snprintf(message, message_size, "parameter '%s' has more than %zu items",
                                                key, max);
                                return -EINVAL;
                        }
                }
        }

        for (const ParamSpec *p = method->params; p && p->name; p++)
                if (p->required && !json_object_get(params, p->name)) {
                        *ret_param = p->name;
                        (void) snprintf(message, message_size, "missing parameter '%s'", p->name);
                        return -EINVAL;
                }
        return 0;
}

/* Positional params (an array) become an object, for methods that accept them. */
static json_t *params_from_array(Call *call, const Method *method, json_t *array) {
        json_t *o;
        size_t n = 0, i;
        json_t *v;

        if (!method->positional) {
                call_reply_error(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS, NULL,
                                 "this method takes named parameters (an object)");
                return NULL;
        }
        while (method->positional[n])
                n++;
        if (json_array_size(array) > n) {
                call_reply_error(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS, NULL,
                                 "too many positional parameters");
                return NULL;
        }
        o = json_object();
        if (!o) {
                call_reply_errno(call, -ENOMEM);
                return NULL;
        }
        json_array_foreach(array, i, v)
                if (!json_is_null(v))
                        (void) json_object_set(o, method->positional[i], v);
        return o;
}

/* --- dispatch --- */

static Call *call_new(Connection *c, Slot *slot, size_t index) {
        Call *call = calloc(1, sizeof(Call));

        if (!call)
                return NULL;
        call->n_ref = 1;
        call->connection = connection_ref(c);
        call->slot = slot;
        call->slot_index = index;
        call->role = c->peer.admin ? ROLE_ADMIN : ROLE_ANYONE;
        call->start_usec = now_monotonic_usec();
        call->connection_id = c->id;
        call->seq = ++c->next_call_seq;
        return call;
}

static int authorize(Call *call, const Method *method, json_t *params) {
        switch (method->role) {
        case ROLE_ANYONE:
                if (method->publisher_optional &&
                    (json_object_get(params, "publisherToken") || json_object_get(params, "sessionID")))
                        return auth_publisher(call, params);
                return 0;
        case ROLE_ADMIN:
                if (call->role == ROLE_ADMIN)
                        return 0;
                return call_fail(call, IDM_ERR_FORBIDDEN, IDM_REASON_FORBIDDEN, NULL,
                                 "this method needs an administrator (root or the admin group)");
        case ROLE_PUBLISHER:
                return auth_publisher(call, params);
        case ROLE_CUSTOMER:
                if (method->publisher_form &&
                    (json_object_get(params, "publisherToken") || json_object_get(params, "sessionID") ||
                     (call->role == ROLE_ADMIN && json_object_get(params, "publisherId"))))
                        return auth_publisher(call, params);
                return auth_customer(call, params, method->reads_customer);
        default:
                abort();
        }
}

/* Step 1: the envelope. Sets call->id and call->method; replies and returns < 0 when the request
 * object is not a valid JSON-RPC 2.0 request for a method we have. */
static int check_envelope(Call *call, json_t *req) {
        json_t *id, *method_name, *version;
        const char *key;
        json_t *value;

        if (!json_is_object(req)) {
                call->id = json_null();
                return call_reply_error(call, IDM_RPC_INVALID_REQUEST, IDM_REASON_INVALID_REQUEST, NULL,
                                        "a request must be a JSON object"), -EINVAL;
        }

        id = json_object_get(req, "id");
        if (id && !json_is_string(id) && !json_is_integer(id) && !json_is_null(id)) {
                call->id = json_null();
                return call_reply_error(call, IDM_RPC_INVALID_REQUEST, IDM_REASON_INVALID_REQUEST, NULL,
                                        "'id' must be a string, an integer or null"), -EINVAL;
        }
        /* A request without "id" is a notification; "id": null is a request answered with id null. */
        if (id && json_is_string(id) && json_string_length(id) > 256) {
                call->id = json_null();
                return call_reply_error(call, IDM_RPC_INVALID_REQUEST, IDM_REASON_INVALID_REQUEST, NULL,
                                        "'id' is longer than 256 bytes"), -EINVAL;
        }
        call->id = id ? json_incref(id) : NULL;

        json_object_foreach(req, key, value)
                if (!streq(key, "jsonrpc") && !streq(key, "id") && !streq(key, "method") && !streq(key, "params")) {
                        if (!call->id)
                                call->id = json_null();
                        return call_reply_error(call, IDM_RPC_INVALID_REQUEST, IDM_REASON_INVALID_REQUEST,
                                                json_pack("{s:s}", "member", key), "unknown member in the request"),
                               -EINVAL;
                }

        version = json_object_get(req, "jsonrpc");
        method_name = json_object_get(req, "method");
        if (!json_is_string(version) || !streq(json_string_value(version), "2.0") || !json_is_string(method_name)) {
                if (!call->id)
                        call->id = json_null();
                return call_reply_error(call, IDM_RPC_INVALID_REQUEST, IDM_REASON_INVALID_REQUEST, NULL,
                                        "a request needs \"jsonrpc\": \"2.0\" and a \"method\" string"), -EINVAL;
        }

        call->method = find_method(json_string_value(method_name), &call->method_index);
        if (!call->method)
                return call_reply_error(call, IDM_RPC_METHOD_NOT_FOUND, IDM_REASON_UNKNOWN_METHOD, NULL, NULL),
                       -ENOENT;
        return 0;
}

/* Step 2: the params, as an object checked against the method's table. Returns a new reference,
 * or NULL after replying. */
static json_t *check_params(Call *call, json_t *req) {
        json_t *params = json_object_get(req, "params");
        const char *param = NULL;
        char msg[256];

        if (!params)
                params = json_object();
        else if (json_is_array(params))
                params = params_from_array(call, call->method, params);
        else if (json_is_object(params))
                params = json_incref(params);
        else {
                (void) call_reply_error(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS, NULL,
                                        "'params' must be an object");
                return NULL;
        }
        if (!params) {
                if (!call->replied)
                        (void) call_reply_errno(call, -ENOMEM);
                return NULL;
        }

        if (rpc_check_params(call->method, params, &param, msg, sizeof(msg)) < 0) {
                (void) call_reply_invalid_param(call, param, msg);
                json_decref(params);
                return NULL;
        }
        return params;
}

/* The first refusal of a class is logged, then at most one line a minute with the number refused
 * since the last line: a flood must not flood the journal too. */
#define RATELIMIT_LOG_INTERVAL_USEC (60ULL * 1000000ULL)

static void log_rate_limited(Call *call, int r) {
        Manager *m = call_manager(call);
        MethodClass class = call->method->class;
        uint64_t now = now_monotonic_usec();
        uint64_t *last = &m->ratelimit_logged_usec[class];

        if (*last != 0 && now - *last < RATELIMIT_LOG_INTERVAL_USEC) {
                m->ratelimit_unlogged[class]++;
                return;
        }
        /* The source is "uid:N", "ip:A" or "ip6:P/64"; a host name (given by a client) is not logged. */
        log_event(LOG_LEVEL_WARNING, IDM_MESSAGE_RATE_LIMITED, NULL, NULL, IDM_REASON_RATE_LIMITED,
                  "%s: rate limit of class %s hit (%s limit, counted against %s, peer uid %u); %" PRIu64
                  " more refused in this class since the last such line", call_request_id(call),
                  method_class_to_string(class), r == -EBUSY ? "concurrency" : "rate",
                  strncmp(call->rate_source.key, "host", 4) == 0 ? "a host name" : call->rate_source.key,
                  (unsigned) call_peer(call)->uid, m->ratelimit_unlogged[class]);
        *last = now;
        m->ratelimit_unlogged[class] = 0;
}

static int reply_rate_limited(Call *call, int r, uint64_t retry_usec) {
        if (r != -EAGAIN && r != -EBUSY)
                return call_reply_errno(call, r);
        log_rate_limited(call, r);
        return call_reply_error(call, IDM_ERR_TOO_MANY, IDM_REASON_RATE_LIMITED,
                                json_pack("{s:I, s:s, s:s}",
                                          "retryAfter", (json_int_t) ratelimit_retry_after_sec(retry_usec),
                                          "class", method_class_to_string(call->method->class),
                                          "limit", r == -EBUSY ? "concurrency" : "rate"),
                                "too many requests of this kind; try again later");
}

/* The end user's address a request names, if its method declares one. */
static const char *call_address(Call *call, json_t *params) {
        return call->method->address_param ? json_object_get_string(params, call->method->address_param) : NULL;
}

/* Step 3, before any authentication: the class's limits and the caller's own bucket, so that
 * guessing tokens costs the guesser. An admin peer (known from SO_PEERCRED) is counted by the end
 * user's address it names, everyone else by uid (docs/ratelimits.md). A refused call reaches no
 * handler and writes nothing. */
static int admit(Call *call, json_t *params) {
        Manager *m = call_manager(call);
        const Peer *peer = call_peer(call);
        const char *address = call_address(call, params);
        uint64_t retry_usec = 0;
        int r;

        if (!m->ratelimit)
                return 0;
        if (!address) {
                /* Counted by uid: the same source for every such call of the connection. */
                Connection *c = call->connection;

                if (!c->uid_rate_source_set) {
                        ratelimit_source_init(&c->uid_rate_source, peer->uid, peer->admin, NULL);
                        c->uid_rate_source_set = true;
                }
                call->rate_source = c->uid_rate_source;
        } else
                ratelimit_source_init(&call->rate_source, peer->uid, peer->admin, address);
        r = ratelimit_acquire(m->ratelimit, call->method->class, &call->rate_source, now_monotonic_usec(),
                              &retry_usec);
        if (r < 0)
                return reply_rate_limited(call, r, retry_usec), r;
        call->rate_acquired = true;
        return 0;
}

/* Step 5, once a publisher has proved who it is: it speaks for many end users, so a request
 * naming one's address is counted against that address instead of the publisher's uid. */
static int admit_address(Call *call, json_t *params) {
        Manager *m = call_manager(call);
        const char *address = call_address(call, params);
        uint64_t retry_usec = 0;
        RateLimitSource to;
        int r;

        if (!call->rate_acquired || call->role != ROLE_PUBLISHER || !address)
                return 0;
        ratelimit_source_init(&to, call_peer(call)->uid, true, address);
        r = ratelimit_move(m->ratelimit, call->method->class, &call->rate_source, &to, now_monotonic_usec(),
                           &retry_usec);
        if (r < 0)
                return reply_rate_limited(call, r, retry_usec), r;
        call->rate_source = to;
        return 0;
}

/* What a call does once admitted: authentication → per-address rate limit → handler. */
static void dispatch_admitted(Call *call, json_t *params) {
        Manager *m = call_manager(call);
        const Method *method = call->method;
        int r;

        r = authorize(call, method, params);
        if (r < 0) {
                (void) call_reply_failure(call, r);
                return;
        }
        if (admit_address(call, params) < 0)
                return;

        m->class_in_flight[method->class]++;
        if (m->class_in_flight[method->class] > m->class_in_flight_max[method->class])
                m->class_in_flight_max[method->class] = m->class_in_flight[method->class];
        call->in_flight = true;

        log_debug("%s: %s (uid %u)", call_request_id(call), method->name, (unsigned) call_peer(call)->uid);
        r = method->handler(call, params);
        if (r < 0)
                (void) call_reply_failure(call, r);
}

/* A call admitted on a store that waits on the network: the rest runs in a coroutine, which
 * gives the loop back while a statement is on its way. */
typedef struct Admitted {
        Call *call;
        json_t *params;
} Admitted;

static void dispatch_admitted_main(void *userdata) {
        Admitted *a = userdata;

        dispatch_admitted(a->call, a->params);
        /* What it wrote is submitted now (call_write() holds the next line back until it is
         * durable), or it wrote nothing. */
        connection_write_end(a->call->connection);
        call_unref(a->call);
        json_decref(a->params);
        free(a);
}

static void dispatch_admitted_coro(Call *call, json_t *params) {
        Admitted *a;
        int r;

        a = malloc(sizeof(Admitted));
        if (!a) {
                (void) call_reply_errno(call, -ENOMEM);
                return;
        }
        *a = (Admitted) { .call = call_ref(call), .params = json_incref(params) };
        /* The next line on this connection waits for this call as it waits for a write: the
         * handler may write after the reads it waits for, and a pipelined read must see that. */
        connection_write_begin(call->connection);
        store_shared = true;
        r = coro_start(dispatch_admitted_main, a);
        if (r < 0) {
                connection_write_end(call->connection);
                call_unref(a->call);
                json_decref(a->params);
                free(a);
                /* CORO_MAX calls are waiting on the store already. */
                (void) call_reply_errno(call, r == -EAGAIN ? -EAGAIN : r);
        }
}

/* Runs one request object (an element of a batch or the whole line): envelope → params →
 * per-uid rate limit → authentication → per-address rate limit → handler. */
static void dispatch_one(Connection *c, Slot *slot, size_t index, json_t *req) {
        Manager *m = c->manager;
        _cleanup_(call_unrefp) Call *call = NULL;
        _cleanup_(json_decrefp) json_t *params = NULL;
        _cleanup_(log_scope_restore) _unused_ LogScope previous = log_scope_set(NULL, NULL);

        call = call_new(c, slot, index);
        if (!call) {
                log_error("out of memory for a call, answering internal error");
                connection_slot_done(c, slot, index,
                                     error_reply(NULL, IDM_RPC_INTERNAL_ERROR, IDM_REASON_INTERNAL, NULL, NULL));
                return;
        }
        (void) call_log_scope(call);

        if (check_envelope(call, req) < 0)
                return;
        params = check_params(call, req);
        if (!params)
                return;
        if (admit(call, params) < 0)
                return;
        if (store_waits(m->store))
                dispatch_admitted_coro(call, params);
        else
                dispatch_admitted(call, params);
}

unsigned rpc_json_depth(const char *text, size_t len, unsigned max) {
        unsigned depth = 0, deepest = 0;
        bool in_string = false;

        for (size_t i = 0; i < len; i++) {
                char ch = text[i];

                if (in_string) {
                        if (ch == '\\')
                                i++;
                        else if (ch == '"')
                                in_string = false;
                        continue;
                }
                if (ch == '"')
                        in_string = true;
                else if (ch == '[' || ch == '{') {
                        if (++depth > deepest)
                                deepest = depth;
                        if (deepest > max)
                                return deepest;
                } else if ((ch == ']' || ch == '}') && depth > 0)
                        depth--;
        }
        return deepest;
}

static void reply_line_error(Connection *c, int code, const char *reason, const char *message) {
        Slot *slot = connection_add_slot(c, 0);

        if (!slot) {
                connection_close(c);
                return;
        }
        c->manager->parse_errors++;
        connection_slot_done(c, slot, 0, error_reply(NULL, code, reason, NULL, message));
}

void rpc_process_line(Connection *c, const char *line, size_t len) {
        Manager *m = c->manager;
        _cleanup_(json_decrefp) json_t *j = NULL;
        json_error_t err;
        size_t i, n;
        Slot *slot;

        /* Blank lines are ignored, which makes interactive use (socat, nc) friendlier. */
        for (i = 0; i < len && (line[i] == ' ' || line[i] == '\t'); i++)
                ;
        if (i == len)
                return;

        if (rpc_json_depth(line, len, m->config->max_depth) > m->config->max_depth) {
                reply_line_error(c, IDM_RPC_INVALID_REQUEST, IDM_REASON_TOO_DEEP, "request nested too deeply");
                return;
        }

        j = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
        if (!j) {
                char msg[256];
                (void) snprintf(msg, sizeof(msg), "Parse error: %s at position %d", err.text, err.position);
                reply_line_error(c, IDM_RPC_PARSE_ERROR, IDM_REASON_PARSE_ERROR, msg);
                return;
        }

        if (!json_is_array(j)) {
                slot = connection_add_slot(c, 0);
                if (!slot) {
                        connection_close(c);
                        return;
                }
                dispatch_one(c, slot, 0, j);
                return;
        }

        n = json_array_size(j);
        if (n == 0) {
                reply_line_error(c, IDM_RPC_INVALID_REQUEST, IDM_REASON_INVALID_REQUEST, "empty batch");
                return;
        }
        if (n > m->config->max_batch) {
                reply_line_error(c, IDM_RPC_INVALID_REQUEST, IDM_REASON_BATCH_TOO_LARGE, "batch too large");
                return;
        }
        slot = connection_add_slot(c, n);
        if (!slot) {
                connection_close(c);
                return;
        }
        for (i = 0; i < n; i++)
                dispatch_one(c, slot, i, json_array_get(j, i));
}
