/* SPDX-License-Identifier: MIT */
/*
 * systemd's user database (userdb.h): the varlink calls of io.systemd.UserDatabase answered from
 * a read snapshot, and the user and group records of customers who are Unix users.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config-build.h"
#include "idm/cleanup.h"
#include "idm/json-util.h"
#include "idm/protocol.h"
#include "lockout.h"
#include "log.h"
#include "manager.h"
#include "ratelimit.h"
#include "records/customers.h"
#include "records/publishers.h"
#include "records/unixusers.h"
#include "userdb.h"
#include "validate.h"

#define IFACE "io.systemd.UserDatabase"
#define ERROR_NO_RECORD IFACE ".NoRecordFound"
#define ERROR_BAD_SERVICE IFACE ".BadService"
#define ERROR_NOT_AVAILABLE IFACE ".ServiceNotAvailable"
#define ERROR_NO_ENUMERATION IFACE ".EnumerationNotSupported"
#define ERROR_CONFLICT IFACE ".ConflictRecordFound"
#define ERROR_METHOD_NOT_FOUND "org.varlink.service.MethodNotFound"
#define ERROR_INVALID_PARAMETER "org.varlink.service.InvalidParameter"

/* A name or e-mail given as a lookup key: longer ones name nobody. */
#define USERDB_KEY_MAX IDM_EMAIL_MAX

const char *userdb_service(const Config *c) {
        const char *slash;

        if (!c->userdb_socket[0])
                return NULL;
        slash = strrchr(c->userdb_socket, '/');
        return slash ? slash + 1 : c->userdb_socket;
}

void userdb_log_setup(Manager *m) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *publisher = NULL;
        const Config *c = m->config;
        int r;

        if (!userdb_service(c))
                return;
        r = store_read(m->store, &t);
        if (r >= 0)
                r = publisher_get(t, c->userdb_publisher, &publisher);
        if (r == -ENOENT)
                log_warning("[userdb] publisher = %s does not exist: %s finds nobody.", c->userdb_publisher,
                            c->userdb_socket);
        else if (r < 0)
                log_warning_errno(r, "Cannot read [userdb] publisher %s: %m", c->userdb_publisher);
        else if (publisher_unix_users(publisher) == UNIX_USERS_NONE)
                log_notice("Publisher %s has unixUsers \"none\": %s finds nobody until updatePublisher changes it.",
                           c->userdb_publisher, c->userdb_socket);
        else
                log_info("Serving the Unix users of publisher %s (unixUsers \"%s\") on %s.", c->userdb_publisher,
                         unix_users_to_string(publisher_unix_users(publisher)), c->userdb_socket);
}

/* ---- records -------------------------------------------------------------------------------- */

typedef struct Lookup {
        Manager *m;
        StoreTxn *t;
        json_t *publisher;      /* the served publisher's record; NULL: none (nothing is found) */
        uint64_t now_usec;
} Lookup;

/* The customer's user name: its lower-cased e-mail, or "c" and its id ([userdb] name_format). */
static char *user_name(const Config *c, json_t *customer) {
        char *s = NULL;

        if (streq(c->userdb_name_format, "id")) {
                if (asprintf(&s, "c%s", strempty(json_object_get_string(customer, "customerId"))) < 0)
                        return NULL;
                return s;
        }
        return email_normalize(strempty(json_object_get_string(customer, "email")));
}

/* [userdb] home with %u replaced by the user name and %% by %. NULL on OOM. */
static char *home_directory(const char *template, const char *name) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                return NULL;
        for (const char *p = template; *p; p++) {
                if (p[0] == '%' && p[1] == 'u') {
                        fputs(name, f);
                        p++;
                } else if (p[0] == '%' && p[1] == '%') {
                        fputc('%', f);
                        p++;
                } else
                        fputc(*p, f);
        }
        if (fclose(f) != 0)
                return NULL;
        return TAKE_PTR(buf);
}

/* Whether the customer is locked: disabled, or its account locked by failed logins now. */
static bool customer_locked(Lookup *l, json_t *customer) {
        _cleanup_free_ char *key = NULL;
        LockoutState st = {};
        bool locked;

        if (json_is_true(json_object_get(customer, "disabled")))
                return true;
        if (lockout_key(json_object_get_string(customer, "publisherId"),
                        strempty(json_object_get_string(customer, "email")), &key) < 0 ||
            lockout_get(l->t, key, &st) < 0)
                return false;
        locked = lockout_is_locked(&st, l->now_usec, NULL);
        lockout_state_done(&st);
        return locked;
}

/* The realName (GECOS) of a customer: its names, when they fit a passwd field. */
static char *real_name(json_t *customer) {
        const char *first = json_object_get_string(customer, "firstName");
        const char *last = json_object_get_string(customer, "lastName");
        char *s = NULL;

        if (!first && !last)
                return NULL;
        if (asprintf(&s, "%s%s%s", strempty(first), first && last ? " " : "", strempty(last)) < 0)
                return NULL;
        if (strchr(s, ':') || !text_is_valid(s, 1024)) {
                free(s);
                return NULL;
        }
        return s;
}

/* The user record of a customer who is a Unix user: only what passwd needs, never a secret. */
static json_t *user_record(Lookup *l, json_t *customer) {
        const Config *c = l->m->config;
        _cleanup_free_ char *name = user_name(c, customer), *home = NULL, *gecos = real_name(customer);
        const char *shell = json_object_get_string(customer, "unixShell");
        uint32_t uid = customer_unix_uid(customer);
        json_t *changed = json_object_get(customer, "registrationDate"), *rec;

        if (!name)
                return NULL;
        home = home_directory(c->userdb_home, name);
        if (!home)
                return NULL;
        if (!shell)
                shell = json_object_get_string(l->publisher, "unixShell");
        if (!shell)
                shell = c->userdb_shell;
        rec = json_pack("{s:s, s:I, s:I, s:s, s:s, s:s, s:s}", "userName", name, "uid", (json_int_t) uid, "gid",
                        (json_int_t) uid, "homeDirectory", home, "shell", shell, "disposition", "regular", "service",
                        userdb_service(c));
        if (!rec)
                return NULL;
        if ((gecos && json_object_set_new(rec, "realName", json_string(gecos)) < 0) ||
            (json_is_integer(changed) && json_object_set(rec, "lastChangeUSec", changed) < 0) ||
            (customer_locked(l, customer) && json_object_set_new(rec, "locked", json_true()) < 0))
                return json_decref(rec), NULL;
        return rec;
}

static json_t *group_record(const Config *c, const char *name, uint32_t gid) {
        return json_pack("{s:s, s:I, s:s, s:s}", "groupName", name, "gid", (json_int_t) gid, "disposition", "regular",
                         "service", userdb_service(c));
}

/* [userdb] group, with its group_gid. */
static json_t *shared_group_record(const Config *c) {
        return group_record(c, c->userdb_group, (uint32_t) c->userdb_group_gid);
}

/* The private group of a customer who is a Unix user: its user name, gid = uid. */
static json_t *private_group_record(Lookup *l, json_t *customer) {
        _cleanup_free_ char *name = user_name(l->m->config, customer);

        return name ? group_record(l->m->config, name, customer_unix_uid(customer)) : NULL;
}

static bool customer_served(Lookup *l, json_t *customer) {
        return l->publisher &&
               streq_ptr(json_object_get_string(customer, "publisherId"), l->m->config->userdb_publisher) &&
               customer_is_unix_user(customer, l->publisher);
}

/* The customer a user name names, in either form ("c" and 10 digits, or an e-mail), if it is a
 * Unix user served here. -ENOENT. */
static int find_by_name(Lookup *l, const char *name, json_t **ret) {
        _cleanup_(json_decrefp) json_t *customer = NULL;
        int r;

        if (name[0] == 'c' && digits_are_valid(name + 1, CUSTOMER_ID_DIGITS))
                r = customer_get(l->t, name + 1, &customer);
        else
                r = customer_find_by_email(l->t, l->m->config->userdb_publisher, name, &customer);
        if (r < 0)
                return r;
        if (!customer_served(l, customer))
                return -ENOENT;
        *ret = TAKE_PTR(customer);
        return 0;
}

static int find_by_uid(Lookup *l, uint32_t uid, json_t **ret) {
        _cleanup_(json_decrefp) json_t *customer = NULL;
        int r;

        r = customer_find_by_unix_uid(l->t, uid, &customer);
        if (r < 0)
                return r;
        if (!customer_served(l, customer))
                return -ENOENT;
        *ret = TAKE_PTR(customer);
        return 0;
}

/* ---- replies -------------------------------------------------------------------------------- */

static json_t *error_reply(const char *error, json_t *parameters) {
        return json_pack("{s:s, s:o}", "error", error, "parameters", parameters ? parameters : json_object());
}

static json_t *record_reply(json_t *record) {
        if (!record)
                return NULL;
        return json_pack("{s:{s:o, s:b}}", "parameters", "record", record, "incomplete", false);
}

/* The replies of one call: an array of reply objects; all but the last get "continues". */
typedef struct Replies {
        json_t *items;
        bool truncated;
} Replies;

static int replies_add(Replies *rs, json_t *reply) {
        if (!reply)
                return -ENOMEM;
        if (json_array_size(rs->items) >= USERDB_ENUMERATE_MAX) {
                json_decref(reply);
                rs->truncated = true;
                return 1;
        }
        return json_array_append_new(rs->items, reply) < 0 ? -ENOMEM : 0;
}

/* ---- the calls ------------------------------------------------------------------------------ */

typedef struct Query {
        const char *user_name;
        const char *group_name;
        int64_t uid;            /* -1: none */
        int64_t gid;
        bool more;
} Query;

/* Every served Unix user, in e-mail order, for enumerations. fn adds what it makes of each. */
typedef int (*EachUserFn)(Lookup *l, json_t *customer, Replies *rs);

typedef struct EachUser {
        Lookup *l;
        EachUserFn fn;
        Replies *rs;
} EachUser;

static int each_user_visit(json_t *customer, void *userdata) {
        EachUser *e = userdata;

        if (!customer_served(e->l, customer))
                return 0;
        return e->fn(e->l, customer, e->rs);
}

static int each_user(Lookup *l, EachUserFn fn, Replies *rs) {
        if (!l->publisher)
                return 0;
        return customers_foreach_by_email(l->t, l->m->config->userdb_publisher, NULL, NULL, each_user_visit,
                                          &(EachUser) { .l = l, .fn = fn, .rs = rs });
}

static int add_user(Lookup *l, json_t *customer, Replies *rs) {
        return replies_add(rs, record_reply(user_record(l, customer)));
}

static int add_private_group(Lookup *l, json_t *customer, Replies *rs) {
        return replies_add(rs, record_reply(private_group_record(l, customer)));
}

static int add_membership(Lookup *l, json_t *customer, Replies *rs) {
        _cleanup_free_ char *name = user_name(l->m->config, customer);

        if (!name)
                return -ENOMEM;
        return replies_add(rs, json_pack("{s:{s:s, s:s}}", "parameters", "userName", name, "groupName",
                                         l->m->config->userdb_group));
}

static bool enumeration_refused(Lookup *l, const Query *q, Replies *rs) {
        if (q->more && l->m->config->userdb_enumerate)
                return false;
        (void) replies_add(rs, error_reply(ERROR_NO_ENUMERATION, NULL));
        return true;
}

/* The served customer a name and/or a number (uid, or the gid of its private group) name; both
 * given, they must name the same one. 0 with *ret; 1 when the answer is an error reply, added to
 * rs (NoRecordFound, ConflictRecordFound); < 0 when the lookup failed. */
static int find_customer(Lookup *l, const char *name, int64_t number, Replies *rs, json_t **ret) {
        _cleanup_(json_decrefp) json_t *by_name = NULL, *by_number = NULL;
        int r;

        if (name) {
                r = find_by_name(l, name, &by_name);
                if (r < 0 && r != -ENOENT)
                        return r;
        }
        if (number >= 0) {
                r = find_by_uid(l, (uint32_t) number, &by_number);
                if (r < 0 && r != -ENOENT)
                        return r;
        }
        if ((name && !by_name) || (number >= 0 && !by_number))
                r = replies_add(rs, error_reply(ERROR_NO_RECORD, NULL));
        else if (by_name && by_number && customer_unix_uid(by_name) != customer_unix_uid(by_number))
                r = replies_add(rs, error_reply(ERROR_CONFLICT, NULL));
        else {
                *ret = by_name ? TAKE_PTR(by_name) : TAKE_PTR(by_number);
                return 0;
        }
        return r < 0 ? r : 1;
}

static int get_user_record(Lookup *l, const Query *q, Replies *rs) {
        _cleanup_(json_decrefp) json_t *customer = NULL;
        int r;

        if (!q->user_name && q->uid < 0)
                return enumeration_refused(l, q, rs) ? 0 : each_user(l, add_user, rs);
        r = find_customer(l, q->user_name, q->uid, rs, &customer);
        if (r != 0)
                return r < 0 ? r : 0;
        return add_user(l, customer, rs);
}

static bool is_shared_group(const Config *c, const char *name, int64_t gid) {
        if (!c->userdb_group[0])
                return false;
        return (!name || streq(name, c->userdb_group)) && (gid < 0 || (uint64_t) gid == c->userdb_group_gid);
}

static int get_group_record(Lookup *l, const Query *q, Replies *rs) {
        const Config *c = l->m->config;
        _cleanup_(json_decrefp) json_t *customer = NULL;
        int r;

        if (!q->group_name && q->gid < 0) {
                if (enumeration_refused(l, q, rs))
                        return 0;
                if (c->userdb_group[0]) {
                        r = replies_add(rs, record_reply(shared_group_record(c)));
                        if (r < 0)
                                return r;
                }
                return each_user(l, add_private_group, rs);
        }
        if (is_shared_group(c, q->group_name, q->gid))
                return replies_add(rs, record_reply(shared_group_record(c)));
        /* A private group: named and numbered as its user. */
        r = find_customer(l, q->group_name, q->gid, rs, &customer);
        if (r != 0)
                return r < 0 ? r : 0;
        return add_private_group(l, customer, rs);
}

/* Memberships are those of the shared group only: a private group is its user's primary group,
 * which systemd does not list as a membership. */
static int get_memberships(Lookup *l, const Query *q, Replies *rs) {
        const Config *c = l->m->config;
        _cleanup_(json_decrefp) json_t *customer = NULL;
        int r;

        if (q->user_name) {
                r = find_by_name(l, q->user_name, &customer);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (!customer || !c->userdb_group[0] || (q->group_name && !streq(q->group_name, c->userdb_group)))
                        return replies_add(rs, error_reply(ERROR_NO_RECORD, NULL));
                return add_membership(l, customer, rs);
        }
        if (q->group_name && !is_shared_group(c, q->group_name, -1))
                return replies_add(rs, error_reply(ERROR_NO_RECORD, NULL));
        /* The members of the shared group, or every membership: an enumeration. A group lookup
         * (getgrnam) asks this without "more"; its answer is then "no members listed". */
        if (!q->more || !c->userdb_enumerate)
                return replies_add(rs, error_reply(q->group_name ? ERROR_NO_RECORD : ERROR_NO_ENUMERATION, NULL));
        if (!c->userdb_group[0])
                return 0;
        return each_user(l, add_membership, rs);
}

typedef int (*CallFn)(Lookup *l, const Query *q, Replies *rs);

typedef struct UserdbMethod {
        const char *name;
        CallFn fn;
        const char *const params[4];    /* besides "service" */
} UserdbMethod;

static const UserdbMethod userdb_methods[] = {
        { IFACE ".GetUserRecord", get_user_record, { "uid", "userName" } },
        { IFACE ".GetGroupRecord", get_group_record, { "gid", "groupName" } },
        { IFACE ".GetMemberships", get_memberships, { "userName", "groupName" } },
};

/* Reads the parameters into q: numbers 0..2^32-2, names up to USERDB_KEY_MAX bytes, the service
 * ours. NULL: fine; else the error reply. */
static json_t *query_parse(const Config *c, const UserdbMethod *method, json_t *params, Query *q) {
        const char *key;
        json_t *v;

        q->uid = q->gid = -1;
        json_object_foreach(params, key, v) {
                bool known = streq(key, "service");

                for (size_t i = 0; i < ELEMENTSOF(method->params) && method->params[i]; i++)
                        known = known || streq(key, method->params[i]);
                if (!known)
                        return error_reply(ERROR_INVALID_PARAMETER, json_pack("{s:s}", "parameter", key));
                if (json_is_null(v))
                        continue;
                if (streq(key, "uid") || streq(key, "gid")) {
                        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                            json_integer_value(v) >= (json_int_t) UINT32_MAX)
                                return error_reply(ERROR_INVALID_PARAMETER, json_pack("{s:s}", "parameter", key));
                        *(streq(key, "uid") ? &q->uid : &q->gid) = json_integer_value(v);
                } else if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > USERDB_KEY_MAX ||
                           strlen(json_string_value(v)) != json_string_length(v))
                        return error_reply(ERROR_INVALID_PARAMETER, json_pack("{s:s}", "parameter", key));
                else if (streq(key, "userName"))
                        q->user_name = json_string_value(v);
                else if (streq(key, "groupName"))
                        q->group_name = json_string_value(v);
        }
        /* systemd's own services answer only queries addressed to them. */
        if (!streq_ptr(json_object_get_string(params, "service"), userdb_service(c)))
                return error_reply(ERROR_BAD_SERVICE, NULL);
        return NULL;
}

static json_t *get_info(void) {
        return json_pack("{s:{s:s, s:s, s:s, s:s, s:[s, s]}}", "parameters", "vendor", "idm", "product", "idmd",
                         "version", IDM_VERSION, "url", "https://github.com/idm/idm", "interfaces", IFACE,
                         "org.varlink.service");
}

/* Runs one call into rs (the error replies included). < 0: the lookup failed (store). */
static int userdb_call(Connection *c, const char *method_name, json_t *params, bool more, Replies *rs) {
        Manager *m = c->manager;
        const UserdbMethod *method = NULL;
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *publisher = NULL;
        RateLimitSource src;
        Query q = { .more = more };
        json_t *refusal;
        Lookup l;
        int r;

        if (streq(method_name, "org.varlink.service.GetInfo"))
                return replies_add(rs, get_info());
        for (size_t i = 0; i < ELEMENTSOF(userdb_methods); i++)
                if (streq(method_name, userdb_methods[i].name))
                        method = userdb_methods + i;
        if (!method)
                return replies_add(rs, error_reply(ERROR_METHOD_NOT_FOUND, json_pack("{s:s}", "method", method_name)));
        refusal = query_parse(m->config, method, params, &q);
        if (refusal)
                return replies_add(rs, refusal);

        /* Rate limited before the store is read. */
        ratelimit_source_init(&src, c->peer.uid, false, NULL);
        r = ratelimit_acquire(m->ratelimit, METHOD_CLASS_USERDB, &src, now_monotonic_usec(), NULL);
        if (r < 0) {
                log_debug("c%llu: userdb lookup of uid %u refused by the rate limit", (unsigned long long) c->id,
                          (unsigned) c->peer.uid);
                return replies_add(rs, error_reply(ERROR_NOT_AVAILABLE, NULL));
        }
        r = store_read(m->store, &t);
        if (r >= 0) {
                r = publisher_get(t, m->config->userdb_publisher, &publisher);
                if (r == -ENOENT)
                        r = 0;  /* no such publisher: nobody is found */
        }
        if (r >= 0) {
                l = (Lookup) { .m = m, .t = t, .publisher = publisher, .now_usec = now_realtime_usec() };
                r = method->fn(&l, &q, rs);
        }
        ratelimit_release(m->ratelimit, METHOD_CLASS_USERDB, &src);
        if (r < 0)
                return r;
        if (rs->truncated)
                log_warning("userdb enumeration cut at %u records.", USERDB_ENUMERATE_MAX);
        /* An enumeration that found nothing. */
        if (json_array_size(rs->items) == 0)
                return replies_add(rs, error_reply(ERROR_NO_RECORD, NULL));
        return 0;
}

/* Protocol violations end the connection without a reply, as systemd's varlink does. */
static void userdb_refuse(Connection *c, const char *why) {
        log_debug("c%llu: varlink: %s, closing", (unsigned long long) c->id, why);
        c->manager->parse_errors++;
        connection_refuse(c, IDM_RPC_INVALID_REQUEST, IDM_REASON_INVALID_REQUEST, why);
}

#define GOTO_REFUSE(text)             \
        do {                            \
                why = (text);           \
                goto refuse;            \
        } while (0)

static void userdb_process(Connection *c, const char *msg, size_t len) {
        Manager *m = c->manager;
        _cleanup_(json_decrefp) json_t *req = NULL, *items = json_array();
        json_t *params, *more, *oneway, *v;
        const char *method, *key;
        Replies rs = { .items = items };
        const char *why;
        size_t n;
        Slot *s;
        int r;

        if (!items) {
                connection_close(c);
                return;
        }
        if (rpc_json_depth(msg, len, m->config->max_depth) > m->config->max_depth)
                GOTO_REFUSE("message nested too deep");
        req = json_loadb(msg, len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(req))
                GOTO_REFUSE("message is not a JSON object");
        json_object_foreach(req, key, v)
                if (!streq(key, "method") && !streq(key, "parameters") && !streq(key, "more") && !streq(key, "oneway"))
                        GOTO_REFUSE("unknown member in the call");
        method = json_object_get_string(req, "method");
        params = json_object_get(req, "parameters");
        more = json_object_get(req, "more");
        oneway = json_object_get(req, "oneway");
        if (!method || (params && !json_is_object(params)) || (more && !json_is_boolean(more)) ||
            (oneway && !json_is_boolean(oneway)))
                GOTO_REFUSE("malformed call");
        if (!params) {
                params = json_object();
                if (!params) {
                        connection_close(c);
                        return;
                }
                (void) json_object_set_new(req, "parameters", params);
        }

        r = userdb_call(c, method, params, json_is_true(more), &rs);
        if (r < 0) {
                log_warning_errno(r, "c%llu: userdb lookup failed: %m", (unsigned long long) c->id);
                json_array_clear(items);
                (void) replies_add(&rs, error_reply(ERROR_NOT_AVAILABLE, NULL));
        }
        n = json_array_size(items);
        /* A call with "more" may get several replies; without, only the first. */
        if (!json_is_true(more) && n > 1)
                n = 1;
        s = connection_add_slot(c, json_is_true(oneway) || n == 1 ? 0 : n);
        if (!s) {
                connection_close(c);
                return;
        }
        if (json_is_true(oneway)) {
                connection_slot_done(c, s, 0, NULL);
                return;
        }
        for (size_t i = 0; i < n; i++) {
                json_t *reply = json_incref(json_array_get(items, i));

                if (i + 1 < n)
                        (void) json_object_set_new(reply, "continues", json_true());
                connection_slot_done(c, s, i, reply);
        }
        return;
refuse:
        userdb_refuse(c, why);
}

static size_t userdb_max_message(const Manager *m) {
        return USERDB_MAX_MESSAGE;
}

const ConnectionProtocol userdb_protocol = {
        .name = "varlink",
        .terminator = '\0',
        .items_apart = true,
        .max_message = userdb_max_message,
        .process = userdb_process,
};
