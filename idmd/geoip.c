/* SPDX-License-Identifier: MIT */
/*
 * MaxMind DB lookups with libmaxminddb (docs: https://maxmind.github.io/libmaxminddb/). The
 * file is memory-mapped once at start and only read afterwards, so lookups need no lock. Built
 * without the library, every function says so and nothing else.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config-build.h"
#include "geoip.h"
#include "locales.h"
#include "validate.h"

#if HAVE_MAXMINDDB

#include <maxminddb.h>

struct Geoip {
        MMDB_s mmdb;
};

bool geoip_supported(void) {
        return true;
}

/* libmaxminddb's status codes as -errno. */
static int mmdb_to_errno(int status, int saved_errno) {
        switch (status) {
        case MMDB_SUCCESS:
                return 0;
        case MMDB_FILE_OPEN_ERROR:
                return saved_errno > 0 ? -saved_errno : -EIO;
        case MMDB_OUT_OF_MEMORY_ERROR:
                return -ENOMEM;
        case MMDB_IO_ERROR:
                return -EIO;
        case MMDB_IPV6_LOOKUP_IN_IPV4_DATABASE_ERROR:
        case MMDB_LOOKUP_PATH_DOES_NOT_MATCH_DATA_ERROR:
                return -ENOENT;
        default:        /* corrupt search tree, metadata or data section; unknown format */
                return -EBADMSG;
        }
}

int geoip_open(const char *path, Geoip **ret, const char **reterr_message) {
        Geoip *g;
        int status;

        g = calloc(1, sizeof(Geoip));
        if (!g)
                return -ENOMEM;
        errno = 0;
        status = MMDB_open(path, MMDB_MODE_MMAP, &g->mmdb);
        if (status != MMDB_SUCCESS) {
                int r = mmdb_to_errno(status, errno);

                if (reterr_message)
                        *reterr_message = MMDB_strerror(status);
                free(g);        /* MMDB_open() frees what it allocated when it fails */
                return r;
        }
        *ret = g;
        return 0;
}

Geoip *geoip_free(Geoip *g) {
        if (!g)
                return NULL;
        MMDB_close(&g->mmdb);
        free(g);
        return NULL;
}

/* The 2-letter code at path in the record, or -ENOENT. */
static int entry_country(MMDB_entry_s *entry, const char *map, char ret[3]) {
        MMDB_entry_data_s data;
        int status;

        status = MMDB_get_value(entry, &data, map, "iso_code", NULL);
        if (status != MMDB_SUCCESS)
                return mmdb_to_errno(status, 0) == -EBADMSG ? -EBADMSG : -ENOENT;
        if (!data.has_data || data.type != MMDB_DATA_TYPE_UTF8_STRING || data.data_size != 2)
                return -ENOENT;
        memcpy(ret, data.utf8_string, 2);
        ret[2] = '\0';
        return country_is_valid(ret) ? 0 : -ENOENT;
}

int geoip_lookup_country(const Geoip *g, const LocaleAddress *a, char ret_country[3]) {
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } sa = {};
        MMDB_lookup_result_s result;
        int mmdb_error = MMDB_SUCCESS, r;

        if (a->family == AF_INET) {
                sa.in.sin_family = AF_INET;
                memcpy(&sa.in.sin_addr, a->addr, 4);
        } else {
                sa.in6.sin6_family = AF_INET6;
                memcpy(&sa.in6.sin6_addr, a->addr, 16);
        }
        result = MMDB_lookup_sockaddr(&g->mmdb, &sa.sa, &mmdb_error);
        if (mmdb_error != MMDB_SUCCESS)
                return mmdb_to_errno(mmdb_error, 0);
        if (!result.found_entry)
                return -ENOENT;

        r = entry_country(&result.entry, "country", ret_country);
        if (r == -ENOENT)
                r = entry_country(&result.entry, "registered_country", ret_country);
        return r;
}

#else /* !HAVE_MAXMINDDB */

bool geoip_supported(void) {
        return false;
}

int geoip_open(const char *path, Geoip **ret, const char **reterr_message) {
        if (reterr_message)
                *reterr_message = NULL;
        return -EOPNOTSUPP;
}

Geoip *geoip_free(Geoip *g) {
        return NULL;
}

int geoip_lookup_country(const Geoip *g, const LocaleAddress *a, char ret_country[3]) {
        return -ENOENT;
}

#endif
