/* SPDX-License-Identifier: MIT */
/*
 * idmctl backup DIR: asks idmd (backup, administrators only) to write a consistent copy of its
 * store and its signing keys into the new directory DIR, laid out as a state directory
 * (data.mdb, keys/). idmd writes it, as its own user: DIR must be somewhere idmd may write (under
 * the systemd unit, inside /var/lib/idmd).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format.h"
#include "idm/json-util.h"
#include "idmctl.h"

int verb_backup(Context *ctx, int argc, char **argv) {
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL;
        _cleanup_free_ char *path = NULL, *cwd = NULL, *shown = NULL;
        int r;

        if (argv[0][0] == '/')
                path = strdup(argv[0]);
        else {
                cwd = getcwd(NULL, 0);
                if (!cwd)
                        return log_error_errno(errno, "cannot tell the current directory: %s", strerror(errno));
                if (asprintf(&path, "%s/%s", cwd, argv[0]) < 0)
                        path = NULL;
        }
        if (!path)
                return log_oom();
        params = json_pack("{s:s}", "path", path);
        if (!params)
                return log_oom();
        r = ctx_call_or_print_json(ctx, "backup", params, &result);
        if (r <= 0)
                return r;
        shown = text_sanitize(path);
        if (!shown)
                return log_oom();
        (void) printf("Backup written to %s: the store (%" JSON_INTEGER_FORMAT " bytes) and %" JSON_INTEGER_FORMAT
                      " signing key(s).\n", shown, json_integer_value(json_object_get(result, "bytes")),
                      json_integer_value(json_object_get(result, "keys")));
        return 0;
}
