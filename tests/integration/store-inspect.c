/* SPDX-License-Identifier: MIT */
/*
 * A test helper that opens a stopped idmd's store and prints, one JSON object a line:
 *   store-inspect STORE dump            every record: {"table", "key", "value"}
 *   store-inspect STORE customer ID     what customer_foreach_record() names: {"table", "key"}
 * STORE is a state directory (LMDB), or "postgresql:" and a libpq connection string.
 * so that the integration tests can check what a customer leaves behind against what is really
 * in the store. Never used on a store a running idmd holds.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "idm/cleanup.h"
#include "idmd/records/customers.h"
#include "idmd/store.h"

typedef struct Dump {
        StoreTable table;
} Dump;

static int print_record(const char *key, json_t *value, void *userdata) {
        Dump *d = userdata;
        _cleanup_free_ char *line = NULL;
        json_t *o = json_pack("{s:s, s:s, s:O}", "table", store_table_to_string(d->table), "key", key, "value", value);

        if (!o)
                return -ENOMEM;
        line = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (!line)
                return -ENOMEM;
        puts(line);
        return 0;
}

static int print_name(StoreTable table, const char *key, void *userdata) {
        _cleanup_free_ char *line = NULL;
        json_t *o = json_pack("{s:s, s:s}", "table", store_table_to_string(table), "key", key);

        if (!o)
                return -ENOMEM;
        line = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (!line)
                return -ENOMEM;
        puts(line);
        return 0;
}

int main(int argc, char *argv[]) {
        _cleanup_(store_freep) Store *s = NULL;
        _cleanup_(store_txn_freep) StoreTxn *t = NULL;
        int r;

        if (argc < 3 || (streq(argv[2], "customer") && argc != 4)) {
                fprintf(stderr, "usage: %s STORE dump | STORE customer ID\n", argv[0]);
                return 2;
        }
        if (strncmp(argv[1], "postgresql:", strlen("postgresql:")) == 0)
                r = store_open_postgresql(argv[1] + strlen("postgresql:"), 0, &s, NULL);
        else
                r = store_open(argv[1], NULL, &s, NULL);
        if (r >= 0)
                r = store_read(s, &t);
        if (r < 0) {
                fprintf(stderr, "cannot open the store in %s: %s\n", argv[1], strerror(-r));
                return 1;
        }
        if (streq(argv[2], "dump")) {
                for (StoreTable i = 0; i < _STORE_TABLE_MAX && r >= 0; i++)
                        r = store_foreach(t, i, NULL, NULL, print_record, &(Dump) { .table = i });
        } else if (streq(argv[2], "customer"))
                r = customer_foreach_record(t, argv[3], print_name, NULL);
        else {
                fprintf(stderr, "unknown command %s\n", argv[2]);
                return 2;
        }
        if (r < 0) {
                fprintf(stderr, "%s failed: %s\n", argv[2], strerror(-r));
                return 1;
        }
        return 0;
}
