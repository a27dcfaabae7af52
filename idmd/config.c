/* SPDX-License-Identifier: MIT */
/*
 * idmd's configuration. One table (config_items[]) maps each "[section] key" to a typed parser
 * and the offset of its Config field; the parsers, the error texts ("expected ...") and
 * config_dump() all work from that table, so a key is described exactly once.
 *
 * libinih does the INI syntax. Debian 12's libinih (r55) is built without INI_HANDLER_LINENO, so
 * the handler never learns its line number, and it silently splits lines longer than its 200-byte
 * buffer into several "lines". Hence our own reader: it counts lines (the handler runs right after
 * the reader returned the line it belongs to, so the count is exact), refuses overlong lines and
 * NUL bytes with FILE:LINE messages, and strips leading whitespace so that libinih never treats an
 * indented line as the continuation of the previous value. The handler always returns success:
 * it records errors itself, which leaves ini_parse_stream()'s return value to mean "first syntax
 * error at this line".
 */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <ini.h>

#include "idm/cleanup.h"
#include "idm/protocol.h"
#include "config.h"
#include "locales.h"
#include "log.h"
#include "validate.h"
#include "mail.h"
#include "store-pg.h"

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC UINT64_C(1000000)
#define USEC_PER_MINUTE (UINT64_C(60) * USEC_PER_SEC)
#define USEC_PER_HOUR (UINT64_C(60) * USEC_PER_MINUTE)
#define USEC_PER_DAY (UINT64_C(24) * USEC_PER_HOUR)

#define SIZE_KIB UINT64_C(1024)
#define SIZE_MIB (UINT64_C(1024) * SIZE_KIB)
#define SIZE_GIB (UINT64_C(1024) * SIZE_MIB)
#define SIZE_TIB (UINT64_C(1024) * SIZE_GIB)

/* [limits] write_timeout: a client that does not read its replies for this long is disconnected. */
#define WRITE_TIMEOUT_DEFAULT_SEC UINT64_C(30)

#define IN_SET3(x, a, b, c) ((x) == (a) || (x) == (b) || (x) == (c))

#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *) NULL)->sun_path) - 1)

static const char *const default_currencies[] = {
        "USD", "EUR", "GBP", "CAD", "AUD", "NZD", "SEK", "DKK", "NOK", "TRL", "ZAR", "XOF",
};

static const char *const method_class_table[_METHOD_CLASS_MAX] = {
        [METHOD_CLASS_DEFAULT] = "default",
        [METHOD_CLASS_LOGIN] = "login",
        [METHOD_CLASS_REGISTRATION] = "registration",
        [METHOD_CLASS_PASSWORD_RESET] = "password_reset",
        [METHOD_CLASS_USERDB] = "userdb",
};

const char *method_class_to_string(MethodClass c) {
        if (c < 0 || c >= _METHOD_CLASS_MAX)
                return NULL;
        return method_class_table[c];
}

MethodClass method_class_from_string(const char *s) {
        if (!s)
                return _METHOD_CLASS_INVALID;
        for (MethodClass c = 0; c < _METHOD_CLASS_MAX; c++)
                if (streq(method_class_table[c], s))
                        return c;
        return _METHOD_CLASS_INVALID;
}

/* ---- the table ------------------------------------------------------------------------------ */

typedef struct ConfigItem ConfigItem;

typedef struct ConfigType {
        /* Parses value into the field; on failure the field is untouched. -EINVAL (not logged:
         * the caller logs describe()'s text) or -ENOMEM. */
        int (*parse)(const ConfigItem *item, const char *value, void *field);
        /* What the key accepts, completing "expected ...". */
        void (*describe)(const ConfigItem *item, char *buf, size_t size);
        /* The field's value in a form parse() accepts. */
        void (*format)(const ConfigItem *item, const void *field, FILE *f);
        /* Repeatable keys only (NULL otherwise): writes the whole "key = value" lines of the
         * field, one per value, none for an empty list; config_dump() uses it instead of
         * format. */
        void (*dump)(const ConfigItem *item, const void *field, FILE *f);
        /* A value refused is not quoted in the log (it may hold a secret). */
        bool conceal;
} ConfigType;

struct ConfigItem {
        const char *section;
        const char *key;
        const ConfigType *type;
        size_t offset;          /* of the Config field */
        size_t size;            /* sizeof the Config field, for the integer types */
        uint64_t min, max;      /* integers; sizes in bytes; durations in usec; string lengths */
        double dmin, dmax;      /* rates */
};

static const ConfigType type_string, type_path, type_bool, type_unsigned, type_size,
        type_duration, type_rate, type_log_level, type_jwt_alg, type_currencies, type_country,
        type_optional_path, type_networks, type_country_overrides, type_command, type_mail_address,
        type_path_or_empty, type_name_format, type_store_backend, type_store_connection, type_argon2_engine;

#define FIELD_SIZE(field) sizeof(((Config *) NULL)->field)

#define ITEM(s, k, t, field, lo, hi)                                                            \
        { .section = (s), .key = (k), .type = &(t), .offset = offsetof(Config, field),         \
          .size = FIELD_SIZE(field), .min = (lo), .max = (hi) }
#define ITEM_RATE(s, field, lo, hi)                                                             \
        { .section = (s), .key = "rate", .type = &type_rate, .offset = offsetof(Config, field), \
          .size = FIELD_SIZE(field), .dmin = (lo), .dmax = (hi) }
#define ITEMS_RATELIMIT(s, class)                                                               \
        ITEM_RATE(s, ratelimit[class].rate, 0.001, 1000000.0),                                  \
        ITEM(s, "burst", type_unsigned, ratelimit[class].burst, 1, 1000000),                    \
        ITEM(s, "concurrency", type_unsigned, ratelimit[class].concurrency, 1, 100000)

static const ConfigItem config_items[] = {
        ITEM("daemon", "socket_path", type_path, socket_path, 1, SOCKET_PATH_MAX),
        ITEM("daemon", "state_dir", type_path, state_dir, 1, PATH_MAX - 1),
        ITEM("daemon", "admin_group", type_string, admin_group, 0, 255),
        ITEM("daemon", "log_level", type_log_level, log_level, 0, 0),

        ITEM("limits", "max_line", type_size, max_line, SIZE_KIB, 16 * SIZE_MIB),
        ITEM("limits", "max_depth", type_unsigned, max_depth, 2, 1000),
        ITEM("limits", "max_batch", type_unsigned, max_batch, 1, 10000),
        ITEM("limits", "max_connections_per_uid", type_unsigned, max_connections_per_uid, 1, 1048576),
        ITEM("limits", "max_connections", type_unsigned, max_connections, 1, 1048576),
        ITEM("limits", "idle_timeout", type_duration, idle_timeout_usec, USEC_PER_SEC, USEC_PER_DAY),
        ITEM("limits", "partial_line_timeout", type_duration, partial_line_timeout_usec,
             USEC_PER_SEC, USEC_PER_HOUR),
        ITEM("limits", "write_timeout", type_duration, write_timeout_usec, USEC_PER_SEC, USEC_PER_HOUR),

        ITEM("store", "map_size_initial", type_size, map_size_initial, SIZE_MIB, 16 * SIZE_TIB),
        ITEM("store", "map_size_max", type_size, map_size_max, SIZE_MIB, 16 * SIZE_TIB),
        ITEM("store", "backend", type_store_backend, store_backend, 0, 0),
        ITEM("store", "connection", type_store_connection, store_connection, 0, STORE_CONNECTION_MAX),
        ITEM("store", "timeout", type_duration, store_timeout_usec, 100 * USEC_PER_MSEC, 10 * USEC_PER_MINUTE),

        ITEM("passwords", "argon2_opslimit", type_unsigned, argon2_opslimit, 1, 1000),
        ITEM("passwords", "argon2_memlimit", type_size, argon2_memlimit, 8 * SIZE_KIB, 4 * SIZE_GIB),
        ITEM("passwords", "argon2_engine", type_argon2_engine, argon2_engine, 0, 0),
        ITEM("passwords", "min_length", type_unsigned, password_min_length, 1, 1024),
        ITEM("passwords", "max_length", type_unsigned, password_max_length, 1, 4096),
        ITEM("passwords", "require_letter", type_bool, password_require_letter, 0, 0),
        ITEM("passwords", "require_digit_or_symbol", type_bool, password_require_digit_or_symbol, 0, 0),
        ITEM("passwords", "workers", type_unsigned, workers, 1, 64),
        ITEM("passwords", "worker_queue", type_unsigned, worker_queue, 1, 65536),

        ITEM("tokens", "issuer", type_string, issuer, 1, 255),
        ITEM("tokens", "jwt_alg", type_jwt_alg, jwt_alg, 0, 0),
        ITEM("tokens", "access_ttl", type_duration, access_ttl_usec, USEC_PER_SEC, USEC_PER_DAY),
        ITEM("tokens", "refresh_ttl", type_duration, refresh_ttl_usec, USEC_PER_SEC, 3650 * USEC_PER_DAY),
        ITEM("tokens", "refresh_grace", type_duration, refresh_grace_usec, 0, 5 * USEC_PER_MINUTE),
        ITEM("tokens", "customer_token_ttl", type_duration, customer_token_ttl_usec,
             USEC_PER_SEC, 3650 * USEC_PER_DAY),

        ITEM("customers", "currencies", type_currencies, currencies, 0, 0),
        ITEM("customers", "max_external_data", type_size, max_external_data, 0, SIZE_MIB),

        ITEM("locales", "default_country", type_country, locales_default_country, 0, 0),
        ITEM("locales", "maxmind_db", type_optional_path, maxmind_db, 0, PATH_MAX - 1),
        ITEM("locales", "cidr", type_networks, locale_networks, 0, LOCALES_NETWORKS_MAX),
        ITEM("locales", "country", type_country_overrides, locale_countries, 0, 0),

        ITEM("ratelimit", "sources", type_unsigned, ratelimit_sources, 1, 1048576),
        ITEMS_RATELIMIT("ratelimit.default", METHOD_CLASS_DEFAULT),
        ITEMS_RATELIMIT("ratelimit.login", METHOD_CLASS_LOGIN),
        ITEMS_RATELIMIT("ratelimit.registration", METHOD_CLASS_REGISTRATION),
        ITEMS_RATELIMIT("ratelimit.password_reset", METHOD_CLASS_PASSWORD_RESET),
        ITEMS_RATELIMIT("ratelimit.userdb", METHOD_CLASS_USERDB),

        ITEM("lockout", "deny", type_unsigned, lockout_deny, 0, 1000),
        ITEM("lockout", "fail_interval", type_duration, lockout_fail_interval_usec,
             USEC_PER_SEC, 30 * USEC_PER_DAY),
        ITEM("lockout", "unlock_time", type_duration, lockout_unlock_time_usec,
             USEC_PER_SEC, 30 * USEC_PER_DAY),
        ITEM("lockout", "max_unlock_time", type_duration, lockout_max_unlock_time_usec,
             USEC_PER_SEC, 30 * USEC_PER_DAY),

        ITEM("mail", "mail_command", type_command, mail_command, 1, 1024),
        ITEM("mail", "from", type_mail_address, mail_from, 0, MAIL_ADDRESS_MAX),
        ITEM("mail", "template_dir", type_path_or_empty, mail_template_dir, 0, PATH_MAX - 1),
        ITEM("mail", "timeout", type_duration, mail_timeout_usec, USEC_PER_SEC, USEC_PER_HOUR),
        ITEM("mail", "retry_initial", type_duration, mail_retry_initial_usec, USEC_PER_SEC, USEC_PER_DAY),
        ITEM("mail", "retry_max", type_duration, mail_retry_max_usec, USEC_PER_SEC, 7 * USEC_PER_DAY),
        ITEM("mail", "max_age", type_duration, mail_max_age_usec, USEC_PER_MINUTE, 365 * USEC_PER_DAY),
        ITEM("mail", "max_queued", type_unsigned, mail_max_queued, 1, 1000000),

        ITEM("reset", "token_ttl", type_duration, reset_token_ttl_usec, USEC_PER_MINUTE, USEC_PER_DAY),
        ITEM("reset", "max_per_hour", type_unsigned, reset_max_per_hour, 1, 1000),
        ITEM("reset", "code_tries", type_unsigned, reset_code_tries, 1, 100),

        ITEM("userdb", "socket", type_path_or_empty, userdb_socket, 0, SOCKET_PATH_MAX),
        ITEM("userdb", "publisher", type_string, userdb_publisher, 0, IDM_PUBLISHER_ID_MAX),
        ITEM("userdb", "name_format", type_name_format, userdb_name_format, 0, 0),
        ITEM("userdb", "home", type_path, userdb_home, 1, USERDB_PATH_MAX),
        ITEM("userdb", "shell", type_path, userdb_shell, 1, USERDB_PATH_MAX),
        ITEM("userdb", "uid_min", type_unsigned, userdb_uid_min, USERDB_UID_LOWEST, USERDB_UID_HIGHEST),
        ITEM("userdb", "uid_max", type_unsigned, userdb_uid_max, USERDB_UID_LOWEST, USERDB_UID_HIGHEST),
        ITEM("userdb", "group", type_string, userdb_group, 0, USERDB_NAME_MAX),
        ITEM("userdb", "group_gid", type_unsigned, userdb_group_gid, 0, USERDB_UID_HIGHEST),
        ITEM("userdb", "unix_enumerate", type_bool, userdb_enumerate, 0, 0),
};

static void *item_field(const ConfigItem *item, Config *c) {
        return (uint8_t *) c + item->offset;
}

static const void *item_field_const(const ConfigItem *item, const Config *c) {
        return (const uint8_t *) c + item->offset;
}

/* Section names are compared with surrounding blanks removed: libinih passes "[ limits ]" on as
 * " limits ". Keys are compared exactly (case-sensitive). */
static const ConfigItem *config_item_find(const char *section, size_t section_len, const char *key) {
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *item = config_items + i;

                if (strlen(item->section) == section_len &&
                    memcmp(item->section, section, section_len) == 0 && streq(item->key, key))
                        return item;
        }
        return NULL;
}

/* ---- integer storage by field width --------------------------------------------------------- */

static void store_uint(const ConfigItem *item, void *field, uint64_t v) {
        if (item->size == sizeof(uint32_t)) {
                uint32_t u = (uint32_t) v;

                assert(item->max <= UINT32_MAX);        /* the table's range fits the field */
                memcpy(field, &u, sizeof(u));
        } else {
                assert(item->size == sizeof(uint64_t));
                memcpy(field, &v, sizeof(v));
        }
}

static uint64_t load_uint(const ConfigItem *item, const void *field) {
        if (item->size == sizeof(uint32_t)) {
                uint32_t u;
                memcpy(&u, field, sizeof(u));
                return u;
        }
        uint64_t v;
        assert(item->size == sizeof(uint64_t));
        memcpy(&v, field, sizeof(v));
        return v;
}

static bool ascii_isdigit(char c) {
        return c >= '0' && c <= '9';
}

static bool ascii_isblank(char c) {
        return c == ' ' || c == '\t' || c == '\v' || c == '\f' || c == '\r';
}

/* Decimal digits at *p into *ret, advancing *p. No sign, no base prefix. -EINVAL, -ERANGE. */
static int parse_digits(const char **p, uint64_t *ret) {
        const char *s = *p;
        uint64_t v = 0;

        if (!ascii_isdigit(*s))
                return -EINVAL;
        for (; ascii_isdigit(*s); s++)
                if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t) (*s - '0'), &v))
                        return -ERANGE;
        *p = s;
        *ret = v;
        return 0;
}

/* ---- unsigned ------------------------------------------------------------------------------- */

static int parse_unsigned(const ConfigItem *item, const char *value, void *field) {
        uint64_t v;

        if (parse_digits(&value, &v) < 0 || *value != '\0')
                return -EINVAL;
        if (v < item->min || v > item->max)
                return -EINVAL;
        store_uint(item, field, v);
        return 0;
}

static void describe_unsigned(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size, "expected an integer between %" PRIu64 " and %" PRIu64,
                        item->min, item->max);
}

static void format_unsigned(const ConfigItem *item, const void *field, FILE *f) {
        fprintf(f, "%" PRIu64, load_uint(item, field));
}

static const ConfigType type_unsigned = { parse_unsigned, describe_unsigned, format_unsigned };

/* ---- size (bytes, K/M/G/T are powers of 1024) ----------------------------------------------- */

static const struct {
        const char *suffix;
        uint64_t factor;
} size_suffixes[] = {
        { "T", SIZE_TIB }, { "TiB", SIZE_TIB },
        { "G", SIZE_GIB }, { "GiB", SIZE_GIB },
        { "M", SIZE_MIB }, { "MiB", SIZE_MIB },
        { "K", SIZE_KIB }, { "KiB", SIZE_KIB },
        { "B", 1 }, { "", 1 },
};

static int parse_size_value(const char *value, uint64_t *ret) {
        uint64_t v;

        if (parse_digits(&value, &v) < 0)
                return -EINVAL;
        while (ascii_isblank(*value))
                value++;
        for (size_t i = 0; i < ELEMENTSOF(size_suffixes); i++)
                if (streq(value, size_suffixes[i].suffix)) {
                        if (__builtin_mul_overflow(v, size_suffixes[i].factor, &v))
                                return -ERANGE;
                        *ret = v;
                        return 0;
                }
        return -EINVAL;
}

static int parse_size(const ConfigItem *item, const char *value, void *field) {
        uint64_t v;

        if (parse_size_value(value, &v) < 0 || v < item->min || v > item->max)
                return -EINVAL;
        store_uint(item, field, v);
        return 0;
}

/* Largest suffix that represents v exactly: 19922944 → "19M", 1536 → "1536". */
static void format_size_value(uint64_t v, char *buf, size_t size) {
        static const struct {
                const char *suffix;
                uint64_t factor;
        } units[] = { { "T", SIZE_TIB }, { "G", SIZE_GIB }, { "M", SIZE_MIB }, { "K", SIZE_KIB } };

        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (v > 0 && v % units[i].factor == 0) {
                        (void) snprintf(buf, size, "%" PRIu64 "%s", v / units[i].factor, units[i].suffix);
                        return;
                }
        (void) snprintf(buf, size, "%" PRIu64, v);
}

static void describe_size(const ConfigItem *item, char *buf, size_t size) {
        char lo[32], hi[32];

        format_size_value(item->min, lo, sizeof(lo));
        format_size_value(item->max, hi, sizeof(hi));
        (void) snprintf(buf, size,
                        "expected a size between %s and %s (an integer number of bytes, optionally "
                        "followed by K, M, G, T or KiB, MiB, GiB, TiB: powers of 1024)",
                        lo, hi);
}

static void format_size(const ConfigItem *item, const void *field, FILE *f) {
        char buf[32];

        format_size_value(load_uint(item, field), buf, sizeof(buf));
        fputs(buf, f);
}

static const ConfigType type_size = { parse_size, describe_size, format_size };

/* ---- duration (seconds, or a number with a unit; stored in usec) ---------------------------- */

static const struct {
        const char *unit;
        uint64_t usec;
} duration_units[] = {
        { "d", USEC_PER_DAY },
        { "h", USEC_PER_HOUR },
        { "min", USEC_PER_MINUTE },
        { "s", USEC_PER_SEC },
        { "ms", USEC_PER_MSEC },
        { "us", 1 },
};

static int parse_duration_value(const char *value, uint64_t *ret) {
        uint64_t whole, frac = 0, scale = 1, unit = USEC_PER_SEC, v;
        unsigned __int128 part;

        if (parse_digits(&value, &whole) < 0)
                return -EINVAL;
        if (*value == '.') {
                value++;
                if (!ascii_isdigit(*value))
                        return -EINVAL;
                /* Digits past 18 cannot matter at usec resolution; they are read and dropped. */
                for (; ascii_isdigit(*value); value++)
                        if (scale < UINT64_C(1000000000000000000)) {
                                frac = frac * 10 + (uint64_t) (*value - '0');
                                scale *= 10;
                        }
        }
        while (ascii_isblank(*value))
                value++;
        if (*value != '\0') {
                size_t i;

                for (i = 0; i < ELEMENTSOF(duration_units); i++)
                        if (streq(value, duration_units[i].unit))
                                break;
                if (i >= ELEMENTSOF(duration_units))
                        return -EINVAL;
                unit = duration_units[i].usec;
        }

        if (__builtin_mul_overflow(whole, unit, &v))
                return -ERANGE;
        part = (unsigned __int128) frac * unit / scale;   /* < unit: cannot overflow */
        if (__builtin_add_overflow(v, (uint64_t) part, &v))
                return -ERANGE;
        *ret = v;
        return 0;
}

static int parse_duration(const ConfigItem *item, const char *value, void *field) {
        uint64_t v;

        if (parse_duration_value(value, &v) < 0 || v < item->min || v > item->max)
                return -EINVAL;
        store_uint(item, field, v);
        return 0;
}

/* Largest unit that represents usec exactly: 900 s → "15min", 10 s → "10s". */
static void format_duration_value(uint64_t usec, char *buf, size_t size) {
        if (usec == 0) {
                (void) snprintf(buf, size, "0");
                return;
        }
        for (size_t i = 0; i < ELEMENTSOF(duration_units); i++)
                if (usec % duration_units[i].usec == 0) {
                        (void) snprintf(buf, size, "%" PRIu64 "%s", usec / duration_units[i].usec,
                                        duration_units[i].unit);
                        return;
                }
        (void) snprintf(buf, size, "%" PRIu64 "us", usec);
}

static void describe_duration(const ConfigItem *item, char *buf, size_t size) {
        char lo[32], hi[32];

        format_duration_value(item->min, lo, sizeof(lo));
        format_duration_value(item->max, hi, sizeof(hi));
        (void) snprintf(buf, size,
                        "expected a duration between %s and %s (seconds, or a number followed by "
                        "one of the units us, ms, s, min, h, d)",
                        lo, hi);
}

static void format_duration(const ConfigItem *item, const void *field, FILE *f) {
        char buf[32];

        format_duration_value(load_uint(item, field), buf, sizeof(buf));
        fputs(buf, f);
}

static const ConfigType type_duration = { parse_duration, describe_duration, format_duration };

/* ---- rate (a decimal number, no exponent; parsed without strtod() so no locale applies) ----- */

static int parse_rate(const ConfigItem *item, const char *value, void *field) {
        uint64_t whole;
        double v, digit = 0.1;

        assert(item->size == sizeof(double));

        if (parse_digits(&value, &whole) < 0)
                return -EINVAL;
        v = (double) whole;
        if (*value == '.') {
                value++;
                if (!ascii_isdigit(*value))
                        return -EINVAL;
                for (; ascii_isdigit(*value); value++, digit /= 10)
                        v += (*value - '0') * digit;
        }
        if (*value != '\0' || v < item->dmin || v > item->dmax)
                return -EINVAL;
        memcpy(field, &v, sizeof(v));
        return 0;
}

/* Up to 6 decimals, trailing zeros dropped: 200 → "200", 0.5 → "0.5". */
static void format_rate_value(double v, char *buf, size_t size) {
        uint64_t micro = (uint64_t) (v * 1e6 + 0.5);
        int n;

        n = snprintf(buf, size, "%" PRIu64 ".%06" PRIu64, micro / 1000000, micro % 1000000);
        if (n <= 0 || (size_t) n >= size)
                return;
        while (buf[n - 1] == '0')
                buf[--n] = '\0';
        if (buf[n - 1] == '.')
                buf[n - 1] = '\0';
}

static void describe_rate(const ConfigItem *item, char *buf, size_t size) {
        char lo[32], hi[32];

        format_rate_value(item->dmin, lo, sizeof(lo));
        format_rate_value(item->dmax, hi, sizeof(hi));
        (void) snprintf(buf, size, "expected a number between %s and %s (requests per second, e.g. 20 or 0.5)",
                        lo, hi);
}

static void format_rate(const ConfigItem *item, const void *field, FILE *f) {
        char buf[48];
        double v;

        memcpy(&v, field, sizeof(v));
        format_rate_value(v, buf, sizeof(buf));
        fputs(buf, f);
}

static const ConfigType type_rate = { parse_rate, describe_rate, format_rate };

/* ---- bool ----------------------------------------------------------------------------------- */

static int parse_bool_value(const char *value, bool *ret) {
        static const char *const yes[] = { "yes", "true", "on", "1" };
        static const char *const no[] = { "no", "false", "off", "0" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (strcasecmp(value, yes[i]) == 0) {
                        *ret = true;
                        return 0;
                }
                if (strcasecmp(value, no[i]) == 0) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

static int parse_bool(const ConfigItem *item, const char *value, void *field) {
        bool b;

        assert(item->size == sizeof(bool));
        if (parse_bool_value(value, &b) < 0)
                return -EINVAL;
        memcpy(field, &b, sizeof(b));
        return 0;
}

static void describe_bool(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size, "expected a boolean: yes, no, true, false, on, off, 1 or 0");
}

static void format_bool(const ConfigItem *item, const void *field, FILE *f) {
        bool b;

        memcpy(&b, field, sizeof(b));
        fputs(b ? "yes" : "no", f);
}

static const ConfigType type_bool = { parse_bool, describe_bool, format_bool };

/* ---- strings and paths ---------------------------------------------------------------------- */

static int replace_string(void *field, const char *value) {
        char *copy, *old;

        copy = strdup(value);
        if (!copy)
                return -ENOMEM;
        memcpy(&old, field, sizeof(old));
        free(old);
        memcpy(field, &copy, sizeof(copy));
        return 0;
}

static bool string_has_control(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        return true;
        return false;
}

/* A ';' at the start or after a blank could not be written back by config_dump(): libinih would
 * read it as a comment. */
static bool string_has_comment(const char *s) {
        return s[0] == ';' || strstr(s, " ;") || strstr(s, "\t;");
}

static int parse_string(const ConfigItem *item, const char *value, void *field) {
        size_t n = strlen(value);

        if (n < item->min || n > item->max || string_has_control(value) || string_has_comment(value))
                return -EINVAL;
        return replace_string(field, value);
}

static void describe_string(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size,
                        "expected %" PRIu64 " to %" PRIu64 " bytes of text without control characters "
                        "and not starting with ';'",
                        item->min, item->max);
}

static void format_string(const ConfigItem *item, const void *field, FILE *f) {
        const char *s;

        memcpy(&s, field, sizeof(s));
        fputs(strempty(s), f);
}

static const ConfigType type_string = { parse_string, describe_string, format_string };

static int parse_path(const ConfigItem *item, const char *value, void *field) {
        if (value[0] != '/')
                return -EINVAL;
        return parse_string(item, value, field);
}

static void describe_path(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size, "expected an absolute path (starting with '/') of at most %" PRIu64 " bytes",
                        item->max);
}

static const ConfigType type_path = { parse_path, describe_path, format_string };

/* [mail] mail_command: words split on spaces (no quoting; like every string, no control
 * characters, so no tabs), the first an absolute path, at most MAIL_COMMAND_WORDS_MAX words. */
static int parse_command(const ConfigItem *item, const char *value, void *field) {
        size_t words = 0;

        if (value[0] != '/')
                return -EINVAL;
        for (const char *p = value; *p;) {
                p += strspn(p, " \t");
                if (!*p)
                        break;
                words++;
                p += strcspn(p, " \t");
        }
        if (words > MAIL_COMMAND_WORDS_MAX)
                return -EINVAL;
        return parse_string(item, value, field);
}

static void describe_command(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size,
                        "expected a command line of at most %" PRIu64 " bytes and %d words separated by spaces "
                        "(no quoting), starting with an absolute path",
                        item->max, MAIL_COMMAND_WORDS_MAX);
}

static const ConfigType type_command = { parse_command, describe_command, format_string };

static int parse_mail_address(const ConfigItem *item, const char *value, void *field) {
        if (value[0] && !mail_address_is_valid(value))
                return -EINVAL;
        return parse_string(item, value, field);
}

static void describe_mail_address(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size,
                        "expected an e-mail address local@domain of at most %" PRIu64 " bytes (ASCII, no "
                        "display name, no quoting), or nothing for idmd@ and the host's name",
                        item->max);
}

static const ConfigType type_mail_address = { parse_mail_address, describe_mail_address, format_string };

static int parse_path_or_empty(const ConfigItem *item, const char *value, void *field) {
        if (value[0] && value[0] != '/')
                return -EINVAL;
        return parse_string(item, value, field);
}

static void describe_path_or_empty(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size,
                        "expected an absolute path (starting with '/') of at most %" PRIu64 " bytes, or nothing",
                        item->max);
}

static const ConfigType type_path_or_empty = { parse_path_or_empty, describe_path_or_empty, format_string };

/* ---- enums ---------------------------------------------------------------------------------- */

static const struct {
        const char *name;
        int level;
} log_levels[] = {
        { "err", LOG_LEVEL_ERR },
        { "warning", LOG_LEVEL_WARNING },
        { "notice", LOG_LEVEL_NOTICE },
        { "info", LOG_LEVEL_INFO },
        { "debug", LOG_LEVEL_DEBUG },
};

static int parse_log_level(const ConfigItem *item, const char *value, void *field) {
        assert(item->size == sizeof(int));

        /* "error" is accepted as well: it is what log lines print. */
        if (streq(value, "error"))
                value = "err";
        for (size_t i = 0; i < ELEMENTSOF(log_levels); i++)
                if (streq(value, log_levels[i].name)) {
                        memcpy(field, &log_levels[i].level, sizeof(int));
                        return 0;
                }
        return -EINVAL;
}

static void describe_log_level(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size, "expected one of err, warning, notice, info, debug");
}

static void format_log_level(const ConfigItem *item, const void *field, FILE *f) {
        int level;

        memcpy(&level, field, sizeof(level));
        for (size_t i = 0; i < ELEMENTSOF(log_levels); i++)
                if (log_levels[i].level == level) {
                        fputs(log_levels[i].name, f);
                        return;
                }
        fputs(level > LOG_LEVEL_DEBUG ? "debug" : "err", f);
}

static const ConfigType type_log_level = { parse_log_level, describe_log_level, format_log_level };

static int parse_jwt_alg(const ConfigItem *item, const char *value, void *field) {
        /* JOSE "alg" values are case-sensitive (RFC 7515 4.1.1). */
        if (!streq(value, "EdDSA") && !streq(value, "Ed25519"))
                return -EINVAL;
        return replace_string(field, value);
}

static void describe_jwt_alg(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size, "expected EdDSA or Ed25519 (case-sensitive)");
}

static const ConfigType type_jwt_alg = { parse_jwt_alg, describe_jwt_alg, format_string };

static int parse_store_backend(const ConfigItem *item, const char *value, void *field) {
        if (!streq(value, "lmdb") && !streq(value, "postgresql"))
                return -EINVAL;
        return replace_string(field, value);
}

static void describe_store_backend(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size, "expected lmdb or postgresql");
}

static const ConfigType type_store_backend = { parse_store_backend, describe_store_backend, format_string };

static int parse_argon2_engine(const ConfigItem *item, const char *value, void *field) {
        if (!streq(value, "auto") && !streq(value, "libargon2") && !streq(value, "libsodium"))
                return -EINVAL;
        return replace_string(field, value);
}

static void describe_argon2_engine(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size, "expected auto, libargon2 or libsodium");
}

static const ConfigType type_argon2_engine = { parse_argon2_engine, describe_argon2_engine, format_string };

/* [store] connection: a libpq connection string that libpq can read and that holds no password
 * (a configuration file is no place for one, and --check-config prints the value). */
static int parse_store_connection(const ConfigItem *item, const char *value, void *field) {
        if (value[0] && store_pg_check_connection(value) < 0)
                return -EINVAL;
        return parse_string(item, value, field);
}

static void describe_store_connection(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size,
                        "expected a libpq connection string (\"host=... dbname=... user=...\" or a "
                        "postgresql:// URI) of at most %" PRIu64 " bytes without a password: put that in "
                        "the file PGPASSFILE names, or ~/.pgpass",
                        item->max);
}

static const ConfigType type_store_connection = {
        .parse = parse_store_connection,
        .describe = describe_store_connection,
        .format = format_string,
        .conceal = true,
};

static int parse_name_format(const ConfigItem *item, const char *value, void *field) {
        if (!streq(value, "email") && !streq(value, "id"))
                return -EINVAL;
        return replace_string(field, value);
}

static void describe_name_format(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size, "expected email or id");
}

static const ConfigType type_name_format = { parse_name_format, describe_name_format, format_string };

/* ---- currency list -------------------------------------------------------------------------- */

static bool strv_contains(char *const *l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

static bool currency_code_is_valid(const char *s, size_t n) {
        if (n != 3)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] < 'A' || s[i] > 'Z')
                        return false;
        return true;
}

/* Whitespace- or comma-separated codes; duplicates are dropped; at least one code. */
static int parse_currencies(const char *value, char ***ret) {
        _cleanup_(strv_freep) char **l = NULL;
        size_t n = 0;

        for (const char *p = value;;) {
                size_t len;
                char code[4];

                p += strspn(p, " \t,");
                if (*p == '\0')
                        break;
                len = strcspn(p, " \t,");
                if (!currency_code_is_valid(p, len))
                        return -EINVAL;
                memcpy(code, p, 3);
                code[3] = '\0';
                p += len;

                if (strv_contains(l, code))
                        continue;

                char **nl = reallocarray(l, n + 2, sizeof(char *));
                if (!nl)
                        return -ENOMEM;
                l = nl;
                l[n] = strdup(code);
                if (!l[n])
                        return -ENOMEM;
                l[++n] = NULL;
        }
        if (n == 0)
                return -EINVAL;

        *ret = TAKE_PTR(l);
        return 0;
}

static int parse_currency_list(const ConfigItem *item, const char *value, void *field) {
        char **l, **old;
        int r;

        r = parse_currencies(value, &l);
        if (r < 0)
                return r;
        memcpy(&old, field, sizeof(old));
        (void) strv_free(old);
        memcpy(field, &l, sizeof(l));
        return 0;
}

static void describe_currencies(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size,
                        "expected one or more ISO 4217 currency codes (3 upper-case letters each, e.g. USD), "
                        "separated by spaces or commas");
}

static void format_currencies(const ConfigItem *item, const void *field, FILE *f) {
        char **l;

        memcpy(&l, field, sizeof(l));
        for (char **i = l; i && *i; i++)
                fprintf(f, "%s%s", i == l ? "" : " ", *i);
}

static const ConfigType type_currencies = { parse_currency_list, describe_currencies, format_currencies };

/* ---- [locales]: a country, an optional path, networks and country overrides ----------------- */

static int parse_country(const ConfigItem *item, const char *value, void *field) {
        if (!country_is_valid(value))
                return -EINVAL;
        return replace_string(field, value);
}

static void describe_country(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size, "expected an ISO 3166-1 alpha-2 country code in upper case, e.g. US or PL");
}

static const ConfigType type_country = { parse_country, describe_country, format_string };

static int parse_optional_path(const ConfigItem *item, const char *value, void *field) {
        if (value[0] == '\0')
                return replace_string(field, value);
        return parse_path(item, value, field);
}

static void describe_optional_path(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size,
                        "expected nothing (none) or an absolute path (starting with '/') of at most %" PRIu64
                        " bytes",
                        item->max);
}

static const ConfigType type_optional_path = { parse_optional_path, describe_optional_path, format_string };

static bool value_is_blank(const char *value) {
        return value[strspn(value, " \t")] == '\0';
}

static int parse_networks(const ConfigItem *item, const char *value, void *field) {
        LocaleNetworkList *l = field;
        LocaleNetwork n;

        if (value_is_blank(value)) {
                locale_networks_done(l);
                return 0;
        }
        if (locale_network_parse(value, &n) < 0)
                return -EINVAL;
        return locale_networks_add(l, &n);      /* -E2BIG past the bound */
}

static void describe_networks(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size,
                        "expected an IPv4 or IPv6 network without host bits and a country code, e.g. "
                        "'192.0.2.0/24 PL' or '2001:db8::/32 DE' (or nothing, to empty the list)");
}

static void dump_networks(const ConfigItem *item, const void *field, FILE *f) {
        const LocaleNetworkList *l = field;
        char buf[80];

        for (size_t i = 0; i < l->n; i++) {
                locale_network_format(l->items + i, buf, sizeof(buf));
                fprintf(f, "%s = %s\n", item->key, buf);
        }
}

static const ConfigType type_networks = { parse_networks, describe_networks, NULL, dump_networks };

static int parse_country_overrides(const ConfigItem *item, const char *value, void *field) {
        LocaleCountryList *l = field;
        LocaleCountry c;

        if (value_is_blank(value)) {
                locale_countries_done(l);
                return 0;
        }
        if (locale_country_parse(value, &c) < 0)
                return -EINVAL;
        return locale_countries_add(l, &c);
}

static void describe_country_overrides(const ConfigItem *item, char *buf, size_t size) {
        (void) snprintf(buf, size,
                        "expected a country code, a currency code and a locale, e.g. 'PL PLN pl_PL' (or "
                        "nothing, to empty the list)");
}

static void dump_country_overrides(const ConfigItem *item, const void *field, FILE *f) {
        const LocaleCountryList *l = field;

        for (size_t i = 0; i < l->n; i++)
                fprintf(f, "%s = %s %s %s\n", item->key, l->items[i].country, l->items[i].currency,
                        l->items[i].locale);
}

static const ConfigType type_country_overrides = { parse_country_overrides, describe_country_overrides, NULL,
                                                   dump_country_overrides };

/* ---- object --------------------------------------------------------------------------------- */

Config *config_free(Config *c) {
        if (!c)
                return NULL;
        free(c->socket_path);
        free(c->state_dir);
        free(c->admin_group);
        free(c->issuer);
        free(c->jwt_alg);
        free(c->store_backend);
        free(c->store_connection);
        free(c->argon2_engine);
        (void) strv_free(c->currencies);
        free(c->locales_default_country);
        free(c->maxmind_db);
        locale_networks_done(&c->locale_networks);
        locale_countries_done(&c->locale_countries);
        free(c->mail_command);
        free(c->mail_from);
        free(c->mail_template_dir);
        free(c->userdb_socket);
        free(c->userdb_publisher);
        free(c->userdb_name_format);
        free(c->userdb_home);
        free(c->userdb_shell);
        free(c->userdb_group);
        for (size_t i = 0; c->origins && i < ELEMENTSOF(config_items); i++)
                free(c->origins[i]);
        free(c->origins);
        free(c);
        return NULL;
}

int config_new(Config **ret) {
        _cleanup_(config_freep) Config *c = NULL;
        static const RateLimitClassConfig ratelimit_defaults[_METHOD_CLASS_MAX] = {
                [METHOD_CLASS_DEFAULT] = { .rate = 200, .burst = 200, .concurrency = 50 },
                [METHOD_CLASS_LOGIN] = { .rate = 50, .burst = 50, .concurrency = 20 },
                [METHOD_CLASS_REGISTRATION] = { .rate = 20, .burst = 20, .concurrency = 10 },
                [METHOD_CLASS_PASSWORD_RESET] = { .rate = 10, .burst = 10, .concurrency = 5 },
                /* nss-systemd asks once per getpwnam(): every process on the machine, mostly as
                 * root (one bucket), so the budget is wide; a lookup is one short read. */
                [METHOD_CLASS_USERDB] = { .rate = 1000, .burst = 2000, .concurrency = 100 },
        };

        assert(ret);

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;

        *c = (Config) {
                .log_level = LOG_LEVEL_INFO,

                .max_line = IDM_MAX_LINE_DEFAULT,
                .max_depth = IDM_MAX_DEPTH_DEFAULT,
                .max_batch = IDM_MAX_BATCH,
                .max_connections_per_uid = IDM_MAX_CONN_PER_UID_DEFAULT,
                .max_connections = 4096,
                .idle_timeout_usec = IDM_IDLE_TIMEOUT_DEFAULT * USEC_PER_SEC,
                .partial_line_timeout_usec = IDM_PARTIAL_TIMEOUT_DEFAULT * USEC_PER_SEC,
                .write_timeout_usec = WRITE_TIMEOUT_DEFAULT_SEC * USEC_PER_SEC,

                .map_size_initial = 16 * SIZE_MIB,
                .map_size_max = 4 * SIZE_GIB,
                .store_timeout_usec = 5 * USEC_PER_SEC,

                .argon2_opslimit = 2,
                .argon2_memlimit = 19 * SIZE_MIB,
                .password_min_length = 8,
                .password_max_length = 80,
                .password_require_letter = true,
                .password_require_digit_or_symbol = true,
                .workers = 2,
                .worker_queue = 256,

                .access_ttl_usec = 15 * USEC_PER_MINUTE,
                .refresh_ttl_usec = 100 * USEC_PER_DAY,
                .refresh_grace_usec = 10 * USEC_PER_SEC,
                .customer_token_ttl_usec = 14 * USEC_PER_DAY,

                .max_external_data = 4096,

                .ratelimit_sources = 4096,

                .lockout_deny = 5,
                .lockout_fail_interval_usec = 900 * USEC_PER_SEC,
                .lockout_unlock_time_usec = 600 * USEC_PER_SEC,
                .lockout_max_unlock_time_usec = 3600 * USEC_PER_SEC,

                .mail_timeout_usec = 30 * USEC_PER_SEC,
                .mail_retry_initial_usec = USEC_PER_MINUTE,
                .mail_retry_max_usec = USEC_PER_HOUR,
                .mail_max_age_usec = 3 * USEC_PER_DAY,
                .mail_max_queued = 10000,
                .reset_token_ttl_usec = 3600 * USEC_PER_SEC,
                .reset_max_per_hour = 3,
                .reset_code_tries = 5,

                .userdb_uid_min = USERDB_UID_MIN_DEFAULT,
                .userdb_uid_max = USERDB_UID_MAX_DEFAULT,
        };
        memcpy(c->ratelimit, ratelimit_defaults, sizeof(c->ratelimit));
        c->origins = calloc(ELEMENTSOF(config_items), sizeof(char *));
        if (!c->origins)
                return -ENOMEM;

        c->socket_path = strdup(IDM_DEFAULT_SOCKET);
        c->state_dir = strdup(IDM_DEFAULT_STATE_DIR);
        c->admin_group = strdup("idm-admin");
        c->issuer = strdup("idmd");
        c->jwt_alg = strdup("EdDSA");
        c->store_backend = strdup("lmdb");
        c->store_connection = strdup("");
        c->argon2_engine = strdup("auto");
        if (!c->store_backend || !c->store_connection || !c->argon2_engine)
                return -ENOMEM;
        c->locales_default_country = strdup("US");
        c->maxmind_db = strdup("");
        c->currencies = calloc(ELEMENTSOF(default_currencies) + 1, sizeof(char *));
        c->mail_command = strdup(MAIL_COMMAND_DEFAULT);
        c->mail_from = strdup("");
        c->mail_template_dir = strdup("");
        c->userdb_socket = strdup("");
        c->userdb_publisher = strdup("");
        c->userdb_name_format = strdup("email");
        c->userdb_home = strdup("/home/idm/%u");
        c->userdb_shell = strdup("/bin/sh");
        c->userdb_group = strdup("");
        if (!c->userdb_socket || !c->userdb_publisher || !c->userdb_name_format || !c->userdb_home ||
            !c->userdb_shell || !c->userdb_group)
                return -ENOMEM;
        if (!c->socket_path || !c->state_dir || !c->admin_group || !c->issuer || !c->jwt_alg ||
            !c->locales_default_country || !c->maxmind_db || !c->currencies || !c->mail_command ||
            !c->mail_from || !c->mail_template_dir)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(default_currencies); i++) {
                c->currencies[i] = strdup(default_currencies[i]);
                if (!c->currencies[i])
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(c);
        return 0;
}

/* ---- parsing -------------------------------------------------------------------------------- */

typedef struct ConfigParser {
        Config *config;
        FILE *f;
        const char *name;       /* for messages */
        unsigned line;          /* of the line last handed to libinih */
        int r;                  /* first error; -ENOMEM/-EIO win over -EINVAL */
} ConfigParser;

static void parser_fail(ConfigParser *p, int r) {
        assert(r < 0);
        if (p->r == 0 || p->r == -EINVAL)
                p->r = r;
}

/* libinih's ini_reader: fgets() semantics, one line per call. */
static char *config_reader(char *str, int num, void *stream) {
        ConfigParser *p = stream;
        size_t len = 0, cap, max, skip = 0;
        bool nul = false;
        int ch;

        assert(num >= 4);
        cap = (size_t) num - 1;         /* bytes of str available for content */
        max = (size_t) num - 3;         /* longest line libinih documents to handle ("\r\n\0") */

        for (;;) {
                ch = getc(p->f);
                if (ch == EOF || ch == '\n')
                        break;
                if (ch == '\0')
                        nul = true;
                if (len < cap)
                        str[len] = (char) ch;
                len++;
        }
        if (ch == EOF) {
                if (ferror(p->f)) {
                        parser_fail(p, log_error_errno(errno > 0 ? errno : EIO, "%s:%u: read error: %m",
                                                       p->name, p->line + 1));
                        return NULL;
                }
                if (len == 0)
                        return NULL;
        }
        p->line++;

        if (len > 0 && len <= cap && str[len - 1] == '\r')
                len--;

        if (nul || len > max) {
                if (nul)
                        log_error("%s:%u: line contains a NUL byte.", p->name, p->line);
                else
                        log_error("%s:%u: line is too long (%zu bytes): at most %zu bytes per line are "
                                  "supported (libinih's limit).",
                                  p->name, p->line, len, max);
                parser_fail(p, -EINVAL);
                /* Hand libinih an empty line so that the parts of this one are not parsed. */
                str[0] = '\0';
                return str;
        }

        str[len] = '\0';
        /* No leading blanks: libinih would take an indented line as a continuation of the previous
         * value and pass it to the handler as another assignment of that key. */
        while (skip < len && ascii_isblank(str[skip]))
                skip++;
        memmove(str, str + skip, len - skip + 1);
        return str;
}

/* For messages: control characters as \xNN, so that a value cannot play tricks on a terminal. */
static const char *escape_value(const char *v, char *buf, size_t size) {
        size_t n = 0;

        assert(size >= 5);
        for (; *v && n + 5 < size; v++) {
                if ((unsigned char) *v < 0x20 || *v == 0x7f)
                        n += (size_t) snprintf(buf + n, size - n, "\\x%02x", (unsigned) (unsigned char) *v);
                else
                        buf[n++] = *v;
        }
        buf[n] = '\0';
        return buf;
}

static int config_assign(Config *c, const ConfigItem *item, const char *value, const char *origin,
                         unsigned line) {
        char expected[512], escaped[1024];
        int r;

        r = item->type->parse(item, value, item_field(item, c));
        if (r == -ENOMEM)
                return log_error_errno(ENOMEM, "Out of memory.");
        if (r == -E2BIG) {      /* a repeatable key with all its values taken */
                if (line > 0)
                        log_error("%s:%u: too many values for key '%s' in [%s]: at most %" PRIu64 ".", origin,
                                  line, item->key, item->section, item->max);
                else
                        log_error("%s: too many values for key '%s' in [%s]: at most %" PRIu64 ".", origin,
                                  item->key, item->section, item->max);
                return -EINVAL;
        }
        if (r < 0) {
                item->type->describe(item, expected, sizeof(expected));
                value = item->type->conceal ? "(not shown)" : escape_value(value, escaped, sizeof(escaped));
                if (line > 0)
                        log_error("%s:%u: invalid value '%s' for key '%s' in [%s]: %s.", origin, line, value,
                                  item->key, item->section, expected);
                else
                        log_error("%s: invalid value '%s' for key '%s' in [%s]: %s.", origin, value, item->key,
                                  item->section, expected);
                return -EINVAL;
        }
        if (c->origins) {
                char **o = c->origins + (item - config_items);

                free(*o);
                if ((line > 0 ? asprintf(o, "%s:%u", origin, line) : asprintf(o, "%s", origin)) < 0) {
                        *o = NULL;
                        return log_error_errno(ENOMEM, "Out of memory.");
                }
        }
        return 0;
}

static int config_handler(void *userdata, const char *section, const char *key, const char *value) {
        ConfigParser *p = userdata;
        const ConfigItem *item;
        size_t len;
        int r;

        /* Always "success" for libinih: its return value then only reports syntax errors. */

        if (!key || !value || key[0] == '\0') {
                log_error("%s:%u: syntax error: missing key name before '='.", p->name, p->line);
                parser_fail(p, -EINVAL);
                return 1;
        }

        while (ascii_isblank(*section))
                section++;
        len = strlen(section);
        while (len > 0 && ascii_isblank(section[len - 1]))
                len--;

        item = config_item_find(section, len, key);
        if (!item) {
                if (len == 0)
                        log_warning("%s:%u: key '%s' outside of any section, ignoring.", p->name, p->line, key);
                else
                        log_warning("%s:%u: unknown key '%s' in section [%.*s], ignoring.", p->name, p->line,
                                    key, (int) len, section);
                return 1;
        }

        r = config_assign(p->config, item, value, p->name, p->line);
        if (r < 0)
                parser_fail(p, r);
        return 1;
}

/* Parses one file's contents; no drop-ins, no cross-key checks. Logs. */
static int config_parse_file(Config *c, FILE *f, const char *name) {
        ConfigParser p = {
                .config = c,
                .f = f,
                .name = name,
        };
        int k;

        k = ini_parse_stream(config_reader, &p, config_handler, &p);
        if (k == -2)
                parser_fail(&p, log_error_errno(ENOMEM, "Out of memory."));
        else if (k < 0)
                parser_fail(&p, log_error_errno(EIO, "%s: libinih failed to read the file.", name));
        else if (k > 0) {
                log_error("%s:%d: syntax error: expected '[section]', 'key = value' or a comment.", name, k);
                parser_fail(&p, -EINVAL);
        }
        return p.r;
}

/* [userdb]: what the user records need (passwd fields hold no ':'), and that the socket names
 * the publisher it serves. Returns r, or the error of a problem found. */
static int userdb_config_verify(const Config *c, int r) {
        if (strchr(c->userdb_home, ':') || strchr(c->userdb_shell, ':'))
                r = log_error_errno(EINVAL, "[userdb] home and shell must not contain ':'.");
        if (c->userdb_group[0] && !unix_name_is_valid(c->userdb_group))
                r = log_error_errno(EINVAL, "[userdb] group = %s is not a valid group name.", c->userdb_group);
        if (c->userdb_group[0] && c->userdb_group_gid == 0)
                r = log_error_errno(EINVAL, "[userdb] group = %s needs group_gid.", c->userdb_group);
        if (c->userdb_uid_min > c->userdb_uid_max)
                r = log_error_errno(EINVAL, "[userdb] uid_min=%" PRIu64 " is greater than uid_max=%" PRIu64 ".",
                                    c->userdb_uid_min, c->userdb_uid_max);
        if (c->userdb_group_gid != 0 && c->userdb_group_gid >= c->userdb_uid_min &&
            c->userdb_group_gid <= c->userdb_uid_max)
                r = log_error_errno(EINVAL, "[userdb] group_gid=%" PRIu64 " is inside uid_min..uid_max, where "
                                    "every gid is a user's private group.", c->userdb_group_gid);
        if (c->userdb_socket[0] && !digits_are_valid(c->userdb_publisher, 9 /* a publisher id */))
                r = log_error_errno(EINVAL, "[userdb] socket = %s needs publisher = the 9-digit id of the "
                                    "publisher whose customers it serves.", c->userdb_socket);
        if (c->userdb_socket[0] && !unix_name_is_valid(strrchr(c->userdb_socket, '/') + 1))
                r = log_error_errno(EINVAL, "[userdb] socket = %s: its file name is the service name and must "
                                    "be a plain name such as io.idm.", c->userdb_socket);
        return r;
}

int config_verify(const Config *c) {
        char a[32], b[32];
        int r = 0;

        assert(c);

        if (c->password_min_length > c->password_max_length)
                r = log_error_errno(EINVAL, "[passwords] min_length=%u is greater than max_length=%u.",
                                    c->password_min_length, c->password_max_length);
        if (c->lockout_unlock_time_usec > c->lockout_max_unlock_time_usec) {
                format_duration_value(c->lockout_unlock_time_usec, a, sizeof(a));
                format_duration_value(c->lockout_max_unlock_time_usec, b, sizeof(b));
                r = log_error_errno(EINVAL, "[lockout] unlock_time=%s is greater than max_unlock_time=%s.",
                                    a, b);
        }
        if (c->map_size_initial > c->map_size_max) {
                format_size_value(c->map_size_initial, a, sizeof(a));
                format_size_value(c->map_size_max, b, sizeof(b));
                r = log_error_errno(EINVAL, "[store] map_size_initial=%s is greater than map_size_max=%s.",
                                    a, b);
        }
        if (streq(c->store_backend, "postgresql") && !c->store_connection[0])
                r = log_error_errno(EINVAL, "[store] backend=postgresql needs [store] connection, the libpq "
                                    "connection string of the database.");
        if (c->max_connections_per_uid > c->max_connections)
                r = log_error_errno(EINVAL,
                                    "[limits] max_connections_per_uid=%u is greater than max_connections=%u.",
                                    c->max_connections_per_uid, c->max_connections);
        if (c->refresh_grace_usec >= c->refresh_ttl_usec) {
                format_duration_value(c->refresh_grace_usec, a, sizeof(a));
                format_duration_value(c->refresh_ttl_usec, b, sizeof(b));
                r = log_error_errno(EINVAL, "[tokens] refresh_grace=%s must be shorter than refresh_ttl=%s.",
                                    a, b);
        }
        if (!c->currencies || !c->currencies[0])
                r = log_error_errno(EINVAL, "[customers] currencies is empty.");
        if (c->mail_retry_initial_usec > c->mail_retry_max_usec) {
                format_duration_value(c->mail_retry_initial_usec, a, sizeof(a));
                format_duration_value(c->mail_retry_max_usec, b, sizeof(b));
                r = log_error_errno(EINVAL, "[mail] retry_initial=%s is greater than retry_max=%s.", a, b);
        }

        r = userdb_config_verify(c, r);

        /* Locale detection answers only currencies registration accepts (a built-in one that is not
         * accepted is replaced, locales.h); an override says what the operator wants, so a currency
         * there that registration would refuse is a mistake. */
        for (size_t i = 0; i < c->locale_countries.n; i++) {
                const LocaleCountry *o = c->locale_countries.items + i;

                if (!currency_is_valid(o->currency, c->currencies))
                        r = log_error_errno(EINVAL,
                                            "[locales] country = %s %s %s: currency %s is not one of [customers] "
                                            "currencies.",
                                            o->country, o->currency, o->locale, o->currency);
        }

        /* Odd but workable. */
        if (r >= 0 && c->refresh_ttl_usec < c->access_ttl_usec) {
                format_duration_value(c->refresh_ttl_usec, a, sizeof(a));
                format_duration_value(c->access_ttl_usec, b, sizeof(b));
                log_warning("[tokens] refresh_ttl=%s is shorter than access_ttl=%s.", a, b);
        }

        return r;
}

int config_load_stream(Config *c, FILE *f, const char *name) {
        int r;

        assert(c);
        assert(f);

        r = config_parse_file(c, f, name ?: "(stream)");
        if (r < 0)
                return r;
        return config_verify(c);
}

static void fclosep(FILE **f) {
        if (*f)
                (void) fclose(*f);
}

/* Opens path (relative to dir_fd) for reading. -ENOENT when missing, -EISDIR for a directory,
 * -EBADFD when only_regular and it is not a regular file. */
static int config_open(int dir_fd, const char *path, bool only_regular, FILE **ret) {
        _cleanup_(closep) int fd = -EBADF;
        struct stat st;
        FILE *f;
        int flags;

        /* O_NONBLOCK: do not hang on a FIFO dropped into the directory. */
        fd = openat(dir_fd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (only_regular && !S_ISREG(st.st_mode))
                return -EBADFD;

        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
                return -errno;

        f = fdopen(fd, "r");
        if (!f)
                return -errno;
        TAKE_FD(fd);
        *ret = f;
        return 0;
}

static int dropin_filter(const struct dirent *de) {
        size_t n = strlen(de->d_name);

        /* Hidden files (editor and package-manager leftovers) are skipped like in systemd. */
        return de->d_name[0] != '.' && n > strlen(".conf") && streq(de->d_name + n - strlen(".conf"), ".conf");
}

static int config_load_dropins(Config *c, const char *dir) {
        _cleanup_(closep) int dfd = -EBADF;
        struct dirent **names = NULL;
        int n, r = 0;

        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
                if (errno == ENOENT)
                        return 0;
                if (errno == ENOTDIR) {
                        log_warning("%s is not a directory, ignoring.", dir);
                        return 0;
                }
                return log_error_errno(errno, "Failed to open drop-in directory %s: %m", dir);
        }

        n = scandirat(dfd, ".", &names, dropin_filter, alphasort);
        if (n < 0)
                return log_error_errno(errno, "Failed to list drop-in directory %s: %m", dir);

        for (int i = 0; i < n && r != -ENOMEM; i++) {
                _cleanup_(freep) char *display = NULL;
                _cleanup_(fclosep) FILE *f = NULL;
                int q;

                if (asprintf(&display, "%s/%s", dir, names[i]->d_name) < 0) {
                        display = NULL;
                        r = log_error_errno(ENOMEM, "Out of memory.");
                        break;
                }

                q = config_open(dfd, names[i]->d_name, /* only_regular= */ true, &f);
                if (IN_SET3(q, -ENOENT, -EBADFD, -EISDIR)) {
                        log_debug("Skipping %s: not a regular file.", display);
                        continue;
                }
                if (q < 0) {
                        r = log_error_errno(q, "Failed to open %s: %m", display);
                        continue;
                }

                q = config_parse_file(c, f, display);
                if (q < 0 && (r == 0 || q != -EINVAL))
                        r = q;
        }

        for (int i = 0; i < n; i++)
                free(names[i]);
        free(names);
        return r;
}

int config_load(Config *c, const char *path, bool required) {
        _cleanup_(freep) char *dropin_dir = NULL;
        _cleanup_(fclosep) FILE *f = NULL;
        int r, q;

        assert(c);

        if (!path)
                path = IDM_DEFAULT_CONFIG;

        r = config_open(AT_FDCWD, path, /* only_regular= */ false, &f);
        if (r == -ENOENT && !required) {
                log_debug("Configuration file %s not found, using the defaults.", path);
                r = 0;
        } else if (r < 0)
                return log_error_errno(r, "Failed to open configuration file %s: %m", path);
        else {
                r = config_parse_file(c, f, path);
                if (r < 0 && r != -EINVAL)
                        return r;
        }

        /* Drop-ins are read even after a bad value above, so that one run reports every problem. */
        if (asprintf(&dropin_dir, "%s.d", path) < 0) {
                dropin_dir = NULL;
                return log_error_errno(ENOMEM, "Out of memory.");
        }
        q = config_load_dropins(c, dropin_dir);
        if (q < 0 && (r == 0 || q != -EINVAL))
                r = q;
        if (r < 0)
                return r;

        return config_verify(c);
}

int config_set(Config *c, const char *section, const char *key, const char *value, const char *origin) {
        const ConfigItem *item;

        assert(c);
        assert(section);
        assert(key);
        assert(value);

        item = config_item_find(section, strlen(section), key);
        if (!item)
                return log_error_errno(ENOENT, "%s: unknown configuration key '%s' in [%s].",
                                       origin ?: "command line", key, section);
        return config_assign(c, item, value, origin ?: "command line", 0);
}

static int dump(const Config *c, FILE *f, bool origins) {
        const char *section = NULL;

        assert(c);
        assert(f);

        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *item = config_items + i;
                const char *origin = origins ? (c->origins && c->origins[i] ? c->origins[i] : "default") : NULL;

                if (!section || !streq(section, item->section)) {
                        fprintf(f, "%s[%s]\n", section ? "\n" : "", item->section);
                        section = item->section;
                }
                if (item->type->dump) {
                        /* A key of several lines: where it came from, above them. */
                        if (origin)
                                fprintf(f, "# %s: %s\n", item->key, origin);
                        item->type->dump(item, item_field_const(item, c), f);
                        continue;
                }
                fprintf(f, "%s = ", item->key);
                item->type->format(item, item_field_const(item, c), f);
                if (origin)             /* libinih reads ';' after a blank as a comment */
                        fprintf(f, "  ; %s", origin);
                fputc('\n', f);
        }

        if (fflush(f) != 0 || ferror(f))
                return errno > 0 ? -errno : -EIO;
        return 0;
}

int config_dump(const Config *c, FILE *f) {
        return dump(c, f, false);
}

int config_dump_origins(const Config *c, FILE *f) {
        return dump(c, f, true);
}

/* Whether text holds line as a whole line. */
static bool has_line(const char *text, const char *line) {
        size_t n = strlen(line);

        for (const char *p = text; (p = strstr(p, line)); p++)
                if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
                        return true;
        return false;
}

int config_apply_live(Config *c, const Config *from, FILE *changes) {
        _cleanup_free_ char *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        FILE *f;
        int r, n = 0;

        assert(c);
        assert(from);

        c->log_level = from->log_level;
        c->max_line = from->max_line;
        c->max_depth = from->max_depth;
        c->max_batch = from->max_batch;
        c->max_connections_per_uid = from->max_connections_per_uid;
        c->max_connections = from->max_connections;
        c->idle_timeout_usec = from->idle_timeout_usec;
        c->partial_line_timeout_usec = from->partial_line_timeout_usec;
        c->write_timeout_usec = from->write_timeout_usec;
        memcpy(c->ratelimit, from->ratelimit, sizeof(c->ratelimit));
        c->lockout_deny = from->lockout_deny;
        c->lockout_fail_interval_usec = from->lockout_fail_interval_usec;
        c->lockout_unlock_time_usec = from->lockout_unlock_time_usec;
        c->lockout_max_unlock_time_usec = from->lockout_max_unlock_time_usec;
        c->reset_token_ttl_usec = from->reset_token_ttl_usec;
        c->reset_max_per_hour = from->reset_max_per_hour;
        c->reset_code_tries = from->reset_code_tries;
        r = replace_string(&c->mail_command, from->mail_command);
        if (r >= 0)
                r = replace_string(&c->mail_from, from->mail_from);
        if (r >= 0)
                r = replace_string(&c->mail_template_dir, from->mail_template_dir);
        if (r < 0)
                return r;
        c->mail_timeout_usec = from->mail_timeout_usec;
        c->mail_retry_initial_usec = from->mail_retry_initial_usec;
        c->mail_retry_max_usec = from->mail_retry_max_usec;
        c->mail_max_age_usec = from->mail_max_age_usec;
        c->mail_max_queued = from->mail_max_queued;

        /* What still differs needs a restart: compare the two dumps key by key. */
        f = open_memstream(&a, &na);
        if (!f)
                return -ENOMEM;
        r = config_dump(c, f);
        if (fclose(f) != 0 && r >= 0)
                r = -errno;
        if (r < 0)
                return r;
        f = open_memstream(&b, &nb);
        if (!f)
                return -ENOMEM;
        r = config_dump(from, f);
        if (fclose(f) != 0 && r >= 0)
                r = -errno;
        if (r < 0)
                return r;
        /* Each line of the new dump ("key = value"; keys of several values have several) that
         * the running one lacks is a change. */
        for (char *line = b, *end; line && *line; line = end ? end + 1 : NULL) {
                end = strchr(line, '\n');
                if (end)
                        *end = '\0';
                if (line[0] != '\0' && line[0] != '[' && !has_line(a, line)) {
                        if (changes)
                                fprintf(changes, "%s%s", n > 0 ? ", " : "", line);
                        n++;
                }
        }
        return n;
}
