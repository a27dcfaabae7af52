/* SPDX-License-Identifier: MIT */
/*
 * idmd's configuration: embedded defaults, overridden by /etc/idm/idmd.conf (or --config FILE)
 * and then by FILE.d/ *.conf drop-ins in lexical order (libinih). Each key is described once in
 * the table in config.c (section, key, parser, offset); docs/man/idmd.conf.5 and the sample
 * packaging/idmd.conf list them all.
 *
 * Key names: the field name without its section's prefix and without "_usec", e.g. [passwords]
 * min_length is password_min_length, [lockout] unlock_time is lockout_unlock_time_usec, [limits]
 * idle_timeout is idle_timeout_usec. Keys are case-sensitive. A key given twice: the last wins.
 * Durations are written in seconds or with a unit (us, ms, s, min, h, d) and stored in usec;
 * sizes in bytes or with K/M/G/T (KiB/MiB/GiB/TiB), powers of 1024.
 *
 * Repeatable keys ([locales] cidr and country) add to a list instead; an empty value empties it.
 *
 * Unknown sections or keys: a warning "FILE:LINE: unknown key 'k' in section [s], ignoring.".
 * A bad value: config_load() fails with -EINVAL after logging
 * "FILE:LINE: invalid value 'v' for key 'k' in [s]: expected <what is allowed>.", or for a list
 * that is full "FILE:LINE: too many values for key 'k' in [s]: at most N.".
 * Lines are limited to 197 bytes (Debian's libinih r55 buffer); longer ones are errors.
 *
 * On an error the Config may be partly updated: to keep a working configuration (reload), load
 * into a fresh config_new() object and swap it in only on success.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "idm/cleanup.h"
#include "locales.h"

/* [userdb] uids and gids (docs/decisions.md "Unix uids of customers"): the default range lies
 * past systemd's container range (524288..1879048191) and below its foreign range
 * (2147352576..2147418111), far from Debian's regular (1000..59999) and reserved (60000..65535)
 * ids; nothing above 2^31-1 (some tools take uids as signed). */
#define USERDB_UID_MIN_DEFAULT UINT64_C(1879048192)
#define USERDB_UID_MAX_DEFAULT UINT64_C(2147352575)
#define USERDB_UID_LOWEST UINT64_C(1000)
#define USERDB_UID_HIGHEST UINT64_C(2147483646)
#define USERDB_PATH_MAX 255             /* [userdb] home and shell, bytes */

typedef enum MethodClass {
        METHOD_CLASS_DEFAULT,
        METHOD_CLASS_LOGIN,
        METHOD_CLASS_REGISTRATION,
        METHOD_CLASS_PASSWORD_RESET,
        METHOD_CLASS_USERDB,            /* lookups on the userdb socket (userdb.h) */
        _METHOD_CLASS_MAX,
        _METHOD_CLASS_INVALID = -22,
} MethodClass;

/* Keys: rate (0.001..1000000), burst (1..1000000), concurrency (1..100000). */
typedef struct RateLimitClassConfig {
        double rate;                    /* tokens per second */
        unsigned burst;                 /* bucket size */
        unsigned concurrency;           /* requests in flight */
} RateLimitClassConfig;

/* Every field always holds a valid value: the default or what a file set, within the range given
 * here (config.c's table is authoritative). Strings are never NULL. */
typedef struct Config {
        /* [daemon] */
        char *socket_path;              /* default IDM_DEFAULT_SOCKET; absolute, <= 107 bytes */
        char *state_dir;                /* default IDM_DEFAULT_STATE_DIR; absolute */
        char *admin_group;              /* default "idm-admin"; "" disables */
        int log_level;                  /* LOG_LEVEL_*, default info; key takes err|warning|notice|info|debug */

        /* [limits] */
        unsigned max_line;              /* bytes, default 65536, 1024..16 MiB; K/M suffixes */
        unsigned max_depth;             /* default 32, 2..1000 */
        unsigned max_batch;             /* default 100, 1..10000 */
        unsigned max_connections_per_uid;  /* default 256, <= max_connections */
        unsigned max_connections;       /* default 4096, total, 1..1048576 */
        uint64_t idle_timeout_usec;     /* key idle_timeout: default 60 s, 1 s..1 d */
        uint64_t partial_line_timeout_usec; /* key partial_line_timeout: default 10 s, 1 s..1 h */
        uint64_t write_timeout_usec;    /* key write_timeout: default 30 s, 1 s..1 h; replies owed and
                                         * no write progress for this long closes the connection */

        /* [store] */
        uint64_t map_size_initial;      /* bytes, default 16 MiB, 1 MiB..16 TiB, <= map_size_max */
        uint64_t map_size_max;          /* bytes, default 4 GiB, 1 MiB..16 TiB */
        char *store_backend;            /* key backend: "lmdb" (default) or "postgresql" */
        char *store_connection;         /* key connection: libpq connection string, no password;
                                         * default empty; needed for postgresql */
        uint64_t store_timeout_usec;    /* key timeout: default 5 s, 100 ms..10 min; a statement
                                         * of the postgresql backend, at most */

        /* [passwords] */
        uint64_t argon2_opslimit;       /* t, default 2, 1..1000 */
        uint64_t argon2_memlimit;       /* bytes, default 19 MiB, 8 KiB..4 GiB */
        char *argon2_engine;            /* "auto" (default: timed at start), "libargon2", "libsodium" */
        unsigned password_min_length;   /* key min_length: default 8, 1..1024, <= max_length */
        unsigned password_max_length;   /* key max_length: default 80, 1..4096 */
        bool password_require_letter;   /* key require_letter: default yes */
        bool password_require_digit_or_symbol; /* key require_digit_or_symbol: default yes */
        unsigned workers;               /* hashing threads, default 2, 1..64 */
        unsigned worker_queue;          /* queued hash jobs before 503, default 256, 1..65536 */

        /* [tokens] */
        char *issuer;                   /* default "idmd", 1..255 bytes */
        char *jwt_alg;                  /* "EdDSA" (default) or "Ed25519" (RFC 9864) */
        uint64_t access_ttl_usec;       /* key access_ttl: default 15 min, 1 s..1 d */
        uint64_t refresh_ttl_usec;      /* key refresh_ttl: default 100 days (sliding), 1 s..3650 d */
        uint64_t refresh_grace_usec;    /* key refresh_grace: default 10 s, 0 (off)..5 min, < refresh_ttl */
        uint64_t customer_token_ttl_usec; /* key customer_token_ttl: default 14 days, 1 s..3650 d */

        /* [customers] */
        char **currencies;              /* NULL-terminated, never empty, no duplicates;
                                         * default USD EUR GBP CAD AUD NZD SEK DKK NOK TRL ZAR XOF */
        size_t max_external_data;       /* bytes of serialized externalData, default 4096, 0..1 MiB */

        /* [locales] (locales.h) */
        char *locales_default_country;  /* key default_country: default "US" */
        char *maxmind_db;               /* "" (default): none; else an absolute path */
        LocaleNetworkList locale_networks;      /* key cidr, repeatable ("192.0.2.0/24 PL"); an
                                                 * empty value empties the list; at most
                                                 * LOCALES_NETWORKS_MAX */
        LocaleCountryList locale_countries;     /* key country, repeatable ("PL PLN pl_PL"): the
                                                 * built-in entry of a country overridden, the last
                                                 * for a country wins; an empty value empties the
                                                 * list; each currency must be one of currencies */

        /* [ratelimit.default] [ratelimit.login] [ratelimit.registration] [ratelimit.password_reset]
         * [ratelimit.userdb], indexed by MethodClass */
        RateLimitClassConfig ratelimit[_METHOD_CLASS_MAX];
        unsigned ratelimit_sources;     /* [ratelimit] sources: per-source buckets kept, default 4096 */

        /* [lockout] */
        unsigned lockout_deny;          /* key deny: default 5; 0 disables; 0..1000 */
        uint64_t lockout_fail_interval_usec; /* key fail_interval: default 900 s, 1 s..30 d */
        uint64_t lockout_unlock_time_usec;   /* key unlock_time: default 600 s, <= max_unlock_time */
        uint64_t lockout_max_unlock_time_usec; /* key max_unlock_time: default 3600 s, 1 s..30 d */

        /* [mail] (the outbox: outbox.h, mail.h) */
        char *mail_command;             /* key mail_command: default "/usr/sbin/sendmail -t -i"; words
                                         * split on spaces, the first an absolute path; <= 32 words */
        char *mail_from;                /* key from: an address (local@domain); "" (default):
                                         * idmd@<the host's name> */
        char *mail_template_dir;        /* key template_dir: absolute path; "" (default): built-in only */
        uint64_t mail_timeout_usec;     /* key timeout: default 30 s, 1 s..1 h */
        uint64_t mail_retry_initial_usec; /* key retry_initial: default 1 min, 1 s..1 d, <= retry_max */
        uint64_t mail_retry_max_usec;   /* key retry_max: default 1 h, 1 s..7 d */
        uint64_t mail_max_age_usec;     /* key max_age: default 3 d, 1 min..365 d */
        unsigned mail_max_queued;       /* key max_queued: default 10000, 1..1000000 */

        /* [reset] */
        uint64_t reset_token_ttl_usec;  /* key token_ttl: default 1 h, 1 min..1 d */
        unsigned reset_max_per_hour;    /* key max_per_hour: mails per account and hour, default 3, 1..1000 */
        unsigned reset_code_tries;      /* key code_tries: wrong tries that void a reset, default 5, 1..100 */

        /* [userdb] (userdb.h: customers as Unix users through systemd's user database) */
        char *userdb_socket;            /* key socket: "" (default): off; else an absolute path whose
                                         * file name is the service name, e.g. /run/systemd/userdb/io.idm */
        char *userdb_publisher;         /* key publisher: the publisher whose customers it serves; ""
                                         * (default) only while socket is "" */
        char *userdb_name_format;       /* key name_format: "email" (default) or "id" (c<customerId>) */
        char *userdb_home;              /* key home: template, %u the user name; default /home/idm/%u */
        char *userdb_shell;             /* key shell: default /bin/sh; a publisher's or customer's wins */
        uint64_t userdb_uid_min;        /* key uid_min: default USERDB_UID_MIN_DEFAULT, <= uid_max */
        uint64_t userdb_uid_max;        /* key uid_max: default USERDB_UID_MAX_DEFAULT */
        char *userdb_group;             /* key group: the shared group's name; "" (default): none */
        uint64_t userdb_group_gid;      /* key group_gid: its gid, outside uid_min..uid_max; default 0: none */
        bool userdb_enumerate;          /* key unix_enumerate: default no */

        /* Where each value came from, by key in config.c's table order: "FILE:LINE" of the last
         * assignment, "command line", or NULL for the embedded default (config_dump_origins()). */
        char **origins;
} Config;

/* Returns a Config holding the embedded defaults. -ENOMEM only. */
int config_new(Config **ret);
/* Frees c and everything it owns (strings, the currencies list). NULL-safe; returns NULL. */
Config *config_free(Config *c);
DEFINE_POINTER_CLEANUP(Config, config_free);

/* Reads path (NULL: IDM_DEFAULT_CONFIG) and then path + ".d/ *.conf" into c: regular files whose
 * name ends in ".conf" and does not start with '.', in alphasort() order; a missing drop-in
 * directory is fine. If path does not exist: its drop-ins are still read and the result is 0 when
 * !required (defaults stay), -ENOENT (logged) when required. -EINVAL (logged) on a bad value, a
 * syntax error, an overlong line or a failed config_verify(); all files are read first so every
 * problem is reported. Other open/read errors: -errno (logged). -ENOMEM. Unknown keys only warn. */
int config_load(Config *c, const char *path, bool required);

/* Same for one stream (no drop-ins), then config_verify(); 'name' is used in messages (NULL:
 * "(stream)"). For the unit tests and the fuzzer. */
int config_load_stream(Config *c, FILE *f, const char *name);

/* Cross-key checks (min_length <= max_length, unlock_time <= max_unlock_time,
 * map_size_initial <= map_size_max, max_connections_per_uid <= max_connections,
 * refresh_grace < refresh_ttl, currencies not empty, the currency of every [locales] country
 * override among currencies, [mail] retry_initial <= retry_max). Logs each problem naming the
 * keys; -EINVAL if any. config_load() calls it; call it again after config_set(). */
int config_verify(const Config *c);

/* Sets one key from a string, with the same parser and messages as the file (e.g. main.c's
 * --socket: config_set(c, "daemon", "socket_path", optarg, "--socket")). origin (NULL: "command
 * line") names the source in messages. -ENOENT (logged) for an unknown key, -EINVAL (logged) for
 * a bad value, -ENOMEM. Does not run config_verify(). */
int config_set(Config *c, const char *section, const char *key, const char *value, const char *origin);

/* Writes the effective configuration as an INI file that config_load_stream() reads back to the
 * same values (e.g. for "idmd --dump-config"). -errno on a write error. */
int config_dump(const Config *c, FILE *f);

/* A configuration reload (SIGHUP): copies into c what may change while idmd runs ([daemon]
 * log_level, [limits], [ratelimit.*] rates, [lockout], [mail], [reset]) from the freshly loaded from,
 * and lists on changes (may be NULL), comma-separated as "key = value" of from, what else
 * differs: that needs a restart and is not applied. Returns how many such keys, or -errno. */
int config_apply_live(Config *c, const Config *from, FILE *changes);

/* config_dump() with where each value came from: a comment after each key ("; default", or
 * "; FILE:LINE" of the assignment that set it last; "# key: ..." above a key of several lines),
 * for "idmd --check-config". The output still loads back. -errno on a write error. */
int config_dump_origins(const Config *c, FILE *f);

/* "default", "login", "registration", "password_reset" (the [ratelimit.NAME] sections); NULL or
 * _METHOD_CLASS_INVALID for anything else. */
const char *method_class_to_string(MethodClass c);
MethodClass method_class_from_string(const char *s);
