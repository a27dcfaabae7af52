/* SPDX-License-Identifier: MIT */
/*
 * Building the URLs idmd hands out (reset links, later remote-auth and SSO links): query
 * parameters added to a URL the publisher configured, percent-encoded, never a host taken from a
 * request. The URLs given have passed redirect_uri_is_valid() (validate.h).
 */
#pragma once

/* Adds name=value to url's query: percent-encoded (RFC 3986: everything but the unreserved
 * characters), after an existing query with '&', before a fragment, which is kept. *ret is a
 * new string. -ENOMEM. */
int url_add_query(const char *url, const char *name, const char *value, char **ret);
