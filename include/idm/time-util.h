/* SPDX-License-Identifier: MIT */
/*
 * Dates as callers see them: records keep realtime microseconds since the epoch; replies show
 * RFC 3339 UTC ("2026-11-22T10:00:00Z"). And the monotonic clock that timeouts and durations use.
 */
#pragma once

#include <stdint.h>
#include <time.h>

/* RFC 3339 UTC of a realtime usec value, into buf of >= 32 bytes ("" if it cannot be shown). */
static inline const char *format_rfc3339(uint64_t usec, char buf[static 32]) {
        time_t t = (time_t) (usec / 1000000ULL);
        struct tm tm;

        if (!gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                buf[0] = 0;
        return buf;
}

/* The monotonic clock in microseconds: timeouts, deadlines, rate limits, latencies, uptime. The
 * test clock never moves it (sd-event's CLOCK_MONOTONIC timers could not follow). */
static inline uint64_t now_monotonic_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000) + (uint64_t) ts.tv_nsec / 1000;
}
