/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of idmd/rpc.c's pure parts: the nesting pre-scan and the parameter validation that
 * every method's ParamSpec table goes through. The framing itself is tested through a real
 * socket in tests/integration/test_protocol.py.
 */
#include <string.h>

#include <jansson.h>

#include "idmd/rpc.h"
#include "tests.h"

static unsigned depth(const char *s) {
        return rpc_json_depth(s, strlen(s), 1000);
}

TEST(json_depth) {
        ASSERT_EQ(depth("5"), 0);
        ASSERT_EQ(depth("{}"), 1);
        ASSERT_EQ(depth("[[],[[]]]"), 3);
        ASSERT_EQ(depth("{\"a\":{\"b\":[1,{\"c\":2}]}}"), 4);
        /* brackets in strings, also after escaped quotes and backslashes, do not count */
        ASSERT_EQ(depth("{\"a\":\"[[[[{{{{\"}"), 1);
        ASSERT_EQ(depth("{\"a\":\"x\\\"[[[[\"}"), 1);
        ASSERT_EQ(depth("{\"a\":\"\\\\\",\"b\":[[1]]}"), 3);
        /* stops early once over the limit */
        ASSERT_TRUE(rpc_json_depth("[[[[[[[[[[", 10, 3) > 3);
        /* unbalanced closers never go negative */
        ASSERT_EQ(depth("]]]][]"), 1);
}

static int handler(Call *call, json_t *params) {
        return 0;
}

static const Method method = {
        .name = "testMethod",
        .handler = handler,
        .params = (const ParamSpec[]) {
                { "name", PARAM_STRING, true, 8 },
                { "count", PARAM_INTEGER, false, 0 },
                { "flag", PARAM_BOOLEAN, false, 0 },
                { "list", PARAM_ARRAY, false, 2 },
                { "obj", PARAM_OBJECT, false, 0 },
                { "any", PARAM_ANY, false, 0 },
                { "long", PARAM_STRING, false, 0 },
                {} },
};

static int check(const char *json, const char **ret_param, char *msg, size_t size) {
        json_error_t e;
        json_t *p = json_loads(json, JSON_ALLOW_NUL, &e);
        int r;

        ASSERT_TRUE(p);
        *ret_param = NULL;
        r = rpc_check_params(&method, p, ret_param, msg, size);
        /* ret_param may point into p: copy out what the caller compares */
        static char param[64];
        if (*ret_param) {
                snprintf(param, sizeof(param), "%s", *ret_param);
                *ret_param = param;
        }
        json_decref(p);
        return r;
}

#define CHECK_BAD(json, param, needle)                                                          \
        do {                                                                                    \
                const char *_p;                                                                 \
                char _m[256];                                                                   \
                ASSERT_EQ(check(json, &_p, _m, sizeof(_m)), -EINVAL);                           \
                ASSERT_STREQ(_p, param);                                                        \
                if (!strstr(_m, needle)) {                                                      \
                        fprintf(stderr, "message '%s' lacks '%s'\n", _m, needle);              \
                        abort();                                                                \
                }                                                                               \
        } while (0)

TEST(params_ok) {
        const char *p;
        char m[256];

        ASSERT_OK(check("{\"name\":\"abc\"}", &p, m, sizeof(m)));
        ASSERT_OK(check("{\"name\":\"12345678\",\"count\":-3,\"flag\":false,\"list\":[1,2],\"obj\":{},"
                        "\"any\":null}", &p, m, sizeof(m)));
}

TEST(params_bad) {
        CHECK_BAD("{}", "name", "missing parameter 'name'");
        CHECK_BAD("{\"name\":\"a\",\"nope\":1}", "nope", "unknown parameter 'nope'");
        CHECK_BAD("{\"name\":5}", "name", "must be a string");
        CHECK_BAD("{\"name\":\"a\",\"count\":1.5}", "count", "must be an integer");
        CHECK_BAD("{\"name\":\"a\",\"count\":\"1\"}", "count", "must be an integer");
        CHECK_BAD("{\"name\":\"a\",\"flag\":1}", "flag", "must be a boolean");
        CHECK_BAD("{\"name\":\"a\",\"list\":{}}", "list", "must be an array");
        CHECK_BAD("{\"name\":\"a\",\"obj\":[]}", "obj", "must be an object");
        CHECK_BAD("{\"name\":\"123456789\"}", "name", "longer than 8 bytes");
        /* the limit is in bytes: 3 two-byte characters + 3 = 9 bytes */
        CHECK_BAD("{\"name\":\"\xc3\xa9\xc3\xa9\xc3\xa9" "abc\"}", "name", "longer than 8 bytes");
        CHECK_BAD("{\"name\":\"a\",\"list\":[1,2,3]}", "list", "more than 2 items");
        CHECK_BAD("{\"name\":\"a\\u0000b\"}", "name", "NUL");
}

TEST(params_default_string_limit) {
        char json[2048 + 64];
        const char *p;
        char m[256];

        snprintf(json, sizeof(json), "{\"name\":\"a\",\"long\":\"%0*d\"}", (int) PARAM_STRING_MAX_DEFAULT, 0);
        ASSERT_OK(check(json, &p, m, sizeof(m)));
        snprintf(json, sizeof(json), "{\"name\":\"a\",\"long\":\"%0*d\"}", (int) PARAM_STRING_MAX_DEFAULT + 1, 0);
        CHECK_BAD(json, "long", "longer than 1024 bytes");
}

int main(void) {
        RUN(json_depth);
        RUN(params_ok);
        RUN(params_bad);
        RUN(params_default_string_limit);
        return 0;
}
