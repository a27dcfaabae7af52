/* SPDX-License-Identifier: MIT */
/*
 * idmd: command line, configuration, libsodium initialisation, then the manager's event loop.
 * The hidden --test-clock switch (tests only, with IDMD_TEST_CLOCK=1) is taken here.
 */
#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "config-build.h"
#include "config.h"
#include "idm/protocol.h"
#include "log.h"
#include "manager.h"
#include "migrate.h"
#include "store-pg.h"

static void help(void) {
        printf("Usage: idmd [OPTIONS]\n\n"
               "The idm identity daemon: customers, publishers and tokens over JSON-RPC on a Unix socket.\n\n"
               "  -c --config=FILE      Read FILE and FILE.d/*.conf (default %s, if present)\n"
               "  -s --state-dir=DIR    Keep the store and keys in DIR (default %s)\n"
               "  -S --socket=PATH      Listen on PATH (default %s)\n"
               "  -f --foreground       Accepted for compatibility; idmd never forks\n"
               "     --log-level=LEVEL  err, warning, notice, info or debug\n"
               "     --check-config     Read the configuration, print every key's value and where it came\n"
               "                        from, and exit (non-zero when it is not acceptable)\n"
               "     --migrate-store=DIR  Copy the LMDB store of a stopped idmd in the state directory DIR\n"
               "                        into the (empty) PostgreSQL store of the configuration, and exit\n"
               "  -h --help             Show this help\n"
               "     --version          Show the version\n",
               IDM_DEFAULT_CONFIG, IDM_DEFAULT_STATE_DIR, IDM_DEFAULT_SOCKET);
}

static int parse_log_level(const char *s) {
        static const char *const names[] = {
                [LOG_LEVEL_ERR] = "err", [LOG_LEVEL_WARNING] = "warning", [LOG_LEVEL_NOTICE] = "notice",
                [LOG_LEVEL_INFO] = "info", [LOG_LEVEL_DEBUG] = "debug",
        };
        for (int i = LOG_LEVEL_ERR; i <= LOG_LEVEL_DEBUG; i++)
                if (streq(s, names[i]))
                        return i;
        return -EINVAL;
}

static int make_absolute(char **path) {
        _cleanup_free_ char *cwd = NULL;
        char *abs;

        if ((*path)[0] == '/')
                return 0;
        cwd = getcwd(NULL, 0);
        if (!cwd)
                return -errno;
        if (asprintf(&abs, "%s/%s", cwd, *path) < 0)
                return -(errno = ENOMEM);
        free(*path);
        *path = abs;
        return 0;
}

/* jansson's allocator: the same malloc, but every block is wiped when jansson frees it, so the
 * passwords and tokens parsed from requests or put in replies do not linger in freed memory.
 * malloc_usable_size() keeps blocks freeable with plain free() (json_dumps() results). */
static void json_free_wiped(void *p) {
        if (p) {
                explicit_bzero(p, malloc_usable_size(p));
                free(p);
        }
}

int main(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_LOG_LEVEL, ARG_TEST_CLOCK, ARG_CHECK_CONFIG, ARG_MIGRATE_STORE };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "state-dir", required_argument, NULL, 's' },
                { "socket", required_argument, NULL, 'S' },
                { "foreground", no_argument, NULL, 'f' },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "test-clock", no_argument, NULL, ARG_TEST_CLOCK },   /* not in --help: tests only */
                { "check-config", no_argument, NULL, ARG_CHECK_CONFIG },
                { "migrate-store", required_argument, NULL, ARG_MIGRATE_STORE },
                {},
        };
        const char *config_path = NULL, *state_dir = NULL, *socket_path = NULL, *migrate_from = NULL;
        _cleanup_(manager_freep) Manager *m = NULL;
        Config *config = NULL;
        int c, r, log_level = -1;
        bool test_clock = false, check_config = false;

        log_open();
        json_set_alloc_funcs(malloc, json_free_wiped);

        while ((c = getopt_long(argc, argv, "c:s:S:fh", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        config_path = optarg;
                        break;
                case 's':
                        state_dir = optarg;
                        break;
                case 'S':
                        socket_path = optarg;
                        break;
                case 'f':
                        break;
                case ARG_LOG_LEVEL:
                        log_level = parse_log_level(optarg);
                        if (log_level < 0) {
                                log_error("Invalid --log-level '%s': expected err, warning, notice, info or debug.", optarg);
                                return EXIT_FAILURE;
                        }
                        break;
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("idmd %s (protocol %d)\n", IDM_VERSION, IDM_PROTOCOL_VERSION);
                        return EXIT_SUCCESS;
                case ARG_TEST_CLOCK:
                        test_clock = true;
                        break;
                case ARG_CHECK_CONFIG:
                        check_config = true;
                        break;
                case ARG_MIGRATE_STORE:
                        migrate_from = optarg;
                        break;
                default:
                        return EXIT_FAILURE;
                }
        if (optind < argc) {
                log_error("Unexpected argument '%s'. See idmd --help.", argv[optind]);
                return EXIT_FAILURE;
        }
        if (log_level >= 0)
                log_set_max_level(log_level);

        /* The test clock lets an admin move idmd's realtime clock forward: every session and
         * lockout would end early, and records would be dated in the future. It takes two
         * deliberate settings, so that neither a copied command line nor an inherited
         * environment turns it on alone (docs/decisions.md, "The test clock"). */
        if (test_clock) {
                const char *e = getenv("IDMD_TEST_CLOCK");

                if (!e || !streq(e, "1")) {
                        log_error("--test-clock is for tests only and needs IDMD_TEST_CLOCK=1 in the environment; "
                                  "refusing to start.");
                        return EXIT_FAILURE;
                }
                test_clock_enable();
                log_warning("TEST CLOCK: testAdvanceClock may move this idmd's clock forward. "
                            "Never run idmd with --test-clock in production.");
        }

        if (sodium_init() < 0) {
                log_error("Failed to initialise libsodium.");
                return EXIT_FAILURE;
        }

        r = config_new(&config);
        if (r < 0) {
                log_oom();
                return EXIT_FAILURE;
        }
        /* An explicit --config must exist; the default file is optional (embedded defaults). */
        r = config_load(config, config_path ?: IDM_DEFAULT_CONFIG, config_path != NULL);
        if (r < 0) {
                config_free(config);
                log_error("Refusing to start: fix the configuration above.");
                return EXIT_FAILURE;
        }
        if (log_level < 0)
                log_set_max_level(config->log_level);
        /* The command line's paths win, checked like the file's; relative ones would change
         * meaning with the working directory: resolved now. */
        const struct {
                const char *path, *key, *option;
        } given[] = {
                { state_dir, "state_dir", "--state-dir" },
                { socket_path, "socket_path", "--socket" },
        };
        for (size_t i = 0; i < ELEMENTSOF(given); i++) {
                _cleanup_free_ char *path = NULL;

                if (!given[i].path)
                        continue;
                path = strdup(given[i].path);
                if (!path || make_absolute(&path) < 0) {
                        config_free(config);
                        log_error_errno(path ? errno : ENOMEM, "Failed to resolve %s: %m", given[i].option);
                        return EXIT_FAILURE;
                }
                if (config_set(config, "daemon", given[i].key, path, given[i].option) < 0) {
                        config_free(config);
                        return EXIT_FAILURE;
                }
        }
        if (make_absolute(&config->state_dir) < 0 || make_absolute(&config->socket_path) < 0) {
                config_free(config);
                log_error_errno(errno, "Failed to resolve a relative path: %m");
                return EXIT_FAILURE;
        }
        if (migrate_from) {
                r = migrate_store(config, migrate_from);
                config_free(config);
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        }
        if (check_config) {
                /* What idmd would run with, and where each value came from; load and verify
                 * reported the problems already. */
                r = config_dump_origins(config, stdout);
                if (r < 0) {
                        config_free(config);
                        log_error_errno(r, "Failed to write the configuration: %m");
                        return EXIT_FAILURE;
                }
                /* A store in PostgreSQL: connect, and say what is there (nothing is changed). */
                if (streq(config->store_backend, "postgresql"))
                        r = store_pg_check(config->store_connection, config->store_timeout_usec, stdout);
                config_free(config);
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        }

        r = manager_new(config, &m);
        if (r < 0) {
                log_error_errno(r, "Failed to set up: %m");
                return EXIT_FAILURE;
        }
        m->config_path = strdup(config_path ?: IDM_DEFAULT_CONFIG);
        if (!m->config_path) {
                log_oom();
                return EXIT_FAILURE;
        }
        m->config_required = config_path != NULL;
        m->log_level_forced = log_level >= 0;
        r = manager_startup(m);
        if (r < 0)
                return EXIT_FAILURE;
        r = manager_run(m);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
