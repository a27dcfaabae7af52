/* SPDX-License-Identifier: MIT */
/*
 * The idmd manager: owns the event loop, the listening sockets (socket activation or its own
 * bind: idmd's socket and the userdb socket), the state-directory lock, signal handling, the
 * connections, the store, the worker pool, the signing keys, locale detection, the mail outbox
 * and the statistics. Methods reach it through call_manager().
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "config.h"
#include "connection.h"
#include "idm/time-util.h"
#include "locales.h"
#include "ratelimit.h"
#include "rpc.h"
#include "store.h"

typedef struct Workers Workers;
typedef struct Keyring Keyring;
typedef struct Outbox Outbox;

/* The listening sockets: idmd's own (JSON-RPC) and the userdb socket (varlink, userdb.h; only
 * when [userdb] socket is set). */
typedef enum ListenerKind {
        LISTENER_RPC,
        LISTENER_USERDB,
        _LISTENER_MAX,
} ListenerKind;

typedef struct Listener {
        const char *path;               /* borrowed from the config; NULL: not listening */
        const char *fd_name;            /* its FileDescriptorName= when socket-activated */
        const ConnectionProtocol *protocol;
        int fd;
        bool activated;                 /* passed by systemd */
        bool created;                   /* we bound it: unlink on exit */
        dev_t dev;
        ino_t ino;
        sd_event_source *source;
} Listener;

#define LATENCY_BUCKETS 10      /* < 1, 4, 16, 64, 256 ms, 1, 4, 16, 64 s, more */

typedef struct MethodStats {
        uint64_t calls;
        uint64_t errors;
        uint64_t latency[LATENCY_BUCKETS];
} MethodStats;

struct Manager {
        sd_event *event;
        Config *config;
        Store *store;
        Workers *workers;
        Keyring *keyring;
        RateLimiter *ratelimit;         /* from [ratelimit.*] at startup; NULL before */
        Locales *locales;               /* from [locales] at startup; NULL before */
        Outbox *outbox;                 /* the mail outbox and its delivery thread; NULL before startup */

        int lock_fd;
        Listener listeners[_LISTENER_MAX];
        sd_event_source *accept_retry_source;   /* turns the listeners on again after a back-off */
        bool accept_paused;             /* listeners off: accept() cannot succeed for now */
        bool accept_trouble;            /* in an episode of failing accept() (logged once) */
        uint64_t accept_trouble_refused;        /* connections refused during that episode */
        int reserve_fd;                 /* /dev/null, given up to answer one connection when out of fds */
        uint64_t refusal_log_usec;      /* last "too many connections" warning (rate limited) */
        unsigned refusals_not_logged;
        sd_event_source *sigterm_source;
        sd_event_source *sigint_source;
        sd_event_source *sighup_source;         /* reloads the configuration */
        char *config_path;                      /* what SIGHUP reads again (main.c) */
        bool config_required;                   /* ... and whether it must exist */
        bool log_level_forced;                  /* --log-level: a reload keeps it */
        sd_event_source *shutdown_timer;
        sd_event_source *sweep_timer;           /* deletes expired tokens now and then */
        bool keys_in_store;                     /* signing keys are records of a shared store */
        sd_event_source *keys_timer;            /* ... read again now and then */
        bool keys_syncing;                      /* ... in a coroutine now */

        Connection *connections;        /* doubly linked list */
        unsigned n_connections;
        uint64_t next_connection_id;

        gid_t admin_gid;
        bool admin_gid_valid;

        bool stopping;
        uint64_t start_realtime_usec;
        uint64_t start_monotonic_usec;  /* for uptime: the test clock does not move it */

        /* statistics (getStats) */
        MethodStats *method_stats;      /* rpc_n_methods() entries */
        uint64_t connections_accepted;
        uint64_t connections_refused;
        uint64_t parse_errors;
        uint64_t class_in_flight[_METHOD_CLASS_MAX];
        uint64_t class_in_flight_max[_METHOD_CLASS_MAX];       /* high-water marks */
        uint64_t lockouts;              /* accounts locked since start */

        /* Log episodes: one line when a class starts refusing (then at most one a minute, with
         * the count refused meanwhile), one when the store fills up and one when it takes writes
         * again. */
        uint64_t ratelimit_logged_usec[_METHOD_CLASS_MAX];
        uint64_t ratelimit_unlogged[_METHOD_CLASS_MAX];
        bool store_full;
};

int manager_new(Config *config, Manager **ret);        /* takes ownership of config */
Manager *manager_free(Manager *m);
DEFINE_POINTER_CLEANUP(Manager, manager_free);

/* Takes the state-directory lock, opens the store and keys, listens. Logs its own errors. */
int manager_startup(Manager *m);
int manager_run(Manager *m);

/* Begins an orderly stop: no new connections or requests; in-flight ones are answered. */
void manager_stop(Manager *m);

/* Called by connection.c when a connection is gone. */
void manager_connection_closed(Manager *m, Connection *c);

/* Realtime clock in microseconds: the one used for dates, token lifetimes, lockouts and the
 * sweep. The only source of realtime in idmd; with the test clock it runs ahead of the system's
 * by the offset the tests advanced it by. */
uint64_t now_realtime_usec(void);

/* The test clock (idmd --test-clock with IDMD_TEST_CLOCK=1, tests only; docs/decisions.md "The
 * test clock"). Off unless test_clock_enable() was called at start; then testAdvanceClock moves
 * the realtime clock forward, never back. The offset lives in memory only: a restart goes back to
 * the system's time. */
#define TEST_CLOCK_MAX_OFFSET_USEC (100ULL * 366ULL * 24ULL * 3600ULL * 1000000ULL)    /* 100 years */
void test_clock_enable(void);
bool test_clock_enabled(void);
uint64_t test_clock_offset_usec(void);
/* Moves the realtime clock forward by usec: -EPERM when the test clock is off, -ERANGE when the
 * offset would exceed TEST_CLOCK_MAX_OFFSET_USEC (nothing moves then). */
int test_clock_advance(uint64_t usec);

/* Reads the configuration file again (SIGHUP) and applies what may change while idmd runs: the
 * log level (unless --log-level), [limits], the rate limits, [lockout], [reset]; a change to any
 * other key is logged as waiting for a restart. A file that does not load leaves everything as
 * it was (logged). Says RELOADING=1, then READY=1, to systemd. */
int manager_reload(Manager *m);

/* Runs the background sweep of expired tokens now rather than at its time (testAdvanceClock's
 * "sweep"): its unit of work is queued from the loop soon after. -ESTALE before startup. */
int manager_sweep_soon(Manager *m);
