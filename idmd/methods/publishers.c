/* SPDX-License-Identifier: MIT */
/*
 * Publishers and offers: createPublisher, updatePublisher, getPublisher, listPublishers,
 * rotatePublisherToken (admin); addOffer, removeOffer, listOffers (publisher or admin).
 *
 * The records are records/publishers.c's. A publisher's token is returned once, when made, and
 * never stored (only its hash).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "idm/json-util.h"
#include "idm/protocol.h"
#include "log.h"
#include "message-ids.h"
#include "manager.h"
#include "methods/methods.h"
#include "methods/customers.h"
#include "records/publishers.h"
#include "records/unixusers.h"
#include "tokens.h"
#include "userdb.h"
#include "validate.h"

#define PUBLISHER_TOKEN_BYTES 36        /* 48 base64url characters */
#define PUBLISHER_NAME_MAX 200
#define REDIRECT_URIS_MAX 32
#define SSO_PAGES_MAX 32
#define URI_MAX 2048
#define OFFER_ID_MAX IDM_OFFER_ID_MAX
#define OFFER_TITLE_MAX 200


/* Checks and copies the settable fields from params into rec. A value that is not acceptable is
 * refused (call_fail()). */
static int publisher_apply_settings(Call *call, json_t *params, json_t *rec) {
        const char *name = json_object_get_string(params, "name");
        json_t *uris = json_object_get(params, "allowedRedirectUris");
        json_t *pages = json_object_get(params, "ssoPages");
        static const char *const url_keys[] = { "resetUrl", "remoteAuthUrl", "ssoUrl", "deviceVerificationUrl" };
        size_t i;
        json_t *v;
        const char *k;

        if (name) {
                if (!text_is_valid(name, PUBLISHER_NAME_MAX)) {
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                         json_pack("{s:s}", "field", "name"),
                                         "name must be 1 to 200 bytes of printable text");
                }
                (void) json_object_set_new(rec, "name", json_string(name));
        }

        if (uris) {
                json_array_foreach(uris, i, v)
                        if (!json_is_string(v) || !redirect_uri_is_valid(json_string_value(v))) {
                                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_URI,
                                                 json_pack("{s:s, s:I}", "field", "allowedRedirectUris", "index",
                                                           (json_int_t) i),
                                                 "allowedRedirectUris must be absolute https URLs "
                                                 "(http only for localhost)");
                        }
                (void) json_object_set(rec, "allowedRedirectUris", uris);
        }

        for (i = 0; i < ELEMENTSOF(url_keys); i++) {
                const char *u = json_object_get_string(params, url_keys[i]);

                if (!u)
                        continue;
                if (u[0] == 0) {        /* "" clears the setting */
                        (void) json_object_del(rec, url_keys[i]);
                        continue;
                }
                if (!redirect_uri_is_valid(u)) {
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_URI,
                                         json_pack("{s:s}", "field", url_keys[i]),
                                         "the URL must be absolute https (http only for localhost)");
                }
                (void) json_object_set_new(rec, url_keys[i], json_string(u));
        }

        if ((k = json_object_get_string(params, "resetMode"))) {
                if (!streq(k, "link") && !streq(k, "code") && !streq(k, "both"))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                         json_pack("{s:s}", "field", "resetMode"),
                                         "resetMode is link, code or both");
                (void) json_object_set_new(rec, "resetMode", json_string(k));
        }

        if ((k = json_object_get_string(params, "unixUsers"))) {
                if (unix_users_from_string(k) < 0)
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                         json_pack("{s:s}", "field", "unixUsers"),
                                         "unixUsers is none, enabled or all");
                (void) json_object_set_new(rec, "unixUsers", json_string(k));
        }

        if ((k = json_object_get_string(params, "unixShell"))) {
                if (k[0] == 0)  /* "" clears the setting */
                        (void) json_object_del(rec, "unixShell");
                else if (!unix_path_is_valid(k, USERDB_PATH_MAX))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                         json_pack("{s:s}", "field", "unixShell"),
                                         "unixShell must be an absolute path without ':'");
                else
                        (void) json_object_set_new(rec, "unixShell", json_string(k));
        }

        if (pages) {
                if (json_object_size(pages) > SSO_PAGES_MAX) {
                        return call_fail_param(call, "ssoPages", "ssoPages has more than 32 entries");
                }
                json_object_foreach(pages, k, v)
                        if (!text_is_valid(k, 64) || !json_is_string(v) || json_string_value(v)[0] != '/' ||
                            !text_is_valid(json_string_value(v), 512) || strpbrk(json_string_value(v), " #?")) {
                                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                                 json_pack("{s:s}", "field", "ssoPages"),
                                                 "ssoPages maps page names to paths starting with '/' "
                                                 "(no spaces, '?' or '#')");
                        }
                (void) json_object_set(rec, "ssoPages", pages);
        }
        return 0;
}

typedef struct PublisherWrite {
        json_t *rec;            /* the record to write (publisherId drawn by create) */
        char *token;            /* new token, or NULL */
        bool create;
        const char *verb;       /* for the log: "created", "updated", "rotated the token of" */
        UnixUidRange range;     /* for a publisher that is (now) "all": its customers' uids */
        int assigned;           /* uids drawn */
} PublisherWrite;

static void publisher_write_free(void *p) {
        PublisherWrite *w = p;

        json_decref(w->rec);
        erase_and_free(w->token);
        free(w);
}

/* A unit of work; may run more than once (store growth), so it only depends on w's inputs. */
static int publisher_write(StoreTxn *t, void *userdata) {
        PublisherWrite *w = userdata;
        int r;

        w->assigned = 0;
        r = publisher_save(t, w->rec, w->create, w->token);
        if (r < 0 || w->create || publisher_unix_users(w->rec) != UNIX_USERS_ALL)
                return r;
        /* Every customer of an "all" publisher is a Unix user: those without a uid get one now
         * (none after the first time), in this unit of work. */
        w->assigned = publisher_unix_uid_assign_all(t, json_object_get_string(w->rec, "publisherId"), &w->range);
        return w->assigned < 0 ? w->assigned : 0;
}

static void publisher_done(Call *call, int r, void *userdata) {
        PublisherWrite *w = userdata;

        if (r == -ERANGE) {
                (void) customers_fail_uid_range(call);
                return;
        }
        if (r < 0)
                return;
        if (w->create)
                log_event(LOG_LEVEL_NOTICE, IDM_MESSAGE_PUBLISHER_CREATED, json_object_get_string(w->rec, "publisherId"),
                          NULL, NULL, "%s: created publisher %s (uid %u)", call_request_id(call),
                          json_object_get_string(w->rec, "publisherId"), (unsigned) call_peer(call)->uid);
        else
                log_info("%s: %s publisher %s (uid %u)", call_request_id(call), w->verb,
                         json_object_get_string(w->rec, "publisherId"), (unsigned) call_peer(call)->uid);
        if (w->assigned > 0)
                log_notice("%s: %d customers of publisher %s got a uid (unixUsers all)", call_request_id(call),
                           w->assigned, json_object_get_string(w->rec, "publisherId"));
        if (w->token)
                (void) call_reply(call, json_pack("{s:O, s:s}", "publisherId", json_object_get(w->rec, "publisherId"),
                                                  "publisherToken", w->token));
        else
                (void) call_reply(call, publisher_public(w->rec));
}

/* Takes rec and token over. */
static int publisher_submit(Call *call, json_t *rec, char *token, bool create, const char *verb) {
        PublisherWrite *w = calloc(1, sizeof(PublisherWrite));

        if (!w) {
                json_decref(rec);
                erase_and_free(token);
                return -ENOMEM;
        }
        *w = (PublisherWrite) { .rec = rec, .token = token, .create = create, .verb = verb,
                                .range = USERDB_UID_RANGE(call_manager(call)->config) };
        return call_write(call, publisher_write, publisher_done, w, publisher_write_free);
}

static int method_publishers_create(Call *call, json_t *params) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        _cleanup_(erase_and_freep) char *token = NULL;
        int r;

        rec = json_pack("{s:[], s:I}", "allowedRedirectUris", "createdDate", (json_int_t) now_realtime_usec());
        if (!rec)
                return -ENOMEM;
        r = publisher_apply_settings(call, params, rec);
        if (r < 0)
                return r;
        r = token_random(PUBLISHER_TOKEN_BYTES, &token);
        if (r < 0)
                return r;
        return publisher_submit(call, TAKE_PTR(rec), TAKE_PTR(token), true, "created");
}

/* Reads the publisher named by params' publisherId; replies 404 itself. */
static int publisher_read(Call *call, const char *id, json_t **ret) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        int r;

        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = publisher_get(t, id, ret);
        if (r == -ENOENT)
                return call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND, NULL, "no such publisher");
        return r;
}

static int method_publishers_get(Call *call, json_t *params) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        int r;

        r = publisher_read(call, json_object_get_string(params, "publisherId"), &rec);
        if (r < 0)
                return r;
        return call_reply(call, publisher_public(rec));
}

static int method_publishers_update(Call *call, json_t *params) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        int r;

        r = publisher_read(call, json_object_get_string(params, "publisherId"), &rec);
        if (r < 0)
                return r;
        r = publisher_apply_settings(call, params, rec);
        if (r < 0)
                return r;
        return publisher_submit(call, TAKE_PTR(rec), NULL, false, "updated");
}

static int method_publishers_rotate_token(Call *call, json_t *params) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        _cleanup_(erase_and_freep) char *token = NULL;
        int r;

        r = publisher_read(call, json_object_get_string(params, "publisherId"), &rec);
        if (r < 0)
                return r;
        r = token_random(PUBLISHER_TOKEN_BYTES, &token);
        if (r < 0)
                return r;
        return publisher_submit(call, TAKE_PTR(rec), TAKE_PTR(token), false, "rotated the token of");
}

static int append_public(const char *key, json_t *value, void *userdata) {
        return json_array_append_new(userdata, publisher_public(value)) < 0 ? -ENOMEM : 0;
}

static int method_publishers_list(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *items = json_array();
        int r;

        if (!items)
                return -ENOMEM;
        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = publishers_foreach(t, append_public, items);
        if (r < 0)
                return r;
        return call_reply(call, json_pack("{s:O}", "items", items));
}

/* --- offers --- */

static bool offer_id_is_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > OFFER_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
                      s[i] == '_' || s[i] == '-' || s[i] == '.'))
                        return false;
        return true;
}

static int offer_put(StoreTxn *t, void *userdata) {
        return offer_add(t, userdata);
}

static void json_decref_void(void *p) {
        json_decref(p);
}

static void offer_added(Call *call, int r, void *userdata) {
        json_t *rec = userdata;

        if (r == -EEXIST) {
                (void) call_fail(call, IDM_ERR_CONFLICT, IDM_REASON_OFFER_EXISTS, NULL,
                                        "an offer with this offerId exists");
                return;
        }
        if (r < 0)
                return;
        log_info("%s: publisher %s added offer '%s'", call_request_id(call), json_object_get_string(rec, "publisherId"),
                 json_object_get_string(rec, "offerId"));
        (void) call_reply(call, offer_public(rec));
}

static int method_offers_add(Call *call, json_t *params) {
        const char *offer_id = json_object_get_string(params, "offerId");
        const char *title = json_object_get_string(params, "title");
        _cleanup_(json_decrefp) json_t *rec = NULL;

        if (!offer_id_is_valid(offer_id))
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                        json_pack("{s:s}", "field", "offerId"),
                                        "offerId must be 1 to 64 characters from A-Z a-z 0-9 _ - .");
        if (title && !text_is_valid(title, OFFER_TITLE_MAX))
                return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                        json_pack("{s:s}", "field", "title"),
                                        "title must be 1 to 200 bytes of printable text");

        rec = json_pack("{s:s, s:s, s:I}", "offerId", offer_id, "publisherId", call_publisher_id(call),
                        "createdDate", (json_int_t) now_realtime_usec());
        if (!rec)
                return -ENOMEM;
        if (title)
                (void) json_object_set_new(rec, "title", json_string(title));

        return call_write(call, offer_put, offer_added, TAKE_PTR(rec), json_decref_void);
}

typedef struct OfferRemove {
        char *offer_id;
        char *publisher_id;
} OfferRemove;

static void offer_remove_free(void *p) {
        OfferRemove *o = p;

        free(o->offer_id);
        free(o->publisher_id);
        free(o);
}

static int offer_remove_write(StoreTxn *t, void *userdata) {
        OfferRemove *o = userdata;

        return offer_remove(t, o->offer_id, o->publisher_id);
}

static void offer_removed(Call *call, int r, void *userdata) {
        OfferRemove *o = userdata;

        if (r == -ENOENT) {
                (void) call_fail(call, IDM_ERR_NOT_FOUND, IDM_REASON_NOT_FOUND, NULL, "no such offer");
                return;
        }
        if (r < 0)
                return;
        log_info("%s: publisher %s removed offer '%s'", call_request_id(call), o->publisher_id, o->offer_id);
        (void) call_reply_empty(call);
}

static int method_offers_remove(Call *call, json_t *params) {
        OfferRemove *o = calloc(1, sizeof(OfferRemove));

        if (!o)
                return -ENOMEM;
        o->offer_id = strdup(json_object_get_string(params, "offerId"));
        o->publisher_id = strdup(call_publisher_id(call));
        if (!o->offer_id || !o->publisher_id) {
                offer_remove_free(o);
                return -ENOMEM;
        }
        return call_write(call, offer_remove_write, offer_removed, o, offer_remove_free);
}

static int append_offer(const char *key, json_t *value, void *userdata) {
        return json_array_append_new(userdata, offer_public(value)) < 0 ? -ENOMEM : 0;
}

static int method_offers_list(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *items = json_array();
        int r;

        if (!items)
                return -ENOMEM;
        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = offers_foreach(t, call_publisher_id(call), append_offer, items);
        if (r < 0)
                return r;
        return call_reply(call, json_pack("{s:O}", "items", items));
}

#define PUBLISHER_SETTINGS_PARAMS                                                               \
        { "name", PARAM_STRING, false, PUBLISHER_NAME_MAX },                                    \
        { "allowedRedirectUris", PARAM_ARRAY, false, REDIRECT_URIS_MAX },                       \
        { "resetUrl", PARAM_STRING, false, URI_MAX },                                           \
        { "remoteAuthUrl", PARAM_STRING, false, URI_MAX },                                      \
        { "ssoUrl", PARAM_STRING, false, URI_MAX },                                             \
        { "deviceVerificationUrl", PARAM_STRING, false, URI_MAX },                              \
        { "ssoPages", PARAM_OBJECT, false, 0 },                                                 \
        { "resetMode", PARAM_STRING, false, 8 },                                                \
        { "unixUsers", PARAM_STRING, false, 8 },                                                \
        { "unixShell", PARAM_STRING, false, USERDB_PATH_MAX }


const Method methods_publishers[] = {
        { .name = "createPublisher", .handler = method_publishers_create, .role = ROLE_ADMIN,
          .params = (const ParamSpec[]) {
                  { "name", PARAM_STRING, true, PUBLISHER_NAME_MAX },
                  { "allowedRedirectUris", PARAM_ARRAY, false, REDIRECT_URIS_MAX },
                  { "resetUrl", PARAM_STRING, false, URI_MAX },
                  { "remoteAuthUrl", PARAM_STRING, false, URI_MAX },
                  { "ssoUrl", PARAM_STRING, false, URI_MAX },
                  { "deviceVerificationUrl", PARAM_STRING, false, URI_MAX },
                  { "ssoPages", PARAM_OBJECT, false, 0 },
                  { "resetMode", PARAM_STRING, false, 8 },
                  { "unixUsers", PARAM_STRING, false, 8 },
                  { "unixShell", PARAM_STRING, false, USERDB_PATH_MAX },
                  {} } },
        { .name = "updatePublisher", .handler = method_publishers_update, .role = ROLE_ADMIN,
          .params = (const ParamSpec[]) {
                  PARAM_ID("publisherId", true, IDM_PUBLISHER_ID_MAX),
                  PUBLISHER_SETTINGS_PARAMS,
                  {} } },
        { .name = "getPublisher", .handler = method_publishers_get, .role = ROLE_ADMIN,
          .params = (const ParamSpec[]) { PARAM_ID("publisherId", true, IDM_PUBLISHER_ID_MAX), {} } },
        { .name = "listPublishers", .handler = method_publishers_list, .role = ROLE_ADMIN,
          .params = (const ParamSpec[]) { {} } },
        { .name = "rotatePublisherToken", .handler = method_publishers_rotate_token, .role = ROLE_ADMIN,
          .params = (const ParamSpec[]) { PARAM_ID("publisherId", true, IDM_PUBLISHER_ID_MAX), {} } },
        { .name = "addOffer", .handler = method_offers_add, .role = ROLE_PUBLISHER,
          .params = (const ParamSpec[]) {
                  PUBLISHER_AUTH_PARAMS,
                  PARAM_ID("offerId", true, OFFER_ID_MAX),
                  { "title", PARAM_STRING, false, OFFER_TITLE_MAX },
                  {} } },
        { .name = "removeOffer", .handler = method_offers_remove, .role = ROLE_PUBLISHER,
          .params = (const ParamSpec[]) {
                  PUBLISHER_AUTH_PARAMS,
                  PARAM_ID("offerId", true, OFFER_ID_MAX),
                  {} } },
        { .name = "listOffers", .handler = method_offers_list, .role = ROLE_PUBLISHER,
          .params = (const ParamSpec[]) { PUBLISHER_AUTH_PARAMS, {} } },
        {}
};
