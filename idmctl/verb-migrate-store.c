/* SPDX-License-Identifier: MIT */
/*
 * idmctl migrate-store DIR [CONFIG]: moves a stopped idmd's LMDB store (the state directory DIR)
 * and its signing keys into the PostgreSQL store of idmd's configuration. The copy needs both
 * stores, which only idmd's own store code opens, so this runs idmd --migrate-store (it replaces
 * idmctl: idmd's messages and exit status are the verb's). idmd is the installed one, or the one
 * $IDMD names (an uninstalled build). It talks to no running idmd: the one on DIR must be stopped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config-build.h"
#include "idmctl.h"

int verb_migrate_store(Context *ctx, int argc, char **argv) {
        const char *idmd = getenv("IDMD");
        char *args[6];
        int n = 0;

        if (!idmd || !*idmd)
                idmd = IDM_IDMD_PATH;
        args[n++] = (char *) idmd;
        if (argc > 1) {
                args[n++] = (char *) "--config";
                args[n++] = argv[1];
        }
        args[n++] = (char *) "--migrate-store";
        args[n++] = argv[0];
        args[n] = NULL;
        (void) fflush(stdout);
        execv(idmd, args);
        (void) fprintf(stderr, "Cannot run %s: %s\n", idmd, strerror(errno));
        return -errno;
}
