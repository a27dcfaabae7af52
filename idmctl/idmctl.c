/* SPDX-License-Identifier: MIT */
/*
 * idmctl: the operator's command line client of idmd's socket API.
 *
 * This file holds the command line (global and verb options), the command table and the
 * dispatch, plus the helpers verbs share: calling the daemon and reporting failures, naming the
 * publisher a command acts for, and reading the JSON list a "set" command sends. The
 * verbs themselves live in verb-<family>.c. To add a command (customer show|unlock|list,
 * auth-test, ...): write its handler in a verb-<family>.c, declare it in idmctl.h, add a row to
 * verbs[] below, a section to docs/man/idmctl.1 and its words to idmctl.bash-completion.
 *
 * Exit status: 0 success, 1 failure (daemon unreachable, JSON-RPC error, bad reply), 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config-build.h"
#include "format.h"
#include "idm/json-util.h"
#include "idm/protocol.h"
#include "idmctl.h"

#define PROGRAM "idmctl"
#define TIMEOUT_DEFAULT_SEC 30.0
#define TIMEOUT_MAX_SEC (7.0 * 86400.0)
#define REQUEST_MAX (16u * 1024u * 1024u)       /* the largest max_line idmd.conf(5) allows */

static const Verb verbs[] = {
        { "status", NULL, 0, 0, 0, verb_status, "",
          "Show the daemon's version, uptime, store and keys" },
        { "publisher", "create", 1, 1, VERB_OPT_PUBLISHER_SETTINGS, verb_publisher_create,
          "NAME [PUBLISHER OPTIONS]", "Create a publisher; shows its token once" },
        { "publisher", "list", 0, 0, 0, verb_publisher_list, "", "List publishers" },
        { "publisher", "show", 1, 1, 0, verb_publisher_show, "ID", "Show one publisher's settings" },
        { "publisher", "update", 1, 1, VERB_OPT_PUBLISHER_SETTINGS | VERB_OPT_NAME, verb_publisher_update,
          "ID [--name NAME] [PUBLISHER OPTIONS]", "Change a publisher's settings" },
        { "publisher", "rotate-token", 1, 1, 0, verb_publisher_rotate_token, "ID",
          "Replace a publisher's token" },
        { "offer", "add", 2, 2, VERB_OPT_TITLE, verb_offer_add, "PUBLISHER_ID OFFER_ID [--title TITLE]",
          "Add an offer to a publisher" },
        { "offer", "list", 1, 1, 0, verb_offer_list, "PUBLISHER_ID", "List a publisher's offers" },
        { "offer", "remove", 2, 2, 0, verb_offer_remove, "PUBLISHER_ID OFFER_ID", "Remove an offer" },
        { "customer", "list", 0, 1, VERB_OPT_PUBLISHER, verb_customer_list, "[QUERY] --publisher ID",
          "List a publisher's customers (e-mail prefix QUERY)" },
        { "customer", "show", 1, 1, VERB_OPT_PUBLISHER, verb_customer_show, "EMAIL|CUSTOMER_ID --publisher ID",
          "Show a customer's profile, failed logins and lockout" },
        { "customer", "export", 1, 1, VERB_OPT_PUBLISHER, verb_customer_export, "EMAIL|CUSTOMER_ID --publisher ID",
          "Print everything stored about a customer, as JSON" },
        { "customer", "delete", 1, 1, VERB_OPT_PUBLISHER, verb_customer_delete, "EMAIL|CUSTOMER_ID --publisher ID",
          "Delete a customer and every record it left behind" },
        { "customer", "disable", 1, 1, VERB_OPT_PUBLISHER, verb_customer_disable, "EMAIL|CUSTOMER_ID --publisher ID",
          "Disable a customer (no login; its sessions end)" },
        { "customer", "enable", 1, 1, VERB_OPT_PUBLISHER, verb_customer_enable, "EMAIL|CUSTOMER_ID --publisher ID",
          "Enable a disabled customer" },
        { "customer", "unix", 2, 2, VERB_OPT_PUBLISHER, verb_customer_unix,
          "enable|disable EMAIL|CUSTOMER_ID --publisher ID",
          "Make a customer a Unix user (a uid, kept for good) or not" },
        { "customer", "unlock", 1, 1, VERB_OPT_PUBLISHER, verb_customer_unlock, "EMAIL|CUSTOMER_ID --publisher ID",
          "Clear a customer's lockout and failed logins" },
        { "customer", "reset-password", 1, 1, VERB_OPT_PUBLISHER, verb_customer_reset_password,
          "EMAIL --publisher ID", "Mail the customer a password reset link or code" },
        { "consents", "show", 0, 0, VERB_OPT_PUBLISHER, verb_consents_show, "--publisher ID",
          "Show a publisher's consent definitions" },
        { "consents", "set", 0, 0, VERB_OPT_PUBLISHER | VERB_OPT_FILE, verb_consents_set,
          "--file FILE --publisher ID", "Replace a publisher's consents with those in FILE (- reads stdin)" },
        { "capture", "show", 0, 0, VERB_OPT_PUBLISHER, verb_capture_show, "--publisher ID",
          "Show a publisher's capture settings (profile questions)" },
        { "capture", "set", 0, 0, VERB_OPT_PUBLISHER | VERB_OPT_FILE, verb_capture_set,
          "--file FILE --publisher ID", "Replace a publisher's capture settings with those in FILE (- reads stdin)" },
        { "outbox", "list", 0, 0, 0, verb_outbox_list, "", "List the mail waiting in the outbox (not its text)" },
        { "outbox", "retry", 0, 1, 0, verb_outbox_retry, "[ID]", "Make one queued message (or all) due now" },
        { "outbox", "drop", 1, 1, 0, verb_outbox_drop, "ID", "Drop a queued message undelivered" },
        { "auth-test", NULL, 2, 2, 0, verb_auth_test, "SERVICE USER",
          "Run a PAM login for USER through SERVICE's stack and explain each step" },
        { "backup", NULL, 1, 1, 0, verb_backup, "DIR",
          "Have idmd write a copy of its store and signing keys into the new directory DIR" },
        { "migrate-store", NULL, 1, 2, 0, verb_migrate_store, "DIR [CONFIG]",
          "Copy a stopped idmd's LMDB store in DIR and its signing keys into the PostgreSQL store" },
        { "metrics", NULL, 0, 0, 0, verb_metrics, "",
          "Print the daemon's statistics as OpenMetrics text (for node_exporter's textfile collector)" },
        { "device", "approve", 1, 1, VERB_OPT_PUBLISHER | VERB_OPT_CUSTOMER, verb_device_approve,
          "CODE --customer EMAIL|CUSTOMER_ID --publisher ID", "Approve a device login on a customer's behalf" },
        { "device", "deny", 1, 1, VERB_OPT_PUBLISHER | VERB_OPT_CUSTOMER, verb_device_deny,
          "CODE --customer EMAIL|CUSTOMER_ID --publisher ID", "Deny a device login on a customer's behalf" },
        { "call", NULL, 0, 2, VERB_OPT_LIST, verb_call, "METHOD [PARAMS|-] | --list",
          "Call any method with JSON params (- reads stdin); --list names the methods" },
};

/* --- reporting --- */

/* "idmctl: <message>\n" on stderr, after what is pending on stdout. */
static void log_message(const char *format, va_list ap) __attribute__((format(printf, 1, 0)));
static void log_message(const char *format, va_list ap) {
        (void) fflush(stdout);
        (void) fputs(PROGRAM ": ", stderr);
        (void) vfprintf(stderr, format, ap);
        (void) fputc('\n', stderr);
}

int log_error_errno(int error, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        log_message(format, ap);
        va_end(ap);
        return error > 0 ? -error : error;
}

int log_oom(void) {
        return log_error_errno(ENOMEM, "out of memory");
}

static void verb_print_usage(const Verb *v, FILE *f) {
        (void) fprintf(f, "Usage: " PROGRAM " [OPTIONS] %s%s%s%s%s\n", v->name, v->sub ? " " : "", strempty(v->sub),
                       v->usage[0] ? " " : "", v->usage);
}

int usage_error(Context *ctx, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        log_message(format, ap);
        va_end(ap);
        if (ctx && ctx->verb)
                verb_print_usage(ctx->verb, stderr);
        else
                (void) fputs("Try '" PROGRAM " --help' for more information.\n", stderr);
        return EXIT_USAGE;
}

/* One line for a JSON-RPC error object:
 *   idmctl: <message> (<reason>[, param '<p>'][, field '<f>'][, retry after N s]) */
static void log_rpc_error(const json_t *error) {
        const json_t *data = json_object_get(error, "data");
        const json_t *retry = json_object_get(data, "retryAfter") ?: json_object_get(error, "retryAfter");
        const json_t *index = json_object_get(data, "index");
        _cleanup_free_ char *message = NULL, *reason = NULL, *param = NULL, *field = NULL;
        char code[32];

        message = text_sanitize(json_object_get_string(error, "message") ?: "error");
        (void) snprintf(code, sizeof(code), "code %" JSON_INTEGER_FORMAT,
                        json_integer_value(json_object_get(error, "code")));
        reason = text_sanitize(json_object_get_string(data, "reason") ?: code);
        param = text_sanitize(json_object_get_string(data, "param"));
        field = text_sanitize(json_object_get_string(data, "field"));
        if (!message || !reason || !param || !field) {
                (void) log_oom();
                return;
        }

        (void) fflush(stdout);
        (void) fprintf(stderr, PROGRAM ": %s (%s", message, reason);
        if (param[0])
                (void) fprintf(stderr, ", param '%s'", param);
        if (field[0]) {
                (void) fprintf(stderr, ", field '%s", field);
                if (json_is_integer(index))
                        (void) fprintf(stderr, "[%" JSON_INTEGER_FORMAT "]", json_integer_value(index));
                (void) fputc('\'', stderr);
        }
        if (json_is_integer(retry))
                (void) fprintf(stderr, ", retry after %" JSON_INTEGER_FORMAT " s", json_integer_value(retry));
        else if (json_is_real(retry))
                (void) fprintf(stderr, ", retry after %g s", json_real_value(retry));
        (void) fputs(")\n", stderr);
}

static int ctx_connect(Context *ctx) {
        _cleanup_free_ char *absolute = NULL;
        const char *path = ctx->socket_path;
        int r;

        /* idm-client checks the path from "/" down: a relative --socket is taken from here. */
        if (path[0] != '/' && path[0] != '\0') {
                _cleanup_free_ char *cwd = getcwd(NULL, 0);

                if (!cwd && errno == ENOMEM)
                        return log_oom();
                if (!cwd)
                        return log_error_errno(errno, "cannot connect to %s: cannot get the current directory: %s",
                                               path, strerror(errno));
                if (asprintf(&absolute, "%s/%s", cwd, path) < 0)
                        return log_oom();
                path = absolute;
        }

        /* The request size is idmd's to judge (its max_line may be raised up to 16 MiB). An
         * operator may run idmd as themselves: their own sockets and directories are trusted
         * besides root's and idmd's user's. */
        ctx->client.max_request = REQUEST_MAX;
        ctx->client.trust_caller = true;
        r = idm_client_connect(&ctx->client, path, IDM_CLIENT_DAEMON_USER, ctx->timeout_usec, ctx->timeout_usec);
        switch (r) {
        case 0:
                return 0;
        case -ENOMEM:
                return log_oom();
        case -EPERM:
        case -ENOTSOCK:
        case -ELOOP:
        case -ENOTDIR:
                /* Refused by the checks: idm-client's reason names the path and the culprit. */
                return log_error_errno(r, "%s", ctx->client.error);
        default:
                return log_error_errno(r, "cannot connect to %s: %s", ctx->socket_path, strerror(-r));
        }
}

int ctx_call(Context *ctx, const char *method, json_t *params, json_t **ret_result) {
        _cleanup_(json_decrefp) json_t *error = NULL;
        int r;

        if (ctx->client.fd < 0) {
                r = ctx_connect(ctx);
                if (r < 0)
                        return r;
        }

        r = idm_client_call_full(&ctx->client, method, params, ret_result, NULL, &error);
        switch (r) {
        case 0:
                return 0;
        case -EREMOTEIO:
                log_rpc_error(error);
                return r;
        case -EINVAL:
                return log_error_errno(r, "%s: %s", method, ctx->client.error);
        case -ETIMEDOUT:
                return log_error_errno(r, "%s: no reply from %s within %.3g s", method, ctx->socket_path,
                                       (double) ctx->timeout_usec / 1e6);
        case -ECONNRESET:
                return log_error_errno(r, "%s: %s closed the connection without replying", method,
                                       ctx->socket_path);
        case -EMSGSIZE:
                return log_error_errno(r, "%s: the reply is larger than %u bytes", method, IDM_MAX_REPLY);
        case -EBADMSG:
                return log_error_errno(r, "%s: invalid reply (not JSON-RPC 2.0 or for another request)", method);
        case -ENOMEM:
                return log_oom();
        default:
                return log_error_errno(r, "%s: talking to %s: %s", method, ctx->socket_path, strerror(-r));
        }
}

int ctx_call_or_print_json(Context *ctx, const char *method, json_t *params, json_t **ret_result) {
        _cleanup_(json_decrefp) json_t *result = NULL;
        int r;

        r = ctx_call(ctx, method, params, &result);
        if (r < 0)
                return r;
        if (ctx->json && print_json(result) < 0)
                return log_oom();
        *ret_result = TAKE_PTR(result);
        return ctx->json ? 0 : 1;
}

int read_full(int fd, size_t max, char **ret, size_t *ret_len) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, size = 0;

        for (;;) {
                ssize_t n;

                if (size - len < 4096) {
                        size_t nsize = size ? size * 2 : 16384;
                        char *b;

                        if (nsize > max + 2)
                                nsize = max + 2;
                        if (nsize <= len + 1)
                                return -EFBIG;
                        /* Not realloc(): the bytes may be a password, wipe the old block. */
                        b = malloc(nsize);
                        if (!b)
                                return -ENOMEM;
                        if (buf) {
                                memcpy(b, buf, len);
                                explicit_bzero(buf, size);
                                free(buf);
                        }
                        buf = b;
                        size = nsize;
                }
                n = read(fd, buf + len, size - len - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
                if (len > max)
                        return -EFBIG;
        }
        if (!buf) {
                buf = strdup("");
                if (!buf)
                        return -ENOMEM;
        }
        buf[len] = 0;
        *ret_len = len;
        *ret = TAKE_PTR(buf);
        return 0;
}

/* --- a publisher's lists: consents and capture settings --- */

int ctx_publisher_params(Context *ctx, json_t **ret) {
        _cleanup_(json_decrefp) json_t *params = NULL;

        if (!ctx->publisher_id && !ctx->publisher_token)
                return usage_error(ctx, "--publisher ID or --publisher-token-file FILE is required");
        params = json_object();
        if (!params)
                return log_oom();
        if (ctx->publisher_id && json_object_set_new(params, "publisherId", json_string(ctx->publisher_id)) < 0)
                return log_oom();
        if (ctx->publisher_token &&
            json_object_set_new(params, "publisherToken", json_string(ctx->publisher_token)) < 0)
                return log_oom();
        *ret = TAKE_PTR(params);
        return 0;
}

int ctx_read_list_file(Context *ctx, const char *member, json_t **ret_array) {
        _cleanup_(json_decrefp) json_t *doc = NULL;
        _cleanup_free_ char *text = NULL, *name = NULL;
        _cleanup_(closep) int fd = -EBADF;
        const char *key;
        json_error_t error;
        json_t *list, *v;
        size_t len = 0;
        int r;

        if (!ctx->file)
                return usage_error(ctx, "--file FILE is required");
        name = text_sanitize(streq(ctx->file, "-") ? "standard input" : ctx->file);
        if (!name)
                return log_oom();

        if (streq(ctx->file, "-"))
                r = read_full(STDIN_FILENO, IDM_MAX_REPLY, &text, &len);
        else {
                fd = open(ctx->file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0)
                        return log_error_errno(errno, "cannot open %s: %s", name, strerror(errno));
                r = read_full(fd, IDM_MAX_REPLY, &text, &len);
        }
        if (r == -EFBIG)
                return log_error_errno(r, "%s is larger than %u bytes", name, IDM_MAX_REPLY);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "cannot read %s: %s", name, strerror(-r));

        /* json_loadb(): a NUL byte is an error with its position, like any other. */
        doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &error);
        if (!doc) {
                _cleanup_free_ char *msg = text_sanitize(error.text);

                return log_error_errno(EINVAL, "cannot parse %s: %s (line %d, column %d)", name, msg ?: "?",
                                       error.line, error.column);
        }

        list = doc;
        if (json_is_object(doc)) {
                json_object_foreach(doc, key, v)
                        if (!streq(key, member)) {
                                _cleanup_free_ char *k = text_sanitize(key);

                                return log_error_errno(EINVAL,
                                                       "%s: unexpected member '%s' (only \"%s\" may be given)",
                                                       name, k ?: "?", member);
                        }
                list = json_object_get(doc, member);
        }
        if (!json_is_array(list))
                return log_error_errno(EINVAL, "%s: expected a JSON array, or an object {\"%s\": [...]}",
                                       name, member);
        *ret_array = json_incref(list);
        return 0;
}

/* ctx_call_or_print_json() for publisher_list_show() and _set(): 0, *ret_result set only when
 * the verb is to print it. */
static int publisher_list_call(Context *ctx, const char *method, json_t *params, json_t **ret_result) {
        _cleanup_(json_decrefp) json_t *result = NULL;
        int r;

        r = ctx_call_or_print_json(ctx, method, params, &result);
        if (r < 0)
                return r;
        if (r > 0)
                *ret_result = TAKE_PTR(result);
        return 0;
}

int publisher_list_show(Context *ctx, const char *method, json_t **ret_result) {
        _cleanup_(json_decrefp) json_t *params = NULL;
        int r;

        r = ctx_publisher_params(ctx, &params);
        if (r != 0)
                return r;
        return publisher_list_call(ctx, method, params, ret_result);
}

int publisher_list_set(Context *ctx, const char *method, const char *member, json_t **ret_result) {
        _cleanup_(json_decrefp) json_t *params = NULL, *list = NULL;
        int r;

        /* The command line first: a usage error before the file is read. */
        r = ctx_publisher_params(ctx, &params);
        if (r != 0)
                return r;
        r = ctx_read_list_file(ctx, member, &list);
        if (r != 0)
                return r;
        if (json_object_set(params, member, list) < 0)
                return log_oom();
        return publisher_list_call(ctx, method, params, ret_result);
}

/* --- command line --- */

static void help(void) {
        size_t width = 0;

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                size_t w = strlen(verbs[i].name) + (verbs[i].sub ? strlen(verbs[i].sub) + 1 : 0) +
                           (verbs[i].usage[0] ? strlen(verbs[i].usage) + 1 : 0);
                if (w > width)
                        width = w;
        }

        (void) printf(PROGRAM " [OPTIONS] COMMAND ...\n\n"
                      "Operate idmd, the idm identity daemon, through its socket.\n\n"
                      "Commands:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                char buf[256];

                (void) snprintf(buf, sizeof(buf), "%s%s%s%s%s", verbs[i].name, verbs[i].sub ? " " : "",
                                strempty(verbs[i].sub), verbs[i].usage[0] ? " " : "", verbs[i].usage);
                (void) printf("  %-*s  %s\n", (int) width, buf, verbs[i].description);
        }
        (void) printf("\nOptions:\n"
                      "  -h --help                  Show this help\n"
                      "     --version               Show the version\n"
                      "     --socket PATH           idmd's socket (default: $IDM_SOCKET, else " IDM_DEFAULT_SOCKET ")\n"
                      "     --json                  Print the daemon's JSON result (indented) instead of text\n"
                      "     --timeout SECONDS       Give up on a reply after this long (default: 30)\n"
                      "\nPublisher options (publisher create, publisher update):\n"
                      "     --name NAME             New display name (update only)\n"
                      "     --redirect-uri URI      Allowed redirect URI; repeat for more; empty clears the list\n"
                      "     --reset-url URL         Password reset page; empty clears it\n"
                      "     --remote-auth-url URL   Remote authentication page; empty clears it\n"
                      "     --sso-url URL           Single sign-on base URL; empty clears it\n"
                      "     --sso-page NAME=PATH    SSO page path; repeat for more; empty clears the map\n"
                      "     --device-verification-url URL\n"
                      "                             Where customers enter device login codes; empty clears it\n"
                      "     --unix-users none|enabled|all\n"
                      "                             Which customers are Unix users (idmd.conf [userdb])\n"
                      "     --unix-shell PATH       Their login shell; empty clears it\n"
                      "\nOffer options (offer add):\n"
                      "     --title TITLE           The offer's title\n"
                      "\nActing for a publisher (customer ..., consents show|set, capture show|set):\n"
                      "     --publisher ID          The publisher the command is about (as an admin)\n"
                      "     --publisher-token-file FILE\n"
                      "                             Act as the publisher whose token is in FILE (mode 600;\n"
                      "                             default: $IDM_PUBLISHER_TOKEN_FILE)\n"
                      "\nOther command options:\n"
                      "     --file FILE             The list to set, as JSON; - reads stdin (consents set, capture set)\n"
                      "     --list                  Print the names of the daemon's methods (call)\n"
                      "     --customer EMAIL|ID     The customer who approves or denies (device approve|deny)\n"
                      "\nSee the idmctl(1) man page for details.\n");
}

/* Help for one command family or command ("idmctl customer --help", "idmctl help customer list"):
 * its usage lines and what they do. An exit status. */
static int help_for(Context *ctx, int argc, char **argv) {
        bool any = false;

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                const Verb *v = &verbs[i];

                if (!streq(v->name, argv[0]) || (argc >= 2 && v->sub && !streq(v->sub, argv[1])))
                        continue;
                if (!any)
                        (void) puts("Usage:");
                any = true;
                (void) printf("  " PROGRAM " [OPTIONS] %s%s%s%s%s\n      %s\n", v->name, v->sub ? " " : "",
                              strempty(v->sub), v->usage[0] ? " " : "", v->usage, v->description);
        }
        if (!any) {
                _cleanup_free_ char *what = text_sanitize(argv[0]);

                if (!what)
                        return log_oom();
                return usage_error(ctx, "unknown command '%s'", what);
        }
        (void) printf("\nSee '" PROGRAM " --help' for the options, and idmctl(1).\n");
        return 0;
}

enum {
        ARG_VERSION = 0x100,
        ARG_SOCKET,
        ARG_JSON,
        ARG_TIMEOUT,
        ARG_NAME,
        ARG_REDIRECT_URI,
        ARG_RESET_URL,
        ARG_REMOTE_AUTH_URL,
        ARG_SSO_URL,
        ARG_SSO_PAGE,
        ARG_DEVICE_VERIFICATION_URL,
        ARG_UNIX_USERS,
        ARG_UNIX_SHELL,
        ARG_CUSTOMER,
        ARG_TITLE,
        ARG_PUBLISHER,
        ARG_PUBLISHER_TOKEN_FILE,
        ARG_FILE,
        ARG_LIST,
};

static const struct option options[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, ARG_VERSION },
        { "socket", required_argument, NULL, ARG_SOCKET },
        { "json", no_argument, NULL, ARG_JSON },
        { "timeout", required_argument, NULL, ARG_TIMEOUT },
        { "name", required_argument, NULL, ARG_NAME },
        { "redirect-uri", required_argument, NULL, ARG_REDIRECT_URI },
        { "reset-url", required_argument, NULL, ARG_RESET_URL },
        { "remote-auth-url", required_argument, NULL, ARG_REMOTE_AUTH_URL },
        { "sso-url", required_argument, NULL, ARG_SSO_URL },
        { "sso-page", required_argument, NULL, ARG_SSO_PAGE },
        { "device-verification-url", required_argument, NULL, ARG_DEVICE_VERIFICATION_URL },
        { "unix-users", required_argument, NULL, ARG_UNIX_USERS },
        { "unix-shell", required_argument, NULL, ARG_UNIX_SHELL },
        { "customer", required_argument, NULL, ARG_CUSTOMER },
        { "title", required_argument, NULL, ARG_TITLE },
        { "publisher", required_argument, NULL, ARG_PUBLISHER },
        { "publisher-token-file", required_argument, NULL, ARG_PUBLISHER_TOKEN_FILE },
        { "file", required_argument, NULL, ARG_FILE },
        { "list", no_argument, NULL, ARG_LIST },
        {}
};

static const char *option_name(int c) {
        for (const struct option *o = options; o->name; o++)
                if (o->val == c)
                        return o->name;
        return "?";
}

static void context_done(Context *ctx) {
        idm_client_close(&ctx->client);
        erase_and_free(ctx->publisher_token);
        ctx->publisher_token = NULL;
        json_decref(ctx->redirect_uris);
        ctx->redirect_uris = NULL;
        json_decref(ctx->sso_pages);
        ctx->sso_pages = NULL;
}

static int parse_timeout(Context *ctx, const char *s) {
        char *end = NULL;
        double d;

        errno = 0;
        d = strtod(s, &end);
        if (errno != 0 || !end || end == s || *end != 0 || !isfinite(d) || d <= 0 || d > TIMEOUT_MAX_SEC)
                return usage_error(ctx, "invalid --timeout '%s': expected seconds, more than 0 and at most %.0f",
                                   s, TIMEOUT_MAX_SEC);
        ctx->timeout_usec = (uint64_t) (d * 1e6);
        if (ctx->timeout_usec == 0)
                ctx->timeout_usec = 1;
        return 0;
}

static int parse_sso_page(Context *ctx, const char *arg) {
        _cleanup_free_ char *name = NULL;
        const char *eq;

        if (!ctx->sso_pages) {
                ctx->sso_pages = json_object();
                if (!ctx->sso_pages)
                        return log_oom();
        }
        if (arg[0] == 0) {      /* --sso-page= clears the map */
                json_object_clear(ctx->sso_pages);
                return 0;
        }
        eq = strchr(arg, '=');
        if (!eq || eq == arg)
                return usage_error(ctx, "invalid --sso-page '%s': expected NAME=PATH", arg);
        name = strndup(arg, (size_t) (eq - arg));
        if (!name)
                return log_oom();
        if (json_object_set_new(ctx->sso_pages, name, json_string(eq + 1)) < 0)
                return log_oom();
        return 0;
}

static int parse_redirect_uri(Context *ctx, const char *arg) {
        if (!ctx->redirect_uris) {
                ctx->redirect_uris = json_array();
                if (!ctx->redirect_uris)
                        return log_oom();
        }
        if (arg[0] == 0) {      /* --redirect-uri= clears the list */
                json_array_clear(ctx->redirect_uris);
                return 0;
        }
        if (json_array_append_new(ctx->redirect_uris, json_string(arg)) < 0)
                return log_oom();
        return 0;
}

static int parse_socket(Context *ctx, const char *arg) {
        if (arg[0] == 0)
                return usage_error(ctx, "--socket needs a path");
        ctx->socket_path = arg;
        return 0;
}

/* The publisher's token from a file (its first line): a publisher's operator runs the customer
 * commands as the publisher, without being root. The file must not be readable by others. */
static void fclosep(FILE **f) {
        if (*f)
                (void) fclose(*f);
}

static int parse_publisher_token_file(Context *ctx, const char *arg) {
        _cleanup_(fclosep) FILE *f = NULL;
        char line[IDM_PUBLISHER_TOKEN_MAX + 2];
        struct stat st;
        size_t n;

        f = fopen(arg, "re");
        if (!f)
                return log_error_errno(errno, "cannot open the publisher token file %s: %s", arg,
                                       strerror(errno));
        if (fstat(fileno(f), &st) < 0)
                return log_error_errno(errno, "cannot stat %s: %s", arg, strerror(errno));
        if (st.st_mode & 0077)
                return log_error_errno(EPERM, "the publisher token file %s is readable by others "
                                       "(chmod 600 it)", arg);
        if (!fgets(line, sizeof(line), f))
                return log_error_errno(EINVAL, "the publisher token file %s is empty", arg);
        n = strcspn(line, "\r\n");
        if (n == 0 || n > IDM_PUBLISHER_TOKEN_MAX || (line[n] != '\n' && line[n] != '\r' && !feof(f)))
                return log_error_errno(EINVAL, "the publisher token file %s holds no token on its first line", arg);
        line[n] = 0;
        ctx->publisher_token = strdup(line);
        explicit_bzero(line, sizeof(line));
        if (!ctx->publisher_token)
                return log_oom();
        return 0;
}

static int parse_file(Context *ctx, const char *arg) {
        if (arg[0] == 0)
                return usage_error(ctx, "--file needs a path (or - for standard input)");
        ctx->file = arg;
        return 0;
}

/* The options that take an argument: the VerbOptions group of each (0: a global option), and
 * either its parser or the Context member (a const char *) that keeps the argument as given. */
typedef struct OptionArg {
        int option;
        unsigned group;
        int (*parse)(Context *ctx, const char *arg);    /* 0, or an exit status or -errno, reported */
        size_t offset;                                  /* when parse is NULL */
} OptionArg;

static const OptionArg option_args[] = {
        { ARG_SOCKET, 0, parse_socket },
        { ARG_TIMEOUT, 0, parse_timeout },
        { ARG_NAME, VERB_OPT_NAME, NULL, offsetof(Context, name) },
        { ARG_REDIRECT_URI, VERB_OPT_PUBLISHER_SETTINGS, parse_redirect_uri },
        { ARG_RESET_URL, VERB_OPT_PUBLISHER_SETTINGS, NULL, offsetof(Context, reset_url) },
        { ARG_REMOTE_AUTH_URL, VERB_OPT_PUBLISHER_SETTINGS, NULL, offsetof(Context, remote_auth_url) },
        { ARG_SSO_URL, VERB_OPT_PUBLISHER_SETTINGS, NULL, offsetof(Context, sso_url) },
        { ARG_SSO_PAGE, VERB_OPT_PUBLISHER_SETTINGS, parse_sso_page },
        { ARG_DEVICE_VERIFICATION_URL, VERB_OPT_PUBLISHER_SETTINGS, NULL,
          offsetof(Context, device_verification_url) },
        { ARG_UNIX_USERS, VERB_OPT_PUBLISHER_SETTINGS, NULL, offsetof(Context, unix_users) },
        { ARG_UNIX_SHELL, VERB_OPT_PUBLISHER_SETTINGS, NULL, offsetof(Context, unix_shell) },
        { ARG_CUSTOMER, VERB_OPT_CUSTOMER, NULL, offsetof(Context, customer) },
        { ARG_TITLE, VERB_OPT_TITLE, NULL, offsetof(Context, title) },
        { ARG_PUBLISHER, VERB_OPT_PUBLISHER, NULL, offsetof(Context, publisher_id) },
        { ARG_PUBLISHER_TOKEN_FILE, VERB_OPT_PUBLISHER, parse_publisher_token_file },
        { ARG_FILE, VERB_OPT_FILE, parse_file },
};

static const OptionArg *option_arg_find(int c) {
        for (size_t i = 0; i < ELEMENTSOF(option_args); i++)
                if (option_args[i].option == c)
                        return &option_args[i];
        return NULL;
}

static int option_arg_apply(Context *ctx, const OptionArg *o, const char *arg) {
        if (o->parse)
                return o->parse(ctx, arg);
        *(const char **) ((char *) ctx + o->offset) = arg;
        return 0;
}

/* The options of one VerbOptions group seen on the command line. */
typedef struct SeenOptions {
        unsigned groups;                /* VerbOptions */
        int first[8];                   /* per group bit: the first option of it that was given */
} SeenOptions;

/* Parses options (anywhere on the line: GNU getopt permutes) into ctx. Returns 0 with *ret_optind
 * at the first positional argument, or with *ret_done set after --help/--version; > 0 an exit
 * status (usage error, reported); < 0 a reported failure. */
static int parse_argv(Context *ctx, int argc, char **argv, int *ret_optind, SeenOptions *ret_seen,
                      bool *ret_done) {
        SeenOptions seen = {};
        int c, r;

        /* Every string we send must be UTF-8 (JSON); say so here rather than fail obscurely. */
        for (int i = 1; i < argc; i++)
                if (!text_is_utf8(argv[i]))
                        return usage_error(ctx, "argument %d is not valid UTF-8", i);

        /* getopt's own messages would start with argv[0], a path perhaps: ours start "idmctl: ". */
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0) {
                const OptionArg *o = option_arg_find(c);

                if (o) {
                        if (o->group != 0 && !(seen.groups & o->group))
                                seen.first[__builtin_ctz(o->group)] = c;
                        seen.groups |= o->group;
                        r = option_arg_apply(ctx, o, optarg);
                        if (r != 0)
                                return r;
                        continue;
                }

                switch (c) {
                case 'h':
                        ctx->help = true;       /* for the command named, if any (run()) */
                        break;
                case ARG_VERSION:
                        (void) printf(PROGRAM " " IDM_VERSION " (protocol %d)\n", IDM_PROTOCOL_VERSION);
                        *ret_done = true;
                        return 0;
                case ARG_JSON:
                        ctx->json = true;
                        break;
                case ARG_LIST:
                        if (!(seen.groups & VERB_OPT_LIST))
                                seen.first[__builtin_ctz(VERB_OPT_LIST)] = c;
                        seen.groups |= VERB_OPT_LIST;
                        ctx->list = true;
                        break;
                case ':':
                        return usage_error(ctx, "option '%s' needs an argument", argv[optind - 1]);
                case '?':
                        if (optopt >= ARG_VERSION)      /* a long option that takes no argument */
                                return usage_error(ctx, "option '--%s' takes no argument",
                                                   option_name(optopt));
                        if (optopt > 0)
                                return usage_error(ctx, "unknown option '-%c'", optopt);
                        return usage_error(ctx, "unknown or ambiguous option '%s'", argv[optind - 1]);
                default:
                        return log_error_errno(EINVAL, "unhandled option %d", c);
                }
        }

        *ret_optind = optind;
        *ret_seen = seen;
        *ret_done = false;
        return 0;
}

static const Verb *verb_find(int argc, char **argv, const char **reterr_problem) {
        bool has_subs = false;

        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                if (!streq(verbs[i].name, argv[0]))
                        continue;
                if (!verbs[i].sub)
                        return &verbs[i];
                has_subs = true;
                if (argc >= 2 && streq(verbs[i].sub, argv[1]))
                        return &verbs[i];
        }
        *reterr_problem = !has_subs ? "unknown command" : argc < 2 ? "missing subcommand" : "unknown subcommand";
        return NULL;
}

static int run(Context *ctx, int argc, char **argv) {
        const char *problem = NULL, *env;
        SeenOptions seen = {};
        const Verb *v;
        unsigned nargs, invalid;
        int first = 0, r;
        bool done = false;

        r = parse_argv(ctx, argc, argv, &first, &seen, &done);
        if (r != 0 || done)
                return r;

        /* "idmctl --help", "idmctl COMMAND [SUB] --help", "idmctl help [COMMAND [SUB]]". */
        if (argc - first > 0 && streq(argv[first], "help")) {
                ctx->help = true;
                first++;
        }
        if (ctx->help) {
                if (argc - first == 0) {
                        help();
                        return 0;
                }
                return help_for(ctx, argc - first, argv + first);
        }

        if (!ctx->socket_path) {
                env = getenv("IDM_SOCKET");
                ctx->socket_path = env && env[0] ? env : IDM_DEFAULT_SOCKET;
        }

        argc -= first;
        argv += first;
        if (argc == 0)
                return usage_error(ctx, "missing command");

        v = verb_find(argc, argv, &problem);
        if (!v) {
                _cleanup_free_ char *what = text_sanitize(argv[0]), *sub = text_sanitize(argc >= 2 ? argv[1] : NULL);
                char subs[256] = "";

                if (!what || !sub)
                        return log_oom();
                if (streq(problem, "unknown command"))
                        return usage_error(ctx, "unknown command '%s'", what);
                /* Name the subcommands there are: "publisher create, list, show, ...". */
                for (size_t i = 0, n = 0; i < ELEMENTSOF(verbs); i++)
                        if (verbs[i].sub && streq(verbs[i].name, argv[0]) && n < sizeof(subs))
                                n += (size_t) snprintf(subs + n, sizeof(subs) - n, "%s%s", n > 0 ? ", " : "",
                                                       verbs[i].sub);
                if (streq(problem, "missing subcommand"))
                        return usage_error(ctx, "'%s' needs a subcommand: %s", what, subs);
                return usage_error(ctx, "unknown subcommand '%s %s' (there are: %s)", what, sub, subs);
        }
        ctx->verb = v;

        /* $IDM_PUBLISHER_TOKEN_FILE stands in for --publisher-token-file in the commands that act
         * for a publisher, unless the line names the publisher itself. */
        env = getenv("IDM_PUBLISHER_TOKEN_FILE");
        if ((v->options & VERB_OPT_PUBLISHER) && !ctx->publisher_token && !ctx->publisher_id && env && env[0]) {
                r = parse_publisher_token_file(ctx, env);
                if (r != 0)
                        return r;
        }

        invalid = seen.groups & ~v->options;
        if (invalid)
                return usage_error(ctx, "option '--%s' is not valid with this command",
                                   option_name(seen.first[__builtin_ctz(invalid)]));

        argc -= v->sub ? 2 : 1;
        argv += v->sub ? 2 : 1;
        nargs = (unsigned) argc;
        if (nargs < v->min_args)
                return usage_error(ctx, "missing argument%s", v->min_args - nargs > 1 ? "s" : "");
        if (nargs > v->max_args)
                return usage_error(ctx, "too many arguments");

        return v->handler(ctx, argc, argv);
}

int main(int argc, char *argv[]) {
        Context ctx = {
                .timeout_usec = (uint64_t) (TIMEOUT_DEFAULT_SEC * 1e6),
                .client = IDM_CLIENT_INIT,
        };
        int r;

        r = run(&ctx, argc, argv);
        context_done(&ctx);

        if (fflush(stdout) != 0 || ferror(stdout)) {
                (void) fprintf(stderr, PROGRAM ": cannot write to standard output: %s\n", strerror(errno));
                return EXIT_FAILURE;
        }
        if (r < 0)
                return EXIT_FAILURE;
        return r;
}
