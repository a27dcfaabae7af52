/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target "rpc": whole request lines (or several, or a batch) through idmd as a client sends
 * them: connection framing (connection.c), the JSON-RPC envelope, param tables and roles
 * (rpc.c), every method's handler (methods/), the worker pool and the store, with a real
 * Manager (manager.c) started once per process on a temporary state directory with cheap Argon2
 * and generous rate limits, and the test clock on (testAdvanceClock is a method too).
 *
 * No hook in idmd was needed: each input is one connection to the manager's own listening
 * socket, accepted by its own code; its Peer (connection.h, public) is then rewritten to pick the
 * caller's role by the first input byte: even (e.g. '0'), root, an administrator; odd (e.g.
 * '1'), uid 65534, anyone. The rest is sent, the write side shut down, and the event loop run
 * until idmd has answered and closed, or 5 seconds (password hashing runs on worker threads).
 * Every reply line must be a JSON-RPC response (or batch of them).
 *
 * The same manager also serves systemd's user database ([userdb] socket, userdb.h) for the
 * fixture's publisher, whose customers are all Unix users: with bit 1 of the first byte set (e.g.
 * '2' admin, '3' anyone), the rest goes to that socket instead, as varlink messages (JSON objects
 * ended by NUL), and every reply must be a varlink reply object ended by NUL. The userdb needs
 * the publisher's id in its configuration, so the manager is started, the fixture made, and the
 * manager started again on the same state with the userdb on.
 *
 * Identifiers and tokens are random, so that an input can reach past "not found" and "invalid
 * token" each store starts with a fixture made through the same path: a publisher (with every
 * URL set), its offer OFFER1 and a registered customer jane@example.com (password
 * "Tr0ub4dor&3x"). In an input, @PUB@, @PTOK@, @CUST@, @JWT@, @RTOK@ and @CTOK@ stand for its
 * publisherId, publisherToken, customerId, jwt, refreshToken and customerToken. The store is
 * thrown away and made again every RESET_EVERY inputs, so that it stays small and an input sees
 * mostly the fixture; when replaying a corpus, before every input, so that each file gives the
 * same result alone as in the suite.
 *
 * The fuzz process runs as root and the backup method writes a directory wherever it is told:
 * every backup call (found by parsing each line more leniently than idmd does) gets its path
 * replaced by one in the temporary directory before the line is sent.
 * Corpus: tests/fuzz/rpc/.
 */
#include <errno.h>
#include <jansson.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz.h"
#include "idmd/config.h"
#include "idmd/connection.h"
#include "idmd/log.h"
#include "idmd/manager.h"

#define RESET_EVERY 64u       /* inputs per store when fuzzing; replay.c: 1 */
#define INPUT_USEC (5u * 1000000u)      /* bound on one input's exchange */
#define REPLY_MAX (4u * 1024u * 1024u)  /* replies kept for the check; more are read and dropped */

static const char config_text[] =
        "[limits]\n"
        "max_line = 64K\n"
        "max_connections_per_uid = 1000\n"
        "[store]\n"
        "map_size_initial = 1M\n"
        "map_size_max = 64M\n"
        "[passwords]\n"
        "argon2_opslimit = 1\n"
        "argon2_memlimit = 8K\n"
        "workers = 1\n"
        "[mail]\n"
        "mail_command = /bin/sh -c cat>/dev/null\n"
        "from = idm@example.com\n"
        "[ratelimit.default]\nrate = 1000000\nburst = 1000000\nconcurrency = 100000\n"
        "[ratelimit.login]\nrate = 1000000\nburst = 1000000\nconcurrency = 100000\n"
        "[ratelimit.registration]\nrate = 1000000\nburst = 1000000\nconcurrency = 100000\n"
        "[ratelimit.password_reset]\nrate = 1000000\nburst = 1000000\nconcurrency = 100000\n";

static Manager *manager;
static char state_root[4096];
static unsigned inputs;

/* The fixture's identifiers and tokens, by placeholder. */
enum { FIX_PUB, FIX_PTOK, FIX_CUST, FIX_JWT, FIX_RTOK, FIX_CTOK, _FIX_MAX };
static const char *const fixture_names[_FIX_MAX] = { "@PUB@", "@PTOK@", "@CUST@", "@JWT@", "@RTOK@", "@CTOK@" };
static char *fixture[_FIX_MAX];

static void exchange(bool admin, bool userdb, const uint8_t *data, size_t size, char **ret_out, size_t *ret_len);

/* The first reply's result member key, as a new string. */
static char *reply_get(const char *out, size_t len, const char *key) {
        json_t *reply = json_loadb(out, len, JSON_DISABLE_EOF_CHECK, NULL);
        const char *v = json_string_value(json_object_get(json_object_get(reply, "result"), key));
        char *copy;

        if (!v) {
                fprintf(stderr, "fixture: no %s in %.*s\n", key, (int) len, out);
                abort();
        }
        copy = strdup(v);
        if (!copy)
                abort();
        json_decref(reply);
        return copy;
}

static void fixture_request(const char *line, char **ret_out, size_t *ret_len) {
        exchange(true, false, (const uint8_t *) line, strlen(line), ret_out, ret_len);
}

static void fixture_setup(void) {
        char *out, *line;
        size_t len;

        fixture_request("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"createPublisher\",\"params\":{\"name\":\"Fuzz\","
                        "\"allowedRedirectUris\":[\"https://app.example/cb\"],\"resetUrl\":\"https://app.example/reset\","
                        "\"remoteAuthUrl\":\"https://app.example/remote\",\"ssoUrl\":\"https://app.example/sso\","
                        "\"deviceVerificationUrl\":\"https://app.example/device\",\"resetMode\":\"both\"}}\n",
                        &out, &len);
        fixture[FIX_PUB] = reply_get(out, len, "publisherId");
        fixture[FIX_PTOK] = reply_get(out, len, "publisherToken");
        free(out);

        if (asprintf(&line, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"addOffer\",\"params\":{\"publisherToken\":\"%s\","
                     "\"offerId\":\"OFFER1\",\"title\":\"Fuzz offer\"}}\n", fixture[FIX_PTOK]) < 0)
                abort();
        fixture_request(line, &out, &len);
        free(line);
        free(reply_get(out, len, "offerId"));  /* aborts unless it worked */
        free(out);

        fixture_request("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"registerCustomer\",\"params\":{"
                        "\"email\":\"jane@example.com\",\"password\":\"Tr0ub4dor&3x\",\"offerId\":\"OFFER1\"}}\n",
                        &out, &len);
        fixture[FIX_CUST] = reply_get(out, len, "customerId");
        fixture[FIX_JWT] = reply_get(out, len, "jwt");
        fixture[FIX_RTOK] = reply_get(out, len, "refreshToken");
        fixture[FIX_CTOK] = reply_get(out, len, "customerToken");
        free(out);

        /* Every customer of the publisher a Unix user, for the userdb socket. */
        if (asprintf(&line, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"updatePublisher\",\"params\":{"
                     "\"publisherId\":\"%s\",\"unixUsers\":\"all\"}}\n", fixture[FIX_PUB]) < 0)
                abort();
        fixture_request(line, &out, &len);
        free(line);
        free(reply_get(out, len, "publisherId"));
        free(out);
}

/* The input with the placeholders replaced, as a new buffer. */
static uint8_t *expand(const uint8_t *data, size_t size, size_t *ret_size) {
        size_t alloc = size + 1, len = 0;
        uint8_t *buf = malloc(alloc);

        if (!buf)
                abort();
        for (size_t i = 0; i < size;) {
                const char *with = NULL;
                size_t skip = 1, add;

                if (data[i] == '@')
                        for (size_t k = 0; k < _FIX_MAX; k++)
                                if (size - i >= strlen(fixture_names[k]) &&
                                    memcmp(data + i, fixture_names[k], strlen(fixture_names[k])) == 0) {
                                        with = fixture[k];
                                        skip = strlen(fixture_names[k]);
                                        break;
                                }
                add = with ? strlen(with) : 1;
                if (len + add >= alloc) {
                        alloc = (len + add) * 2;
                        buf = realloc(buf, alloc);
                        if (!buf)
                                abort();
                }
                if (with)
                        memcpy(buf + len, with, add);
                else
                        buf[len] = data[i];
                len += add;
                i += skip;
        }
        *ret_size = len;
        return buf;
}

static bool call_redirect_backup(json_t *call) {
        json_t *method = json_object_get(call, "method");
        char path[4200];

        if (!json_is_string(method) || json_string_length(method) != strlen("backup") ||
            memcmp(json_string_value(method), "backup", strlen("backup")) != 0)
                return false;
        (void) snprintf(path, sizeof path, "%s/backup", state_root);
        if (json_object_set_new(call, "params", json_pack("{s:s}", "path", path)) < 0)
                abort();
        return true;
}

/* A line that holds a backup call (alone or in a batch), re-serialised with the call's path
 * replaced; NULL for any other line. idmd parses lines with JSON_REJECT_DUPLICATES and without
 * JSON_ALLOW_NUL: whatever it accepts parses here too. */
static char *line_redirect_backup(const uint8_t *line, size_t len) {
        json_t *j = json_loadb((const char *) line, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        bool changed = false;
        char *text = NULL;

        if (json_is_object(j))
                changed = call_redirect_backup(j);
        else if (json_is_array(j))
                for (size_t i = 0; i < json_array_size(j); i++)
                        changed = call_redirect_backup(json_array_get(j, i)) || changed;
        if (changed) {
                text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
                if (!text)
                        abort();
        }
        json_decref(j);
        return text;
}

/* data with every backup call redirected, as a new buffer. */
static uint8_t *redirect_backups(const uint8_t *data, size_t size, size_t *ret_size) {
        uint8_t *buf = malloc(size + 1);
        size_t len = 0;

        if (!buf)
                abort();
        for (size_t start = 0; start < size;) {
                const uint8_t *nl = memchr(data + start, '\n', size - start);
                size_t line_len = nl ? (size_t) (nl - data) - start : size - start;
                char *text = line_redirect_backup(data + start, line_len);
                const uint8_t *copy = text ? (const uint8_t *) text : data + start;
                size_t copy_len = text ? strlen(text) : line_len;

                buf = realloc(buf, len + copy_len + 2);
                if (!buf)
                        abort();
                memcpy(buf + len, copy, copy_len);
                len += copy_len;
                if (nl)
                        buf[len++] = '\n';
                free(text);
                start += line_len + (nl ? 1 : 0);
        }
        *ret_size = len;
        return buf;
}

/* Starts the manager on state_root; with userdb_publisher, with the userdb socket on for it. */
static void manager_start(const char *userdb_publisher) {
        _cleanup_(config_freep) Config *config = NULL;
        char path[4200];
        FILE *f;

        if (config_new(&config) < 0)
                abort();
        f = fmemopen((void *) config_text, strlen(config_text), "r");
        if (!f || config_load_stream(config, f, "fuzz-rpc") < 0)
                abort();
        (void) fclose(f);
        (void) snprintf(path, sizeof path, "%s/state", state_root);
        if (config_set(config, "daemon", "state_dir", path, "fuzz") < 0)
                abort();
        (void) snprintf(path, sizeof path, "%s/socket", state_root);
        if (config_set(config, "daemon", "socket_path", path, "fuzz") < 0)
                abort();
        if (userdb_publisher) {
                (void) snprintf(path, sizeof path, "%s/io.idm", state_root);
                if (config_set(config, "userdb", "socket", path, "fuzz") < 0 ||
                    config_set(config, "userdb", "publisher", userdb_publisher, "fuzz") < 0 ||
                    config_set(config, "userdb", "group", "idm-customers", "fuzz") < 0 ||
                    config_set(config, "userdb", "unix_enumerate", "yes", "fuzz") < 0)
                        abort();
        }
        if (manager_new(TAKE_PTR(config), &manager) < 0 || manager_startup(manager) < 0)
                abort();
}

static void manager_setup(void) {
        fuzz_mkdtemp("rpc", state_root, sizeof state_root);
        manager_start(NULL);
        fixture_setup();
        manager = manager_free(manager);
        manager_start(fixture[FIX_PUB]);
}

static void manager_teardown(void) {
        manager = manager_free(manager);
        for (size_t k = 0; k < _FIX_MAX; k++) {
                free(fixture[k]);
                fixture[k] = NULL;
        }
        fuzz_rm_rf(state_root);
}

/* At exit (libFuzzer's -max_total_time, the replay's end) the last store goes too. idmd itself is
 * left running: it is reachable from manager, so LeakSanitizer does not count it. */
static void remove_state_root(void) {
        if (state_root[0])
                fuzz_rm_rf(state_root);
}

static void setup(void) {
        if (atexit(remove_state_root) != 0)
                abort();
        log_set_max_level(LOG_LEVEL_ERR - 1);   /* the fuzzer's inputs make idmd log a lot */
        if (sodium_init() < 0)
                abort();
        test_clock_enable();
        manager_setup();
}

/* A client socket accepted by the manager (on the userdb socket, or idmd's): its Connection, with
 * the role the input asks for. */
static Connection *peer_connect(bool admin, bool userdb, int *ret_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        uint64_t accepted = manager->connections_accepted;
        Connection *c;
        int fd;

        (void) snprintf(sa.sun_path, sizeof sa.sun_path, "%s",
                        userdb ? manager->config->userdb_socket : manager->config->socket_path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                abort();
        for (unsigned i = 0; manager->connections_accepted == accepted; i++) {
                if (i > 1000 || sd_event_run(manager->event, 10000) < 0)
                        abort();
        }
        c = manager->connections;       /* new connections go first */
        if (!admin)
                c->peer = (Peer) { .uid = 65534, .gid = 65534, .pid = c->peer.pid, .admin = false };
        *ret_fd = fd;
        return c;
}

/* Every line idmd sent is a JSON-RPC 2.0 response (or a batch of them). */
static void check_replies(const char *out, size_t len) {
        const char *p = out, *end = out + len;

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                json_t *reply, *items;
                size_t i;

                if (!nl)
                        break;  /* cut off by REPLY_MAX, or idmd closed mid-line (checked below) */
                reply = json_loadb(p, (size_t) (nl - p), 0, NULL);
                items = json_is_array(reply) ? reply : NULL;
                for (i = 0; i < (items ? json_array_size(items) : 1); i++) {
                        json_t *r = items ? json_array_get(items, i) : reply;
                        if (!json_is_object(r) || !json_object_get(r, "id") ||
                            !streq_ptr(json_string_value(json_object_get(r, "jsonrpc")), "2.0") ||
                            !json_object_get(r, "result") == !json_object_get(r, "error")) {
                                fprintf(stderr, "not a JSON-RPC response: %.*s\n", (int) (nl - p), p);
                                abort();
                        }
                }
                if (items && json_array_size(items) == 0)
                        abort();
                json_decref(reply);
                p = nl + 1;
        }
        if (len < REPLY_MAX && p != end) {
                fprintf(stderr, "reply without a newline: %.*s\n", (int) (end - p), p);
                abort();
        }
}

/* Every message on the userdb socket is a varlink reply: a JSON object with "parameters" or an
 * "error", ended by NUL. */
static void check_varlink_replies(const char *out, size_t len) {
        const char *p = out, *end = out + len;

        while (p < end) {
                const char *nul = memchr(p, '\0', (size_t) (end - p));
                json_t *reply;

                if (!nul)
                        break;
                reply = json_loadb(p, (size_t) (nul - p), 0, NULL);
                /* A result has its parameters; an error its name, and maybe parameters too. */
                if (!json_is_object(reply) ||
                    (!json_is_string(json_object_get(reply, "error")) &&
                     !json_is_object(json_object_get(reply, "parameters")))) {
                        fprintf(stderr, "not a varlink reply: %.*s\n", (int) (nul - p), p);
                        abort();
                }
                json_decref(reply);
                p = nul + 1;
        }
        if (len < REPLY_MAX && p != end) {
                fprintf(stderr, "varlink reply without its NUL: %.*s\n", (int) (end - p), p);
                abort();
        }
}

/* Sends data on a new connection of the given role, shuts down the write side, and returns what
 * idmd sent until it closed (at most REPLY_MAX bytes are kept). */
static void exchange(bool admin, bool userdb, const uint8_t *data, size_t size, char **ret_out, size_t *ret_len) {
        uint64_t deadline;
        size_t sent = 0, out_len = 0;
        bool shut = false;
        char *out;
        int fd;

        out = malloc(REPLY_MAX);
        if (!out)
                abort();
        (void) peer_connect(admin, userdb, &fd);

        deadline = now_monotonic_usec() + INPUT_USEC;
        for (;;) {
                char scratch[4096];
                ssize_t n;

                if (sent < size) {
                        n = send(fd, data + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (n > 0)
                                sent += (size_t) n;
                        else if (n < 0 && errno != EAGAIN && errno != EINTR)
                                sent = size;    /* idmd closed: its refusal is read below */
                }
                if (sent == size && !shut) {
                        (void) shutdown(fd, SHUT_WR);
                        shut = true;
                }
                n = recv(fd, out_len < REPLY_MAX ? out + out_len : scratch,
                         out_len < REPLY_MAX ? REPLY_MAX - out_len : sizeof scratch, MSG_DONTWAIT);
                if (n == 0)
                        break;
                if (n < 0 && errno != EAGAIN && errno != EINTR)
                        break;
                if (n > 0 && out_len < REPLY_MAX)
                        out_len += (size_t) n;
                if (now_monotonic_usec() > deadline)
                        break;
                if (sd_event_run(manager->event, 1000) < 0)
                        abort();
        }
        safe_close(fd);
        /* Let idmd see the hang-up and drop the connection (and any call still in flight). */
        for (unsigned i = 0; i < 1000 && manager->n_connections > 0; i++)
                if (sd_event_run(manager->event, 1000) < 0)
                        abort();
        if (manager->n_connections > 0) {
                fprintf(stderr, "idmd kept %u connection(s) after the client closed\n", manager->n_connections);
                abort();
        }
        *ret_out = out;
        *ret_len = out_len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint8_t *expanded, *input;
        size_t expanded_size, input_size, out_len;
        char *out;

        if (size == 0)
                return 0;
        if (!manager)
                setup();
        else if (fuzz_is_replay() || ++inputs % RESET_EVERY == 0) {
                manager_teardown();
                manager_setup();
        }

        expanded = expand(data + 1, size - 1, &expanded_size);
        input = redirect_backups(expanded, expanded_size, &input_size);
        free(expanded);
        exchange(!(data[0] & 1), data[0] & 2, input, input_size, &out, &out_len);
        if (data[0] & 2)
                check_varlink_replies(out, out_len);
        else
                check_replies(out, out_len);
        free(out);
        free(input);
        return 0;
}
