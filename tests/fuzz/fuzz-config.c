/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target "config": the bytes of an idmd.conf through idmd's config parser
 * (config_load_stream(): libinih, the key table, every typed value parser, config_verify()),
 * read from memory with fmemopen(). A configuration that loads is dumped (config_dump()), and the
 * dump must load back to the same dump, as config.h promises; it is also dumped with origins and
 * applied to a fresh default one as a reload would (config_apply_live()). Corpus:
 * tests/fuzz/config/.
 */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"
#include "idmd/config.h"
#include "idmd/log.h"

/* c dumped into a new string (config_dump() must not fail on a memory stream). */
static char *dump(const Config *c) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);

        if (!f || config_dump(c, f) < 0 || fclose(f) != 0)
                abort();
        return text;
}

/* The dump of c loads back into a default configuration, to the same dump. */
static void check_round_trip(const Config *c) {
        _cleanup_(config_freep) Config *e = NULL;
        char *first, *second;
        FILE *f;

        first = dump(c);
        if (config_new(&e) < 0)
                abort();
        f = fmemopen(first, strlen(first), "r");
        if (!f)
                abort();
        if (config_load_stream(e, f, "dump") < 0) {
                fprintf(stderr, "dump does not load back:\n%s", first);
                abort();
        }
        (void) fclose(f);
        second = dump(e);
        if (strcmp(first, second) != 0) {
                fprintf(stderr, "dump changes when loaded back:\n%s---\n%s", first, second);
                abort();
        }
        free(first);
        free(second);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(config_freep) Config *c = NULL, *d = NULL;
        FILE *f, *null;

        log_set_max_level(LOG_LEVEL_ERR - 1);    /* the parser logs every bad line at error level */
        if (size == 0)
                return 0;
        if (config_new(&c) < 0 || config_new(&d) < 0)
                abort();
        f = fmemopen((void *) data, size, "r");
        if (!f)
                abort();
        if (config_load_stream(c, f, "fuzz.conf") >= 0) {
                check_round_trip(c);
                null = fopen("/dev/null", "we");
                if (!null)
                        abort();
                (void) config_dump(c, null);
                (void) config_dump_origins(c, null);
                (void) config_apply_live(d, c, null);
                (void) fclose(null);
        }
        (void) fclose(f);
        return 0;
}
