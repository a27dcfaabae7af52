/* SPDX-License-Identifier: MIT */
/*
 * idmctl call METHOD [PARAMS|-]: any method, params as JSON text (an object, or an array for the
 * methods that take positional params), the result printed as indented JSON. For scripts and for
 * methods that have no verb of their own yet. idmctl call --list: the daemon's method names.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "format.h"
#include "idm/protocol.h"
#include "idmctl.h"

static void erase_and_free_buffer(char **p) {
        (void) erase_and_free(*p);
}

/* call --list: the names in getServerInfo's methods, one a line (for people, scripts and the
 * shell completion), or with --json as the array. */
static int list_methods(Context *ctx) {
        _cleanup_(json_decrefp) json_t *info = NULL;
        json_t *methods, *m;
        size_t i;
        int r;

        r = ctx_call(ctx, IDM_METHOD_GET_SERVER_INFO, NULL, &info);
        if (r < 0)
                return r;
        methods = json_object_get(info, "methods");
        if (!json_is_array(methods))
                return log_error_errno(EBADMSG, "%s: the reply has no list of methods",
                                       IDM_METHOD_GET_SERVER_INFO);
        if (ctx->json)
                return print_json(methods) < 0 ? log_oom() : 0;
        json_array_foreach(methods, i, m) {
                _cleanup_free_ char *name = text_sanitize(json_string_value(m));

                if (!name)
                        return log_oom();
                if (name[0])
                        (void) puts(name);
        }
        return 0;
}

int verb_call(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL;
        _cleanup_(erase_and_free_buffer) char *input = NULL;
        const char *method, *text = argc > 1 ? argv[1] : NULL;
        json_error_t error;
        size_t len = 0;
        int r;

        if (ctx->list) {
                if (argc > 0)
                        return usage_error(ctx, "--list takes no METHOD");
                return list_methods(ctx);
        }
        if (argc == 0)
                return usage_error(ctx, "missing argument");
        method = argv[0];
        if (method[0] == 0)
                return usage_error(ctx, "METHOD must not be empty");

        if (text && streq(text, "-")) {
                r = read_full(STDIN_FILENO, IDM_MAX_REPLY, &input, &len);
                if (r == -EFBIG)
                        return usage_error(ctx, "params on standard input are larger than %u bytes", IDM_MAX_REPLY);
                if (r == -ENOMEM)
                        return log_oom();
                if (r < 0)
                        return log_error_errno(r, "cannot read params from standard input: %s", strerror(-r));
                if (memchr(input, 0, len)) {
                        /* The cleanup wipes up to the first NUL: wipe all of it now. */
                        explicit_bzero(input, len);
                        return usage_error(ctx, "params on standard input contain a NUL byte");
                }
                if (!text_is_utf8(input))
                        return usage_error(ctx, "params on standard input are not valid UTF-8");
                text = input;
        }

        if (text) {
                /* Without JSON_DECODE_ANY jansson only accepts an object or an array: just what
                 * params may be. */
                params = json_loads(text, JSON_REJECT_DUPLICATES, &error);
                if (!params) {
                        _cleanup_free_ char *msg = text_sanitize(error.text);
                        return usage_error(ctx, "invalid JSON params: %s (line %d, column %d)", msg ?: "?",
                                           error.line, error.column);
                }
        } else {
                params = json_object();
                if (!params)
                        return log_oom();
        }

        r = ctx_call(ctx, method, params, &result);
        if (r < 0)
                return r;
        if (print_json(result) < 0)
                return log_oom();
        return 0;
}
