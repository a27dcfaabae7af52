/* SPDX-License-Identifier: MIT */
/*
 * Customer accounts: registerCustomer, login (anyone); getCustomer, updateCustomer,
 * changePassword (the customer, by jwt).
 *
 * Every password hash or verification runs on the worker pool (workers.h): the handler checks
 * what it can on the loop, hands a PasswordJob to a worker and returns; the job's completion
 * runs back on the loop, writes in one unit of work and replies. Unknown accounts cost one
 * dummy verification, like a wrong password, and get the same answer (docs/security.md).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idm/json-util.h"
#include "idm/protocol.h"
#include "log.h"
#include "message-ids.h"
#include "manager.h"
#include "methods/capture.h"
#include "methods/consents.h"
#include "methods/customers.h"
#include "methods/locales.h"
#include "methods/lockouts.h"
#include "methods/methods.h"
#include "records/capture.h"
#include "records/consents.h"
#include "records/customers.h"
#include "records/publishers.h"
#include "records/unixusers.h"
#include "passwords.h"
#include "sessions.h"
#include "tokens.h"
#include "userdb.h"
#include "validate.h"
#include "workers.h"

#define NAME_MAX_BYTES 100
#define EXTERNAL_ID_MAX IDM_EXTERNAL_ID_MAX

/* --- publisher resolution --- */

/* Finds the publisher named by params' publisherId or offerId (both given: they must agree). */
int customers_resolve_publisher(Call *call, StoreTxn *t, json_t *params, char **ret) {
        const char *pid = json_object_get_string(params, "publisherId");
        const char *offer = json_object_get_string(params, "offerId");
        _cleanup_(json_decrefp) json_t *rec = NULL;
        int r;

        /* A valid publisherToken (a publisher_optional method) names its own publisher; an
         * offerId given with it must be one of that publisher's offers. */
        if (!pid)
                pid = call_publisher_id(call);
        if (!pid && !offer)
                return call_fail_param(call, "publisherId", "either 'publisherId' or 'offerId' is needed");
        if (offer) {
                const char *owner;

                r = offer_get(t, offer, &rec);
                if (r == -ENOENT)
                        return call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND,
                                         json_pack("{s:s}", "field", "offerId"), "no such offer");
                if (r < 0)
                        return r;
                owner = json_object_get_string(rec, "publisherId");
                if (!owner || (pid && !streq(pid, owner)))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                         json_pack("{s:s}", "field", "offerId"),
                                         "the offer does not belong to this publisher");
                pid = owner;
        } else {
                r = publisher_exists(t, pid);
                if (r < 0)
                        return r;
                if (r == 0)
                        return call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND,
                                         json_pack("{s:s}", "field", "publisherId"), "no such publisher");
        }

        *ret = strdup(pid);
        return *ret ? 0 : -ENOMEM;
}

int customers_read_publisher_for_login(Call *call, json_t *params, const char *email, StoreTxn **ret_txn,
                                       char **ret_publisher_id) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_free_ char *lock = NULL, *link = NULL;
        const char *pid = json_object_get_string(params, "publisherId") ?: call_publisher_id(call);
        int r;

        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        /* Hints only: a failure shows in the reads themselves. (By offerId the publisher is not
         * known yet: nothing to send ahead.) */
        if (pid && email && !json_object_get(params, "offerId")) {
                if (lockouts_key(call, pid, email, &lock) >= 0 && lock)
                        (void) store_prefetch(t, STORE_LOCKOUTS, lock);
                if (customer_email_key(pid, email, &link) >= 0)
                        (void) store_prefetch(t, STORE_CUSTOMERS_BY_EMAIL, link);
        }
        r = customers_resolve_publisher(call, t, params, ret_publisher_id);
        if (r < 0)
                return r;
        *ret_txn = TAKE_PTR(t);
        return 0;
}

int customers_read_publisher(Call *call, json_t *params, StoreTxn **ret_txn, char **ret_publisher_id) {
        return customers_read_publisher_for_login(call, params, NULL, ret_txn, ret_publisher_id);
}

int customers_index_key(const char *publisher_id, const char *email, char **ret) {
        return customer_email_key(publisher_id, email, ret);
}

int customers_find_by_email(StoreTxn *t, const char *publisher_id, const char *email, json_t **ret) {
        return customer_find_by_email(t, publisher_id, email, ret);
}

/* The customer as callers see it. New reference. */
json_t *customers_public(json_t *rec) {
        static const char *const unix_fields[] = { "unixUid", "unixEnabled", "unixShell" };
        static const char *const fields[] = {
                "customerId", "email", "publisherId", "firstName", "lastName", "country", "currency",
                "locale", "externalId", "externalData",
        };
        char buf[32];
        json_t *o = json_object();
        json_t *v;

        if (!o)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                v = json_object_get(rec, fields[i]);
                (void) json_object_set(o, fields[i], v ?: json_null());
        }
        v = json_object_get(rec, "registrationDate");
        (void) json_object_set_new(o, "registrationDate",
                                   json_is_integer(v) ? json_string(format_rfc3339((uint64_t) json_integer_value(v), buf))
                                                      : json_null());
        v = json_object_get(rec, "lastLoginDate");
        (void) json_object_set_new(o, "lastLoginDate",
                                   json_is_integer(v) ? json_string(format_rfc3339((uint64_t) json_integer_value(v), buf))
                                                      : json_null());
        v = json_object_get(rec, "lastUserIP");
        (void) json_object_set(o, "lastUserIP", v ?: json_null());
        /* A Unix user's fields (records/unixusers.h), only for customers that have them. */
        for (size_t i = 0; i < ELEMENTSOF(unix_fields); i++)
                if ((v = json_object_get(rec, unix_fields[i])))
                        (void) json_object_set(o, unix_fields[i], v);
        return o;
}

int customers_fail_uid_range(Call *call) {
        const Config *c = call_manager(call)->config;

        log_error("%s: the uid range %" PRIu64 "..%" PRIu64 " ([userdb] uid_min, uid_max) is used up.",
                  call_request_id(call), c->userdb_uid_min, c->userdb_uid_max);
        return call_fail(call, IDM_ERR_UNAVAILABLE, IDM_REASON_UID_RANGE_EXHAUSTED, NULL,
                         "no uid is left in the configured range; nothing was written");
}

int customers_check_new_password(Call *call, const char *password) {
        const Config *c = call_manager(call)->config;
        PasswordPolicy policy = {
                .min_length = c->password_min_length,
                .max_length = c->password_max_length,
                .require_letter = c->password_require_letter,
                .require_digit_or_symbol = c->password_require_digit_or_symbol,
        };
        const char *message = NULL;

        if (password_check_policy(&policy, password, &message) >= 0)
                return 0;
        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_WEAK_PASSWORD, NULL, "%s", message);
}

/* The customer the params name (exactly one of email, customerId, externalId) within the call's
 * publisher: *ret_email (the e-mail to key the lockout by) and *ret_customer (the record, NULL
 * for an e-mail without an account). Refusals with call_fail(). */
int customers_resolve_named(Call *call, StoreTxn *t, json_t *params, char **ret_email, json_t **ret_customer) {
        const char *publisher_id = call_publisher_id(call);
        const char *email = json_object_get_string(params, "email");
        const char *customer_id = json_object_get_string(params, "customerId");
        const char *external_id = json_object_get_string(params, "externalId");
        _cleanup_(json_decrefp) json_t *customer = NULL;
        int r;

        if (!!email + !!customer_id + !!external_id != 1)
                return call_fail_param(call, email ? "customerId" : "email",
                                                "name the customer by exactly one of 'email', 'customerId' "
                                                "or 'externalId'");
        if (!publisher_id)      /* auth_publisher() always sets it */
                return -EPROTO;

        if (email) {
                r = customers_find_by_email(t, publisher_id, email, &customer);
                if (r < 0 && r != -ENOENT)
                        return r;
                *ret_email = strdup(email);
        } else {
                r = external_id ? customer_find_by_external_id(t, publisher_id, external_id, &customer)
                                : customer_get(t, customer_id, &customer);
                if (r < 0 && r != -ENOENT)
                        return r;
                /* Another publisher's customer is as unknown as a missing one. */
                if (r == -ENOENT ||
                    !streq_ptr(json_object_get_string(customer, "publisherId"), publisher_id) ||
                    !json_object_get_string(customer, "email"))
                        return call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND, NULL,
                                                "no such customer");
                *ret_email = strdup(json_object_get_string(customer, "email"));
        }
        if (!*ret_email)
                return -ENOMEM;
        *ret_customer = TAKE_PTR(customer);
        return 0;
}

/* customers_resolve_named() for the methods that act on an account: an e-mail without one is
 * "no such customer" too, so *ret_customer is never NULL. */
static int customers_resolve_account(Call *call, StoreTxn *t, json_t *params, char **ret_email,
                                     json_t **ret_customer) {
        int r;

        r = customers_resolve_named(call, t, params, ret_email, ret_customer);
        if (r < 0)
                return r;
        if (!*ret_customer)
                return call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND, NULL, "no such customer");
        return 0;
}

/* The id of the account the params name, looked up in a read snapshot that is gone on return:
 * a write then finds the record again (-ENOENT if it went meanwhile). Refusals with call_fail(). */
static int customers_read_account_id(Call *call, json_t *params, char **ret) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *customer = NULL;
        _cleanup_free_ char *email = NULL;
        char *id;
        int r;

        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = customers_resolve_account(call, t, params, &email, &customer);
        if (r < 0)
                return r;
        id = strdup(json_object_get_string(customer, "customerId"));
        if (!id)
                return -ENOMEM;
        *ret = id;
        return 0;
}

/* --- profile fields --- */

/* Checks the optional profile fields in params and copies them into rec. Replies 400 itself. */
static int apply_profile(Call *call, json_t *params, json_t *rec) {
        Manager *m = call_manager(call);
        const char *s;

        if ((s = json_object_get_string(params, "locale"))) {
                if (!locale_is_valid(s))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_LOCALE, NULL,
                                                "locale must look like en_US (language_COUNTRY)");
                (void) json_object_set_new(rec, "locale", json_string(s));
        }
        if ((s = json_object_get_string(params, "country"))) {
                if (!country_is_valid(s))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_COUNTRY, NULL,
                                                "country must be an ISO 3166-1 alpha-2 code such as GB or US");
                (void) json_object_set_new(rec, "country", json_string(s));
        }
        if ((s = json_object_get_string(params, "currency"))) {
                if (!currency_is_valid(s, m->config->currencies))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_CURRENCY, NULL,
                                                "currency is not one of the configured currencies");
                (void) json_object_set_new(rec, "currency", json_string(s));
        }
        static const char *const names[] = { "firstName", "lastName" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if ((s = json_object_get_string(params, names[i]))) {
                        if (s[0] && !text_is_valid(s, NAME_MAX_BYTES))
                                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                                        json_pack("{s:s}", "field", names[i]),
                                                        "names must be printable text of at most 100 bytes");
                        (void) json_object_set_new(rec, names[i], json_string(s));
                }
        return 0;
}

static int check_customer_ip(Call *call, json_t *params) {
        const char *ip = json_object_get_string(params, "customerIP");
        unsigned char buf[sizeof(struct in6_addr)];

        if (!ip || inet_pton(AF_INET, ip, buf) == 1 || inet_pton(AF_INET6, ip, buf) == 1)
                return 0;
        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE, json_pack("{s:s}", "field", "customerIP"),
                         "customerIP must be an IPv4 or IPv6 address");
}

/* --- password jobs --- */

typedef enum PasswordJobKind {
        JOB_HASH,               /* registration: hash password */
        JOB_VERIFY,             /* login: verify password against hash (dummy if none), rehash if due */
        JOB_CHANGE,             /* verify password, then hash new_password */
} PasswordJobKind;

typedef struct PasswordJob PasswordJob;
/* Called on the loop once the hash ran; takes the job over (frees it, or hands it on). */
typedef void (*PasswordJobDone)(PasswordJob *j);
/* The success work of a credential check, inside the pipeline's unit of work. */
typedef int (*PasswordJobWrite)(StoreTxn *t, PasswordJob *j);

struct PasswordJob {
        PasswordJobKind kind;
        Call *call;
        json_t *params;
        PasswordCost cost;
        char *password;         /* wiped on free */
        char *new_password;
        char *stored_hash;      /* NULL: unknown account, verify against the dummy */
        char *customer_id;
        char *publisher_id;
        PasswordJobDone done;
        CustomerLoginSuccess on_login;  /* JOB_VERIFY: replies on success */
        CustomerLoginRecord also_record; /* JOB_VERIFY: more to commit with the login */
        CustomerPasswordChecked on_checked;     /* customers_check_password(): replies */
        CustomerHashedWrite hashed_write;       /* customers_hash_then_write(): its unit of work, */
        CallWriteDone hashed_done;              /* ... its completion */
        void *hashed_data;                      /* ... and their data, freed with hashed_free */
        void (*hashed_free)(void *p);
        bool lock_details;              /* caller may learn lock state and unknown accounts */
        bool prompts;                   /* login: consents and capture to prompt for, worked out */
        char *lockout_key;              /* its STORE_LOCKOUTS key; NULL: none kept */

        /* The credential pipeline's unit of work (credential_write): inputs ... */
        SessionContext ctx;
        LockoutPolicy policy;
        PasswordJobWrite success;       /* runs when the password was right and no lock fell */
        CallWriteDone finish;           /* replies to an accepted check (and to the write's errors) */
        const char *refusal;            /* the message of the 401 for a wrong password */
        void (*refused)(PasswordJob *j); /* NULL, or replaces that 401 (login: unknown_user) */
        void *success_data;
        /* ... and outputs */
        CredentialOutcome outcome;
        bool locked_now;
        SessionTokens tokens;           /* login: the new session */
        json_t *customer;               /* login: the customer record as recorded */
        int revoked;                    /* password changes: sessions ended */
        bool consents_outdated;         /* login with prompts */
        unsigned capture_missing;

        /* results, written by the worker */
        int verified;           /* 0 match, -EACCES mismatch, other < 0 failure */
        int hashed;             /* 0 when new_hash is set */
        char new_hash[PASSWORD_HASH_MAX];
};

static void password_job_free(PasswordJob *j) {
        if (!j)
                return;
        call_unref(j->call);
        json_decref(j->params);
        erase_and_free(j->password);
        erase_and_free(j->new_password);
        free(j->stored_hash);
        free(j->customer_id);
        free(j->publisher_id);
        free(j->lockout_key);
        session_tokens_done(&j->tokens);
        json_decref(j->customer);
        explicit_bzero(j->new_hash, sizeof(j->new_hash));
        if (j->hashed_free)
                j->hashed_free(j->hashed_data);
        free(j);
}

DEFINE_POINTER_CLEANUP(PasswordJob, password_job_free);

static void password_job_free_void(void *p) {
        password_job_free(p);
}

/* On a worker thread: only the job's own memory is touched. */
static void password_job_work(void *userdata) {
        PasswordJob *j = userdata;

        j->verified = -EACCES;
        j->hashed = -EAGAIN;

        switch (j->kind) {
        case JOB_HASH:
                j->hashed = password_hash(j->password, &j->cost, j->new_hash);
                break;
        case JOB_VERIFY:
                if (!j->stored_hash) {
                        (void) password_verify_dummy(j->password, &j->cost);
                        j->verified = -EACCES;
                        break;
                }
                j->verified = password_verify(j->stored_hash, j->password);
                if (j->verified == 0 && password_needs_rehash(j->stored_hash, &j->cost))
                        j->hashed = password_hash(j->password, &j->cost, j->new_hash);
                break;
        case JOB_CHANGE:
                j->verified = password_verify(j->stored_hash, j->password);
                if (j->verified == 0)
                        j->hashed = password_hash(j->new_password, &j->cost, j->new_hash);
                break;
        }
}

/* Back on the loop. */
static void password_job_finished(void *userdata, int error) {
        _cleanup_(password_job_freep) PasswordJob *j = userdata;
        _cleanup_(log_scope_restore) _unused_ LogScope previous = call_log_scope(j->call);

        if (error < 0) {        /* cancelled before it ran: idmd is stopping, or the client left */
                (void) call_reply_failure(j->call, call_fail(j->call, IDM_ERR_UNAVAILABLE, IDM_REASON_UNAVAILABLE, NULL,
                                                             "idmd is stopping; try again"));
                return;
        }
        j->done(TAKE_PTR(j));
}

/* --- the credential pipeline ---
 *
 * Every check of a password (login, the PAM methods, changePassword) goes the same way: the lock
 * is checked on a snapshot (a locked account is refused before any hashing), the password is
 * hashed on a worker, and then one unit of work settles it: a wrong password is counted towards
 * the lockout; a right one is checked against the lock again (other attempts may have locked
 * the account meanwhile), its success work runs, and the failures are cleared, all committed
 * together. Reset codes and device codes will take the same road. */

static int credential_write(StoreTxn *t, void *userdata) {
        PasswordJob *j = userdata;
        bool recorded;
        int r, k;

        json_decref(j->customer);       /* the unit may run again after the store grew */
        j->customer = NULL;
        session_tokens_done(&j->tokens);

        /* A right password's success work reads the account (and a login's the publisher's
         * prompts): sent with the lockout's read. */
        if (j->verified == 0 && j->customer_id && j->success) {
                (void) customer_prefetch(t, j->customer_id);
                if (j->prompts) {
                        (void) consent_definitions_prefetch(t, j->publisher_id);
                        (void) capture_settings_prefetch(t, j->publisher_id);
                }
        }

        r = lockouts_settle(t, &j->policy, j->lockout_key, j->verified == 0 && j->stored_hash, j->ctx.now_usec,
                            &j->outcome, &j->locked_now, &recorded);
        if (r < 0 || j->outcome != CREDENTIAL_ACCEPTED)
                return r;
        r = j->success ? j->success(t, j) : 0;
        if (r < 0 || !recorded)
                return r;       /* no failures on record: nothing to clear (and no statement) */
        k = lockouts_clear(t, j->lockout_key);
        return k < 0 ? k : r;
}

/* The pipeline's completion: a refused check is answered here, alike for every kind (a wrong
 * password, or a right one that other attempts' lock overtook, is 401 with the kind's message:
 * a 423 after verification would tell a guesser which guess was right); the rest is the kind's. */
static void credential_done(Call *call, int r, void *userdata) {
        PasswordJob *j = userdata;

        if (r >= 0 && j->outcome != CREDENTIAL_ACCEPTED) {
                /* Every password check is a login attempt of the account. */
                const char *reason = j->outcome == CREDENTIAL_LOCKED ? IDM_REASON_ACCOUNT_LOCKED :
                                     j->customer_id ? IDM_REASON_INVALID_CREDENTIALS : IDM_REASON_UNKNOWN_USER;

                log_event(LOG_LEVEL_INFO, IDM_MESSAGE_LOGIN_FAILED, j->publisher_id, j->customer_id, reason,
                          "%s: login refused for publisher %s: %s%s", call_request_id(call), j->publisher_id,
                          reason, j->outcome == CREDENTIAL_LOCKED ? " (locked meanwhile)" : "");
                if (j->locked_now)
                        lockouts_log_locked(call);
                if (j->outcome == CREDENTIAL_REFUSED && j->refused)
                        j->refused(j);
                else
                        (void) call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_CREDENTIALS, NULL, "%s",
                                         j->refusal);
                return;
        }
        j->finish(call, r, j);
}

/* Hands the job to its unit of work; finish replies once it is durable, to an accepted check or
 * to the write's errors. Takes the job over. */
static void credential_submit(PasswordJob *j, PasswordJobWrite success, CallWriteDone finish, const char *refusal) {
        Call *call = j->call;

        /* A hash that failed (not a mismatch) settles nothing. */
        if (j->verified < 0 && j->verified != -EACCES && j->verified != -EINVAL) {
                (void) call_reply_failure(call, j->verified);
                password_job_free(j);
                return;
        }
        if (j->verified == -EINVAL)     /* a stored hash we cannot read verifies nothing */
                j->verified = -EACCES;
        j->ctx = call_session_context(call);
        j->policy = lockout_policy_from_config(call_manager(call)->config);
        j->success = success;
        j->finish = finish;
        j->refusal = refusal;
        (void) call_write(call, credential_write, credential_done, j, password_job_free_void);
}

static PasswordJob *password_job_new(Call *call, PasswordJobKind kind, json_t *params, PasswordJobDone done) {
        Manager *m = call_manager(call);
        PasswordJob *j = calloc(1, sizeof(PasswordJob));

        if (!j)
                return NULL;
        j->kind = kind;
        j->call = call_ref(call);
        j->params = json_incref(params);
        j->cost = (PasswordCost) { .opslimit = m->config->argon2_opslimit, .memlimit = m->config->argon2_memlimit };
        j->done = done;
        return j;
}

/* Hands the job to the pool. On success the pool owns it; else the caller still does, and the
 * refusal (503 when the queue is full) is recorded. */
static int password_job_submit(PasswordJob *j) {
        Manager *m = call_manager(j->call);
        /* Owned by the connection: queued hashes of a client that went away are dropped. */
        int r = workers_submit_owned(m->workers, call_connection(j->call), password_job_work,
                                     password_job_finished, j);

        if (r == -EAGAIN) {
                log_warning("%s: password queue full (%u waiting), answering 503", call_request_id(j->call),
                            workers_queued(m->workers));
                return call_fail(j->call, IDM_ERR_UNAVAILABLE, IDM_REASON_UNAVAILABLE, NULL,
                                 "too many logins in progress; try again shortly");
        }
        return r;
}

static json_t *session_result(const char *customer_id, const SessionTokens *s) {
        return json_pack("{s:s, s:s, s:s, s:s}", "customerId", customer_id, "jwt", s->jwt, "refreshToken",
                         s->refresh_token, "customerToken", s->customer_token);
}

/* --- a new password, hashed, then written (customers_hash_then_write) --- */

static int hashed_write(StoreTxn *t, void *userdata) {
        PasswordJob *j = userdata;

        return j->hashed_write(t, j->new_hash, j->hashed_data);
}

static void hashed_done(Call *call, int r, void *userdata) {
        PasswordJob *j = userdata;

        j->hashed_done(call, r, j->hashed_data);
}

static void hashed_job_done(PasswordJob *j) {
        if (j->hashed < 0) {
                (void) call_reply_failure(j->call, j->hashed);
                password_job_free(j);
                return;
        }
        (void) call_write(j->call, hashed_write, hashed_done, j, password_job_free_void);
}

int customers_hash_then_write(Call *call, const char *password, CustomerHashedWrite write, CallWriteDone done,
                              void *userdata, void (*free_fn)(void *p)) {
        _cleanup_(password_job_freep) PasswordJob *j = password_job_new(call, JOB_HASH, NULL, hashed_job_done);
        int r;

        if (!j) {
                free_fn(userdata);
                return -ENOMEM;
        }
        j->hashed_write = write;
        j->hashed_done = done;
        j->hashed_data = userdata;
        j->hashed_free = free_fn;
        j->password = strdup(password);
        if (!j->password)
                return -ENOMEM;
        r = password_job_submit(j);
        if (r < 0)
                return r;
        TAKE_PTR(j);
        return 0;
}

/* --- registerCustomer --- */

typedef struct RegisterWork {
        PasswordJob *job;               /* owned */
        json_t *rec;
        SessionContext ctx;
        SessionTokens tokens;
        const char *failed_index;       /* which unique key was taken */
} RegisterWork;

static void register_work_free(void *p) {
        RegisterWork *w = p;

        password_job_free(w->job);
        json_decref(w->rec);
        session_tokens_done(&w->tokens);
        free(w);
}

static int register_write(StoreTxn *t, void *userdata) {
        RegisterWork *w = userdata;
        int r;

        r = customer_create(t, w->rec, &USERDB_UID_RANGE(w->ctx.config), &w->failed_index);
        if (r < 0)
                return r;
        r = consents_record_registration(t, json_object_get_string(w->rec, "publisherId"),
                                         json_object_get_string(w->rec, "customerId"),
                                         json_object_get(w->job->params, "consents"), w->ctx.now_usec);
        if (r < 0)
                return r;

        session_tokens_done(&w->tokens);
        return session_start(t, &w->ctx, json_object_get_string(w->rec, "customerId"),
                             json_object_get_string(w->rec, "publisherId"), &w->tokens);
}

static void register_finish(Call *call, int r, void *userdata) {
        RegisterWork *w = userdata;

        if (r == -EEXIST && w->failed_index && streq(w->failed_index, "externalId"))
                (void) call_fail(call, IDM_ERR_CONFLICT, IDM_REASON_EXTERNAL_ID_EXISTS, NULL,
                                        "a customer with this externalId exists");
        else if (r == -EEXIST)
                (void) call_fail(call, IDM_ERR_CONFLICT, IDM_REASON_CUSTOMER_EXISTS, NULL,
                                        "a customer with this e-mail exists");
        else if (r == -ERANGE)
                (void) customers_fail_uid_range(call);
        else if (r >= 0) {
                const char *id = json_object_get_string(w->rec, "customerId");
                log_info("%s: registered customer %s of publisher %s", call_request_id(call), id,
                         w->job->publisher_id);
                (void) call_reply(call, session_result(id, &w->tokens));
        }
}

static void register_done(PasswordJob *j) {
        _cleanup_(password_job_freep) PasswordJob *job = j;
        json_t *p = j->params;
        RegisterWork *w;
        uint64_t now;

        if (j->hashed < 0) {
                (void) call_reply_failure(j->call, j->hashed);
                return;
        }
        w = calloc(1, sizeof(RegisterWork));
        if (!w) {
                (void) call_reply_failure(j->call, -ENOMEM);
                return;
        }
        w->ctx = call_session_context(j->call);
        now = w->ctx.now_usec;
        w->rec = json_pack("{s:s, s:s, s:s, s:s, s:I}",
                           "email", json_object_get_string(p, "email"),
                           "publisherId", j->publisher_id,
                           "passwordHash", j->new_hash,
                           "locale", json_object_get_string(p, "locale"),
                           "registrationDate", (json_int_t) now);
        w->job = TAKE_PTR(job);
        if (!w->rec) {
                (void) call_reply_failure(j->call, -ENOMEM);
                register_work_free(w);
                return;
        }
        static const char *const copy[] = { "country", "currency", "firstName", "lastName", "externalId",
                                            "externalData" };
        for (size_t i = 0; i < ELEMENTSOF(copy); i++) {
                json_t *v = json_object_get(p, copy[i]);
                if (v)
                        (void) json_object_set(w->rec, copy[i], v);
        }
        if (json_object_get(p, "customerIP"))
                (void) json_object_set(w->rec, "registrationIP", json_object_get(p, "customerIP"));

        (void) call_write(j->call, register_write, register_finish, w, register_work_free);
}

/* Consents given at registration: [{name, version, state}] with the right types. Which ones a
 * publisher requires comes with consents (a publisher without consents requires none). */
static int check_consents(Call *call, json_t *consents) {
        size_t i;
        json_t *c;

        json_array_foreach(consents, i, c) {
                json_t *name = json_object_get(c, "name"), *version = json_object_get(c, "version"),
                       *state = json_object_get(c, "state");

                if (!json_is_object(c) || json_object_size(c) != 3 || !json_is_string(name) ||
                    !text_is_valid(json_string_value(name), CONSENT_NAME_MAX) ||
                    consents_version_parse(version, &(int64_t) { 0 }) < 0 || !json_is_string(state) ||
                    !(streq(json_string_value(state), "accepted") || streq(json_string_value(state), "declined")))
                        return call_fail(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                                                json_pack("{s:s, s:I}", "param", "consents", "index", (json_int_t) i),
                                                "each consent is {name, version (an integer >= 1), state: "
                                                "accepted|declined}");
        }
        return 0;
}

static int method_customers_register(Call *call, json_t *params) {
        Manager *m = call_manager(call);
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(password_job_freep) PasswordJob *j = NULL;
        _cleanup_(json_decrefp) json_t *scratch = json_object(), *filled = NULL;
        _cleanup_free_ char *publisher_id = NULL;
        const char *email = json_object_get_string(params, "email");
        const char *password = json_object_get_string(params, "password");
        json_t *external_data = json_object_get(params, "externalData");
        const char *external_id = json_object_get_string(params, "externalId");
        int r;

        if (!scratch)
                return -ENOMEM;
        if (!email_is_valid(email))
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_EMAIL, NULL,
                                        "email is not a valid address");
        r = customers_check_new_password(call, password);
        if (r < 0)
                return r;
        r = apply_profile(call, params, scratch);
        if (r < 0)
                return r;
        if (external_id && !text_is_valid(external_id, EXTERNAL_ID_MAX))
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                        json_pack("{s:s}", "field", "externalId"),
                                        "externalId must be printable text of at most 128 bytes");
        if (external_data) {
                _cleanup_free_ char *text = json_dumps(external_data, JSON_COMPACT);
                if (!text || strlen(text) > m->config->max_external_data)
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE, NULL,
                                         "externalData is larger than %zu bytes", m->config->max_external_data);
        }
        r = check_customer_ip(call, params);
        if (r < 0)
                return r;
        /* What the registration leaves out, getLocales's detection fills in (explicit values win). */
        r = locales_complete_profile(call, params, &filled);
        if (r < 0)
                return r;
        r = check_consents(call, json_object_get(params, "consents"));
        if (r < 0)
                return r;

        r = customers_read_publisher(call, params, &t, &publisher_id);
        if (r < 0)
                return r;
        /* The publisher's own identifiers of a customer are the publisher's to set: anyone may
         * register, but only its backend (publisherToken) or an admin names externalId. */
        if (external_id || external_data) {
                bool allowed = call_role(call) == ROLE_ADMIN ||
                               (call_role(call) == ROLE_PUBLISHER && streq_ptr(call_publisher_id(call), publisher_id));

                if (!allowed)
                        return call_fail(call, IDM_ERR_FORBIDDEN, IDM_REASON_FORBIDDEN,
                                                json_pack("{s:s}", "field", external_id ? "externalId" : "externalData"),
                                                "only the publisher (its publisherToken) or an administrator may set "
                                                "externalId and externalData");
        }
        /* Required consents: checked here; the unit of work stores the answers as given, so a
         * new version published meanwhile just shows as needsUpdate afterwards. */
        r = consents_check_registration(call, t, publisher_id, json_object_get(params, "consents"));
        if (r < 0)
                return r;
        t = store_txn_free(t);

        /* Whether the e-mail is taken is decided by the unit of work, after the hash: a taken
         * address costs the same work as a new one and is told only after every other check
         * passed (docs/security.md: that answer itself is inherent to registration). */

        j = password_job_new(call, JOB_HASH, filled, register_done);
        if (!j)
                return -ENOMEM;
        j->password = strdup(password);
        j->publisher_id = TAKE_PTR(publisher_id);
        if (!j->password || !j->publisher_id)
                return -ENOMEM;
        r = password_job_submit(j);
                if (r < 0)
                        return r;
        TAKE_PTR(j);
        return 0;
}

/* --- login --- */

/* The success work of a login: records it and starts the session (and what the caller adds). */
static int login_write(StoreTxn *t, PasswordJob *j) {
        const char *ip = json_object_get_string(j->params, "customerIP");
        int r;

        r = customer_get(t, j->customer_id, &j->customer);
        if (r < 0)
                return r;
        /* The password changed while we were verifying the old one: that login does not count. */
        if (!streq_ptr(json_object_get_string(j->customer, "passwordHash"), j->stored_hash))
                return -EACCES;
        /* A disabled account gets no session, and its login is not recorded. */
        if (json_is_true(json_object_get(j->customer, "disabled")))
                return -EPERM;

        (void) json_object_set_new(j->customer, "lastLoginDate", json_integer((json_int_t) j->ctx.now_usec));
        if (ip)
                (void) json_object_set_new(j->customer, "lastUserIP", json_string(ip));
        if (j->hashed == 0)
                (void) json_object_set_new(j->customer, "passwordHash", json_string(j->new_hash));
        r = customer_put(t, j->customer);
        if (r < 0)
                return r;

        r = session_start(t, &j->ctx, j->customer_id, j->publisher_id, &j->tokens);
        if (r < 0)
                return r;
        if (j->prompts) {
                /* Here rather than in a snapshot after the commit: the reads went out with the
                 * unit's first (credential_write()). */
                r = consents_outdated_required(t, j->publisher_id, j->customer_id, NULL);
                if (r < 0)
                        return r;
                j->consents_outdated = r > 0;
                r = capture_missing_required(t, j->publisher_id, j->customer_id, NULL);
                if (r < 0)
                        return r;
                j->capture_missing = (unsigned) r;
        }
        if (!j->also_record)
                return 0;
        return j->also_record(t, j->call, &(CustomerLogin) {
                .customer_id = j->customer_id,
                .publisher_id = j->publisher_id,
                .customer = j->customer,
                .tokens = &j->tokens,
        });
}

static void login_refuse(PasswordJob *j) {
        /* Only an admin peer (PAM as root) may learn that the account does not exist. */
        if (!j->customer_id && (call_role(j->call) == ROLE_ADMIN))
                (void) call_fail(j->call, IDM_ERR_UNAUTHORIZED, IDM_REASON_UNKNOWN_USER, NULL,
                                        "no such customer");
        else
                (void) call_fail(j->call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_CREDENTIALS, NULL,
                                        "wrong e-mail or password");
}

static void login_finish(Call *call, int r, void *userdata) {
        PasswordJob *j = userdata;

        if (r == -EACCES || r == -ENOENT) {
                login_refuse(j);
                return;
        }
        if (r == -EPERM) {
                /* Told only to whoever proved the password, like Keycloak's "account is disabled". */
                log_event(LOG_LEVEL_NOTICE, IDM_MESSAGE_LOGIN_FAILED, j->publisher_id, j->customer_id,
                          IDM_REASON_ACCOUNT_DISABLED, "%s: login of disabled customer %s refused",
                          call_request_id(call), j->customer_id);
                (void) call_fail(call, IDM_ERR_FORBIDDEN, IDM_REASON_ACCOUNT_DISABLED, NULL,
                                        "the account is disabled");
                return;
        }
        if (r < 0)
                return;         /* answered by call_write(): the failure could not be counted */

        /* Accepted: credential_done() answered the refusals. */
        log_event(LOG_LEVEL_INFO, IDM_MESSAGE_LOGIN_SUCCEEDED, j->publisher_id, j->customer_id, NULL,
                  "%s: customer %s logged in", call_request_id(call), j->customer_id);
        r = j->on_login(call, &(CustomerLogin) {
                .customer_id = j->customer_id,
                .publisher_id = j->publisher_id,
                .customer = j->customer,
                .tokens = &j->tokens,
                .consents_outdated = j->consents_outdated,
                .capture_missing = j->capture_missing,
        });
        if (r < 0)
                (void) call_reply_failure(call, r);
}

static void login_done(PasswordJob *j) {
        j->refused = login_refuse;
        credential_submit(j, login_write, login_finish, "wrong e-mail or password");
}

int customers_login(Call *call, const CustomerLoginRequest *req, CustomerLoginSuccess on_login) {
        _cleanup_(store_txn_freep) StoreTxn *t = req->snapshot;
        _cleanup_(password_job_freep) PasswordJob *j = NULL;
        _cleanup_(json_decrefp) json_t *customer = NULL;
        int r;

        if (!t) {
                r = call_store_read(call, &t);
                if (r < 0)
                        return r;
        }

        j = password_job_new(call, JOB_VERIFY, req->params, login_done);
        if (!j)
                return -ENOMEM;
        j->on_login = on_login;
        j->also_record = req->also_record;
        j->lock_details = req->lock_details;
        j->prompts = req->prompts;

        /* A locked account (known or not) is refused before any hashing, and the attempt is not
         * counted as a failure (methods/lockouts.h). */
        r = lockouts_key(call, req->publisher_id, req->email, &j->lockout_key);
        if (r < 0)
                return r;
        r = lockouts_refuse_if_locked(call, t, j->lockout_key, lockouts_may_tell(call, req->lock_details));
                if (r < 0)
                        return r;

        /* A malformed e-mail names no account: treated like an unknown one (same cost). */
        r = customers_find_by_email(t, req->publisher_id, req->email, &customer);
        if (r >= 0) {
                const char *hash = json_object_get_string(customer, "passwordHash");
                j->customer_id = strdup(json_object_get_string(customer, "customerId"));
                j->stored_hash = hash ? strdup(hash) : NULL;
                if (!j->customer_id || (hash && !j->stored_hash))
                        return -ENOMEM;
        } else if (r != -ENOENT)
                return r;
        t = store_txn_free(t);

        j->password = strdup(req->password);
        j->publisher_id = strdup(req->publisher_id);
        if (!j->password || !j->publisher_id)
                return -ENOMEM;
        r = password_job_submit(j);
                if (r < 0)
                        return r;
        TAKE_PTR(j);
        return 0;
}

static int login_reply(Call *call, const CustomerLogin *l) {
        return call_reply(call, json_pack("{s:s, s:s, s:s, s:s, s:b, s:b}",
                                          "customerId", l->customer_id,
                                          "jwt", l->tokens->jwt,
                                          "refreshToken", l->tokens->refresh_token,
                                          "customerToken", l->tokens->customer_token,
                                          "consentsUpdateRequired", l->consents_outdated,
                                          "shouldCaptureBeDisplayed", l->capture_missing > 0));
}

static int method_customers_login(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_free_ char *publisher_id = NULL;
        CustomerLoginRequest req = {
                .params = params,
                .email = json_object_get_string(params, "email"),
                .password = json_object_get_string(params, "password"),
                .prompts = true,
        };
        int r;

        r = check_customer_ip(call, params);
        if (r < 0)
                return r;
        r = customers_read_publisher_for_login(call, params, req.email, &t, &publisher_id);
        if (r < 0)
                return r;

        req.publisher_id = publisher_id;
        req.snapshot = TAKE_PTR(t);
        return customers_login(call, &req, login_reply);
}

/* --- the customer's own account (jwt) --- */

static int customer_read(Call *call, json_t **ret) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        int r;

        *ret = call_take_customer_record(call);         /* read with the token's check */
        if (*ret)
                return 0;
        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = customer_get(t, call_customer_id(call), ret);
        if (r == -ENOENT)       /* deleted since the token was issued */
                return call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_TOKEN, NULL, "invalid token");
        return r;
}

static int method_customers_get(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *rec = NULL;
        _cleanup_free_ char *email = NULL;
        bool named = json_object_get(params, "email") || json_object_get(params, "customerId") ||
                     json_object_get(params, "externalId");
        int r;

        if (!call_customer_id(call)) {
                /* The publisher form: a customer of the call's publisher, by one of its names. */
                r = call_store_read(call, &t);
                if (r < 0)
                        return r;
                r = customers_resolve_account(call, t, params, &email, &rec);
                if (r < 0)
                        return r;
                return call_reply(call, customers_public(rec));
        }
        /* The token fixes the publisher too: a publisherId beside it is refused as on every other
         * customer method (where it is an unknown parameter), not ignored. */
        if (named || json_object_get(params, "publisherId"))
                return call_fail_param(call, json_object_get(params, "email") ? "email" :
                                             json_object_get(params, "customerId") ? "customerId" :
                                             json_object_get(params, "externalId") ? "externalId" : "publisherId",
                                       "a customer's own token names its customer and publisher; naming another "
                                       "needs a publisherToken");
        r = customer_read(call, &rec);
        if (r < 0)
                return r;
        return call_reply(call, customers_public(rec));
}

typedef struct UpdateWork {
        char *customer_id;
        json_t *changes;
        json_t *rec;
} UpdateWork;

static void update_work_free(void *p) {
        UpdateWork *w = p;

        free(w->customer_id);
        json_decref(w->changes);
        json_decref(w->rec);
        free(w);
}

static int update_write(StoreTxn *t, void *userdata) {
        UpdateWork *w = userdata;
        int r;

        json_decref(w->rec);
        w->rec = NULL;
        r = customer_get(t, w->customer_id, &w->rec);
        if (r < 0)
                return r;
        (void) json_object_update(w->rec, w->changes);
        return customer_put(t, w->rec);
}

static void update_done(Call *call, int r, void *userdata) {
        UpdateWork *w = userdata;

        if (r == -ENOENT)       /* deleted since the token was issued */
                (void) call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_TOKEN, NULL, "invalid token");
        else if (r >= 0)
                (void) call_reply(call, customers_public(w->rec));
}

static int method_customers_update(Call *call, json_t *params) {
        _cleanup_(json_decrefp) json_t *changes = json_object();
        UpdateWork *w;
        int r;

        if (!changes)
                return -ENOMEM;
        r = apply_profile(call, params, changes);
        if (r < 0)
                return r;
        w = calloc(1, sizeof(UpdateWork));
        if (!w)
                return -ENOMEM;
        w->customer_id = strdup(call_customer_id(call));
        w->changes = TAKE_PTR(changes);
        if (!w->customer_id) {
                update_work_free(w);
                return -ENOMEM;
        }
        return call_write(call, update_write, update_done, w, update_work_free);
}

int customers_set_password(StoreTxn *t, const SessionContext *ctx, const char *customer_id, const char *old_hash,
                           const char *new_hash, const char *keep_session) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        int r;

        r = customer_get(t, customer_id, &rec);
        if (r < 0)
                return r;
        if (!streq_ptr(json_object_get_string(rec, "passwordHash"), old_hash))
                return -EACCES;         /* changed meanwhile */
        if (json_is_true(json_object_get(rec, "disabled")))
                return -EPERM;
        if (json_object_set_new(rec, "passwordHash", json_string(new_hash)) < 0)
                return -ENOMEM;
        r = customer_put(t, rec);
        if (r < 0)
                return r;
        /* A password change ends the customer's other sessions (docs/rpc.md). */
        return session_revoke_customer(t, ctx, customer_id, keep_session);
}

int customers_fail_set_password(Call *call, int r) {
        if (r == -EACCES || r == -ENOENT)
                return call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_CREDENTIALS, NULL,
                                 "the password changed meanwhile; try again");
        if (r == -EPERM)
                return call_fail(call, IDM_ERR_FORBIDDEN, IDM_REASON_ACCOUNT_DISABLED, NULL, "the account is disabled");
        return r;
}

/* The success work of changePassword: the new hash, and every other session ends. */
static int change_write(StoreTxn *t, PasswordJob *j) {
        if (j->hashed < 0)
                return j->hashed;
        j->revoked = customers_set_password(t, &j->ctx, j->customer_id, j->stored_hash, j->new_hash,
                                            call_session_id(j->call));
        return j->revoked < 0 ? j->revoked : 0;
}

static void change_finish(Call *call, int r, void *userdata) {
        PasswordJob *j = userdata;

        if (r < 0) {
                (void) customers_fail_set_password(call, r);
                return;
        }
        /* Accepted: a wrong old password was refused (and counted) by credential_done(), so
         * whoever holds a stolen token gets no more guesses than at login. */
        log_event(LOG_LEVEL_INFO, IDM_MESSAGE_PASSWORD_CHANGED, j->publisher_id, j->customer_id, NULL,
                  "%s: customer %s changed the password; %d other sessions revoked", call_request_id(call),
                  j->customer_id, j->revoked);
        (void) call_reply_empty(call);
}

static void change_done(PasswordJob *j) {
        credential_submit(j, change_write, change_finish, "the old password is wrong");
}

static int method_customers_change_password(Call *call, json_t *params) {
        _cleanup_(password_job_freep) PasswordJob *j = NULL;
        _cleanup_(json_decrefp) json_t *rec = NULL;
        int r;

        r = customers_check_new_password(call, json_object_get_string(params, "newPassword"));
        if (r < 0)
                return r;
        r = customer_read(call, &rec);
        if (r < 0)
                return r;

        j = password_job_new(call, JOB_CHANGE, params, change_done);
        if (!j)
                return -ENOMEM;
        /* The account's lockout, as for login: a locked account is refused before any hashing
         * (the caller holds a session of this account, so it may learn that it is locked). */
        r = lockouts_key(call, call_publisher_id(call), strempty(json_object_get_string(rec, "email")),
                         &j->lockout_key);
        if (r < 0)
                return r;
        r = lockouts_refuse_if_locked(call, NULL, j->lockout_key, true);
                if (r < 0)
                        return r;
        j->customer_id = strdup(call_customer_id(call));
        j->publisher_id = strdup(call_publisher_id(call));
        j->stored_hash = strdup(strempty(json_object_get_string(rec, "passwordHash")));
        j->password = strdup(json_object_get_string(params, "oldPassword"));
        j->new_password = strdup(json_object_get_string(params, "newPassword"));
        if (!j->customer_id || !j->publisher_id || !j->stored_hash || !j->password || !j->new_password)
                return -ENOMEM;
        r = password_job_submit(j);
        if (r < 0)
                return r;
        TAKE_PTR(j);
        return 0;
}

/* --- customer administration (publisher for its own customers, admin for any) --- */

typedef struct DeleteWork {
        char *customer_id;
        int deleted;
} DeleteWork;

static void delete_work_free(void *p) {
        DeleteWork *w = p;

        free(w->customer_id);
        free(w);
}

static int delete_write(StoreTxn *t, void *userdata) {
        DeleteWork *w = userdata;

        w->deleted = customer_delete(t, w->customer_id);
        return w->deleted < 0 ? w->deleted : 0;
}

static void delete_done(Call *call, int r, void *userdata) {
        DeleteWork *w = userdata;

        if (r == -ENOENT) {     /* deleted meanwhile */
                (void) call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND, NULL, "no such customer");
                return;
        }
        if (r < 0)
                return;
        /* The audit line: who (peer uid, publisher), what, which customer; never a secret. */
        log_event(LOG_LEVEL_NOTICE, IDM_MESSAGE_CUSTOMER_DELETED, NULL, w->customer_id, NULL,
                  "%s: customer %s of publisher %s deleted with its %d records by uid %u%s",
                  call_request_id(call), w->customer_id, call_publisher_id(call), w->deleted,
                   (unsigned) call_peer(call)->uid, call_role(call) == ROLE_ADMIN ? " (admin)" : "");
        (void) call_reply(call, json_pack("{s:s, s:i}", "customerId", w->customer_id, "deletedRecords", w->deleted));
        /* What only a walk over the token table finds goes in the background, from now. */
        (void) manager_sweep_soon(call_manager(call));
}

static int method_customers_delete(Call *call, json_t *params) {
        _cleanup_free_ char *customer_id = NULL;
        DeleteWork *w;
        int r;

        r = customers_read_account_id(call, params, &customer_id);
        if (r < 0)
                return r;
        w = calloc(1, sizeof(DeleteWork));
        if (!w)
                return -ENOMEM;
        w->customer_id = TAKE_PTR(customer_id);
        return call_write(call, delete_write, delete_done, w, delete_work_free);
}

/* A copy of a stored record with its microsecond dates (integers under "date", "created"...)
 * shown as RFC 3339, recursively. New reference. */
static json_t *export_dates(json_t *v) {
        static const char *const date_keys[] = { "date", "created", "updated", "registrationDate", "lastLoginDate" };
        json_t *copy, *item;
        const char *key;
        size_t i;

        if (!v)
                return json_null();
        if (json_is_array(v)) {
                copy = json_array();
                json_array_foreach(v, i, item)
                        if (!copy || json_array_append_new(copy, export_dates(item)) < 0)
                                return json_decref(copy), NULL;
                return copy;
        }
        if (!json_is_object(v))
                return json_incref(v);
        copy = json_object();
        json_object_foreach(v, key, item) {
                bool is_date = false;
                char buf[32];

                for (size_t k = 0; k < ELEMENTSOF(date_keys); k++)
                        is_date = is_date || streq(key, date_keys[k]);
                if (!copy || json_object_set_new(copy, key,
                                                 is_date && json_is_integer(item) ?
                                                 json_string(format_rfc3339((uint64_t) json_integer_value(item), buf)) :
                                                 export_dates(item)) < 0)
                        return json_decref(copy), NULL;
        }
        return copy;
}

/* Everything stored about one customer, for a person's access request: the profile (no password
 * hash), consent answers and their history, the lockout state, the sessions (no token, no token
 * hash). Built from allow-lists: a secret added to a record later stays out. */
static int method_customers_export(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *customer = NULL, *profile = NULL, *answers = NULL, *lockout = NULL,
                *sessions = NULL, *pam = NULL, *capture = NULL;
        _cleanup_free_ char *email = NULL;
        const char *customer_id;
        json_t *v;
        int r;

        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = customers_resolve_account(call, t, params, &email, &customer);
        if (r < 0)
                return r;
        customer_id = json_object_get_string(customer, "customerId");

        profile = customers_public(customer);
        if (!profile)
                return -ENOMEM;
        static const char *const more[] = { "registrationIP", "disabled" };
        for (size_t i = 0; i < ELEMENTSOF(more); i++)
                if ((v = json_object_get(customer, more[i])) && json_object_set(profile, more[i], v) < 0)
                        return -ENOMEM;

        r = consent_answers_get(t, customer_id, &answers);
        if (r < 0 && r != -ENOENT)
                return r;
        r = capture_export(t, customer_id, &capture);
        if (r < 0)
                return r;
        r = lockouts_view(call, t, email, customer, &lockout);
        if (r < 0)
                return r;
        r = session_export_customer(t, customer_id, json_object_get_string(customer, "publisherId"),
                                    json_object_get_string(customer, "email"), &sessions, &pam);
        if (r < 0)
                return r;

        log_notice("%s: customer %s of publisher %s exported by uid %u%s", call_request_id(call), customer_id,
                   call_publisher_id(call), (unsigned) call_peer(call)->uid,
                   call_role(call) == ROLE_ADMIN ? " (admin)" : "");
        /* A customer who never answered has no record: empty parts then. */
        return call_reply(call, json_pack("{s:O, s:O, s:o, s:o, s:O, s:O, s:O}",
                                          "customer", profile,
                                          "captureAnswers", capture,
                                          "consents", answers ? export_dates(json_object_get(answers, "consents")) :
                                                                json_object(),
                                          "consentHistory", answers ? export_dates(json_object_get(answers, "history")) :
                                                                      json_array(),
                                          "lockout", lockout,
                                          "sessions", sessions,
                                          "pamSessions", pam));
}

typedef struct DisableWork {
        char *customer_id;
        bool disabled;
        SessionContext ctx;
        int revoked;
} DisableWork;

static void disable_work_free(void *p) {
        DisableWork *w = p;

        free(w->customer_id);
        free(w);
}

static int disable_write(StoreTxn *t, void *userdata) {
        DisableWork *w = userdata;
        _cleanup_(json_decrefp) json_t *rec = NULL;
        int r;

        w->revoked = 0;
        r = customer_get(t, w->customer_id, &rec);
        if (r < 0)
                return r;
        if (w->disabled) {
                if (json_object_set_new(rec, "disabled", json_true()) < 0)
                        return -ENOMEM;
        } else
                (void) json_object_del(rec, "disabled");        /* -1 if it was not there */
        r = customer_put(t, rec);
        if (r < 0)
                return r;
        if (w->disabled) {      /* a disabled account keeps no session */
                w->revoked = session_revoke_customer(t, &w->ctx, w->customer_id, NULL);
                if (w->revoked < 0)
                        return w->revoked;
        }
        return 0;
}

static void disable_done(Call *call, int r, void *userdata) {
        DisableWork *w = userdata;

        if (r == -ENOENT) {     /* deleted meanwhile */
                (void) call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND, NULL, "no such customer");
                return;
        }
        if (r < 0)
                return;
        /* The audit line: who, what, which customer. */
        log_notice("%s: customer %s of publisher %s %s by uid %u%s%s", call_request_id(call), w->customer_id,
                   call_publisher_id(call), w->disabled ? "disabled" : "enabled", (unsigned) call_peer(call)->uid,
                   call_role(call) == ROLE_ADMIN ? " (admin)" : "", w->revoked > 0 ? ", its sessions revoked" : "");
        (void) call_reply(call, json_pack("{s:s, s:b}", "customerId", w->customer_id, "disabled", w->disabled));
}

/* Disables (no login, every session ended) or enables a customer of the call's publisher. */
static int method_customers_set_disabled(Call *call, json_t *params) {
        _cleanup_free_ char *customer_id = NULL;
        DisableWork *w;
        int r;

        r = customers_read_account_id(call, params, &customer_id);
        if (r < 0)
                return r;
        w = calloc(1, sizeof(DisableWork));
        if (!w)
                return -ENOMEM;
        *w = (DisableWork) {
                .customer_id = TAKE_PTR(customer_id),
                .disabled = json_is_true(json_object_get(params, "disabled")),
                .ctx = call_session_context(call),
        };
        return call_write(call, disable_write, disable_done, w, disable_work_free);
}

/* --- setCustomerUnix --- */

typedef struct UnixWork {
        char *customer_id;
        bool enabled;
        char *shell;            /* NULL: unchanged; "": the publisher's or [userdb] shell again */
        UnixUidRange range;
        json_t *result;
} UnixWork;

static void unix_work_free(void *p) {
        UnixWork *w = p;

        free(w->customer_id);
        free(w->shell);
        json_decref(w->result);
        free(w);
}

static int unix_write(StoreTxn *t, void *userdata) {
        UnixWork *w = userdata;
        _cleanup_(json_decrefp) json_t *rec = NULL, *pub = NULL;
        int r;

        json_decref(w->result);         /* from a run before a store growth */
        w->result = NULL;
        r = customer_get(t, w->customer_id, &rec);
        if (r < 0)
                return r;
        r = publisher_get(t, json_object_get_string(rec, "publisherId"), &pub);
        if (r < 0)
                return r;
        if (w->shell && w->shell[0])
                r = json_object_set_new(rec, "unixShell", json_string(w->shell));
        else if (w->shell)
                (void) json_object_del(rec, "unixShell");
        if (r < 0)
                return -ENOMEM;
        if (w->enabled)
                r = json_object_set_new(rec, "unixEnabled", json_true());
        else
                (void) json_object_del(rec, "unixEnabled");     /* the uid stays the customer's */
        if (r < 0)
                return -ENOMEM;
        r = customer_put(t, rec);
        if (r < 0)
                return r;
        if (w->enabled) {
                r = customer_unix_uid_assign(t, rec, &w->range);
                if (r < 0)
                        return r;
        }
        w->result = json_pack("{s:s, s:b, s:o, s:b, s:s}", "customerId", w->customer_id, "enabled", w->enabled,
                              "unixUid", customer_unix_uid(rec) ? json_integer(customer_unix_uid(rec)) : json_null(),
                              "unixUser", customer_is_unix_user(rec, pub), "unixUsers",
                              unix_users_to_string(publisher_unix_users(pub)));
        return w->result ? 0 : -ENOMEM;
}

static void unix_done(Call *call, int r, void *userdata) {
        UnixWork *w = userdata;

        if (r == -ENOENT) {     /* deleted meanwhile */
                (void) call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND, NULL, "no such customer");
                return;
        }
        if (r == -ERANGE) {
                (void) customers_fail_uid_range(call);
                return;
        }
        if (r < 0)
                return;
        log_notice("%s: customer %s of publisher %s %s as a Unix user (uid %s) by uid %u%s", call_request_id(call),
                   w->customer_id, call_publisher_id(call), w->enabled ? "enabled" : "disabled",
                   json_is_integer(json_object_get(w->result, "unixUid")) ? "kept" : "none",
                   (unsigned) call_peer(call)->uid, call_role(call) == ROLE_ADMIN ? " (admin)" : "");
        (void) call_reply(call, json_incref(w->result));
}

/* Makes a customer of the call's publisher a Unix user (a uid drawn the first time, kept after)
 * or not, and sets its own login shell. */
static int method_customers_set_unix(Call *call, json_t *params) {
        _cleanup_free_ char *customer_id = NULL;
        const char *shell = json_object_get_string(params, "shell");
        UnixWork *w;
        int r;

        if (shell && shell[0] && !unix_path_is_valid(shell, USERDB_PATH_MAX))
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                 json_pack("{s:s}", "field", "shell"),
                                 "shell must be an absolute path without ':' (or \"\" for the default)");
        r = customers_read_account_id(call, params, &customer_id);
        if (r < 0)
                return r;
        w = calloc(1, sizeof(UnixWork));
        if (!w)
                return -ENOMEM;
        *w = (UnixWork) {
                .customer_id = TAKE_PTR(customer_id),
                .enabled = json_is_true(json_object_get(params, "enabled")),
                .shell = shell ? strdup(shell) : NULL,
                .range = USERDB_UID_RANGE(call_manager(call)->config),
        };
        if (shell && !w->shell) {
                unix_work_free(w);
                return -ENOMEM;
        }
        return call_write(call, unix_write, unix_done, w, unix_work_free);
}

#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 1000

typedef struct CustomerList {
        json_t *items;
        size_t limit;
        bool more;
} CustomerList;

static int append_customer(json_t *customer, void *userdata) {
        CustomerList *l = userdata;

        if (json_array_size(l->items) >= l->limit) {
                l->more = true;
                return 1;
        }
        return json_array_append_new(l->items, customers_public(customer)) < 0 ? -ENOMEM : 0;
}

/* A page of the publisher's customers in e-mail order, optionally those whose e-mail starts with
 * query; cursor is the last e-mail of the previous page (what the reply's cursor says). */
static int method_customers_list(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *items = json_array();
        json_t *limit = json_object_get(params, "limit");
        CustomerList l = { .items = items, .limit = LIST_LIMIT_DEFAULT };
        const char *last;
        int r;

        if (!items)
                return -ENOMEM;
        if (limit) {
                if (json_integer_value(limit) < 1 || json_integer_value(limit) > LIST_LIMIT_MAX)
                        return call_fail_param(call, "limit", "limit is 1 to 1000");
                l.limit = (size_t) json_integer_value(limit);
        }
        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = customers_foreach_by_email(t, call_publisher_id(call), json_object_get_string(params, "query"),
                                       json_object_get_string(params, "cursor"), append_customer, &l);
        if (r < 0)
                return r;
        last = l.more ? json_object_get_string(json_array_get(items, json_array_size(items) - 1), "email") : NULL;
        return call_reply(call, json_pack("{s:O, s:s?}", "items", items, "cursor", last));
}

const Method methods_customers[] = {
        { .name = "registerCustomer", .handler = method_customers_register, .role = ROLE_ANYONE,
          .class = METHOD_CLASS_REGISTRATION, .address_param = "customerIP", .publisher_optional = true,
          .params = (const ParamSpec[]) {
                  { "email", PARAM_STRING, true, IDM_EMAIL_MAX },
                  { "password", PARAM_STRING, true, IDM_PASSWORD_MAX },
                  PUBLISHER_NAMING_PARAMS,
                  { "locale", PARAM_STRING, false, 16 },
                  { "country", PARAM_STRING, false, 8 },
                  { "currency", PARAM_STRING, false, 8 },
                  { "consents", PARAM_ARRAY, false, 64 },
                  { "firstName", PARAM_STRING, false, NAME_MAX_BYTES },
                  { "lastName", PARAM_STRING, false, NAME_MAX_BYTES },
                  { "externalId", PARAM_STRING, false, EXTERNAL_ID_MAX },
                  { "externalData", PARAM_OBJECT, false, 0 },
                  { "customerIP", PARAM_STRING, false, IDM_CUSTOMER_IP_MAX },
                  { "publisherToken", PARAM_STRING, false, IDM_PUBLISHER_TOKEN_MAX },
                  { "sessionID", PARAM_STRING, false, IDM_SESSION_ID_MAX },
                  {} } },
        { .name = "login", .handler = method_customers_login, .role = ROLE_ANYONE, .class = METHOD_CLASS_LOGIN,
          .address_param = "customerIP",
          .params = (const ParamSpec[]) {
                  { "email", PARAM_STRING, true, IDM_EMAIL_MAX },
                  { "password", PARAM_STRING, true, IDM_PASSWORD_MAX },
                  PUBLISHER_NAMING_PARAMS,
                  { "customerIP", PARAM_STRING, false, IDM_CUSTOMER_IP_MAX },
                  {} } },
        { .name = "getCustomer", .handler = method_customers_get, .role = ROLE_CUSTOMER, .publisher_form = true,
          .reads_customer = true,
          .params = (const ParamSpec[]) {
                  CUSTOMER_AUTH_PARAMS,
                  PUBLISHER_AUTH_PARAMS,
                  CUSTOMER_NAMING_PARAMS,
                  {} } },
        { .name = "updateCustomer", .handler = method_customers_update, .role = ROLE_CUSTOMER,
          .params = (const ParamSpec[]) {
                  CUSTOMER_AUTH_PARAMS,
                  { "locale", PARAM_STRING, false, 16 },
                  { "country", PARAM_STRING, false, 8 },
                  { "currency", PARAM_STRING, false, 8 },
                  { "firstName", PARAM_STRING, false, NAME_MAX_BYTES },
                  { "lastName", PARAM_STRING, false, NAME_MAX_BYTES },
                  {} } },
        { .name = "deleteCustomer", .handler = method_customers_delete, .role = ROLE_PUBLISHER,
          .params = (const ParamSpec[]) { PUBLISHER_AUTH_PARAMS, CUSTOMER_NAMING_PARAMS, {} } },
        { .name = "exportCustomer", .handler = method_customers_export, .role = ROLE_PUBLISHER,
          .params = (const ParamSpec[]) { PUBLISHER_AUTH_PARAMS, CUSTOMER_NAMING_PARAMS, {} } },
        { .name = "setCustomerDisabled", .handler = method_customers_set_disabled, .role = ROLE_PUBLISHER,
          .params = (const ParamSpec[]) {
                  PUBLISHER_AUTH_PARAMS,
                  CUSTOMER_NAMING_PARAMS,
                  { "disabled", PARAM_BOOLEAN, true, 0 },
                  {} } },
        { .name = "setCustomerUnix", .handler = method_customers_set_unix, .role = ROLE_PUBLISHER,
          .params = (const ParamSpec[]) {
                  PUBLISHER_AUTH_PARAMS,
                  CUSTOMER_NAMING_PARAMS,
                  { "enabled", PARAM_BOOLEAN, true, 0 },
                  { "shell", PARAM_STRING, false, USERDB_PATH_MAX },
                  {} } },
        { .name = "listCustomers", .handler = method_customers_list, .role = ROLE_PUBLISHER,
          .params = (const ParamSpec[]) {
                  PUBLISHER_AUTH_PARAMS,
                  { "query", PARAM_STRING, false, IDM_EMAIL_MAX },
                  { "cursor", PARAM_STRING, false, IDM_EMAIL_MAX },
                  { "limit", PARAM_INTEGER, false },
                  {} } },
        { .name = "changePassword", .handler = method_customers_change_password, .role = ROLE_CUSTOMER,
          .class = METHOD_CLASS_LOGIN,
          .params = (const ParamSpec[]) {
                  CUSTOMER_AUTH_PARAMS,
                  { "oldPassword", PARAM_STRING, true, IDM_PASSWORD_MAX },
                  { "newPassword", PARAM_STRING, true, IDM_PASSWORD_MAX },
                  {} } },
        {}
};

/* --- password checks for other method families (the PAM path) --- */

/* The success work of a password check with a new password: the new hash; every session ends
 * (there is no session of the caller's to keep). */
static int check_password_write(StoreTxn *t, PasswordJob *j) {
        if (!j->new_password)
                return 0;
        if (j->hashed < 0)
                return j->hashed;
        j->revoked = customers_set_password(t, &j->ctx, j->customer_id, j->stored_hash, j->new_hash, NULL);
        return j->revoked < 0 ? j->revoked : 0;
}

static void check_password_finish(Call *call, int r, void *userdata) {
        PasswordJob *j = userdata;
        CustomerPasswordCheck c = {
                .params = j->params,
                .publisher_id = j->publisher_id,
                .customer_id = j->stored_hash ? j->customer_id : NULL,
                .changed = j->new_password != NULL,
                .revoked = j->revoked,
        };

        if (r < 0) {
                (void) customers_fail_set_password(call, r);
                return;
        }
        j->on_checked(call, &c);
}

static void check_password_done(PasswordJob *j) {
        credential_submit(j, check_password_write, check_password_finish, "wrong e-mail or password");
}

int customers_check_password(Call *call, json_t *params, const char *publisher_id, const char *email,
                             const char *password, const char *new_password, CustomerPasswordChecked done) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(password_job_freep) PasswordJob *j = NULL;
        _cleanup_(json_decrefp) json_t *customer = NULL;
        _cleanup_free_ char *lockout_key = NULL;
        const char *hash = NULL;
        int r;

        /* Checking a password is a login attempt: a locked account is refused before any
         * hashing, and the check counts towards the lockout. */
        r = lockouts_key(call, publisher_id, email, &lockout_key);
        if (r < 0)
                return r;
        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = lockouts_refuse_if_locked(call, t, lockout_key, lockouts_may_tell(call, true));
                if (r < 0)
                        return r;
        /* A malformed e-mail names no account: treated like an unknown one (same cost). */
        r = customers_find_by_email(t, publisher_id, email, &customer);
        if (r < 0 && r != -ENOENT)
                return r;
        if (r >= 0)
                hash = json_object_get_string(customer, "passwordHash");

        /* The new password is hashed only once the old one matched: a wrong password or an
         * unknown account costs one verification either way. */
        j = password_job_new(call, hash && new_password ? JOB_CHANGE : JOB_VERIFY, params, check_password_done);
        if (!j)
                return -ENOMEM;
        j->on_checked = done;
        j->lockout_key = TAKE_PTR(lockout_key);
        if (hash) {
                const char *id = json_object_get_string(customer, "customerId");

                if (!id)
                        return -EPROTO;
                j->customer_id = strdup(id);
                j->stored_hash = strdup(hash);
                if (!j->customer_id || !j->stored_hash)
                        return -ENOMEM;
        }
        t = store_txn_free(t);

        j->password = strdup(password);
        j->publisher_id = strdup(publisher_id);
        j->new_password = new_password ? strdup(new_password) : NULL;
        if (!j->password || !j->publisher_id || (new_password && !j->new_password))
                return -ENOMEM;
        r = password_job_submit(j);
                if (r < 0)
                        return r;
        TAKE_PTR(j);
        return 0;
}
