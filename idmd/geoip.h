/* SPDX-License-Identifier: MIT */
/*
 * A MaxMind DB file (GeoIP2/GeoLite2 Country or City, or any MMDB with country.iso_code),
 * read with libmaxminddb; the only file that includes maxminddb.h. idmd may be built without
 * the library (meson option maxminddb): then geoip_open() refuses with -EOPNOTSUPP, and idmd
 * refuses to start when a file is configured. No logging.
 */
#pragma once

#include <stdbool.h>

#include "idm/cleanup.h"

typedef struct Geoip Geoip;
typedef struct LocaleAddress LocaleAddress;

/* Whether this build can read MaxMind DB files. */
bool geoip_supported(void);

/* Opens (memory-maps) the file at path. -EOPNOTSUPP without libmaxminddb; -ENOENT, -EACCES and
 * other open errors; -EBADMSG for a file that is not a valid MaxMind DB; -EIO; -ENOMEM.
 * *reterr_message (may be NULL) gets libmaxminddb's text of the failure (static), or NULL. */
int geoip_open(const char *path, Geoip **ret, const char **reterr_message);
Geoip *geoip_free(Geoip *g);
DEFINE_POINTER_CLEANUP(Geoip, geoip_free);

/* The ISO 3166-1 alpha-2 code of the record for a: its country.iso_code, else its
 * registered_country.iso_code. ret_country gets 2 letters and a NUL. -ENOENT when the file has
 * no record for a (an IPv6 address in an IPv4-only file included) or the record names no valid
 * country code (MaxMind's "EU", "AP"); -EBADMSG when the file is corrupt. */
int geoip_lookup_country(const Geoip *g, const LocaleAddress *a, char ret_country[3]);
