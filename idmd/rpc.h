/* SPDX-License-Identifier: MIT */
/*
 * JSON-RPC 2.0 for idmd: turning one request line into calls, validating the envelope and the
 * params against each method's table, deciding the caller's role, dispatching to the handler,
 * and building replies and errors. Connection I/O is in connection.c, the handlers in
 * methods/<family>.c.
 *
 * A Call is one request. The handler replies exactly once, with call_reply() or
 * call_reply_error() — either before it returns or later (after work on a worker thread), in
 * which case it keeps a reference (call_ref) until then. Replies reach the connection in request
 * order; if the connection went away meanwhile they are dropped.
 */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "config.h"
#include "idm/cleanup.h"
#include "log.h"

typedef struct Manager Manager;
typedef struct Connection Connection;
typedef struct Call Call;
typedef struct Slot Slot;
typedef struct StoreTxn StoreTxn;

typedef enum Role {
        ROLE_ANYONE,
        ROLE_CUSTOMER,
        ROLE_PUBLISHER,
        ROLE_ADMIN,
        _ROLE_MAX,
        _ROLE_INVALID = -22,
} Role;

typedef struct Peer {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        bool admin;             /* uid 0 or member of admin_group (SO_PEERCRED/SO_PEERGROUPS) */
} Peer;

typedef enum ParamType {
        PARAM_STRING,
        PARAM_INTEGER,
        PARAM_BOOLEAN,
        PARAM_OBJECT,
        PARAM_ARRAY,
        PARAM_ANY,
} ParamType;

#define PARAM_STRING_MAX_DEFAULT 1024u

typedef struct ParamSpec {
        const char *name;
        ParamType type;
        bool required;
        size_t max;             /* strings: bytes; arrays: items; 0: PARAM_STRING_MAX_DEFAULT / 100 */
        size_t min;             /* strings: bytes (1 for identifiers: "" names nothing) */
} ParamSpec;

/* An identifier param: a non-empty string of at most max bytes. */
#define PARAM_ID(name, required, max) { name, PARAM_STRING, required, max, 1 }

typedef int (*MethodHandler)(Call *call, json_t *params);

typedef struct Method {
        const char *name;
        MethodHandler handler;
        Role role;              /* least role needed; PUBLISHER methods also admit admin peers */
        MethodClass class;      /* for the rate limiter */
        const ParamSpec *params;        /* terminated by an entry with name NULL */
        const char *const *positional;  /* NULL, or names for params sent as an array */
        const char *address_param;      /* NULL, or the param naming the end user's address
                                         * (customerIP, PAM's rhost): trusted callers are rate
                                         * limited by it (docs/ratelimits.md) */
        bool publisher_optional;        /* ROLE_ANYONE methods: a publisherToken, when given, is
                                         * checked and makes the call a publisher's */
        bool reads_customer;            /* ROLE_CUSTOMER methods: the token's check reads the
                                         * customer's record too (call_take_customer_record()),
                                         * in the same round trip as the session's on PostgreSQL */
        bool publisher_form;            /* ROLE_CUSTOMER methods: with a publisherToken (or from
                                         * an admin peer naming publisherId) the call is a
                                         * publisher's, about a customer it names */
        bool test_only;                 /* exists only in an idmd started with --test-clock:
                                         * otherwise unknown (-32601) and listed nowhere */
} Method;

/* Each methods/<family>.c defines one table, terminated by an entry with name NULL. */
extern const Method methods_server[];
extern const Method methods_publishers[];
extern const Method methods_tokens[];
extern const Method methods_customers[];
extern const Method methods_pam[];
extern const Method methods_consents[];
extern const Method methods_capture[];
extern const Method methods_reset[];
extern const Method methods_remote[];
extern const Method methods_device[];
extern const Method methods_lockouts[];
extern const Method methods_locales[];
extern const Method methods_outbox[];

const Method *rpc_find_method(const char *name);
/* Calls fn for every method in every table, in table order (test-only methods only when they
 * exist). rpc_find_method() does not find a test-only method that does not exist. */
void rpc_foreach_method(void (*fn)(const Method *m, size_t index, void *userdata), void *userdata);
size_t rpc_method_index(const Method *m);       /* 0..rpc_n_methods()-1, for statistics */
size_t rpc_n_methods(void);

/* Processes one complete request line (without '\n') received on c: parses it, makes calls,
 * dispatches them, and queues their slots on c. Never fails: bad input becomes error replies. */
void rpc_process_line(Connection *c, const char *line, size_t len);

/* Checks params (an object) against the method's ParamSpec table: unknown keys, types, string
 * lengths (bytes), NUL bytes, array sizes, required keys. 0 if acceptable; else -EINVAL with
 * *ret_param naming the offending parameter (borrowed from params or the table) and message
 * saying what is wrong. Pure: no reply is sent. */
int rpc_check_params(const Method *method, json_t *params, const char **ret_param, char *message,
                     size_t message_size);

/* The deepest nesting of arrays and objects in the JSON text, counted outside strings; stops
 * counting once over max (returns a value > max then). */
unsigned rpc_json_depth(const char *text, size_t len, unsigned max);

/* A complete error reply object {jsonrpc, id, error: {code, message, data: {reason}}}; id may be
 * NULL (null). New reference, NULL on OOM. */
json_t *rpc_error_reply(json_t *id, int code, const char *reason, const char *message);

/* An error reply line (with trailing '\n') with id null, for connection-level refusals.
 * NULL on OOM. */
char *rpc_format_error_line(int code, const char *reason, const char *message);

/* A refusal of a call: what rpc.c answers when a handler, a helper or a completion gives up
 * with one. */
typedef struct CallError {
        int code;                       /* 0: none recorded */
        const char *reason;             /* a static IDM_REASON_* string */
        json_t *data;                   /* owned; "reason" is added to it; may be NULL */
        char message[256];              /* "": the code's default text */
} CallError;

/* The one way to refuse a call: records the refusal (the first recorded wins; data is stolen)
 * and returns the -errno that goes with its code (401 -EACCES, 403 -EPERM, 404 -ENOENT, 409
 * -EEXIST, 423 -ENOLCK, 429/503 -EAGAIN, 400/422/-32602 -EINVAL). Helpers and handlers return it;
 * rpc.c builds the reply once the handler (or a call_write() completion) is done. */
int call_fail(Call *call, int code, const char *reason, json_t *data, const char *format, ...)
        __attribute__((format(printf, 5, 6)));
int call_failv(Call *call, int code, const char *reason, json_t *data, const char *format, va_list ap)
        __attribute__((format(printf, 5, 0)));
/* -32602 invalid_params naming the parameter. */
int call_fail_param(Call *call, const char *param, const char *message);

/* Answers a call that gave up with r < 0: the refusal recorded by call_fail(), else the errno
 * mapping of call_reply_errno(). Nothing if it was answered already. Returns 0. */
int call_reply_failure(Call *call, int r);

/* The call's context. */
Manager *call_manager(Call *call);
Connection *call_connection(Call *call);        /* the client's connection (an owner for workers) */
const Peer *call_peer(Call *call);
Role call_role(Call *call);
const char *call_request_id(Call *call);                /* for log lines: "c12.3" */
/* Makes the call the log scope (log.h: its journal fields go with every entry) and returns the
 * scope to give back to log_scope_restore() before the call may go:
 *     _cleanup_(log_scope_restore) _unused_ LogScope previous = call_log_scope(call); */
LogScope call_log_scope(Call *call);
const char *call_publisher_id(Call *call);              /* authenticated publisher, or NULL */
const char *call_customer_id(Call *call);               /* authenticated customer, or NULL */
const char *call_session_id(Call *call);                /* the session (family) of its token, or NULL */
/* Sets the call's authenticated customer (role at least CUSTOMER). -ENOMEM. */
int call_set_customer(Call *call, const char *customer_id, const char *publisher_id, const char *session_id);
/* The customer's record, read in the snapshot that checked the call's token (Method.reads_customer):
 * kept (stolen) for the handler, which takes it over (NULL: not read; read it then). */
void call_keep_customer_record(Call *call, json_t *rec);
json_t *call_take_customer_record(Call *call);

Call *call_ref(Call *call);
Call *call_unref(Call *call);
DEFINE_POINTER_CLEANUP(Call, call_unref);

/* Replies with result (reference stolen). A NULL result (an allocation that failed while it was
 * built) is answered -32603 internal_error, never as a success. Returns 0. */
int call_reply(Call *call, json_t *result);

/* Replies with a result given as JSON text (len bytes, not NUL-terminated, as json_dumps()
 * with JSON_COMPACT writes it), for results a method keeps made until what they show changes:
 * no JSON is built or serialized per request. NULL result: -32603, as call_reply(NULL). The
 * reply is byte for byte what call_reply() with the parsed result would send. Returns 0. */
int call_reply_text(Call *call, const char *result, size_t len);

/* For the results kept by methods: whether no write of a call (call_write()) is queued or
 * waiting to be durable now, and in *ret_generation a number that changes whenever one is
 * done. A result read from the store may be kept while the first is true and given again while
 * the generation is still the same and no write is in flight: the store has not changed since,
 * as far as the tables only requests write are concerned (the background sweep and the mail
 * outbox write their own tables: sessions, tokens, lockouts, the outbox). */
bool rpc_writes_settled(uint64_t *ret_generation);

/* Replies with the empty result {}. Returns 0. */
int call_reply_empty(Call *call);

/* Replies with an error. data (stolen, may be NULL) gets "reason" added. message NULL: a
 * default text for the code. Returns 0. */
int call_reply_error(Call *call, int code, const char *reason, json_t *data, const char *message);
int call_reply_errorf(Call *call, int code, const char *reason, const char *format, ...)
        __attribute__((format(printf, 4, 5)));

/* -32602 naming the offending parameter. */
int call_reply_invalid_param(Call *call, const char *param, const char *message);

/* Maps an internal -errno (store/worker failure) to the right reply: -ENOSPC → 503 store_full,
 * -EAGAIN → 503 unavailable, else -32603 internal_error (and logs it once) — -EBUSY included,
 * which only a programming error gives (a write while a snapshot is alive). */
int call_reply_errno(Call *call, int r);

bool call_replied(Call *call);

/* Writes on behalf of a call, as a unit of work of the store's next batch (store_submit()):
 * work(txn, w) runs in it; once it is durable (or failed), done(call, r, w) runs on the loop with
 * work's value or the error, and must reply (a call left without a reply is answered
 * call_reply_errno(r), or -32603 for r >= 0). Then free_w(w) (may be NULL). The call is kept
 * alive meanwhile. If the unit cannot even be queued, done runs at once with that error. So
 * every path goes through done, and no reply leaves before its writes are durable. Returns 0. */
typedef void (*CallWriteDone)(Call *call, int r, void *w);
int call_write(Call *call, int (*work)(StoreTxn *t, void *w), CallWriteDone done, void *w, void (*free_w)(void *w));
