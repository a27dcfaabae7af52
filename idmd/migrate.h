/* SPDX-License-Identifier: MIT */
/*
 * idmd --migrate-store: the LMDB store of a stopped idmd copied into the PostgreSQL store of the
 * configuration (migrate.c). Logs what goes wrong; returns 0 or -errno: -EINVAL (the
 * configuration names no PostgreSQL store), -EBUSY (an idmd runs on the directory), -EEXIST (the
 * PostgreSQL store is not empty), -EIO (the counts differ after the copy), the stores' errors.
 */
#pragma once

#include "config.h"

int migrate_store(const Config *config, const char *from_dir);
