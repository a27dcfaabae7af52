/* SPDX-License-Identifier: MIT */
/*
 * Remote auth, SSO links and publisher sessions:
 *   publisherLogin            a publisher's token for a sessionID that stands for it for 10 minutes
 *   prepareRemoteAuth         finds or creates a customer (no password) and hands the publisher a
 *                             link to its remoteAuthUrl carrying a one-time remote_token
 *   getSingleSignOnByCustomer a link to the publisher's ssoUrl (a page of it) carrying a one-time
 *                             SSO token, optionally bound to the customer's address
 *   redeemToken               anyone holding a remote-auth or SSO token exchanges it, once, for a
 *                             session of its customer (pam_idm mode=code does this)
 *   ssoLogin                  a publisher whose own identity provider is primary signs its
 *                             customer in: found by externalId, else by e-mail (then linked), else
 *                             created without a password
 *
 * Secrets: every token and sessionID is 256 bits from token_random() (base64url, 43 characters);
 * the store keeps only token_hash() of it, in a timed record of its own kind (records/remote.h)
 * that the sweep deletes at its expiry. A sign-in token is taken out of the store by the unit of
 * work that redeems it, whatever the outcome: units of work run one after the other, so of many
 * concurrent redemptions exactly one finds it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "idm/json-util.h"
#include "idm/protocol.h"
#include "log.h"
#include "message-ids.h"
#include "manager.h"
#include "methods/customers.h"
#include "methods/methods.h"
#include "records/customers.h"
#include "records/publishers.h"
#include "records/remote.h"
#include "sessions.h"
#include "tokens.h"
#include "url.h"
#include "userdb.h"
#include "validate.h"

#define SECRET_BYTES 32
#define SEC_USEC UINT64_C(1000000)
#define REMOTE_TOKEN_TTL_USEC (300 * SEC_USEC)
#define PUBLISHER_SESSION_TTL_SEC 600
#define SSO_VALIDITY_DEFAULT_SEC 10
#define SSO_VALIDITY_MAX_SEC 3600
#define SSO_REQUEST_MAX_PARAMS 32
#define SSO_REQUEST_MAX_BYTES 2048u
#define SSO_TOKEN_PARAM "token"
#define SSO_LANG_PARAM "lang"
#define URL_MAX 2048u
#define SSO_URL_MAX 8192u
#define PAGE_MAX 64u
#define EXTERNAL_ID_MAX IDM_EXTERNAL_ID_MAX

static uint64_t record_u64(json_t *rec, const char *field) {
        json_t *v = json_object_get(rec, field);

        return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t) json_integer_value(v) : 0;
}

/* An IPv4 or IPv6 address literal, as bytes with its family; false if it is none. */
static bool ip_parse(const char *s, int *ret_family, unsigned char ret[static sizeof(struct in6_addr)]) {
        memset(ret, 0, sizeof(struct in6_addr));
        if (!s)
                return false;
        if (inet_pton(AF_INET, s, ret) == 1) {
                *ret_family = AF_INET;
                return true;
        }
        if (inet_pton(AF_INET6, s, ret) == 1) {
                *ret_family = AF_INET6;
                return true;
        }
        return false;
}

/* The same address, whatever its spelling ("::1" and "0:0::1"). */
static bool ip_equal(const char *a, const char *b) {
        unsigned char x[sizeof(struct in6_addr)], y[sizeof(struct in6_addr)];
        int fx, fy;

        return ip_parse(a, &fx, x) && ip_parse(b, &fy, y) && fx == fy && memcmp(x, y, sizeof(x)) == 0;
}

static int check_ip(Call *call, const char *field, const char *ip) {
        unsigned char buf[sizeof(struct in6_addr)];
        int family;

        if (!ip || ip_parse(ip, &family, buf))
                return 0;
        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE, json_pack("{s:s}", "field", field),
                         "%s must be an IPv4 or IPv6 address", field);
}

/* locale, country and currency of src, checked, copied into rec. */
static int check_profile(Call *call, json_t *src, json_t *rec) {
        const char *s;

        if ((s = json_object_get_string(src, "locale"))) {
                if (!locale_is_valid(s))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_LOCALE,
                                         json_pack("{s:s}", "field", "locale"),
                                         "locale must look like en_US (language_COUNTRY)");
                if (json_object_set_new(rec, "locale", json_string(s)) < 0)
                        return -ENOMEM;
        }
        if ((s = json_object_get_string(src, "country"))) {
                if (!country_is_valid(s))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_COUNTRY,
                                         json_pack("{s:s}", "field", "country"),
                                         "country must be an ISO 3166-1 alpha-2 code such as GB or US");
                if (json_object_set_new(rec, "country", json_string(s)) < 0)
                        return -ENOMEM;
        }
        if ((s = json_object_get_string(src, "currency"))) {
                if (!currency_is_valid(s, call_manager(call)->config->currencies))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_CURRENCY,
                                         json_pack("{s:s}", "field", "currency"),
                                         "currency is not one of the configured currencies");
                if (json_object_set_new(rec, "currency", json_string(s)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* An object param's members: only the names in allowed, each a string of at most max bytes;
 * those in required present. Refusals are -32602 naming the param and the member. */
static int check_members(Call *call, const char *param, json_t *o, const char *const *allowed,
                         const char *const *required, size_t max) {
        const char *key;
        json_t *v;

        json_object_foreach(o, key, v) {
                bool known = false;

                for (const char *const *a = allowed; *a; a++)
                        known = known || streq(*a, key);
                if (!known)
                        return call_fail(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                                         json_pack("{s:s, s:s}", "param", param, "member", key),
                                         "unknown member '%s' in '%s'", key, param);
                if (!json_is_string(v) || json_string_length(v) > max ||
                    strlen(json_string_value(v)) != json_string_length(v))
                        return call_fail(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                                         json_pack("{s:s, s:s}", "param", param, "member", key),
                                         "'%s.%s' must be a string of at most %zu bytes", param, key, max);
        }
        for (const char *const *q = required; *q; q++)
                if (!json_object_get(o, *q))
                        return call_fail(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                                         json_pack("{s:s, s:s}", "param", param, "member", *q),
                                         "missing member '%s' in '%s'", *q, param);
        return 0;
}

/* What a customer found or made for a sign-in gets: the login recorded, a new session. Returns
 * -EPERM for a disabled customer (nothing written). */
static int signin_start(StoreTxn *t, const SessionContext *ctx, json_t *customer, const char *ip,
                        SessionTokens *ret) {
        int r;

        if (json_is_true(json_object_get(customer, "disabled")))
                return -EPERM;
        if (json_object_set_new(customer, "lastLoginDate", json_integer((json_int_t) ctx->now_usec)) < 0 ||
            (ip && json_object_set_new(customer, "lastUserIP", json_string(ip)) < 0))
                return -ENOMEM;
        r = customer_put(t, customer);
        if (r < 0)
                return r;
        session_tokens_done(ret);
        return session_start(t, ctx, json_object_get_string(customer, "customerId"),
                             json_object_get_string(customer, "publisherId"), ret);
}

static json_t *signin_result(const char *customer_id, const char *publisher_id, const SessionTokens *s) {
        return json_pack("{s:s, s:s, s:s, s:s, s:s}", "customerId", customer_id, "publisherId", publisher_id, "jwt",
                         s->jwt, "refreshToken", s->refresh_token, "customerToken", s->customer_token);
}

/* --- publisherLogin --- */

typedef struct PublisherLoginWork {
        char *publisher_id;
        char *session_id;
        uint64_t now_usec;
} PublisherLoginWork;

static void publisher_login_work_free(void *p) {
        PublisherLoginWork *w = p;

        free(w->publisher_id);
        erase_and_free(w->session_id);
        free(w);
}

static int publisher_login_write(StoreTxn *t, void *userdata) {
        PublisherLoginWork *w = userdata;
        _cleanup_(json_decrefp) json_t *rec = NULL;

        rec = json_pack("{s:s, s:I, s:I}", "publisherId", w->publisher_id, "created", (json_int_t) w->now_usec,
                        "expires", (json_int_t) (w->now_usec + PUBLISHER_SESSION_TTL_SEC * SEC_USEC));
        if (!rec)
                return -ENOMEM;
        return publisher_session_put(t, w->session_id, rec);
}

static void publisher_login_done(Call *call, int r, void *userdata) {
        PublisherLoginWork *w = userdata;

        if (r < 0)
                return;
        log_info("%s: publisher %s logged in (sessionID for %d s)", call_request_id(call), w->publisher_id,
                 PUBLISHER_SESSION_TTL_SEC);
        (void) call_reply(call, json_pack("{s:s, s:i}", "sessionID", w->session_id, "expiresIn",
                                          PUBLISHER_SESSION_TTL_SEC));
}

static int method_remote_publisher_login(Call *call, json_t *params) {
        PublisherLoginWork *w;
        int r;

        (void) params;
        w = calloc(1, sizeof(PublisherLoginWork));
        if (!w)
                return -ENOMEM;
        w->publisher_id = strdup(call_publisher_id(call));
        w->now_usec = now_realtime_usec();
        r = token_random(SECRET_BYTES, &w->session_id);
        if (r < 0 || !w->publisher_id) {
                publisher_login_work_free(w);
                return r < 0 ? r : -ENOMEM;
        }
        return call_write(call, publisher_login_write, publisher_login_done, w, publisher_login_work_free);
}

/* --- prepareRemoteAuth --- */

typedef struct PrepareWork {
        char *publisher_id;
        json_t *profile;        /* {email, locale?, country?, currency?} */
        char *token;
        char *url;              /* the link, built before the unit of work */
        uint64_t now_usec;
        UnixUidRange unix_range;        /* for a customer made here (records/unixusers.h) */

        char *customer_id;
        bool created;
} PrepareWork;

static void prepare_work_free(void *p) {
        PrepareWork *w = p;

        free(w->publisher_id);
        json_decref(w->profile);
        erase_and_free(w->token);
        erase_and_free(w->url);
        free(w->customer_id);
        free(w);
}

static int prepare_write(StoreTxn *t, void *userdata) {
        PrepareWork *w = userdata;
        _cleanup_(json_decrefp) json_t *customer = NULL, *rec = NULL;
        const char *email = json_object_get_string(w->profile, "email");
        int r;

        w->created = false;
        free(w->customer_id);
        w->customer_id = NULL;
        r = customer_find_by_email(t, w->publisher_id, email, &customer);
        if (r == -ENOENT) {
                const char *taken;

                /* No password: the customer signs in through links, or sets one with a reset. */
                customer = json_deep_copy(w->profile);
                if (!customer ||
                    json_object_set_new(customer, "publisherId", json_string(w->publisher_id)) < 0 ||
                    json_object_set_new(customer, "registrationDate", json_integer((json_int_t) w->now_usec)) < 0)
                        return -ENOMEM;
                r = customer_create(t, customer, &w->unix_range, &taken);
                w->created = true;
        }
        if (r < 0)
                return r;
        w->customer_id = strdup(json_object_get_string(customer, "customerId"));
        if (!w->customer_id)
                return -ENOMEM;

        rec = json_pack("{s:s, s:s, s:I, s:I}", "customerId", w->customer_id, "publisherId", w->publisher_id,
                        "created", (json_int_t) w->now_usec, "expires",
                        (json_int_t) (w->now_usec + REMOTE_TOKEN_TTL_USEC));
        if (!rec)
                return -ENOMEM;
        return signin_token_put(t, REMOTE_KIND_REMOTE, w->token, rec);
}

static void prepare_done(Call *call, int r, void *userdata) {
        PrepareWork *w = userdata;

        if (r < 0)
                return;
        log_info("%s: remote auth prepared for %s customer %s of publisher %s", call_request_id(call),
                 w->created ? "new" : "existing", w->customer_id, w->publisher_id);
        (void) call_reply(call, json_pack("{s:s}", "url", w->url));
}

static bool uri_allowed(json_t *publisher, const char *uri) {
        size_t i;
        json_t *v;

        json_array_foreach(json_object_get(publisher, "allowedRedirectUris"), i, v)
                if (streq_ptr(json_string_value(v), uri))
                        return true;
        return false;
}

static int method_remote_prepare(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *publisher = NULL, *offer = NULL, *profile = NULL;
        _cleanup_free_ char *u1 = NULL, *u2 = NULL;
        json_t *data = json_object_get(params, "customerData"), *flow = json_object_get(params, "flowDescription");
        const char *email, *offer_id, *redirect_uri, *base;
        PrepareWork *w;
        int r;

        r = check_members(call, "customerData", data,
                          (const char *const[]) { "email", "locale", "currency", "country", NULL },
                          (const char *const[]) { "email", NULL }, IDM_EMAIL_MAX);
        if (r < 0)
                return r;
        r = check_members(call, "flowDescription", flow, (const char *const[]) { "offerId", "redirectUri", NULL },
                          (const char *const[]) { "offerId", "redirectUri", NULL }, URL_MAX);
        if (r < 0)
                return r;
        email = json_object_get_string(data, "email");
        offer_id = json_object_get_string(flow, "offerId");
        redirect_uri = json_object_get_string(flow, "redirectUri");
        if (!email_is_valid(email))
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_EMAIL,
                                 json_pack("{s:s}", "field", "email"), "email is not a valid address");
        profile = json_pack("{s:s}", "email", email);
        if (!profile)
                return -ENOMEM;
        r = check_profile(call, data, profile);
        if (r < 0)
                return r;

        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = publisher_get(t, call_publisher_id(call), &publisher);
        if (r < 0)
                return r;
        r = strlen(offer_id) <= IDM_OFFER_ID_MAX ? offer_get(t, offer_id, &offer) : -ENOENT;
        if (r < 0 && r != -ENOENT)
                return r;
        t = store_txn_free(t);
        /* Another publisher's offer is as unknown as a missing one. */
        if (r == -ENOENT || !streq_ptr(json_object_get_string(offer, "publisherId"), call_publisher_id(call)))
                return call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND, json_pack("{s:s}", "field", "offerId"),
                                 "no such offer");
        if (!uri_allowed(publisher, redirect_uri))
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_URI,
                                 json_pack("{s:s}", "field", "redirectUri"),
                                 "redirectUri is not one of the publisher's allowedRedirectUris");
        base = json_object_get_string(publisher, "remoteAuthUrl");
        if (!base)
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                 json_pack("{s:s}", "field", "remoteAuthUrl"), "the publisher has no remoteAuthUrl");

        w = calloc(1, sizeof(PrepareWork));
        if (!w)
                return -ENOMEM;
        *w = (PrepareWork) {
                .publisher_id = strdup(call_publisher_id(call)),
                .profile = TAKE_PTR(profile),
                .now_usec = now_realtime_usec(),
                .unix_range = USERDB_UID_RANGE(call_manager(call)->config),
        };
        r = token_random(SECRET_BYTES, &w->token);
        if (r >= 0)
                r = url_add_query(base, "remote_token", w->token, &u1);
        if (r >= 0)
                r = url_add_query(u1, "offerId", offer_id, &u2);
        if (r >= 0)
                r = url_add_query(u2, "redirectUri", redirect_uri, &w->url);
        if (r < 0 || !w->publisher_id) {
                prepare_work_free(w);
                return r < 0 ? r : -ENOMEM;
        }
        return call_write(call, prepare_write, prepare_done, w, prepare_work_free);
}

/* --- getSingleSignOnByCustomer --- */

static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Decodes a query component ("%XX", '+' for a space) of n bytes into a new string; -EINVAL for
 * a bad escape or a NUL. */
static int query_decode(const char *s, size_t n, char **ret) {
        char *out = malloc(n + 1), *p = out;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '+')
                        *p++ = ' ';
                else if (s[i] == '%') {
                        int hi, lo;

                        if (i + 2 >= n || (hi = hex_value(s[i + 1])) < 0 || (lo = hex_value(s[i + 2])) < 0 ||
                            (hi == 0 && lo == 0)) {
                                free(out);
                                return -EINVAL;
                        }
                        *p++ = (char) (hi * 16 + lo);
                        i += 2;
                } else
                        *p++ = s[i];
        }
        *p = 0;
        *ret = out;
        return 0;
}

/* Appends name=value to *url (replaced). Refuses our own names and what is not text. */
static int sso_add(Call *call, char **url, const char *name, const char *value) {
        char *next;
        int r;

        if (!*name || streq(name, SSO_TOKEN_PARAM) || streq(name, SSO_LANG_PARAM) ||
            !text_is_valid(name, SSO_REQUEST_MAX_BYTES) || (*value && !text_is_valid(value, SSO_REQUEST_MAX_BYTES)))
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                 json_pack("{s:s}", "field", "request"),
                                 "request: each parameter needs a name other than 'token' and 'lang', and text");
        r = url_add_query(*url, name, value, &next);
        if (r < 0)
                return r;
        free(*url);
        *url = next;
        return 0;
}

/* request: "a=b&c=d" (a query string, percent-encoded as in a URL) or {"a": "b", "c": "d"}. */
static int sso_add_request(Call *call, char **url, json_t *request) {
        size_t n = 0;

        if (json_is_object(request)) {
                const char *key;
                json_t *v;

                if (json_object_size(request) > SSO_REQUEST_MAX_PARAMS)
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                         json_pack("{s:s}", "field", "request"), "request has more than 32 parameters");
                json_object_foreach(request, key, v) {
                        int r;

                        if (!json_is_string(v))
                                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                                 json_pack("{s:s}", "field", "request"),
                                                 "request's values must be strings");
                        r = sso_add(call, url, key, json_string_value(v));
                        if (r < 0)
                                return r;
                }
                return 0;
        }

        for (const char *p = json_string_value(request); p && *p;) {
                _cleanup_free_ char *name = NULL, *value = NULL;
                size_t len = strcspn(p, "&"), nlen = strcspn(p, "=&");
                int r;

                if (len > 0) {
                        if (++n > SSO_REQUEST_MAX_PARAMS)
                                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                                 json_pack("{s:s}", "field", "request"),
                                                 "request has more than 32 parameters");
                        r = query_decode(p, nlen, &name);
                        if (r >= 0)
                                r = nlen < len ? query_decode(p + nlen + 1, len - nlen - 1, &value) :
                                                 query_decode("", 0, &value);
                        if (r == -EINVAL)
                                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                                 json_pack("{s:s}", "field", "request"),
                                                 "request is not a query string (a bad %%-escape)");
                        if (r < 0)
                                return r;
                        r = sso_add(call, url, name, value);
                        if (r < 0)
                                return r;
                }
                p += len;
                if (*p == '&')
                        p++;
        }
        return 0;
}

/* ssoUrl with the page's path after its own path (before its query). New string. */
static int sso_base(const char *sso_url, const char *path, char **ret) {
        size_t n = strcspn(sso_url, "?");
        char *out;

        if (!path) {
                out = strdup(sso_url);
                if (!out)
                        return -ENOMEM;
                *ret = out;
                return 0;
        }
        /* "https://h/sso/" + "/account": one slash. */
        size_t head = n > 0 && sso_url[n - 1] == '/' ? n - 1 : n;
        if (asprintf(&out, "%.*s%s%s", (int) head, sso_url, path, sso_url + n) < 0)
                return -ENOMEM;
        *ret = out;
        return 0;
}

typedef struct SsoWork {
        char *publisher_id;
        char *customer_id;
        char *token;
        char *url;
        char *validation_ip;
        uint64_t now_usec;
        uint64_t validity_usec;
        bool gone;
} SsoWork;

static void sso_work_free(void *p) {
        SsoWork *w = p;

        free(w->publisher_id);
        free(w->customer_id);
        erase_and_free(w->token);
        erase_and_free(w->url);
        free(w->validation_ip);
        free(w);
}

static int sso_write(StoreTxn *t, void *userdata) {
        SsoWork *w = userdata;
        _cleanup_(json_decrefp) json_t *rec = NULL;
        int r;

        r = customer_exists(t, w->customer_id);
        if (r < 0)
                return r;
        w->gone = r == 0;
        if (w->gone)
                return 0;
        rec = json_pack("{s:s, s:s, s:I, s:I}", "customerId", w->customer_id, "publisherId", w->publisher_id,
                        "created", (json_int_t) w->now_usec, "expires",
                        (json_int_t) (w->now_usec + w->validity_usec));
        if (!rec || (w->validation_ip && json_object_set_new(rec, "validationIp", json_string(w->validation_ip)) < 0))
                return -ENOMEM;
        return signin_token_put(t, REMOTE_KIND_SSO, w->token, rec);
}

static void sso_done(Call *call, int r, void *userdata) {
        SsoWork *w = userdata;

        if (r < 0)
                return;
        if (w->gone) {
                (void) call_fail_customer_gone(call, CUSTOMER_GONE_NOT_FOUND);
                return;
        }
        log_info("%s: SSO link made for customer %s of publisher %s (%llu s%s)", call_request_id(call),
                 w->customer_id, w->publisher_id, (unsigned long long) (w->validity_usec / SEC_USEC),
                 w->validation_ip ? ", bound to an address" : "");
        (void) call_reply(call, json_string(w->url));
}

static int method_remote_sso_by_customer(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *publisher = NULL, *customer = NULL;
        _cleanup_free_ char *url = NULL;
        const char *id = json_object_get_string(params, "idCustomer");
        const char *type = json_object_get_string(params, "customerType");
        const char *page = json_object_get_string(params, "page");
        const char *lang = json_object_get_string(params, "languageCode");
        json_t *request = json_object_get(params, "request");
        json_t *validity = json_object_get(params, "validityTime");
        json_t *ip = json_object_get(params, "validationIp");
        const char *path = NULL, *sso_url;
        char lower[3] = "";
        bool external;
        SsoWork *w;
        int r;

        if (streq(type, "ExternalCustomerReference"))
                external = true;
        else if (streq(type, "CustomerReference") || streq(type, "AvangateCustomerReference"))
                external = false;
        else
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                 json_pack("{s:s}", "field", "customerType"),
                                 "customerType must be ExternalCustomerReference or CustomerReference");
        if (validity && (json_integer_value(validity) < 1 || json_integer_value(validity) > SSO_VALIDITY_MAX_SEC))
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                 json_pack("{s:s}", "field", "validityTime"),
                                 "validityTime must be 1..3600 seconds");
        if (ip && !json_is_null(ip) && !json_is_string(ip))
                return call_fail_param(call, "validationIp", "parameter 'validationIp' must be a string or null");
        if (json_string_length(ip) == 0)
                ip = NULL;      /* "" or null: not bound */
        r = check_ip(call, "validationIp", json_string_value(ip));
        if (r < 0)
                return r;
        if (request && !json_is_null(request) && !json_is_string(request) && !json_is_object(request))
                return call_fail_param(call, "request", "parameter 'request' must be a string or an object");
        if (lang && *lang) {
                if (strlen(lang) != 2 ||
                    !((lang[0] | 0x20) >= 'a' && (lang[0] | 0x20) <= 'z' && (lang[1] | 0x20) >= 'a' &&
                      (lang[1] | 0x20) <= 'z'))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                         json_pack("{s:s}", "field", "languageCode"),
                                         "languageCode must be an ISO 639-1 code such as en");
                lower[0] = (char) (lang[0] | 0x20);
                lower[1] = (char) (lang[1] | 0x20);
        }

        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = publisher_get(t, call_publisher_id(call), &publisher);
        if (r < 0)
                return r;
        r = external ? customer_find_by_external_id(t, call_publisher_id(call), id, &customer) :
                       customer_get(t, id, &customer);
        if (r < 0 && r != -ENOENT)
                return r;
        t = store_txn_free(t);
        /* Another publisher's customer is as unknown as a missing one. */
        if (r == -ENOENT || !streq_ptr(json_object_get_string(customer, "publisherId"), call_publisher_id(call)))
                return call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND,
                                 json_pack("{s:s}", "field", "idCustomer"), "no such customer");
        sso_url = json_object_get_string(publisher, "ssoUrl");
        if (!sso_url)
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                 json_pack("{s:s}", "field", "ssoUrl"), "the publisher has no ssoUrl");
        if (page && *page) {
                path = json_string_value(json_object_get(json_object_get(publisher, "ssoPages"), page));
                if (!path)
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                         json_pack("{s:s}", "field", "page"), "page is not one of the publisher's ssoPages");
        }

        w = calloc(1, sizeof(SsoWork));
        if (!w)
                return -ENOMEM;
        *w = (SsoWork) {
                .publisher_id = strdup(call_publisher_id(call)),
                .customer_id = strdup(json_object_get_string(customer, "customerId")),
                .validation_ip = ip ? strdup(json_string_value(ip)) : NULL,
                .now_usec = now_realtime_usec(),
                .validity_usec = (validity ? (uint64_t) json_integer_value(validity) : SSO_VALIDITY_DEFAULT_SEC) *
                                 SEC_USEC,
        };
        if (!w->publisher_id || !w->customer_id || (ip && !w->validation_ip)) {
                sso_work_free(w);
                return -ENOMEM;
        }
        /* ssoUrl + the page's path, then the token, what request asks for, and lang. */
        r = token_random(SECRET_BYTES, &w->token);
        if (r >= 0)
                r = sso_base(sso_url, path, &url);
        if (r >= 0)
                r = url_add_query(url, SSO_TOKEN_PARAM, w->token, &w->url);
        if (r >= 0 && request && !json_is_null(request))
                r = sso_add_request(call, &w->url, request);
        if (r >= 0 && lower[0]) {
                char *next;

                r = url_add_query(w->url, SSO_LANG_PARAM, lower, &next);
                if (r >= 0) {
                        erase_and_free(w->url);
                        w->url = next;
                }
        }
        if (r >= 0 && strlen(w->url) > SSO_URL_MAX)
                r = call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                              json_pack("{s:s}", "field", "request"), "the URL would be longer than %u bytes",
                              SSO_URL_MAX);
        if (r < 0) {
                sso_work_free(w);
                return r;
        }
        return call_write(call, sso_write, sso_done, w, sso_work_free);
}

/* --- redeemToken and ssoLogin: a session for a customer --- */

typedef enum SigninOutcome {
        SIGNIN_OK,
        SIGNIN_INVALID,         /* no such token, its customer gone */
        SIGNIN_EXPIRED,
        SIGNIN_WRONG_ADDRESS,   /* an SSO token bound to another address */
        SIGNIN_DISABLED,
        SIGNIN_EXTERNAL_ID_TAKEN,
} SigninOutcome;

typedef struct SigninWork {
        char *token;            /* redeemToken */
        json_t *profile;        /* ssoLogin: {email, externalId, locale?, country?, currency?} */
        char *publisher_id;     /* ssoLogin: the caller; redeemToken: the token's */
        char *ip;               /* customerIP, or NULL */
        SessionContext ctx;

        SigninOutcome outcome;
        const char *how;        /* ssoLogin: "found", "linked", "created"; redeemToken: the kind */
        char *customer_id;
        SessionTokens tokens;
} SigninWork;

static void signin_work_free(void *p) {
        SigninWork *w = p;

        erase_and_free(w->token);
        json_decref(w->profile);
        free(w->publisher_id);
        free(w->ip);
        free(w->customer_id);
        session_tokens_done(&w->tokens);
        free(w);
}

static int signin_reset(SigninWork *w) {
        w->outcome = SIGNIN_INVALID;
        free(w->customer_id);
        w->customer_id = NULL;
        session_tokens_done(&w->tokens);
        return 0;
}

/* Starts the session of customer; the outcome says what became of it. */
static int signin_finish(StoreTxn *t, SigninWork *w, json_t *customer) {
        int r;

        w->customer_id = strdup(json_object_get_string(customer, "customerId"));
        if (!w->customer_id)
                return -ENOMEM;
        if (!w->publisher_id) {
                w->publisher_id = strdup(strempty(json_object_get_string(customer, "publisherId")));
                if (!w->publisher_id)
                        return -ENOMEM;
        }
        r = signin_start(t, &w->ctx, customer, w->ip, &w->tokens);
        if (r == -EPERM) {
                w->outcome = SIGNIN_DISABLED;
                return 0;
        }
        if (r < 0)
                return r;
        w->outcome = SIGNIN_OK;
        return 0;
}

static void signin_done(Call *call, int r, void *userdata) {
        SigninWork *w = userdata;

        if (r < 0)
                return;
        switch (w->outcome) {
        case SIGNIN_OK:
                log_event(LOG_LEVEL_INFO, IDM_MESSAGE_LOGIN_SUCCEEDED, w->publisher_id, w->customer_id, NULL,
                          "%s: customer %s of publisher %s signed in (%s)", call_request_id(call), w->customer_id,
                          w->publisher_id, w->how);
                (void) call_reply(call, signin_result(w->customer_id, w->publisher_id, &w->tokens));
                return;
        case SIGNIN_EXPIRED:
                (void) call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_TOKEN_EXPIRED, NULL, "the token has expired");
                return;
        case SIGNIN_WRONG_ADDRESS:
                log_event(LOG_LEVEL_NOTICE, IDM_MESSAGE_LOGIN_FAILED, w->publisher_id, w->customer_id,
                          IDM_REASON_INVALID_TOKEN, "%s: an SSO token of customer %s was presented from another "
                          "address than it is bound to; it is used up", call_request_id(call), w->customer_id);
                (void) call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_TOKEN, NULL,
                                 "the token is bound to another address");
                return;
        case SIGNIN_DISABLED:
                (void) call_fail(call, IDM_ERR_FORBIDDEN, IDM_REASON_ACCOUNT_DISABLED, NULL, "the account is disabled");
                return;
        case SIGNIN_EXTERNAL_ID_TAKEN:
                (void) call_fail(call, IDM_ERR_CONFLICT, IDM_REASON_EXTERNAL_ID_EXISTS,
                                 json_pack("{s:s}", "field", "externalId"),
                                 "the customer with this e-mail has another externalId, or the externalId is "
                                 "another customer's");
                return;
        default:
                (void) call_fail(call, IDM_ERR_UNAUTHORIZED, IDM_REASON_INVALID_TOKEN, NULL, "invalid token");
        }
}

/* One unit of work: the token is taken out of the store whatever follows (used up by being
 * presented), then checked, then the session started. */
static int redeem_write(StoreTxn *t, void *userdata) {
        SigninWork *w = userdata;
        _cleanup_(json_decrefp) json_t *rec = NULL, *customer = NULL;
        const char *kind = NULL, *bound;
        int r;

        signin_reset(w);
        free(w->publisher_id);
        w->publisher_id = NULL;
        r = signin_token_take(t, w->token, &rec, &kind);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        w->how = kind;
        if (record_u64(rec, "expires") <= w->ctx.now_usec) {
                w->outcome = SIGNIN_EXPIRED;
                return 0;
        }
        r = customer_get(t, strempty(json_object_get_string(rec, "customerId")), &customer);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (!streq_ptr(json_object_get_string(customer, "publisherId"), json_object_get_string(rec, "publisherId")))
                return 0;
        bound = json_object_get_string(rec, "validationIp");
        if (bound && !ip_equal(bound, w->ip)) {
                w->customer_id = strdup(json_object_get_string(customer, "customerId"));
                w->outcome = SIGNIN_WRONG_ADDRESS;
                return w->customer_id ? 0 : -ENOMEM;
        }
        return signin_finish(t, w, customer);
}

static int method_remote_redeem(Call *call, json_t *params) {
        const char *ip = json_object_get_string(params, "customerIP");
        SigninWork *w;
        int r;

        r = check_ip(call, "customerIP", ip);
        if (r < 0)
                return r;
        w = calloc(1, sizeof(SigninWork));
        if (!w)
                return -ENOMEM;
        *w = (SigninWork) {
                .token = strdup(json_object_get_string(params, "token")),
                .ip = ip ? strdup(ip) : NULL,
                .ctx = call_session_context(call),
        };
        if (!w->token || (ip && !w->ip)) {
                signin_work_free(w);
                return -ENOMEM;
        }
        return call_write(call, redeem_write, signin_done, w, signin_work_free);
}

/* Found by externalId, else by e-mail (and linked), else created without a password. */
static int sso_login_write(StoreTxn *t, void *userdata) {
        SigninWork *w = userdata;
        _cleanup_(json_decrefp) json_t *customer = NULL;
        const char *external_id = json_object_get_string(w->profile, "externalId");
        const char *email = json_object_get_string(w->profile, "email");
        int r;

        signin_reset(w);
        r = customer_find_by_external_id(t, w->publisher_id, external_id, &customer);
        if (r >= 0) {
                w->how = "found by externalId";
                return signin_finish(t, w, customer);
        }
        if (r != -ENOENT)
                return r;

        r = customer_find_by_email(t, w->publisher_id, email, &customer);
        if (r >= 0) {
                if (json_object_get(customer, "externalId")) {
                        w->outcome = SIGNIN_EXTERNAL_ID_TAKEN;
                        return 0;
                }
                r = customer_link_external_id(t, customer, external_id);
                if (r == -EEXIST) {
                        w->outcome = SIGNIN_EXTERNAL_ID_TAKEN;
                        return 0;
                }
                if (r < 0)
                        return r;
                w->how = "found by e-mail, externalId linked";
                return signin_finish(t, w, customer);
        }
        if (r != -ENOENT)
                return r;

        const char *taken = NULL;
        customer = json_deep_copy(w->profile);
        if (!customer || json_object_set_new(customer, "publisherId", json_string(w->publisher_id)) < 0 ||
            json_object_set_new(customer, "registrationDate", json_integer((json_int_t) w->ctx.now_usec)) < 0 ||
            (w->ip && json_object_set_new(customer, "registrationIP", json_string(w->ip)) < 0))
                return -ENOMEM;
        r = customer_create(t, customer, &USERDB_UID_RANGE(w->ctx.config), &taken);
        if (r < 0)
                return r;       /* -EEXIST cannot be: both were looked up in this unit of work */
        w->how = "created";
        return signin_finish(t, w, customer);
}

static int method_remote_sso_login(Call *call, json_t *params) {
        _cleanup_(json_decrefp) json_t *profile = NULL;
        const char *email = json_object_get_string(params, "email");
        const char *external_id = json_object_get_string(params, "externalId");
        const char *ip = json_object_get_string(params, "customerIP");
        SigninWork *w;
        int r;

        if (!email_is_valid(email))
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_EMAIL,
                                 json_pack("{s:s}", "field", "email"), "email is not a valid address");
        if (!text_is_valid(external_id, EXTERNAL_ID_MAX))
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                 json_pack("{s:s}", "field", "externalId"),
                                 "externalId must be printable text of at most 128 bytes");
        r = check_ip(call, "customerIP", ip);
        if (r < 0)
                return r;
        profile = json_pack("{s:s, s:s}", "email", email, "externalId", external_id);
        if (!profile)
                return -ENOMEM;
        r = check_profile(call, params, profile);
        if (r < 0)
                return r;

        w = calloc(1, sizeof(SigninWork));
        if (!w)
                return -ENOMEM;
        *w = (SigninWork) {
                .profile = TAKE_PTR(profile),
                .publisher_id = strdup(call_publisher_id(call)),
                .ip = ip ? strdup(ip) : NULL,
                .ctx = call_session_context(call),
        };
        if (!w->publisher_id || (ip && !w->ip)) {
                signin_work_free(w);
                return -ENOMEM;
        }
        return call_write(call, sso_login_write, signin_done, w, signin_work_free);
}

const Method methods_remote[] = {
        { .name = "publisherLogin", .handler = method_remote_publisher_login, .role = ROLE_PUBLISHER,
          .class = METHOD_CLASS_LOGIN,
          .positional = (const char *const[]) { "publisherId", "publisherToken", NULL },
          .params = (const ParamSpec[]) {
                  PARAM_ID("publisherId", true, IDM_PUBLISHER_ID_MAX),
                  { "publisherToken", PARAM_STRING, true, IDM_PUBLISHER_TOKEN_MAX },
                  {} } },
        { .name = "prepareRemoteAuth", .handler = method_remote_prepare, .role = ROLE_PUBLISHER,
          .class = METHOD_CLASS_DEFAULT,
          .params = (const ParamSpec[]) {
                  PUBLISHER_AUTH_PARAMS,
                  { "customerData", PARAM_OBJECT, true },
                  { "flowDescription", PARAM_OBJECT, true },
                  {} } },
        { .name = "getSingleSignOnByCustomer", .handler = method_remote_sso_by_customer, .role = ROLE_PUBLISHER,
          .class = METHOD_CLASS_DEFAULT,
          .positional = (const char *const[]) { "sessionID", "idCustomer", "customerType", "page", "request",
                                                "validityTime", "validationIp", "languageCode", NULL },
          .params = (const ParamSpec[]) {
                  PUBLISHER_AUTH_PARAMS,
                  { "idCustomer", PARAM_STRING, true, IDM_EXTERNAL_ID_MAX, 1 },
                  { "customerType", PARAM_STRING, true, 64 },
                  { "page", PARAM_STRING, false, PAGE_MAX },
                  { "request", PARAM_ANY, false },
                  { "validityTime", PARAM_INTEGER, false },
                  { "validationIp", PARAM_ANY, false },
                  { "languageCode", PARAM_STRING, false, 8 },
                  {} } },
        { .name = IDM_METHOD_REDEEM_TOKEN, .handler = method_remote_redeem, .role = ROLE_ANYONE,
          .class = METHOD_CLASS_LOGIN, .address_param = "customerIP",
          .params = (const ParamSpec[]) {
                  { "token", PARAM_STRING, true, IDM_OPAQUE_TOKEN_MAX, 1 },
                  { "customerIP", PARAM_STRING, false, IDM_CUSTOMER_IP_MAX },
                  {} } },
        { .name = "ssoLogin", .handler = method_remote_sso_login, .role = ROLE_PUBLISHER,
          .class = METHOD_CLASS_LOGIN, .address_param = "customerIP",
          .params = (const ParamSpec[]) {
                  PUBLISHER_AUTH_PARAMS,
                  { "email", PARAM_STRING, true, IDM_EMAIL_MAX },
                  { "externalId", PARAM_STRING, true, IDM_EXTERNAL_ID_MAX, 1 },
                  { "locale", PARAM_STRING, false, 16 },
                  { "country", PARAM_STRING, false, 8 },
                  { "currency", PARAM_STRING, false, 8 },
                  { "customerIP", PARAM_STRING, false, IDM_CUSTOMER_IP_MAX },
                  {} } },
        {}
};
