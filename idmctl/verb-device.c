/* SPDX-License-Identifier: MIT */
/*
 * idmctl device approve|deny: an operator (or a test) decides a device login (RFC 8628) on behalf
 * of a customer it names, with approveDeviceLogin / denyDeviceLogin's admin form.
 */
#include <stdio.h>

#include "format.h"
#include "idm/json-util.h"
#include "idmctl.h"

static bool is_customer_id(const char *s) {
        if (!s[0])
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

static int device_decide(Context *ctx, const char *code, bool approve) {
        _cleanup_(json_decrefp) json_t *params = NULL, *result = NULL;
        _cleanup_free_ char *shown = NULL, *device = NULL;
        int r;

        if (!ctx->customer || !ctx->customer[0])
                return usage_error(ctx, "--customer EMAIL|CUSTOMER_ID is required");
        if (!ctx->publisher_id || ctx->publisher_token)
                return usage_error(ctx, "--publisher ID is required (an administrator's; a publisher token "
                                   "cannot approve)");
        r = ctx_publisher_params(ctx, &params);
        if (r != 0)
                return r;
        if (json_object_set_new(params, is_customer_id(ctx->customer) ? "customerId" : "customerEmail",
                                json_string(ctx->customer)) < 0 ||
            json_object_set_new(params, "userCode", json_string(code)) < 0)
                return log_oom();
        r = ctx_call_or_print_json(ctx, approve ? "approveDeviceLogin" : "denyDeviceLogin", params, &result);
        if (r <= 0)
                return r;
        shown = text_sanitize(code);
        device = json_object_get_string(result, "deviceName") ?
                         text_sanitize(json_object_get_string(result, "deviceName")) : NULL;
        if (!shown)
                return log_oom();
        (void) printf("Device login %s %s%s%s%s.\n", shown, approve ? "approved" : "denied",
                      device ? " (device '" : "", strempty(device), device ? "')" : "");
        return 0;
}

int verb_device_approve(Context *ctx, int argc, char **argv) {
        return device_decide(ctx, argv[0], true);
}

int verb_device_deny(Context *ctx, int argc, char **argv) {
        return device_decide(ctx, argv[0], false);
}
