/* SPDX-License-Identifier: MIT */
/*
 * idmctl call METHOD [PARAMS|-]: any method, params as JSON text (an object, or an array for the
 * methods that take positional params), the result printed as indented JSON. For scripts and for
 * methods that have no verb of their own yet.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "format.h"
#include "idm/protocol.h"
#include "idmctl.h"

/* Reads all of stdin, at most max bytes. The buffer is NUL-terminated. */
static int read_stdin(size_t max, char **ret, size_t *ret_len) {
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
                        /* Not realloc(): params may hold a password, wipe the old block. */
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
                n = read(STDIN_FILENO, buf + len, size - len - 1);
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

static void erase_and_free_buffer(char **p) {
        (void) erase_and_free(*p);
}

int verb_call(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL;
        _cleanup_(erase_and_free_buffer) char *input = NULL;
        const char *method = argv[0], *text = argc > 1 ? argv[1] : NULL;
        json_error_t error;
        size_t len = 0;
        int r;

        if (method[0] == 0)
                return usage_error(ctx, "METHOD must not be empty");

        if (text && streq(text, "-")) {
                r = read_stdin(IDM_MAX_REPLY, &input, &len);
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
