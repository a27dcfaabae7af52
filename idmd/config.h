/* SPDX-License-Identifier: MIT */
/*
 * idmd's configuration: embedded defaults, overridden by /etc/idm/idmd.conf (or --config FILE)
 * and then by FILE.d/ *.conf drop-ins in lexical order (libinih). Each key is described once in
 * the table in config.c (section, key, parser, offset); docs and man/idmd.conf.5 list them all.
 *
 * Unknown sections or keys: a warning "FILE:LINE: unknown key 'k' in [s], ignoring".
 * A bad value: config_load() fails with -EINVAL after logging
 * "FILE:LINE: invalid value 'v' for key 'k' in [s]: <what is allowed>".
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

typedef enum MethodClass {
        METHOD_CLASS_DEFAULT,
        METHOD_CLASS_LOGIN,
        METHOD_CLASS_REGISTRATION,
        METHOD_CLASS_PASSWORD_RESET,
        _METHOD_CLASS_MAX,
        _METHOD_CLASS_INVALID = -22,
} MethodClass;

typedef struct RateLimitClassConfig {
        double rate;                    /* tokens per second */
        unsigned burst;                 /* bucket size */
        unsigned concurrency;           /* requests in flight */
} RateLimitClassConfig;

typedef struct Config {
        /* [daemon] */
        char *socket_path;              /* default IDM_DEFAULT_SOCKET */
        char *state_dir;                /* default IDM_DEFAULT_STATE_DIR */
        char *admin_group;              /* default "idm-admin"; "" disables */
        int log_level;                  /* LOG_LEVEL_*, default info; key takes err|warning|notice|info|debug */

        /* [limits] */
        unsigned max_line;              /* bytes, default 65536, 1024..16 MiB */
        unsigned max_depth;             /* default 32, 2..1000 */
        unsigned max_batch;             /* default 100 */
        unsigned max_connections_per_uid;  /* default 256 */
        unsigned max_connections;       /* default 4096, total */
        uint64_t idle_timeout_usec;     /* default 60 s; key in seconds ("60", "1.5", "2min" not needed) */
        uint64_t partial_line_timeout_usec; /* default 10 s */

        /* [store] */
        uint64_t map_size_initial;      /* bytes, default 16 MiB; accepts K/M/G suffixes (powers of 1024) */
        uint64_t map_size_max;          /* bytes, default 4 GiB */

        /* [passwords] */
        uint64_t argon2_opslimit;       /* t, default 2, >= 1 */
        uint64_t argon2_memlimit;       /* bytes, default 19 MiB, >= 8 KiB; K/M/G suffixes */
        unsigned password_min_length;   /* default 8 */
        unsigned password_max_length;   /* default 80 */
        bool password_require_letter;   /* default yes */
        bool password_require_digit_or_symbol; /* default yes */
        unsigned workers;               /* hashing threads, default 2, 1..64 */
        unsigned worker_queue;          /* queued hash jobs before 503, default 256 */

        /* [tokens] */
        char *issuer;                   /* default "idmd" */
        char *jwt_alg;                  /* "EdDSA" (default) or "Ed25519" (RFC 9864) */
        uint64_t access_ttl_usec;       /* default 15 min */
        uint64_t refresh_ttl_usec;      /* default 100 days (sliding) */
        uint64_t refresh_grace_usec;    /* default 10 s */
        uint64_t customer_token_ttl_usec; /* default 14 days */

        /* [customers] */
        char **currencies;              /* NULL-terminated; default USD EUR GBP CAD AUD NZD SEK DKK NOK TRL ZAR XOF */
        size_t max_external_data;       /* bytes of serialized externalData, default 4096 */

        /* [ratelimit.default] [ratelimit.login] [ratelimit.registration] [ratelimit.password_reset] */
        RateLimitClassConfig ratelimit[_METHOD_CLASS_MAX];
        unsigned ratelimit_sources;     /* [ratelimit] sources: per-source buckets kept, default 4096 */

        /* [lockout] */
        unsigned lockout_deny;          /* default 5; 0 disables */
        uint64_t lockout_fail_interval_usec; /* default 900 s */
        uint64_t lockout_unlock_time_usec;   /* default 600 s */
        uint64_t lockout_max_unlock_time_usec; /* default 3600 s */
} Config;

/* Returns a Config holding the embedded defaults. -ENOMEM only. */
int config_new(Config **ret);
Config *config_free(Config *c);

/* Reads path and then path + ".d/ *.conf" into c. If the file does not exist: 0 when !required
 * (defaults stay), -ENOENT (logged) when required. -EINVAL (logged) on a bad value or a syntax
 * error. Unknown keys only warn. */
int config_load(Config *c, const char *path, bool required);

/* Same, from a stream; 'name' is used in messages. For the unit tests and the fuzzer. */
int config_load_stream(Config *c, FILE *f, const char *name);

const char *method_class_to_string(MethodClass c);
MethodClass method_class_from_string(const char *s);
