/* SPDX-License-Identifier: MIT */
/*
 * Minimal unit-test helpers: assertions that print the values they compare, file and line, and
 * abort. Each tests/unit/test-<file>.c is its own executable with a main() calling its cases.
 */
#pragma once

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT_TRUE(expr)                                                                       \
        do {                                                                                    \
                if (!(expr)) {                                                                  \
                        fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__,    \
                                #expr);                                                         \
                        abort();                                                                \
                }                                                                               \
        } while (0)

#define ASSERT_FALSE(expr) ASSERT_TRUE(!(expr))

#define ASSERT_EQ(a, b)                                                                         \
        do {                                                                                    \
                intmax_t _a = (intmax_t) (a), _b = (intmax_t) (b);                              \
                if (_a != _b) {                                                                 \
                        fprintf(stderr, "%s:%d: %s == %s failed: %jd != %jd\n", __FILE__,       \
                                __LINE__, #a, #b, _a, _b);                                      \
                        abort();                                                                \
                }                                                                               \
        } while (0)

#define ASSERT_OK(expr)                                                                         \
        do {                                                                                    \
                intmax_t _r = (intmax_t) (expr);                                                \
                if (_r < 0) {                                                                   \
                        fprintf(stderr, "%s:%d: %s failed: %jd (%s)\n", __FILE__, __LINE__,     \
                                #expr, _r, strerror((int) -_r));                                \
                        abort();                                                                \
                }                                                                               \
        } while (0)

#define ASSERT_STREQ(a, b)                                                                      \
        do {                                                                                    \
                const char *_a = (a), *_b = (b);                                                \
                if (!_a || !_b || strcmp(_a, _b) != 0) {                                        \
                        fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, \
                                __LINE__, #a, #b, _a ? _a : "(null)", _b ? _b : "(null)");      \
                        abort();                                                                \
                }                                                                               \
        } while (0)

#define TEST(name) static void test_##name(void)
#define RUN(name)                                                                               \
        do {                                                                                    \
                fprintf(stderr, "== %s\n", #name);                                              \
                test_##name();                                                                  \
        } while (0)
