/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target "pam-reply": the bytes idmd sends back, as pam_idm.so receives them. The input is
 * put in a socketpair and read by idm_client_call_full() (client/idm-client.c, the transport the
 * module is built with: line framing, the size bound, the JSON-RPC response envelope, the error
 * object), up to three calls in a row on one connection as the module's phases make them; each
 * outcome goes through the module's one mapping to PAM codes, result_to_pam() (pam_idm/support.c,
 * for every phase and both ignore options), and the result's fields through the checks the
 * module applies to what it puts in the PAM environment (session ids, tokens, ids, the device
 * poll interval). The module's sources are compiled into the target (its shared object exports
 * only pam_sm_*). Corpus: tests/fuzz/pam-reply/.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "idm/json-util.h"
#include "pam_idm/pam_idm.h"

#define MAX_INPUT (128u * 1024u)        /* what fits in the socket buffer without a writer thread */

static void check_result(json_t *result) {
        static const char *const tokens[] = { "jwt", "refreshToken", "deviceCode", "customerToken" };
        const char *s;

        if (!json_is_object(result))
                return;
        for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++)
                (void) token_is_valid(json_object_get_string(result, tokens[i]));
        s = json_object_get_string(result, "sessionId");
        if (s)
                (void) session_id_is_valid(s);
        s = json_object_get_string(result, "customerId");
        if (s)
                (void) id_is_valid(s, 64);
        s = json_object_get_string(result, "publisherId");
        if (s)
                (void) id_is_valid(s, 64);
        for (int slow = 0; slow <= 1; slow++) {
                json_int_t i = device_poll_interval(json_integer_value(json_object_get(result, "interval")), slow);
                if (i <= 0)
                        abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const methods[] = { "authenticate", "checkAccount", "openSession" };
        IdmClient c = IDM_CLIENT_INIT;
        int sp[2];

        if (size > MAX_INPUT)
                return 0;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0)
                abort();
        for (size_t done = 0; done < size;) {
                ssize_t n = write(sp[1], data + done, size - done);
                if (n <= 0)
                        abort();
                done += (size_t) n;
        }
        /* idmd hangs up after the bytes: every read ends, none waits for the timeout. */
        if (shutdown(sp[1], SHUT_WR) < 0)
                abort();

        c.fd = sp[0];
        c.timeout = 5 * USEC_PER_SEC;
        for (size_t i = 0; i < sizeof methods / sizeof methods[0] && c.fd >= 0; i++) {
                _cleanup_(json_decrefp) json_t *params = json_pack("{s:s, s:s}", "publisherId", "pub1",
                                                                   "user", "alice@example.com");
                json_t *result = NULL, *error_object = NULL;
                IdmError e = {};
                int r;

                if (!params)
                        abort();
                r = idm_client_call_full(&c, methods[i], params, &result, &e, &error_object);
                if (r >= 0 && !result)
                        abort();
                if (r == -EREMOTEIO && (!error_object || e.retry_after > IDM_RETRY_AFTER_MAX ||
                                        !memchr(e.reason, '\0', sizeof e.reason) ||
                                        !memchr(e.message, '\0', sizeof e.message)))
                        abort();
                for (Phase phase = 0; phase < _PHASE_MAX; phase++)
                        for (int ignore = 0; ignore <= 1; ignore++) {
                                Options o = { .ignore_authinfo_unavail = ignore, .ignore_unknown_user = ignore };
                                (void) result_to_pam(phase, r, &e, &o);
                        }
                check_result(result);
                json_wipe_and_decref(result);
                json_decref(error_object);
        }
        idm_client_close(&c);
        safe_close(sp[1]);
        return 0;
}
