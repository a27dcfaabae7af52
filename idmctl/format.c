/* SPDX-License-Identifier: MIT */
/*
 * idmctl's output helpers (see format.h).
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "format.h"
#include "idm/utf8.h"

/* The length of the valid UTF-8 sequence at s (1..4), or 0 when s does not start one (or starts
 * a C1 control character, unless allow_c1). */
static size_t utf8_sequence_length(const unsigned char *s, bool allow_c1) {
        uint32_t cp = 0;
        size_t n = utf8_decode(s, &cp);

        if (n > 0 && !allow_c1 && cp >= 0x80 && cp <= 0x9f)    /* C1 controls */
                return 0;
        return n;
}

char *text_sanitize(const char *s) {
        const unsigned char *p = (const unsigned char *) strempty(s);
        char *out = malloc(strlen((const char *) p) + 1), *o = out;

        if (!out)
                return NULL;
        while (*p) {
                size_t n = utf8_sequence_length(p, false);

                if (n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7f))) {
                        *o++ = '?';
                        p++;
                        continue;
                }
                memcpy(o, p, n);
                o += n;
                p += n;
        }
        *o = 0;
        return out;
}

bool text_is_utf8(const char *s) {
        for (const unsigned char *p = (const unsigned char *) s; *p;) {
                size_t n = utf8_sequence_length(p, true);

                if (n == 0)
                        return false;
                p += n;
        }
        return true;
}

size_t text_width(const char *s) {
        size_t w = 0;

        for (const unsigned char *p = (const unsigned char *) strempty(s); *p; p++)
                if ((*p & 0xc0) != 0x80)
                        w++;
        return w;
}

const char *format_timestamp_usec(json_int_t usec, char buf[static TIMESTAMP_MAX]) {
        time_t t;
        struct tm tm;

        /* Dates before 1970 or after 9999 are not something idmd writes. */
        if (usec < 0 || usec > (json_int_t) 253402300799 * 1000000)
                return "-";
        t = (time_t) (usec / 1000000);
        if (!gmtime_r(&t, &tm) || strftime(buf, TIMESTAMP_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                return "-";
        return buf;
}

const char *format_json_timestamp(const json_t *o, const char *key, char buf[static TIMESTAMP_MAX]) {
        json_t *v = json_object_get(o, key);

        /* idmd sends RFC 3339 strings; older replies carried microseconds since the epoch. */
        if (json_is_string(v) && json_string_length(v) < TIMESTAMP_MAX) {
                snprintf(buf, TIMESTAMP_MAX, "%s", json_string_value(v));
                return buf;
        }
        if (!json_is_integer(v))
                return "-";
        return format_timestamp_usec(json_integer_value(v), buf);
}

uint64_t json_get_u64(const json_t *o, const char *key) {
        json_int_t v = json_integer_value(json_object_get(o, key));

        return v > 0 ? (uint64_t) v : 0;
}

const char *format_bytes(uint64_t bytes, char buf[static SIZE_MAX_STR]) {
        static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
        double v = (double) bytes;
        size_t u = 0;

        if (bytes < 1024) {
                (void) snprintf(buf, SIZE_MAX_STR, "%" PRIu64 " B", bytes);
                return buf;
        }
        v /= 1024.0;
        while (v >= 1024.0 && u + 1 < ELEMENTSOF(units)) {
                v /= 1024.0;
                u++;
        }
        (void) snprintf(buf, SIZE_MAX_STR, "%.1f %s", v, units[u]);
        return buf;
}

const char *format_duration(uint64_t seconds, char buf[static DURATION_MAX]) {
        static const struct {
                const char *suffix;
                uint64_t seconds;
        } units[] = {
                { "d", 86400 },
                { "h", 3600 },
                { "min", 60 },
                { "s", 1 },
        };
        size_t n = 0;

        buf[0] = 0;
        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                uint64_t k = seconds / units[i].seconds;

                if (k == 0 && !(i + 1 == ELEMENTSOF(units) && n == 0))
                        continue;
                seconds -= k * units[i].seconds;
                n += (size_t) snprintf(buf + n, DURATION_MAX - n, "%s%" PRIu64 "%s", n > 0 ? " " : "", k,
                                       units[i].suffix);
                if (n >= DURATION_MAX)
                        break;
        }
        return buf;
}

int print_json(const json_t *v) {
        _cleanup_free_ char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);

        if (!s)
                return -ENOMEM;
        (void) puts(s);
        return 0;
}

void print_field(int width, const char *label, const char *value) {
        _cleanup_free_ char *clean = text_sanitize(value);

        (void) printf("%-*s %s\n", width, label, clean ?: "?");
}

/* --- tables --- */

struct Table {
        size_t n_columns;
        char **cells;           /* headers first, then rows */
        size_t n_cells, n_allocated;
};

Table *table_free(Table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t);
        return NULL;
}

Table *table_new(size_t n_columns, const char *const *headers) {
        _cleanup_(table_freep) Table *t = NULL;

        assert(n_columns > 0);

        t = calloc(1, sizeof(*t));
        if (!t)
                return NULL;
        t->n_columns = n_columns;
        for (size_t i = 0; i < n_columns; i++)
                if (table_add_cell(t, headers[i]) < 0)
                        return NULL;
        return TAKE_PTR(t);
}

int table_add_cell(Table *t, const char *s) {
        char *c;

        if (t->n_cells == t->n_allocated) {
                size_t n = t->n_allocated ? t->n_allocated * 2 : 16;
                char **a = reallocarray(t->cells, n, sizeof(char *));

                if (!a)
                        return -ENOMEM;
                t->cells = a;
                t->n_allocated = n;
        }
        c = text_sanitize(s ?: "-");
        if (!c)
                return -ENOMEM;
        t->cells[t->n_cells++] = c;
        return 0;
}

size_t table_rows(const Table *t) {
        return t->n_cells / t->n_columns - 1;
}

int table_print(const Table *t, FILE *f) {
        _cleanup_free_ size_t *widths = calloc(t->n_columns, sizeof(size_t));

        if (!widths)
                return -ENOMEM;
        for (size_t i = 0; i < t->n_cells; i++) {
                size_t w = text_width(t->cells[i]);

                if (w > widths[i % t->n_columns])
                        widths[i % t->n_columns] = w;
        }

        /* A partial last row (a caller bug) is left out rather than printed misaligned. */
        for (size_t row = 0; row < t->n_cells / t->n_columns; row++)
                for (size_t col = 0; col < t->n_columns; col++) {
                        const char *c = t->cells[row * t->n_columns + col];
                        bool last = col + 1 == t->n_columns;

                        (void) fputs(c, f);
                        if (last)
                                (void) fputc('\n', f);
                        else
                                (void) fprintf(f, "%*s", (int) (widths[col] - text_width(c) + 2), "");
                }
        return 0;
}
