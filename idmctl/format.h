/* SPDX-License-Identifier: MIT */
/*
 * idmctl's output helpers: aligned tables, "Key: value" blocks, timestamps, sizes, durations
 * and pretty JSON. Everything that came from the daemon goes through text_sanitize() first, so a
 * stored name can't move the cursor or forge lines on the operator's terminal.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "idm/cleanup.h"

/* A copy of s with control characters (C0, DEL, C1 and invalid UTF-8 bytes) replaced by '?'.
 * NULL becomes "". Returns NULL only on OOM. */
char *text_sanitize(const char *s);

/* Whether s is valid UTF-8 (what jansson requires of every string). */
bool text_is_utf8(const char *s);

/* The number of terminal columns s takes, counting one per UTF-8 code point. */
size_t text_width(const char *s);

/* Formats microseconds since the epoch as RFC 3339 UTC ("2024-05-01T12:34:56Z") into buf.
 * Returns buf, or "-" when usec is not a plausible date. */
#define TIMESTAMP_MAX 32
const char *format_timestamp_usec(json_int_t usec, char buf[static TIMESTAMP_MAX]);

/* The createdDate-style member o[key] (µs since the epoch) as RFC 3339 UTC, or "-". */
const char *format_json_timestamp(const json_t *o, const char *key, char buf[static TIMESTAMP_MAX]);

/* The count o[key] for display: its integer value, or 0 when missing, negative or not an integer. */
uint64_t json_get_u64(const json_t *o, const char *key);

/* "1.5 MiB" style sizes (exact bytes below 1 KiB). */
#define SIZE_MAX_STR 32
const char *format_bytes(uint64_t bytes, char buf[static SIZE_MAX_STR]);

/* "2d 3h 4min 5s" style durations from seconds. */
#define DURATION_MAX 64
const char *format_duration(uint64_t seconds, char buf[static DURATION_MAX]);

/* Prints v as indented JSON (any value, also a bare string or number) and a newline.
 * Returns 0 or -ENOMEM. */
int print_json(const json_t *v);

/* --- tables --- */

typedef struct Table Table;

/* A table with n_columns columns whose header cells are given (upper case by convention).
 * Returns NULL on OOM. */
Table *table_new(size_t n_columns, const char *const *headers);
Table *table_free(Table *t);
DEFINE_POINTER_CLEANUP(Table, table_free);

/* Appends one cell (rows fill left to right); s is sanitized and copied, NULL shows as "-".
 * Returns 0 or -ENOMEM. */
int table_add_cell(Table *t, const char *s);

/* Number of complete rows below the header. */
size_t table_rows(const Table *t);

/* Prints the header and rows with columns padded to their widest cell (two spaces apart, no
 * trailing blanks). Returns 0 or -ENOMEM. */
int table_print(const Table *t, FILE *f);

/* Prints "label:" padded to width, then value (sanitized) and a newline. */
void print_field(int width, const char *label, const char *value);
