/* SPDX-License-Identifier: MIT */
/*
 * Capture: setCaptureSettings and getCaptureSettings (the publisher), getCaptureStatus and
 * updateCaptureAnswers (the customer), and what login, the PAM path and exportCustomer need
 * (capture.h, which also describes the records and what "answered" means).
 *
 * As with consents, nothing is stored per customer when the settings change: whether a customer
 * must be asked is worked out when asked, from the settings and the customer's answers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "idm/json-util.h"
#include "idm/protocol.h"
#include "log.h"
#include "manager.h"
#include "methods/answers.h"
#include "methods/capture.h"
#include "methods/methods.h"
#include "methods/refusal.h"
#include "records/capture.h"
#include "records/customers.h"
#include "validate.h"

#define KEY_NAMES "firstNameLastName"
#define KEY_ADDRESS "address"
#define CUSTOM_PREFIX "custom_"

typedef enum FieldKind {
        FIELD_TEXT,
        FIELD_DATE,             /* YYYY-MM-DD, a real day before today (UTC), from 1900 */
        FIELD_PHONE,            /* E.164-like: +, digits, spaces, -, ., ( ); 7 to 15 digits */
        FIELD_COUNTRY,          /* ISO 3166-1 alpha-2 */
} FieldKind;

typedef struct Field {
        const char *name;       /* the answer field */
        const char *key;        /* the setting it belongs to */
        FieldKind kind;
        size_t max;             /* bytes */
        bool needed;            /* must be non-empty for its setting to be answered */
        bool in_profile;        /* kept in the customer record, not the answers record */
} Field;

static const Field fields[] = {
        { "firstName", KEY_NAMES, FIELD_TEXT, CAPTURE_NAME_MAX, true, true },
        { "lastName", KEY_NAMES, FIELD_TEXT, CAPTURE_NAME_MAX, true, true },
        { "birthDate", "birthDate", FIELD_DATE, 10, true, false },
        { "companyName", "companyName", FIELD_TEXT, CAPTURE_LINE_MAX, true, false },
        { "phoneNumber", "phoneNumber", FIELD_PHONE, CAPTURE_PHONE_MAX, true, false },
        { "address", KEY_ADDRESS, FIELD_TEXT, CAPTURE_LINE_MAX, true, false },
        { "address2", KEY_ADDRESS, FIELD_TEXT, CAPTURE_LINE_MAX, false, false },
        { "city", KEY_ADDRESS, FIELD_TEXT, CAPTURE_NAME_MAX, true, false },
        { "state", KEY_ADDRESS, FIELD_TEXT, CAPTURE_NAME_MAX, false, false },
        { "postCode", KEY_ADDRESS, FIELD_TEXT, CAPTURE_POST_CODE_MAX, false, false },
        { "country", KEY_ADDRESS, FIELD_COUNTRY, 2, true, false },
};

/* The standard settings, in the order every view lists them. */
static const char *const standard_keys[] = { KEY_NAMES, "birthDate", "companyName", "phoneNumber", KEY_ADDRESS };

static bool key_is_standard(const char *key) {
        for (size_t i = 0; i < ELEMENTSOF(standard_keys); i++)
                if (streq(key, standard_keys[i]))
                        return true;
        return false;
}

/* custom_N, N 1..999 without leading zeros. */
static bool key_is_custom(const char *key) {
        const char *n = key + strlen(CUSTOM_PREFIX);
        size_t len;

        if (strncmp(key, CUSTOM_PREFIX, strlen(CUSTOM_PREFIX)) != 0)
                return false;
        len = strlen(n);
        if (len < 1 || len > 3 || n[0] == '0')
                return false;
        for (size_t i = 0; i < len; i++)
                if (n[i] < '0' || n[i] > '9')
                        return false;
        return true;
}

static bool name_in(const char *name, const char *const *list, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (streq(name, list[i]))
                        return true;
        return false;
}

static const Field *field_find(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (streq(fields[i].name, name))
                        return &fields[i];
        return NULL;
}

/* --- values --- */

static bool nonempty(json_t *o, const char *name) {
        const char *s = json_object_get_string(o, name);

        return s && s[0];
}

static bool is_space(char c) {
        return c == ' ' || c == '\t';
}

/* Calls fn for each option of a ';'-separated list, trimmed of blanks (begin, length). Stops
 * and returns what fn returns when it is not 0. */
static int options_foreach(const char *list, int (*fn)(const char *s, size_t n, void *userdata), void *userdata) {
        const char *p = list;

        for (;;) {
                const char *end = strchrnul(p, ';'), *b = p, *e = end;
                int r;

                while (b < e && is_space(*b))
                        b++;
                while (e > b && is_space(e[-1]))
                        e--;
                r = fn(b, (size_t) (e - b), userdata);
                if (r != 0)
                        return r;
                if (!*end)
                        return 0;
                p = end + 1;
        }
}

static int option_check(const char *s, size_t n, void *userdata) {
        return n == 0 || n > CAPTURE_OPTION_MAX ? -EINVAL : 0;
}

static int option_equals(const char *s, size_t n, void *userdata) {
        const char *answer = userdata;

        return strlen(answer) == n && memcmp(s, answer, n) == 0;
}

/* Whether answer is acceptable for a custom question whose options are value (NULL or "": any
 * text). */
static bool custom_answer_fits(json_t *setting, const char *answer) {
        const char *options = json_object_get_string(setting, "value");

        if (!options || !options[0])
                return true;
        return options_foreach(options, option_equals, (void *) answer) > 0;
}

static bool date_is_valid_past(const char *s, uint64_t now_usec) {
        static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        time_t now = (time_t) (now_usec / 1000000);
        struct tm today;
        int y, m, d, max;

        if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
                return false;
        for (size_t i = 0; i < 10; i++)
                if (i != 4 && i != 7 && (s[i] < '0' || s[i] > '9'))
                        return false;
        y = atoi(s);
        m = atoi(s + 5);
        d = atoi(s + 8);
        if (y < 1900 || m < 1 || m > 12 || d < 1)
                return false;
        max = days[m - 1] + (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0));
        if (d > max)
                return false;
        if (!gmtime_r(&now, &today))
                return false;
        /* Before today: compare (y, m, d) with today's. */
        return y * 10000 + m * 100 + d < (today.tm_year + 1900) * 10000 + (today.tm_mon + 1) * 100 + today.tm_mday;
}

static bool phone_is_valid(const char *s) {
        unsigned digits = 0;

        if (*s == '+')
                s++;
        for (; *s; s++) {
                if (*s >= '0' && *s <= '9')
                        digits++;
                else if (!strchr(" -.()", *s))
                        return false;
        }
        return digits >= 7 && digits <= 15;
}

/* --- settings --- */

/* The publisher's settings record, every standard key present (disabled when the publisher
 * never set it). New reference. */
static int settings_load(StoreTxn *t, const char *publisher_id, json_t **ret) {
        _cleanup_(json_decrefp) json_t *rec = NULL, *list = json_array();
        json_t *stored;
        size_t i;
        json_t *s;
        int r;

        if (!list)
                return -ENOMEM;
        r = capture_settings_get(t, publisher_id, &rec);
        if (r == -ENOENT) {
                rec = json_object();
                if (!rec)
                        return -ENOMEM;
        } else if (r < 0)
                return r;

        stored = json_object_get(rec, "settings");
        for (size_t k = 0; k < ELEMENTSOF(standard_keys); k++) {
                json_t *found = json_incref(json_array_find_string(stored, "key", standard_keys[k]));

                if (!found)
                        found = json_pack("{s:s, s:b, s:b}", "key", standard_keys[k], "enabled", false,
                                          "required", false);
                if (json_array_append_new(list, found) < 0)
                        return -ENOMEM;
        }
        json_array_foreach(stored, i, s)
                if (key_is_custom(strempty(json_object_get_string(s, "key"))) && json_array_append(list, s) < 0)
                        return -ENOMEM;
        if (json_object_set(rec, "settings", list) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(rec);
        return 0;
}

static json_t *setting_find(json_t *settings, const char *key) {
        return json_array_find_string(json_object_get(settings, "settings"), "key", key);
}

static bool setting_on(json_t *s, const char *member) {
        return json_is_true(json_object_get(s, member));
}

/* One setting as views show it: {key, enabled, required, question?, value?}. */
static json_t *setting_public(json_t *s) {
        json_t *item = json_pack("{s:O, s:b, s:b}", "key", json_object_get(s, "key"), "enabled", setting_on(s, "enabled"),
                                 "required", setting_on(s, "required"));
        static const char *const more[] = { "question", "value" };
        json_t *v;

        for (size_t i = 0; item && i < ELEMENTSOF(more); i++)
                if ((v = json_object_get(s, more[i])) && json_object_set(item, more[i], v) < 0)
                        return json_decref(item), NULL;
        return item;
}

static int reply_settings(Call *call, json_t *settings) {
        _cleanup_(json_decrefp) json_t *list = json_array();
        size_t i;
        json_t *s;

        if (!list)
                return -ENOMEM;
        json_array_foreach(json_object_get(settings, "settings"), i, s)
                if (json_array_append_new(list, setting_public(s)) < 0)
                        return -ENOMEM;
        return call_reply(call, json_pack("{s:O}", "settings", list));
}

static int settings_fail(Call *call, size_t index, const char *member, const char *message) {
        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                         json_pack("{s:s, s:I, s:s?}", "field", "settings", "index", (json_int_t) index, "member", member),
                         "%s", message);
}

/* Checks setCaptureSettings' list and builds the stored one. Replies and returns < 0 on the
 * first problem: a wrong JSON type or an unknown member is -32602, an unacceptable value 400
 * invalid_value {field: "settings", index, member?}. */
static int settings_check(Call *call, json_t *given, json_t **ret) {
        static const char *const setting_members[] = { "key", "enabled", "required", "question", "value" };
        _cleanup_(json_decrefp) json_t *list = json_array(), *seen = json_object();
        unsigned customs = 0;
        size_t i;
        json_t *g;

        if (!list || !seen)
                return -ENOMEM;
        json_array_foreach(given, i, g) {
                json_t *question = json_object_get(g, "question"), *value = json_object_get(g, "value"),
                       *required = json_object_get(g, "required");
                const char *key = json_object_get_string(g, "key"), *member;
                bool custom;
                json_t *v, *entry;

                if (!json_is_object(g))
                        return call_fail(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                                         json_pack("{s:s, s:I}", "param", "settings", "index", (json_int_t) i),
                                         "each setting is an object");
                json_object_foreach(g, member, v)
                        if (!name_in(member, setting_members, ELEMENTSOF(setting_members)))
                                return call_fail(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                                                 json_pack("{s:s, s:I, s:s}", "param", "settings", "index",
                                                           (json_int_t) i, "member", member),
                                                 "unknown member in a setting (known: key, enabled, required, "
                                                 "question, value)");
                if (!key || !json_is_boolean(json_object_get(g, "enabled")) || (required && !json_is_boolean(required)) ||
                    (question && !json_is_string(question)) || (value && !json_is_string(value)))
                        return call_fail(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                                         json_pack("{s:s, s:I}", "param", "settings", "index", (json_int_t) i),
                                         "each setting is {key, enabled (boolean), required? (boolean), question? "
                                         "(string), value? (string)}");
                custom = key_is_custom(key);
                if (!custom && !key_is_standard(key))
                        return settings_fail(call, i, "key",
                                             "a key is firstNameLastName, birthDate, companyName, phoneNumber, "
                                             "address or custom_N (N from 1 to 999)");
                if (json_object_get(seen, key))
                        return settings_fail(call, i, "key", "a key is given more than once");
                if (json_object_set_new(seen, key, json_true()) < 0)
                        return -ENOMEM;
                if (json_is_true(required) && !setting_on(g, "enabled"))
                        return settings_fail(call, i, "required", "a required field must be enabled");
                if (!custom && (question || value))
                        return settings_fail(call, i, question ? "question" : "value",
                                             "only custom_N questions have a question and a value");
                if (custom) {
                        if (++customs > CAPTURE_CUSTOM_MAX)
                                return settings_fail(call, i, "key", "at most 20 custom questions");
                        if (!question || !text_is_valid(json_string_value(question), CAPTURE_QUESTION_MAX))
                                return settings_fail(call, i, "question",
                                                     "a custom question needs its question: 1 to 512 bytes of "
                                                     "printable text");
                        if (value && json_string_length(value) > 0 &&
                            (json_string_length(value) > CAPTURE_OPTIONS_MAX ||
                             !text_is_valid(json_string_value(value), CAPTURE_OPTIONS_MAX) ||
                             options_foreach(json_string_value(value), option_check, NULL) < 0))
                                return settings_fail(call, i, "value",
                                                     "value is empty (free text) or ';'-separated options, each 1 "
                                                     "to 256 bytes of printable text, 2048 bytes in all");
                }

                entry = json_pack("{s:s, s:b, s:b}", "key", key, "enabled", setting_on(g, "enabled"),
                                  "required", json_is_true(required));
                if (entry && custom && (json_object_set(entry, "question", question) < 0 ||
                                        json_object_set_new(entry, "value", json_string(value ? json_string_value(value) : "")) < 0))
                        entry = (json_decref(entry), NULL);
                if (json_array_append_new(list, entry) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(list);
        return 0;
}

/* --- answers --- */

/* The customer's answers record; an empty one if there is none. New reference. */
static int answers_load(StoreTxn *t, const char *customer_id, json_t **ret) {
        _cleanup_(json_decrefp) json_t *rec = NULL;
        int r;

        r = capture_answers_get(t, customer_id, &rec);
        if (r == -ENOENT) {
                rec = json_object();
                if (!rec)
                        return -ENOMEM;
        } else if (r < 0)
                return r;
        if (!json_is_object(json_object_get(rec, "answers")) && json_object_set_new(rec, "answers", json_object()) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(rec);
        return 0;
}

/* Where a field's answer lives: the profile or the answers object. Borrowed. */
static json_t *answer_home(const Field *f, json_t *customer, json_t *answers) {
        return f->in_profile ? customer : json_object_get(answers, "answers");
}

static bool setting_answered(json_t *s, json_t *customer, json_t *answers) {
        const char *key = strempty(json_object_get_string(s, "key"));

        if (key_is_custom(key)) {
                const char *a = json_object_get_string(json_object_get(answers, "answers"), key);

                return a && a[0] && custom_answer_fits(s, a);
        }
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (streq(fields[i].key, key) && fields[i].needed &&
                    !nonempty(answer_home(&fields[i], customer, answers), fields[i].name))
                        return false;
        return true;
}

/* The answer a view shows for a setting: text, an object of its parts, or null. */
static json_t *setting_answer(json_t *s, json_t *customer, json_t *answers) {
        const char *key = strempty(json_object_get_string(s, "key"));
        _cleanup_(json_decrefp) json_t *parts = NULL;
        bool any = false;

        if (!streq(key, KEY_NAMES) && !streq(key, KEY_ADDRESS)) {
                json_t *a = json_object_get(json_object_get(answers, "answers"), key);

                return a ? json_incref(a) : json_null();
        }
        parts = json_object();
        if (!parts)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                json_t *a;

                if (!streq(fields[i].key, key))
                        continue;
                a = json_object_get(answer_home(&fields[i], customer, answers), fields[i].name);
                any = any || a;
                if (json_object_set_new(parts, fields[i].name, a ? json_incref(a) : json_null()) < 0)
                        return NULL;
        }
        return any ? TAKE_PTR(parts) : json_null();
}

/* getCaptureStatus' result for the customer. */
static json_t *status_view(json_t *settings, json_t *customer, json_t *answers) {
        _cleanup_(json_decrefp) json_t *list = json_array();
        bool enabled = false, display = false;
        size_t i;
        json_t *s;

        if (!list)
                return NULL;
        json_array_foreach(json_object_get(settings, "settings"), i, s) {
                json_t *item = setting_public(s);

                if (!item || json_object_set_new(item, "answer", setting_answer(s, customer, answers)) < 0 ||
                    json_array_append_new(list, item) < 0)
                        return NULL;
                enabled = enabled || setting_on(s, "enabled");
                display = display || (setting_on(s, "enabled") && setting_on(s, "required") &&
                                       !setting_answered(s, customer, answers));
        }
        return json_pack("{s:b, s:b, s:O}", "isCaptureEnabled", enabled, "shouldCaptureBeDisplayed", display,
                         "settings", list);
}

/* The answer fields of one setting's key, as a new array of names. */
static json_t *key_fields(const char *key) {
        json_t *list = json_array();

        if (!list)
                return NULL;
        if (key_is_custom(key))
                return json_array_append_new(list, json_string(key)) < 0 ? (json_decref(list), NULL) : list;
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (streq(fields[i].key, key) && json_array_append_new(list, json_string(fields[i].name)) < 0)
                        return json_decref(list), NULL;
        return list;
}

int capture_missing_required(StoreTxn *t, const char *publisher_id, const char *customer_id, json_t **ret) {
        _cleanup_(json_decrefp) json_t *settings = NULL, *customer = NULL, *answers = NULL, *list = NULL;
        size_t i;
        json_t *s;
        int r, n = 0;

        if (ret) {
                list = json_array();
                if (!list)
                        return -ENOMEM;
        }
        r = settings_load(t, publisher_id, &settings);
        if (r < 0)
                return r;
        json_array_foreach(json_object_get(settings, "settings"), i, s)
                if (setting_on(s, "enabled") && setting_on(s, "required"))
                        break;
        if (i == json_array_size(json_object_get(settings, "settings"))) {
                /* Nothing required: no need to read the customer's record and answers. */
                if (ret)
                        *ret = TAKE_PTR(list);
                return 0;
        }
        r = customer_get(t, customer_id, &customer);
        if (r < 0)
                return r;
        r = answers_load(t, customer_id, &answers);
        if (r < 0)
                return r;
        json_array_foreach(json_object_get(settings, "settings"), i, s) {
                json_t *item;

                if (!setting_on(s, "enabled") || !setting_on(s, "required") || setting_answered(s, customer, answers))
                        continue;
                n++;
                if (!list)
                        continue;
                item = setting_public(s);
                if (!item || json_object_set_new(item, "fields", key_fields(json_object_get_string(s, "key"))) < 0 ||
                    json_array_append_new(list, item) < 0)
                        return -ENOMEM;
        }
        if (ret)
                *ret = TAKE_PTR(list);
        return n;
}

int capture_export(StoreTxn *t, const char *customer_id, json_t **ret) {
        _cleanup_(json_decrefp) json_t *answers = NULL;
        int r;

        r = answers_load(t, customer_id, &answers);
        if (r < 0)
                return r;
        *ret = json_deep_copy(json_object_get(answers, "answers"));
        return *ret ? 0 : -ENOMEM;
}

static int answer_fail(Call *call, const char *field, const char *reason, const char *message) {
        return call_fail(call, IDM_ERR_BAD_REQUEST, reason, json_pack("{s:s}", "field", field), "%s", message);
}

/* The checks that need no settings: types, lengths and formats. Replies and returns < 0 on the
 * first problem. "" clears an answer and is always acceptable. */
static int answers_check_format(Call *call, json_t *given, uint64_t now_usec) {
        static const char *const custom_members[] = { "questionId", "question", "value" };
        const char *name;
        size_t i;
        json_t *v, *c;

        json_object_foreach(given, name, v) {
                const Field *f = field_find(name);
                const char *s = json_string_value(v);

                if (streq(name, "customAnswers"))
                        continue;
                if (!f)
                        return call_fail(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                                         json_pack("{s:s}", "param", name), "unknown answer field");
                if (!json_is_string(v) || json_string_length(v) > f->max)
                        return call_fail(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                                         json_pack("{s:s}", "param", name),
                                         "an answer is a string of at most %zu bytes", f->max);
                if (!s[0])
                        continue;
                if (!text_is_valid(s, f->max))
                        return answer_fail(call, name, IDM_REASON_INVALID_VALUE,
                                           "an answer is printable text (valid UTF-8, no control characters)");
                switch (f->kind) {
                case FIELD_DATE:
                        if (!date_is_valid_past(s, now_usec))
                                return answer_fail(call, name, IDM_REASON_INVALID_VALUE,
                                                   "birthDate is a date YYYY-MM-DD from 1900 on, before today");
                        break;
                case FIELD_PHONE:
                        if (!phone_is_valid(s))
                                return answer_fail(call, name, IDM_REASON_INVALID_VALUE,
                                                   "phoneNumber is + and 7 to 15 digits, with spaces, '-', '.' or "
                                                   "parentheses between them");
                        break;
                case FIELD_COUNTRY:
                        if (!country_is_valid(s))
                                return answer_fail(call, name, IDM_REASON_INVALID_COUNTRY,
                                                   "country must be an ISO 3166-1 alpha-2 code such as GB or US");
                        break;
                case FIELD_TEXT:
                        break;
                }
        }

        c = json_object_get(given, "customAnswers");
        if (c && (!json_is_array(c) || json_array_size(c) > CAPTURE_CUSTOM_MAX))
                return call_fail(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                                 json_pack("{s:s}", "param", "customAnswers"),
                                 "customAnswers is an array of at most 20 answers");
        json_array_foreach(c, i, v) {
                json_t *id = json_object_get(v, "questionId"), *value = json_object_get(v, "value"),
                       *question = json_object_get(v, "question");
                const char *member;
                json_t *m;

                json_object_foreach(v, member, m)
                        if (!name_in(member, custom_members, ELEMENTSOF(custom_members)))
                                id = NULL;
                if (!json_is_object(v) || !json_is_string(id) || !json_is_string(value) ||
                    (question && !json_is_string(question)) || json_string_length(value) > CAPTURE_ANSWER_MAX ||
                    json_string_length(question) > CAPTURE_QUESTION_MAX)
                        return call_fail(call, IDM_RPC_INVALID_PARAMS, IDM_REASON_INVALID_PARAMS,
                                         json_pack("{s:s, s:I}", "param", "customAnswers", "index", (json_int_t) i),
                                         "each custom answer is {questionId, question? (ignored), value (at most "
                                         "1024 bytes)}");
                if (!key_is_custom(json_string_value(id)))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                         json_pack("{s:s, s:I}", "field", "customAnswers", "index", (json_int_t) i),
                                         "a questionId is custom_N");
                if (json_string_length(value) > 0 && !text_is_valid(json_string_value(value), CAPTURE_ANSWER_MAX))
                        return call_fail(call, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                         json_pack("{s:s, s:I}", "field", "customAnswers", "index", (json_int_t) i),
                                         "an answer is printable text (valid UTF-8, no control characters)");
        }
        return 0;
}

/* Sets o[name] to the answer (v), or removes it for "". Returns 1 when that changed it. */
static int answer_set(json_t *o, const char *name, json_t *v) {
        json_t *old = json_object_get(o, name);

        if (json_string_length(v) == 0) {
                if (!old)
                        return 0;
                return json_object_del(o, name) < 0 ? -ENOMEM : 1;
        }
        if (json_equal(old, v))
                return 0;
        return json_object_set(o, name, v) < 0 ? -ENOMEM : 1;
}

static int answer_write(StoreTxn *t, CustomerAnswers *w) {
        _cleanup_(json_decrefp) json_t *settings = NULL, *customer = NULL, *answers = NULL;
        unsigned profile_changes = 0;
        const char *name;
        size_t i;
        json_t *v, *c;
        int r;

        r = customer_get(t, w->customer_id, &customer);
        if (r < 0)
                return r;
        r = settings_load(t, w->publisher_id, &settings);
        if (r < 0)
                return r;
        r = answers_load(t, w->customer_id, &answers);
        if (r < 0)
                return r;

        json_object_foreach(w->given, name, v) {
                const Field *f = field_find(name);

                if (!f)
                        continue;       /* customAnswers */
                if (!setting_on(setting_find(settings, f->key), "enabled"))
                        return refuse(&w->refusal, IDM_ERR_UNPROCESSABLE, IDM_REASON_FIELD_NOT_ENABLED,
                                      json_pack("{s:s, s:s}", "field", name, "key", f->key),
                                      "%s (%s) is not asked by this publisher", name, f->key);
                r = answer_set(answer_home(f, customer, answers), name, v);
                if (r < 0)
                        return r;
                w->changed += r;
                if (f->in_profile)
                        profile_changes += r;
        }
        json_array_foreach(json_object_get(w->given, "customAnswers"), i, c) {
                const char *id = json_object_get_string(c, "questionId");
                const char *value = json_object_get_string(c, "value");
                json_t *s = setting_find(settings, id);

                if (!setting_on(s, "enabled"))
                        return refuse(&w->refusal, IDM_ERR_UNPROCESSABLE, IDM_REASON_FIELD_NOT_ENABLED,
                                      json_pack("{s:s, s:I, s:s}", "field", "customAnswers", "index", (json_int_t) i,
                                                "questionId", id),
                                      "%s is not asked by this publisher", id);
                if (value[0] && !custom_answer_fits(s, value))
                        return refuse(&w->refusal, IDM_ERR_BAD_REQUEST, IDM_REASON_INVALID_VALUE,
                                      json_pack("{s:s, s:I, s:s, s:O}", "field", "customAnswers", "index",
                                                (json_int_t) i, "questionId", id, "options", json_object_get(s, "value")),
                                      "the answer to %s must be one of its options", id);
                r = answer_set(json_object_get(answers, "answers"), id, json_object_get(c, "value"));
                if (r < 0)
                        return r;
                w->changed += r;
        }

        if (profile_changes > 0) {
                r = customer_put(t, customer);
                if (r < 0)
                        return r;
        }
        if (w->changed > profile_changes) {
                if (json_object_set_new(answers, "publisherId", json_string(w->publisher_id)) < 0 ||
                    json_object_set_new(answers, "updated", json_integer((json_int_t) w->now_usec)) < 0)
                        return -ENOMEM;
                r = capture_answers_put(t, w->customer_id, answers);
                if (r < 0)
                        return r;
        }
        if (w->want_view) {
                w->view = status_view(settings, customer, answers);
                if (!w->view)
                        return -ENOMEM;
        }
        return 0;
}

int capture_answer(Call *call, const char *publisher_id, const char *customer_id, json_t *answers,
                   const char *source, bool reply_view, CustomerGone gone) {
        int r;

        r = answers_check_format(call, answers, now_realtime_usec());
        if (r < 0)
                return r;
        return customer_answers_submit(call, publisher_id, customer_id, answers, source, "capture answer",
                                       reply_view, gone, answer_write);
}

/* --- methods --- */

typedef struct SettingsWork {
        char *publisher_id;
        json_t *rec;
        unsigned required;
        json_t *full;           /* the settings as stored, every standard key present */
} SettingsWork;

static int settings_write(StoreTxn *t, void *userdata) {
        SettingsWork *w = userdata;
        int r;

        json_decref(w->full);
        w->full = NULL;
        r = capture_settings_put(t, w->publisher_id, w->rec);
        if (r < 0)
                return r;
        return settings_load(t, w->publisher_id, &w->full);
}

static void settings_work_free(void *p) {
        SettingsWork *w = p;

        free(w->publisher_id);
        json_decref(w->rec);
        json_decref(w->full);
        free(w);
}

static void settings_done(Call *call, int r, void *userdata) {
        SettingsWork *w = userdata;

        if (r < 0)
                return;
        log_notice("%s: publisher %s set its capture settings (%zu given, %u required) by uid %u%s",
                   call_request_id(call), w->publisher_id, json_array_size(json_object_get(w->rec, "settings")),
                   w->required, (unsigned) call_peer(call)->uid, call_role(call) == ROLE_ADMIN ? " (admin)" : "");
        (void) reply_settings(call, w->full);
}

static int method_capture_set_settings(Call *call, json_t *params) {
        _cleanup_(json_decrefp) json_t *list = NULL;
        SettingsWork *w;
        size_t i;
        json_t *s;
        int r;

        r = settings_check(call, json_object_get(params, "settings"), &list);
        if (r < 0)
                return r;
        w = calloc(1, sizeof(SettingsWork));
        if (!w)
                return -ENOMEM;
        w->publisher_id = strdup(call_publisher_id(call));
        w->rec = json_pack("{s:O, s:I}", "settings", list, "updated", (json_int_t) now_realtime_usec());
        json_array_foreach(list, i, s)
                w->required += setting_on(s, "required");
        if (!w->publisher_id || !w->rec) {
                settings_work_free(w);
                return -ENOMEM;
        }
        return call_write(call, settings_write, settings_done, w, settings_work_free);
}

static int method_capture_get_settings(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *settings = NULL;
        int r;

        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = settings_load(t, call_publisher_id(call), &settings);
        if (r < 0)
                return r;
        return reply_settings(call, settings);
}

static int method_capture_get_status(Call *call, json_t *params) {
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        _cleanup_(json_decrefp) json_t *settings = NULL, *customer = NULL, *answers = NULL;
        int r;

        r = call_store_read(call, &t);
        if (r < 0)
                return r;
        r = customer_get(t, call_customer_id(call), &customer);
        if (r == -ENOENT)
                return call_fail_customer_gone(call, CUSTOMER_GONE_INVALID_TOKEN);
        if (r < 0)
                return r;
        r = settings_load(t, call_publisher_id(call), &settings);
        if (r < 0)
                return r;
        r = answers_load(t, call_customer_id(call), &answers);
        if (r < 0)
                return r;
        return call_reply(call, status_view(settings, customer, answers));
}

static int method_capture_update_answers(Call *call, json_t *params) {
        _cleanup_(json_decrefp) json_t *given = json_object();
        const char *name;
        json_t *v;

        if (!given)
                return -ENOMEM;
        /* The answer fields, without the caller's credentials. */
        json_object_foreach(params, name, v)
                if ((field_find(name) || streq(name, "customAnswers")) && json_object_set(given, name, v) < 0)
                        return -ENOMEM;
        return capture_answer(call, call_publisher_id(call), call_customer_id(call), given, "customer", true,
                              CUSTOMER_GONE_INVALID_TOKEN);
}

const Method methods_capture[] = {
        { .name = "setCaptureSettings", .handler = method_capture_set_settings, .role = ROLE_PUBLISHER,
          .params = (const ParamSpec[]) {
                  PUBLISHER_AUTH_PARAMS,
                  { "settings", PARAM_ARRAY, true, CAPTURE_SETTINGS_MAX },
                  {} } },
        { .name = "getCaptureSettings", .handler = method_capture_get_settings, .role = ROLE_PUBLISHER,
          .params = (const ParamSpec[]) { PUBLISHER_AUTH_PARAMS, {} } },
        { .name = "getCaptureStatus", .handler = method_capture_get_status, .role = ROLE_CUSTOMER,
          .params = (const ParamSpec[]) { CUSTOMER_AUTH_PARAMS, {} } },
        { .name = "updateCaptureAnswers", .handler = method_capture_update_answers, .role = ROLE_CUSTOMER,
          .params = (const ParamSpec[]) { CUSTOMER_AUTH_PARAMS, CAPTURE_ANSWER_PARAMS, {} } },
        {}
};
