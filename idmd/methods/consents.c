/* SPDX-License-Identifier: MIT */
/*
 * Consents: getPublisherConsents (anyone), setPublisherConsents (the publisher),
 * getCustomerConsents and updateCustomerConsents (the customer, by jwt), and what registration,
 * login and the PAM methods share (consents.h, which also describes the records).
 *
 * Nothing is stored per customer when a publisher publishes a new version: whether a customer
 * needs to look again is worked out when asked, from the newest version and the customer's
 * answers, so a new version of a required consent concerns every customer at once.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "idm/json-util.h"
#include "idm/protocol.h"
#include "log.h"
#include "manager.h"
#include "methods/answers.h"
#include "methods/consents.h"
#include "methods/customers.h"
#include "methods/methods.h"
#include "methods/refusal.h"
#include "records/consents.h"
#include "records/customers.h"
#include "tokens.h"
#include "validate.h"

#define CONSENT_VERSION_MAX INT32_MAX

#define STATE_ACCEPTED "accepted"
#define STATE_DECLINED "declined"

/* Replies {consents: list} (list stolen; NULL: out of memory). */
static int reply_list(Call *call, json_t *list) {
        json_t *result;

        if (!list)
                return -ENOMEM;
        result = json_pack("{s:o}", "consents", list);
        if (!result)
                return -ENOMEM;
        return call_reply(call, result);
}

/* --- records --- */

int consents_version_parse(json_t *v, int64_t *ret) {
        int64_t n = 0;

        if (json_is_integer(v)) {
                n = json_integer_value(v);
        } else if (json_is_string(v)) {
                const char *s = json_string_value(v);
                size_t len = strlen(s);

                if (len == 0 || len > 10 || s[0] == '0')
                        return -EINVAL;
                for (size_t i = 0; i < len; i++) {
                        if (s[i] < '0' || s[i] > '9')
                                return -EINVAL;
                        n = n * 10 + (s[i] - '0');
                }
        } else
                return -EINVAL;

        if (n < 1 || n > CONSENT_VERSION_MAX)
                return -EINVAL;
        *ret = n;
        return 0;
}

static int64_t record_int(json_t *rec, const char *field) {
        json_t *v = json_object_get(rec, field);

        return json_is_integer(v) ? json_integer_value(v) : 0;
}

/* The publisher's consent record; an empty one if it has none. New reference. */
static int defs_load(StoreTxn *t, const char *publisher_id, json_t **ret) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        int r;

        r = consent_definitions_get(t, publisher_id, &rec);
        if (r == -ENOENT) {
                rec = json_object();
                if (!rec)
                        return -ENOMEM;
        } else if (r < 0)
                return r;

        /* Missing parts (an empty record) read as empty. */
        if (!json_is_array(json_object_get(rec, "consents")) &&
            json_object_set_new(rec, "consents", json_array()) < 0)
                return -ENOMEM;
        if (!json_is_object(json_object_get(rec, "retired")) && json_object_set_new(rec, "retired", json_object()) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(rec);
        return 0;
}

/* The definition named name in a publisher record, or NULL. Borrowed. */
static json_t *defs_find(json_t *defs, const char *name) {
        return json_array_find_string(json_object_get(defs, "consents"), "name", name);
}

/* The customer's consent record; an empty one if there is none. New reference. */
static int answers_load(StoreTxn *t, const char *customer_id, json_t **ret) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        int r;

        r = consent_answers_get(t, customer_id, &rec);
        if (r == -ENOENT) {
                rec = json_object();
                if (!rec)
                        return -ENOMEM;
        } else if (r < 0)
                return r;

        if (!json_is_object(json_object_get(rec, "consents")) && json_object_set_new(rec, "consents", json_object()) < 0)
                return -ENOMEM;
        if (!json_is_array(json_object_get(rec, "history")) && json_object_set_new(rec, "history", json_array()) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(rec);
        return 0;
}

/* Whether the customer's answer (may be NULL) accepts the definition at its newest version. */
static bool answer_is_current_accept(json_t *def, json_t *answer) {
        return answer && streq_ptr(json_object_get_string(answer, "state"), STATE_ACCEPTED) &&
               record_int(answer, "version") == record_int(def, "version");
}

/* --- views --- */

static json_t *defs_public(json_t *defs) {
        _cleanup_(json_decrefp) json_t *list = json_array();
        size_t i;
        json_t *d;

        if (!list)
                return NULL;
        json_array_foreach(json_object_get(defs, "consents"), i, d) {
                json_t *item = json_pack("{s:O?, s:O?, s:I, s:b, s:b, s:O?}",
                                         "name", json_object_get(d, "name"),
                                         "label", json_object_get(d, "label"),
                                         "version", (json_int_t) record_int(d, "version"),
                                         "required", json_is_true(json_object_get(d, "required")),
                                         "enabledByDefault", json_is_true(json_object_get(d, "enabledByDefault")),
                                         "value", json_object_get(d, "value"));
                if (json_array_append_new(list, item) < 0)
                        return NULL;
        }
        return TAKE_PTR(list);
}

/* Every consent of the publisher with the customer's answer, as getCustomerConsents shows it.
 * needsUpdate: a required consent not accepted at its newest version, or any consent the
 * customer answered for an older version. */
static json_t *answers_view(json_t *defs, json_t *answers) {
        _cleanup_(json_decrefp) json_t *list = json_array();
        json_t *given = json_object_get(answers, "consents");
        size_t i;
        json_t *d;

        if (!list)
                return NULL;
        json_array_foreach(json_object_get(defs, "consents"), i, d) {
                json_t *a = json_object_get(given, strempty(json_object_get_string(d, "name")));
                int64_t newest = record_int(d, "version");
                bool required = json_is_true(json_object_get(d, "required"));
                bool needs = (required && !answer_is_current_accept(d, a)) || (a && record_int(a, "version") < newest);
                char buf[32];
                json_t *item;

                item = json_pack("{s:O?, s:O?, s:b, s:O?, s:O?, s:I, s:b, s:o}",
                                 "name", json_object_get(d, "name"),
                                 "label", json_object_get(d, "label"),
                                 "required", required,
                                 "state", json_object_get(a, "state"),
                                 "version", json_object_get(a, "version"),
                                 "newestVersion", (json_int_t) newest,
                                 "needsUpdate", needs,
                                 "date", a ? json_string(format_rfc3339((uint64_t) record_int(a, "date"), buf))
                                           : json_null());
                if (json_array_append_new(list, item) < 0)
                        return NULL;
        }
        return TAKE_PTR(list);
}

static int outdated_required(json_t *defs, json_t *answers, json_t **ret) {
        _cleanup_(json_decrefp) json_t *list = NULL;
        json_t *given = json_object_get(answers, "consents");
        size_t i;
        json_t *d;
        int n = 0;

        if (ret) {
                list = json_array();
                if (!list)
                        return -ENOMEM;
        }
        json_array_foreach(json_object_get(defs, "consents"), i, d) {
                if (!json_is_true(json_object_get(d, "required")) ||
                    answer_is_current_accept(d, json_object_get(given, strempty(json_object_get_string(d, "name")))))
                        continue;
                n++;
                if (list && json_array_append_new(list, json_pack("{s:O?, s:O?, s:I}",
                                                                  "name", json_object_get(d, "name"),
                                                                  "label", json_object_get(d, "label"),
                                                                  "version", (json_int_t) record_int(d, "version"))) < 0)
                        return -ENOMEM;
        }
        if (ret)
                *ret = TAKE_PTR(list);
        return n;
}

/* --- customers' answers --- */

/* Checks answers [{name, version, state}] against the publisher's definitions. registration:
 * also every required consent must be accepted at its newest version. */
static int answers_check(json_t *defs, json_t *answers, bool registration, Refusal *ref) {
        _cleanup_(json_decrefp) json_t *seen = json_object();
        size_t i;
        json_t *a;

        if (!seen)
                return -ENOMEM;
        if (!json_is_array(answers))
                return refuse(ref, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                              json_pack("{s:s}", "param", "consents"), "consents must be an array");

        json_array_foreach(answers, i, a) {
                json_t *state = json_object_get(a, "state");
                const char *name = json_object_get_string(a, "name");
                int64_t version;

                if (!json_is_object(a) || json_object_size(a) != 3 || !text_is_valid(name, CONSENT_NAME_MAX) ||
                    consents_version_parse(json_object_get(a, "version"), &version) < 0 || !json_is_string(state) ||
                    !(streq(json_string_value(state), STATE_ACCEPTED) || streq(json_string_value(state), STATE_DECLINED)))
                        return refuse(ref, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                                      json_pack("{s:s, s:I}", "param", "consents", "index", (json_int_t) i),
                                      "each consent is {name, version (an integer >= 1), state: accepted|declined}");
                if (!defs_find(defs, name))
                        return refuse(ref, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                      json_pack("{s:s, s:I, s:s}", "field", "consents", "index", (json_int_t) i, "name", name),
                                      "the publisher has no consent '%s'", name);
                if (json_object_get(seen, name))
                        return refuse(ref, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                      json_pack("{s:s, s:I, s:s}", "field", "consents", "index", (json_int_t) i, "name", name),
                                      "consent '%s' is given more than once", name);
                if (json_object_set(seen, name, a) < 0)
                        return -ENOMEM;
        }

        if (registration) {
                _cleanup_(json_decrefp) json_t *missing = json_array();
                json_t *d;

                if (!missing)
                        return -ENOMEM;
                json_array_foreach(json_object_get(defs, "consents"), i, d) {
                        const char *name = strempty(json_object_get_string(d, "name"));
                        json_t *given = json_object_get(seen, name);
                        int64_t version = 0;

                        if (!json_is_true(json_object_get(d, "required")))
                                continue;
                        if (given && streq(json_object_get_string(given, "state"), STATE_ACCEPTED) &&
                            consents_version_parse(json_object_get(given, "version"), &version) >= 0 &&
                            version == record_int(d, "version"))
                                continue;
                        if (json_array_append_new(missing, json_string(name)) < 0)
                                return -ENOMEM;
                }
                if (json_array_size(missing) > 0)
                        return refuse(ref, IDM_ERR_UNPROCESSABLE, IDM_REASON_TERMS_NOT_ACCEPTED,
                                      json_pack("{s:O}", "missing", missing),
                                      "every required consent must be accepted at its current version");
        }

        json_array_foreach(answers, i, a) {
                const char *name = json_object_get_string(a, "name");
                json_t *d = defs_find(defs, name);
                int64_t version = 0;

                (void) consents_version_parse(json_object_get(a, "version"), &version);
                if (version != record_int(d, "version"))
                        return refuse(ref, IDM_ERR_CONFLICT, IDM_REASON_VERSION_MISMATCH,
                                      json_pack("{s:s, s:I, s:I}", "name", name, "version", (json_int_t) version,
                                                "newestVersion", (json_int_t) record_int(d, "version")),
                                      "consent '%s' is at version %" PRId64 ", not %" PRId64, name,
                                      record_int(d, "version"), version);
        }
        return 0;
}

/* Applies checked answers to the customer's record. Returns how many changed something. */
static int answers_apply(json_t *rec, json_t *answers, const char *source, uint64_t now_usec) {
        json_t *current = json_object_get(rec, "consents");
        json_t *history = json_object_get(rec, "history");
        size_t i;
        json_t *a;
        int n = 0;

        json_array_foreach(answers, i, a) {
                const char *name = json_object_get_string(a, "name");
                const char *state = json_object_get_string(a, "state");
                json_t *old = json_object_get(current, name);
                int64_t version = 0;

                (void) consents_version_parse(json_object_get(a, "version"), &version);
                if (old && record_int(old, "version") == version && streq_ptr(json_object_get_string(old, "state"), state))
                        continue;       /* said again: not a change */
                if (json_object_set_new(current, name, json_pack("{s:I, s:s, s:I}", "version", (json_int_t) version,
                                                                 "state", state, "date", (json_int_t) now_usec)) < 0 ||
                    json_array_append_new(history, json_pack("{s:s, s:I, s:s, s:I, s:s}", "name", name,
                                                             "version", (json_int_t) version, "state", state,
                                                             "date", (json_int_t) now_usec, "source", source)) < 0)
                        return -ENOMEM;
                n++;
        }
        while (json_array_size(history) > CONSENTS_HISTORY_MAX)
                if (json_array_remove(history, 0) < 0)
                        return -ENOMEM;
        return n;
}

int consents_check_registration(Call *call, StoreTxn *t, const char *publisher_id, json_t *answers) {
        _cleanup_(json_decrefp) json_t *defs = NULL, *none = NULL;
        _cleanup_(refusal_done) Refusal ref = {};
        int r;

        r = defs_load(t, publisher_id, &defs);
        if (r < 0)
                return r;
        if (!answers) {
                answers = none = json_array();
                if (!none)
                        return -ENOMEM;
        }
        r = answers_check(defs, answers, true, &ref);
        if (r < 0 && ref.code)
                return refusal_reply(call, &ref);
        return r < 0 ? r : 0;
}

int consents_record_registration(StoreTxn *t, const char *publisher_id, const char *customer_id, json_t *answers,
                                 uint64_t now_usec) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        int r;

        if (json_array_size(answers) == 0)
                return 0;
        rec = json_pack("{s:s, s:{}, s:[]}", "publisherId", publisher_id, "consents", "history");
        if (!rec)
                return -ENOMEM;
        r = answers_apply(rec, answers, "registration", now_usec);
        if (r < 0)
                return r;
        return consent_answers_put(t, customer_id, rec);
}

int consents_outdated_required(StoreTxn *t, const char *publisher_id, const char *customer_id, json_t **ret) {
        _cleanup_(json_decrefp) json_t *defs = NULL, *answers = NULL;
        int r;

        r = defs_load(t, publisher_id, &defs);
        if (r < 0)
                return r;
        if (json_array_size(json_object_get(defs, "consents")) == 0) {
                /* Nothing to agree to: no need to read the customer's record. */
                if (ret) {
                        *ret = json_array();
                        if (!*ret)
                                return -ENOMEM;
                }
                return 0;
        }
        r = answers_load(t, customer_id, &answers);
        if (r < 0)
                return r;
        return outdated_required(defs, answers, ret);
}

static int answer_write(StoreTxn *t, CustomerAnswers *w) {
        _cleanup_(json_decrefp) json_t *defs = NULL, *rec = NULL;
        int r;

        r = customer_exists(t, w->customer_id);
        if (r <= 0)
                return r < 0 ? r : -ENOENT;
        r = defs_load(t, w->publisher_id, &defs);
        if (r < 0)
                return r;
        r = answers_check(defs, w->given, false, &w->refusal);
        if (r < 0)
                return r;
        r = answers_load(t, w->customer_id, &rec);
        if (r < 0)
                return r;
        if (json_object_set_new(rec, "publisherId", json_string(w->publisher_id)) < 0)
                return -ENOMEM;
        r = answers_apply(rec, w->given, w->source, w->now_usec);
        if (r < 0)
                return r;
        w->changed = (unsigned) r;
        if (r > 0) {
                r = consent_answers_put(t, w->customer_id, rec);
                if (r < 0)
                        return r;
        }
        if (w->want_view) {
                w->view = json_pack("{s:o}", "consents", answers_view(defs, rec));
                if (!w->view)
                        return -ENOMEM;
        }
        return 0;
}

int consents_answer(Call *call, const char *publisher_id, const char *customer_id, json_t *answers,
                    const char *source, bool reply_view, CustomerGone gone) {
        return customer_answers_submit(call, publisher_id, customer_id, answers, source, "consent", reply_view,
                                       gone, answer_write);
}

int consents_delete_customer(StoreTxn *t, const char *customer_id) {
        return consent_answers_delete(t, customer_id);
}

/* --- publisher definitions --- */

static bool member_is_known(const char *key) {
        static const char *const known[] = { "name", "label", "required", "enabledByDefault", "value", "version" };

        for (size_t i = 0; i < ELEMENTSOF(known); i++)
                if (streq(key, known[i]))
                        return true;
        return false;
}

/* Checks the definitions given to setPublisherConsents. Replies and returns < 0 on the first
 * problem: the wrong JSON type or an unknown member is -32602, a value that is not acceptable
 * 400 invalid_value. */
static int definitions_check(Call *call, json_t *given) {
        _cleanup_(json_decrefp) json_t *seen = json_object();
        size_t i;
        json_t *c;

        if (!seen)
                return -ENOMEM;
        json_array_foreach(given, i, c) {
                json_t *name = json_object_get(c, "name"), *label = json_object_get(c, "label"),
                       *value = json_object_get(c, "value"), *version = json_object_get(c, "version"),
                       *enabled = json_object_get(c, "enabledByDefault");
                const char *key;
                json_t *v;

                if (!json_is_object(c))
                        return call_fail(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                                                json_pack("{s:s, s:I}", "param", "consents", "index", (json_int_t) i),
                                                "each consent is an object");
                json_object_foreach(c, key, v)
                        if (!member_is_known(key))
                                return call_fail(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                                                        json_pack("{s:s, s:I, s:s}", "param", "consents", "index",
                                                                  (json_int_t) i, "member", key),
                                                        "unknown member in a consent (known: name, label, required, "
                                                        "enabledByDefault, value, version)");
                if (!json_is_string(name) || !json_is_string(label) || !json_is_boolean(json_object_get(c, "required")) ||
                    (enabled && !json_is_boolean(enabled)) || (value && !json_is_string(value) && !json_is_null(value)) ||
                    (version && !json_is_integer(version)))
                        return call_fail(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                                                json_pack("{s:s, s:I}", "param", "consents", "index", (json_int_t) i),
                                                "each consent is {name, label, required (boolean), enabledByDefault? "
                                                "(boolean), value? (string or null), version? (integer)}");
                if (!text_is_valid(json_string_value(name), CONSENT_NAME_MAX))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                                json_pack("{s:s, s:I, s:s}", "field", "consents", "index", (json_int_t) i,
                                                          "member", "name"),
                                                "a consent name is 1 to 64 bytes of printable text");
                if (!text_is_valid(json_string_value(label), CONSENT_LABEL_MAX))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                                json_pack("{s:s, s:I, s:s}", "field", "consents", "index", (json_int_t) i,
                                                          "member", "label"),
                                                "a consent label is 1 to 1024 bytes of printable text");
                if (json_is_string(value) && (json_string_length(value) > CONSENT_VALUE_MAX || !utf8_is_valid(json_string_value(value))))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                                json_pack("{s:s, s:I, s:s}", "field", "consents", "index", (json_int_t) i,
                                                          "member", "value"),
                                                "a consent value is at most 4096 bytes of text without control "
                                                "characters");
                if (version && (json_integer_value(version) < 1 || json_integer_value(version) > CONSENT_VERSION_MAX))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                                json_pack("{s:s, s:I, s:s}", "field", "consents", "index", (json_int_t) i,
                                                          "member", "version"),
                                                "a consent version is an integer >= 1");
                if (json_object_get(seen, json_string_value(name)))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                                json_pack("{s:s, s:I, s:O}", "field", "consents", "index", (json_int_t) i,
                                                          "name", name),
                                                "a consent name is given more than once");
                if (json_object_set(seen, json_string_value(name), c) < 0)
                        return -ENOMEM;
        }
        return 0;
}

typedef struct DefinitionsWork {
        char *publisher_id;
        json_t *given;
        uint64_t now_usec;

        Refusal refusal;
        json_t *result;                 /* the new publisher record */
        unsigned new_versions;          /* consents that got a new version (new ones included) */
        unsigned new_required;          /* ... of them required: customers must answer again */
} DefinitionsWork;

static int definitions_write(StoreTxn *t, void *userdata) {
        DefinitionsWork *w = userdata;
        _cleanup_(json_decrefp) json_t *old = NULL, *list = json_array(), *retired = NULL, *rec = NULL;
        size_t i;
        json_t *g, *d;
        int r;

        refusal_done(&w->refusal);
        json_decref(w->result);
        w->result = NULL;
        w->new_versions = w->new_required = 0;

        if (!list)
                return -ENOMEM;
        r = defs_load(t, w->publisher_id, &old);
        if (r < 0)
                return r;
        retired = json_deep_copy(json_object_get(old, "retired"));
        if (!retired)
                return -ENOMEM;

        json_array_foreach(w->given, i, g) {
                const char *name = json_object_get_string(g, "name");
                const char *label = json_object_get_string(g, "label");
                json_t *value = json_object_get(g, "value");
                json_t *given_version = json_object_get(g, "version");
                bool required = json_is_true(json_object_get(g, "required"));
                json_t *prev = defs_find(old, name);
                int64_t version, date;
                bool changed;
                json_t *entry;

                if (prev) {
                        changed = !streq_ptr(label, json_object_get_string(prev, "label")) ||
                                  !streq_ptr(json_string_value(value), json_object_get_string(prev, "value"));
                        version = record_int(prev, "version") + (changed ? 1 : 0);
                        date = changed ? (int64_t) w->now_usec : record_int(prev, "date");
                } else {
                        /* New, or back after a removal: continues after its last version. */
                        changed = true;
                        version = record_int(retired, name) + 1;
                        date = (int64_t) w->now_usec;
                }
                if (version > CONSENT_VERSION_MAX)
                        return refuse(&w->refusal, IDM_ERR_CONFLICT, IDM_REASON_VERSION_MISMATCH,
                                      json_pack("{s:s}", "name", name), "consent '%s' has run out of versions", name);
                if (given_version && json_integer_value(given_version) != version)
                        return refuse(&w->refusal, IDM_ERR_CONFLICT, IDM_REASON_VERSION_MISMATCH,
                                      json_pack("{s:s, s:I, s:I, s:O?}", "name", name,
                                                "version", (json_int_t) json_integer_value(given_version),
                                                "expectedVersion", (json_int_t) version,
                                                "currentVersion", prev ? json_object_get(prev, "version") : NULL),
                                      changed && prev ? "consent '%s' changed: its new version is %" PRId64
                                                        " (or leave version out)"
                                                      : "consent '%s' would be at version %" PRId64,
                                      name, version);
                if (changed) {
                        w->new_versions++;
                        if (required)
                                w->new_required++;
                }

                entry = json_pack("{s:s, s:s, s:b, s:b, s:I, s:I}", "name", name, "label", label,
                                  "required", required,
                                  "enabledByDefault", json_is_true(json_object_get(g, "enabledByDefault")),
                                  "version", (json_int_t) version, "date", (json_int_t) date);
                if (entry && json_is_string(value))     /* null: no value, as getPublisherConsents shows it */
                        (void) json_object_set(entry, "value", value);
                if (json_array_append_new(list, entry) < 0)
                        return -ENOMEM;
                (void) json_object_del(retired, name);
        }

        /* Omitted consents are removed; their last version is kept. */
        json_array_foreach(json_object_get(old, "consents"), i, d) {
                const char *name = json_object_get_string(d, "name");
                bool kept = false;
                size_t j;
                json_t *x;

                json_array_foreach(w->given, j, x)
                        if (streq_ptr(json_object_get_string(x, "name"), name)) {
                                kept = true;
                                break;
                        }
                if (!kept && name && json_object_set_new(retired, name, json_integer(record_int(d, "version"))) < 0)
                        return -ENOMEM;
        }
        /* Each removed name is remembered, so the record would grow without end. */
        if (json_object_size(retired) > CONSENTS_RETIRED_MAX)
                return refuse(&w->refusal, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                              json_pack("{s:s}", "field", "consents"),
                              "a publisher may have removed at most %d distinct consent names", CONSENTS_RETIRED_MAX);

        rec = json_pack("{s:O, s:O, s:I}", "consents", list, "retired", retired, "updated", (json_int_t) w->now_usec);
        if (!rec)
                return -ENOMEM;
        r = consent_definitions_put(t, w->publisher_id, rec);
        if (r < 0)
                return r;
        w->result = TAKE_PTR(rec);
        return 0;
}

/* --- methods --- */

/* getPublisherConsents' replies of the publishers asked for last, serialized, each kept while
 * no request has written anything since it was read (rpc_writes_settled(): a new version of a
 * consent, a publisher deleted, ... make it again). Only for a publisher named by publisherId
 * or its publisherToken: an offerId is looked up in the store every time. */
#define CONSENTS_KEPT_MAX 64

typedef struct ConsentsKept {
        char *publisher_id;     /* NULL: a free entry */
        char *text;
        size_t len;
} ConsentsKept;

static struct {
        const Manager *manager;         /* of this store (a test or fuzzer makes several) */
        uint64_t manager_started;
        uint64_t generation;
        ConsentsKept entries[CONSENTS_KEPT_MAX];
        unsigned next;          /* the entry replaced next when all are taken */
} consents_kept;

static void consents_kept_clear(void) {
        for (size_t i = 0; i < CONSENTS_KEPT_MAX; i++) {
                ConsentsKept *e = &consents_kept.entries[i];

                free(e->publisher_id);
                free(e->text);
                *e = (ConsentsKept) {};
        }
        consents_kept.next = 0;
}

/* The publisher a getPublisherConsents call names without the store, or NULL (offerId). */
static const char *consents_kept_key(Call *call, json_t *params) {
        if (json_object_get(params, "offerId"))
                return NULL;
        return json_object_get_string(params, "publisherId") ?: call_publisher_id(call);
}

static bool consents_kept_same_store(const Manager *m) {
        return consents_kept.manager == m && consents_kept.manager_started == m->start_monotonic_usec;
}

static const ConsentsKept *consents_kept_find(const Manager *m, const char *publisher_id) {
        uint64_t generation;

        if (!publisher_id || !rpc_writes_settled(&generation) || generation != consents_kept.generation ||
            !consents_kept_same_store(m))
                return NULL;
        for (size_t i = 0; i < CONSENTS_KEPT_MAX; i++)
                if (streq_ptr(consents_kept.entries[i].publisher_id, publisher_id))
                        return &consents_kept.entries[i];
        return NULL;
}

/* Keeps the reply just read (result: the result object) if no write could have changed it since. */
static void consents_kept_add(const Manager *m, const char *publisher_id, json_t *result) {
        ConsentsKept *e = NULL;
        uint64_t generation;
        char *id, *text;

        if (!rpc_writes_settled(&generation))
                return;
        if (generation != consents_kept.generation || !consents_kept_same_store(m)) {
                consents_kept_clear();
                consents_kept.generation = generation;
                consents_kept.manager = m;
                consents_kept.manager_started = m->start_monotonic_usec;
        }
        for (size_t i = 0; i < CONSENTS_KEPT_MAX && !e; i++)
                if (!consents_kept.entries[i].publisher_id)
                        e = &consents_kept.entries[i];
        if (!e) {
                e = &consents_kept.entries[consents_kept.next];
                consents_kept.next = (consents_kept.next + 1) % CONSENTS_KEPT_MAX;
        }
        id = strdup(publisher_id);
        text = json_dumps(result, JSON_COMPACT);
        if (!id || !text) {
                free(id);
                free(text);
                return;         /* not kept: only slower */
        }
        free(e->publisher_id);
        free(e->text);
        *e = (ConsentsKept) { .publisher_id = id, .text = text, .len = strlen(text) };
}

static int method_consents_get_publisher(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *defs = NULL;
        _cleanup_free_ char *publisher_id = NULL;
        const ConsentsKept *kept;
        json_t *list, *result;
        int r;

        kept = consents_kept_find(call_manager(call), consents_kept_key(call, params));
        if (kept)
                return call_reply_text(call, kept->text, kept->len);

        r = customers_read_publisher(call, params, &t, &publisher_id);
        if (r < 0)
                return r;
        r = defs_load(t, publisher_id, &defs);
        if (r < 0)
                return r;
        list = defs_public(defs);
        if (!list)
                return -ENOMEM;
        result = json_pack("{s:o}", "consents", list);
        if (!result)
                return -ENOMEM;
        if (consents_kept_key(call, params))
                consents_kept_add(call_manager(call), publisher_id, result);
        return call_reply(call, result);
}

static void definitions_work_free(void *p) {
        DefinitionsWork *w = p;

        free(w->publisher_id);
        json_decref(w->given);
        refusal_done(&w->refusal);
        json_decref(w->result);
        free(w);
}

static void definitions_done(Call *call, int r, void *userdata) {
        DefinitionsWork *w = userdata;

        if (r < 0 && w->refusal.code) {
                (void) refusal_reply(call, &w->refusal);
                return;
        }
        if (r < 0)
                return;
        log_info("%s: publisher %s set %zu consent(s): %u new version(s), %u of them required%s",
                 call_request_id(call), w->publisher_id, json_array_size(w->given), w->new_versions,
                 w->new_required, w->new_required > 0 ? " (customers must accept them again)" : "");
        (void) reply_list(call, defs_public(w->result));
}

static int method_consents_set_publisher(Call *call, json_t *params) {
        DefinitionsWork *w;
        int r;

        r = definitions_check(call, json_object_get(params, "consents"));
        if (r < 0)
                return r;

        w = calloc(1, sizeof(DefinitionsWork));
        if (!w)
                return -ENOMEM;
        w->publisher_id = strdup(call_publisher_id(call));
        w->given = json_incref(json_object_get(params, "consents"));
        w->now_usec = now_realtime_usec();
        if (!w->publisher_id) {
                definitions_work_free(w);
                return -ENOMEM;
        }
        return call_write(call, definitions_write, definitions_done, w, definitions_work_free);
}

static int method_consents_get_customer(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *defs = NULL, *answers = NULL;
        int r;

        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = defs_load(t, call_publisher_id(call), &defs);
        if (r < 0)
                return r;
        r = answers_load(t, call_customer_id(call), &answers);
        if (r < 0)
                return r;
        return reply_list(call, answers_view(defs, answers));
}

static int method_consents_update_customer(Call *call, json_t *params) {
        /* A customer deleted since the token was issued: 401 invalid_token. */
        return consents_answer(call, call_publisher_id(call), call_customer_id(call),
                               json_object_get(params, "consents"), "customer", true, CUSTOMER_GONE_INVALID_TOKEN);
}

const Method methods_consents[] = {
        { .name = "getPublisherConsents", .handler = method_consents_get_publisher, .role = ROLE_ANYONE,
          .publisher_optional = true,
          .params = (const ParamSpec[]) {
                  PUBLISHER_NAMING_PARAMS,
                  { "publisherToken", PARAM_STRING, false, IDM_PUBLISHER_TOKEN_MAX },
                  { "sessionID", PARAM_STRING, false, IDM_SESSION_ID_MAX },
                  {} } },
        { .name = "setPublisherConsents", .handler = method_consents_set_publisher, .role = ROLE_PUBLISHER,
          .params = (const ParamSpec[]) {
                  PUBLISHER_AUTH_PARAMS,
                  { "consents", PARAM_ARRAY, true, CONSENTS_MAX },
                  {} } },
        { .name = "getCustomerConsents", .handler = method_consents_get_customer, .role = ROLE_CUSTOMER,
          .params = (const ParamSpec[]) { CUSTOMER_AUTH_PARAMS, {} } },
        { .name = IDM_METHOD_UPDATE_CUSTOMER_CONSENTS, .handler = method_consents_update_customer,
          .role = ROLE_CUSTOMER,
          .params = (const ParamSpec[]) {
                  CUSTOMER_AUTH_PARAMS,
                  { "consents", PARAM_ARRAY, true, CONSENTS_MAX },
                  {} } },
        {}
};
