/* SPDX-License-Identifier: MIT */
/*
 * Tokens: the Ed25519 signing keyring on disk and in locked, read-only memory, compact JWS/JWT
 * signing and verification, random opaque tokens and their at-rest hashes. With passwords.c the
 * only user of libsodium; it maps sodium's -1 to -errno. Logs nothing: callers log once.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "idm/cleanup.h"
#include "idmd/tokens.h"

#define KID_LEN 16
#define KEY_FILE_MAX 4096
#define KEY_SUFFIX ".key"
#define TMP_SUFFIX ".tmp"
#define RETIRED_NEVER UINT64_MAX
#define TOKEN_RANDOM_MAX 1024
#define B64URL sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define JWT_TYP "at+jwt"

_Static_assert(crypto_generichash_BYTES == 32, "token_hash needs a 256-bit BLAKE2b");
_Static_assert(TOKEN_HASH_STRLEN == 2 * crypto_generichash_BYTES, "hex of the hash");

typedef struct Key {
        char kid[KID_LEN + 1];
        uint64_t created_usec;
        uint64_t retired_usec;                  /* RETIRED_NEVER while not retired */
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        unsigned char *sk;                      /* sodium_malloc'd, read-only once filled */
} Key;

typedef struct JwtCache JwtCache;

struct Keyring {
        int dir_fd;
        Key *keys;                              /* keys[0] is the active key, the rest newest first */
        size_t n_keys;
        char **kids;                            /* NULL-terminated, points into keys[].kid */
        uint64_t generation;                    /* keyring_generation() */
        JwtCache *cache;                        /* verified tokens (jwt_verify_cached); NULL: none */
};

static uint64_t keyring_generations;            /* the last generation given to any keyring */

static JwtCache *jwt_cache_new(size_t capacity);
static JwtCache *jwt_cache_free(JwtCache *c);
static void jwt_cache_flush(JwtCache *c);

static void key_done(Key *key) {
        if (key->sk)
                sodium_free(key->sk);   /* makes the pages writable again and wipes them */
        *key = (Key) {};
}

static void key_donep(Key *key) {
        key_done(key);
}

static void free_wiped(char *p, size_t n) {
        if (p) {
                sodium_memzero(p, n);
                free(p);
        }
}

/* A heap buffer that holds a secret and is wiped when freed. */
typedef struct WipedBuf {
        size_t size;
        char *data;
} WipedBuf;

static void wiped_buf_done(WipedBuf *b) {
        free_wiped(b->data, b->size);
        *b = (WipedBuf) {};
}

static int wiped_buf_alloc(WipedBuf *b, size_t size) {
        b->data = calloc(1, size);
        if (!b->data)
                return -ENOMEM;
        b->size = size;
        return 0;
}

static bool has_suffix(const char *s, const char *suffix) {
        size_t n = strlen(s), m = strlen(suffix);

        return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static void kid_from_pk(const uint8_t pk[static crypto_sign_PUBLICKEYBYTES], char kid[static KID_LEN + 1]) {
        uint8_t h[crypto_generichash_BYTES];
        char b64[sodium_base64_ENCODED_LEN(crypto_generichash_BYTES, B64URL)];

        (void) crypto_generichash(h, sizeof h, pk, crypto_sign_PUBLICKEYBYTES, NULL, 0);
        (void) sodium_bin2base64(b64, sizeof b64, h, sizeof h, B64URL);
        memcpy(kid, b64, KID_LEN);
        kid[KID_LEN] = 0;
}

/* base64url without padding into a new string. */
static int b64url_encode(const void *data, size_t n, char **ret) {
        size_t len = sodium_base64_ENCODED_LEN(n, B64URL);
        char *s;

        s = malloc(len);
        if (!s)
                return -ENOMEM;
        (void) sodium_bin2base64(s, len, data, n, B64URL);
        *ret = s;
        return 0;
}

/* Strict base64url (no padding, no whitespace, canonical trailing bits) of exactly len input
 * characters into buf. */
static int b64url_decode(const char *s, size_t len, void *buf, size_t buf_size, size_t *ret_len) {
        size_t n = 0;

        if (sodium_base642bin(buf, buf_size, s, len, NULL, &n, NULL, B64URL) != 0)
                return -EBADMSG;
        *ret_len = n;
        return 0;
}

/* Same, into a new NUL-terminated buffer (for the JSON parts). */
static int b64url_decode_alloc(const char *s, size_t len, char **ret, size_t *ret_len) {
        _cleanup_(freep) char *buf = NULL;
        size_t n, size = len / 4 * 3 + 3;
        int r;

        buf = malloc(size + 1);
        if (!buf)
                return -ENOMEM;
        r = b64url_decode(s, len, buf, size, &n);
        if (r < 0)
                return r;
        buf[n] = 0;
        *ret = TAKE_PTR(buf);
        *ret_len = n;
        return 0;
}

static int loop_write(int fd, const void *p, size_t n) {
        const char *c = p;

        while (n > 0) {
                ssize_t k = write(fd, c, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                c += k;
                n -= (size_t) k;
        }
        return 0;
}

/* ---- key files ---- */

static int key_new(uint64_t created_usec, Key *ret) {
        _cleanup_(key_donep) Key key = {};

        key.sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
        if (!key.sk)
                return -ENOMEM;
        if (crypto_sign_keypair(key.pk, key.sk) != 0)
                return -EIO;
        if (sodium_mprotect_readonly(key.sk) != 0)
                return -errno;
        kid_from_pk(key.pk, key.kid);
        key.created_usec = created_usec;
        key.retired_usec = RETIRED_NEVER;

        *ret = key;
        key = (Key) {};
        return 0;
}

/* Writes the key file durably: temporary name, fsync, rename over the final name, fsync(dir). */
static int key_write(int dir_fd, const Key *key) {
        _cleanup_(wiped_buf_done) WipedBuf b64 = {}, text = {};
        char tmp[1 + KID_LEN + sizeof(KEY_SUFFIX TMP_SUFFIX)], name[KID_LEN + sizeof(KEY_SUFFIX)];
        char retired[32];
        _cleanup_(closep) int fd = -EBADF;
        int r, n;

        if (key->created_usec > INT64_MAX ||
            (key->retired_usec != RETIRED_NEVER && key->retired_usec > INT64_MAX))
                return -EINVAL;

        r = wiped_buf_alloc(&b64, sodium_base64_ENCODED_LEN(crypto_sign_SECRETKEYBYTES, B64URL));
        if (r < 0)
                return r;
        r = wiped_buf_alloc(&text, KEY_FILE_MAX);
        if (r < 0)
                return r;

        if (key->retired_usec == RETIRED_NEVER)
                strcpy(retired, "null");
        else
                (void) snprintf(retired, sizeof retired, "%" PRIu64, key->retired_usec);

        (void) sodium_bin2base64(b64.data, b64.size, key->sk, crypto_sign_SECRETKEYBYTES, B64URL);
        /* Built by hand so that no JSON library keeps a copy of the secret: every field is
         * base64url, digits or null, none needs escaping. */
        n = snprintf(text.data, text.size,
                     "{\"kid\":\"%s\",\"created\":%" PRIu64 ",\"retired\":%s,\"secretKey\":\"%s\"}\n",
                     key->kid, key->created_usec, retired, b64.data);
        if (n < 0 || (size_t) n >= text.size)
                return -EINVAL;

        (void) snprintf(tmp, sizeof tmp, ".%s" KEY_SUFFIX TMP_SUFFIX, key->kid);
        (void) snprintf(name, sizeof name, "%s" KEY_SUFFIX, key->kid);

        if (unlinkat(dir_fd, tmp, 0) < 0 && errno != ENOENT)
                return -errno;
        fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (fd < 0)
                return -errno;

        r = loop_write(fd, text.data, (size_t) n);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0) {
                int fd_closed = TAKE_FD(fd);
                if (close(fd_closed) < 0)
                        r = -errno;
        }
        if (r >= 0 && renameat(dir_fd, tmp, dir_fd, name) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlinkat(dir_fd, tmp, 0);
                return r;
        }
        if (fsync(dir_fd) < 0)
                return -errno;
        return 0;
}

static int json_get_usec(json_t *o, const char *field, bool nullable, uint64_t *ret) {
        json_t *v = json_object_get(o, field);

        if (nullable && json_is_null(v)) {
                *ret = RETIRED_NEVER;
                return 0;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return -EBADMSG;
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

/* Overwrites the characters of a jansson string in place (the parser's own scratch copies are
 * out of reach, see the note in key_read()). */
static void json_string_wipe(json_t *v) {
        if (json_is_string(v))
                sodium_memzero((char *) json_string_value(v), json_string_length(v));
}

/* A key from its JSON form (a key file's or a key record's): the secret key decoded into
 * locked memory and checked against its public half and its kid. The secret's string in o is
 * wiped. -EBADMSG for anything malformed. */
static int key_from_json(json_t *o, Key *ret) {
        _cleanup_(key_donep) Key key = {};
        uint8_t pk[crypto_sign_PUBLICKEYBYTES];
        unsigned char seed_sk[crypto_sign_SECRETKEYBYTES];
        json_t *kid, *secret;
        size_t sk_len = 0;
        int r;

        if (!json_is_object(o))
                return -EBADMSG;
        secret = json_object_get(o, "secretKey");
        if (!json_is_string(secret))
                return -EBADMSG;
        key.sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
        if (!key.sk) {
                json_string_wipe(secret);
                return -ENOMEM;
        }
        r = b64url_decode(json_string_value(secret), json_string_length(secret), key.sk,
                          crypto_sign_SECRETKEYBYTES, &sk_len);
        json_string_wipe(secret);
        if (r < 0 || sk_len != crypto_sign_SECRETKEYBYTES)
                return -EBADMSG;

        /* The secret key is seed || public key: derive the public key from the seed again, so a
         * damaged key is noticed here and not as bad signatures later. */
        r = crypto_sign_seed_keypair(pk, seed_sk, key.sk);
        sodium_memzero(seed_sk, sizeof seed_sk);
        if (r != 0)
                return -EIO;
        if (sodium_mprotect_readonly(key.sk) != 0)
                return -errno;
        if (memcmp(pk, key.sk + crypto_sign_SEEDBYTES, sizeof pk) != 0)
                return -EBADMSG;
        memcpy(key.pk, pk, sizeof pk);
        kid_from_pk(key.pk, key.kid);

        kid = json_object_get(o, "kid");
        if (!json_is_string(kid) || !streq(json_string_value(kid), key.kid))
                return -EBADMSG;

        r = json_get_usec(o, "created", false, &key.created_usec);
        if (r < 0)
                return r;
        r = json_get_usec(o, "retired", true, &key.retired_usec);
        if (r < 0)
                return r;

        *ret = key;
        key = (Key) {};
        return 0;
}

static int key_read(int dir_fd, const char *name, Key *ret) {
        _cleanup_(wiped_buf_done) WipedBuf text = {};
        _cleanup_(key_donep) Key key = {};
        _cleanup_(closep) int fd = -EBADF;
        json_auto_t *o = NULL;
        struct stat st;
        size_t n = 0;
        int r;

        fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADMSG;
        /* Fail closed: a key others could read (or that someone else owns) is not ours to use. */
        if ((st.st_mode & 077) != 0 || st.st_uid != geteuid())
                return -EPERM;
        if (st.st_size <= 0 || st.st_size >= KEY_FILE_MAX)
                return -EBADMSG;

        r = wiped_buf_alloc(&text, KEY_FILE_MAX);
        if (r < 0)
                return r;
        for (;;) {
                ssize_t k = read(fd, text.data + n, text.size - 1 - n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n >= text.size - 1)
                        return -EBADMSG;
        }

        /* jansson keeps scratch copies of string tokens in its lexer that it frees without wiping;
         * the daemon-wide remedy is a wiping allocator (json_set_alloc_funcs) installed in main.
         * Here we wipe what we can reach: the file text and the decoded string. */
        o = json_loadb(text.data, n, JSON_REJECT_DUPLICATES, NULL);
        r = key_from_json(o, &key);
        if (r < 0)
                return r;
        if (strlen(name) != KID_LEN + strlen(KEY_SUFFIX) || strncmp(name, key.kid, KID_LEN) != 0)
                return -EBADMSG;

        *ret = key;
        key = (Key) {};
        return 0;
}

/* Best effort: overwrite the file's contents before unlinking it. (On copy-on-write or journaling
 * file systems the old blocks may survive; that is why the directory is 0700.) */
static int key_delete(int dir_fd, const Key *key) {
        char name[KID_LEN + sizeof(KEY_SUFFIX)];
        _cleanup_(closep) int fd = -EBADF;

        (void) snprintf(name, sizeof name, "%s" KEY_SUFFIX, key->kid);

        fd = openat(dir_fd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd >= 0) {
                static const char zeros[KEY_FILE_MAX];
                struct stat st;

                if (fstat(fd, &st) >= 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
                    st.st_size <= KEY_FILE_MAX &&
                    loop_write(fd, zeros, (size_t) st.st_size) >= 0)
                        (void) fsync(fd);
        }
        if (unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

/* ---- keyring ---- */

static bool key_expired(const Key *key, uint64_t now_usec, uint64_t retain_usec) {
        if (key->retired_usec == RETIRED_NEVER)
                return false;
        if (key->retired_usec > UINT64_MAX - retain_usec)
                return false;
        return key->retired_usec + retain_usec < now_usec;
}

/* Active (not retired) keys first, then newest first; ties by kid, so the order is total. */
static int key_compare(const void *a, const void *b) {
        const Key *x = a, *y = b;
        bool xr = x->retired_usec != RETIRED_NEVER, yr = y->retired_usec != RETIRED_NEVER;

        if (xr != yr)
                return xr ? 1 : -1;
        if (x->created_usec != y->created_usec)
                return x->created_usec > y->created_usec ? -1 : 1;
        return strcmp(x->kid, y->kid);
}

static int keyring_add(Keyring *k, Key *key) {
        Key *n;

        n = reallocarray(k->keys, k->n_keys + 1, sizeof(Key));
        if (!n)
                return -ENOMEM;
        k->keys = n;
        k->keys[k->n_keys++] = *key;
        *key = (Key) {};
        return 0;
}

static int keyring_update_kids(Keyring *k) {
        char **kids;

        k->generation = ++keyring_generations;  /* every change of the keys comes this way */
        kids = calloc(k->n_keys + 1, sizeof(char *));
        if (!kids)
                return -ENOMEM;
        for (size_t i = 0; i < k->n_keys; i++)
                kids[i] = k->keys[i].kid;
        free(k->kids);
        k->kids = kids;
        return 0;
}

/* Writes key to the keyring's directory; a keyring made from records keeps nothing itself. */
static int keyring_persist(Keyring *k, const Key *key) {
        return k->dir_fd >= 0 ? key_write(k->dir_fd, key) : 0;
}

/* Deletes the keys retired longer than retain_usec ago, from disk and memory. */
static int keyring_prune(Keyring *k, uint64_t now_usec, uint64_t retain_usec) {
        size_t j = 0;
        bool deleted = false;
        int r = 0;

        for (size_t i = 0; i < k->n_keys; i++) {
                if (r >= 0 && key_expired(&k->keys[i], now_usec, retain_usec)) {
                        r = k->dir_fd >= 0 ? key_delete(k->dir_fd, &k->keys[i]) : 0;
                        if (r >= 0) {
                                key_done(&k->keys[i]);
                                deleted = true;
                                continue;
                        }
                }
                k->keys[j++] = k->keys[i];
        }
        k->n_keys = j;

        if (deleted && k->dir_fd >= 0 && fsync(k->dir_fd) < 0 && r >= 0)
                r = -errno;
        return r;
}

/* A new key, created strictly after the current newest one (so that a clock step back cannot
 * make keyring_load pick the old key as active again), written to disk. */
static int keyring_new_key(Keyring *k, uint64_t now_usec, Key *ret) {
        uint64_t created = now_usec;
        int r;

        for (size_t i = 0; i < k->n_keys; i++)
                if (k->keys[i].created_usec >= created)
                        created = k->keys[i].created_usec + 1;

        for (unsigned attempt = 0;; attempt++) {
                _cleanup_(key_donep) Key key = {};
                bool clash = false;

                r = key_new(created, &key);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < k->n_keys; i++)
                        if (streq(k->keys[i].kid, key.kid))
                                clash = true;
                if (clash) {
                        if (attempt >= 3)
                                return -EEXIST;
                        continue;
                }

                r = keyring_persist(k, &key);
                if (r < 0)
                        return r;
                *ret = key;
                key = (Key) {};
                return 0;
        }
}

Keyring *keyring_free(Keyring *k) {
        if (!k)
                return NULL;
        for (size_t i = 0; i < k->n_keys; i++)
                key_done(&k->keys[i]);
        free(k->keys);
        free(k->kids);
        jwt_cache_free(k->cache);
        (void) safe_close(k->dir_fd);
        free(k);
        return NULL;
}


static int keyring_read_dir(Keyring *k) {
        _cleanup_(closep) int fd = -EBADF;
        DIR *d;
        struct dirent *de;
        int r = 0;

        fd = fcntl(k->dir_fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF; /* owned by d now */
        rewinddir(d);

        for (;;) {
                _cleanup_(key_donep) Key key = {};

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                r = -errno;
                        break;
                }
                if (de->d_name[0] == '.') {
                        /* a temporary file left by a crash inside key_write() */
                        if (has_suffix(de->d_name, KEY_SUFFIX TMP_SUFFIX))
                                (void) unlinkat(k->dir_fd, de->d_name, 0);
                        continue;
                }
                if (!has_suffix(de->d_name, KEY_SUFFIX))
                        continue;

                r = key_read(k->dir_fd, de->d_name, &key);
                if (r < 0)
                        break;
                r = keyring_add(k, &key);
                if (r < 0)
                        break;
        }

        (void) closedir(d);
        return r;
}

int keyring_save_to(const Keyring *k, const char *dir) {
        _cleanup_(closep) int dir_fd = -EBADF;
        int r;

        if (!k || !dir)
                return -EINVAL;
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (dir_fd < 0)
                return -errno;
        for (size_t i = 0; i < k->n_keys; i++) {
                r = key_write(dir_fd, &k->keys[i]);
                if (r < 0)
                        return r;
        }
        return fsync(dir_fd) < 0 ? -errno : (int) k->n_keys;
}

static Keyring *keyring_alloc(void) {
        Keyring *k = calloc(1, sizeof(Keyring));

        if (k)
                k->dir_fd = -EBADF;
        return k;
}

/* What every load makes of the keys found: one active key (if several are, after a crash inside
 * keyring_rotate(), the newest one; the others are retired at now_usec), keys retired longer
 * than retain_usec ago gone, and a new active key if none is left and may_create (else -ENOKEY).
 * Sorted (key_compare), its kids indexed (keyring_update_kids()), when it returns. */
static int keyring_settle(Keyring *k, uint64_t now_usec, uint64_t retain_usec, bool may_create) {
        int r;

        if (k->n_keys > 0)
                qsort(k->keys, k->n_keys, sizeof(Key), key_compare);

        for (size_t i = 1; i < k->n_keys; i++) {
                if (k->keys[i].retired_usec != RETIRED_NEVER)
                        break;
                k->keys[i].retired_usec = now_usec;
                r = keyring_persist(k, &k->keys[i]);
                if (r < 0)
                        return r;
        }
        if (k->n_keys > 1)
                qsort(k->keys, k->n_keys, sizeof(Key), key_compare);

        r = keyring_prune(k, now_usec, retain_usec);
        if (r < 0)
                return r;

        if (k->n_keys == 0 || k->keys[0].retired_usec != RETIRED_NEVER) {
                _cleanup_(key_donep) Key key = {};

                if (!may_create)
                        return -ENOKEY;
                r = keyring_new_key(k, now_usec, &key);
                if (r < 0)
                        return r;
                r = keyring_add(k, &key);
                if (r < 0)
                        return r;
                qsort(k->keys, k->n_keys, sizeof(Key), key_compare);
        }
        return keyring_update_kids(k);
}

int keyring_load(const char *dir, uint64_t now_usec, uint64_t retain_usec, Keyring **ret) {
        _cleanup_(keyring_freep) Keyring *k = NULL;
        struct stat st;
        int r;

        if (!dir || !ret)
                return -EINVAL;
        if (sodium_init() < 0)
                return -EIO;

        k = keyring_alloc();
        if (!k)
                return -ENOMEM;

        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return -errno;
        k->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (k->dir_fd < 0)
                return -errno;
        if (fstat(k->dir_fd, &st) < 0)
                return -errno;
        /* Others able to add or replace files could plant a key of theirs. */
        if ((st.st_mode & 022) != 0 || st.st_uid != geteuid())
                return -EPERM;

        r = keyring_read_dir(k);
        if (r < 0)
                return r;
        r = keyring_settle(k, now_usec, retain_usec, true);
        if (r < 0)
                return r;

        k->cache = jwt_cache_new(JWT_CACHE_ENTRIES);
        if (!k->cache)
                return -ENOMEM;
        *ret = TAKE_PTR(k);
        return 0;
}

int keyring_rotate(Keyring *k, uint64_t now_usec, uint64_t retain_usec) {
        _cleanup_(key_donep) Key key = {};
        Key *n;
        int r, q;

        if (!k || k->n_keys == 0)
                return -EINVAL;

        /* Make room first, so that nothing can fail between writing the key and using it. */
        n = reallocarray(k->keys, k->n_keys + 1, sizeof(Key));
        if (!n)
                return -ENOMEM;
        k->keys = n;

        r = keyring_new_key(k, now_usec, &key);
        if (r < 0)
                return r;

        /* Whatever happens below, the keys change: nothing verified before counts any more (and
         * keyring_update_kids() gives k a new generation). */
        jwt_cache_flush(k->cache);

        /* The new key is on disk and, being the newest, is what keyring_load() would pick: from
         * here on it is active whatever else fails. */
        k->keys[0].retired_usec = now_usec;
        r = keyring_persist(k, &k->keys[0]);

        k->keys[k->n_keys++] = key;
        key = (Key) {};
        qsort(k->keys, k->n_keys, sizeof(Key), key_compare);

        q = keyring_prune(k, now_usec, retain_usec);
        if (r >= 0)
                r = q;
        q = keyring_update_kids(k);
        if (r >= 0)
                r = q;
        return r;
}

int keyring_drop_retired(Keyring *k) {
        size_t before;
        int r, q;

        if (!k)
                return -EINVAL;
        before = k->n_keys;
        jwt_cache_flush(k->cache);      /* first: a token of a dropped key must not be found */
        /* Every retired key has been retired for longer than 0 µs before the end of time. */
        r = keyring_prune(k, UINT64_MAX, 0);
        q = keyring_update_kids(k);
        if (r >= 0)
                r = q;
        return r < 0 ? r : (int) (before - k->n_keys);
}

/* ---- keys as records (a store several idmd share) ---- */

/* The JSON form of a key, as a key file holds it. The secret passes through a jansson string:
 * idmd's allocator wipes jansson's blocks when they are freed. */
static int key_to_json(const Key *key, json_t **ret) {
        _cleanup_(wiped_buf_done) WipedBuf b64 = {};
        json_t *o;
        int r;

        if (key->created_usec > INT64_MAX ||
            (key->retired_usec != RETIRED_NEVER && key->retired_usec > INT64_MAX))
                return -EINVAL;
        r = wiped_buf_alloc(&b64, sodium_base64_ENCODED_LEN(crypto_sign_SECRETKEYBYTES, B64URL));
        if (r < 0)
                return r;
        (void) sodium_bin2base64(b64.data, b64.size, key->sk, crypto_sign_SECRETKEYBYTES, B64URL);
        o = json_pack("{s:s, s:I, s:o, s:s}",
                      "kid", key->kid,
                      "created", (json_int_t) key->created_usec,
                      "retired", key->retired_usec == RETIRED_NEVER ? json_null() :
                                 json_integer((json_int_t) key->retired_usec),
                      "secretKey", b64.data);
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

/* Adds the keys of records ({kid: record}) to k; their secrets' strings are wiped. */
static int keyring_read_records(Keyring *k, json_t *records) {
        const char *name;
        json_t *rec;
        int r;

        if (!json_is_object(records))
                return -EINVAL;
        json_object_foreach(records, name, rec) {
                _cleanup_(key_donep) Key key = {};

                r = key_from_json(rec, &key);
                if (r < 0)
                        return r;
                if (!streq(name, key.kid))
                        return -EBADMSG;
                r = keyring_add(k, &key);
                if (r < 0)
                        return r;
        }
        return 0;
}

int keyring_records(const Keyring *k, json_t **ret) {
        json_auto_t *records = NULL;
        int r;

        if (!k || !ret)
                return -EINVAL;
        records = json_object();
        if (!records)
                return -ENOMEM;
        for (size_t i = 0; i < k->n_keys; i++) {
                json_t *rec;

                r = key_to_json(&k->keys[i], &rec);
                if (r < 0)
                        return r;
                if (json_object_set_new(records, k->keys[i].kid, rec) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(records);
        return 0;
}

/* A keyring of the keys of records, settled (keyring_settle(): may_create, or -ENOKEY without an
 * active key), without a directory or a cache. */
static int keyring_new_from_records(json_t *records, uint64_t now_usec, uint64_t retain_usec, bool may_create,
                                    Keyring **ret) {
        _cleanup_(keyring_freep) Keyring *k = NULL;
        int r;

        if (sodium_init() < 0)
                return -EIO;
        k = keyring_alloc();
        if (!k)
                return -ENOMEM;
        r = keyring_read_records(k, records);
        if (r < 0)
                return r;
        r = keyring_settle(k, now_usec, retain_usec, may_create);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(k);
        return 0;
}

int key_records_update(json_t *records, uint64_t now_usec, uint64_t retain_usec, KeyRecordsFlags flags,
                       unsigned *ret_dropped) {
        _cleanup_(keyring_freep) Keyring *k = NULL;
        json_auto_t *fresh = NULL;
        int r, dropped = 0;

        if (!json_is_object(records))
                return -EINVAL;
        r = keyring_new_from_records(records, now_usec, retain_usec, true, &k);
        if (r < 0)
                return r;
        if (flags & KEY_RECORDS_ROTATE) {
                r = keyring_rotate(k, now_usec, retain_usec);
                if (r < 0)
                        return r;
        }
        if (flags & KEY_RECORDS_DROP_RETIRED) {
                dropped = keyring_drop_retired(k);
                if (dropped < 0)
                        return dropped;
        }
        r = keyring_records(k, &fresh);
        if (r < 0)
                return r;
        if (json_object_clear(records) < 0 || json_object_update(records, fresh) < 0)
                return -ENOMEM;
        if (ret_dropped)
                *ret_dropped = (unsigned) dropped;
        return 0;
}

int keyring_from_records(json_t *records, uint64_t now_usec, uint64_t retain_usec, Keyring **ret) {
        _cleanup_(keyring_freep) Keyring *k = NULL;
        int r;

        if (!records || !ret)
                return -EINVAL;
        r = keyring_new_from_records(records, now_usec, retain_usec, false, &k);
        if (r < 0)
                return r;
        k->cache = jwt_cache_new(JWT_CACHE_ENTRIES);
        if (!k->cache)
                return -ENOMEM;
        *ret = TAKE_PTR(k);
        return 0;
}

static bool keyring_has(const Keyring *k, const char *kid);

int keyring_set_records(Keyring *k, json_t *records, uint64_t now_usec, uint64_t retain_usec) {
        _cleanup_(keyring_freep) Keyring *fresh = NULL;
        bool changed;
        int r;

        if (!k || !records)
                return -EINVAL;
        r = keyring_new_from_records(records, now_usec, retain_usec, false, &fresh);
        if (r < 0)
                return r;

        changed = fresh->n_keys != k->n_keys;
        for (size_t i = 0; i < k->n_keys; i++) {
                if (!keyring_has(fresh, k->keys[i].kid))
                        changed = true;
                else if (!changed && (!streq(k->keys[i].kid, fresh->keys[i].kid) ||
                                      k->keys[i].retired_usec != fresh->keys[i].retired_usec))
                        changed = true;
        }
        if (!changed)
                return 0;

        /* As keyring_rotate(): once the keys change, nothing verified before counts (a key may
         * be gone: retired long enough, or deleted as leaked). */
        jwt_cache_flush(k->cache);
        /* fresh's kids (and generation) were made above: nothing can fail from here on. */
        {
                Key *keys = k->keys;
                size_t n_keys = k->n_keys;
                char **kids = k->kids;

                k->keys = fresh->keys;
                k->n_keys = fresh->n_keys;
                k->kids = fresh->kids;
                fresh->keys = keys;     /* freed with fresh */
                fresh->n_keys = n_keys;
                fresh->kids = kids;
        }
        k->generation = fresh->generation;
        return 1;
}

const char *keyring_active_kid(const Keyring *k) {
        if (!k || k->n_keys == 0)
                return NULL;
        return k->keys[0].kid;
}

uint64_t keyring_generation(const Keyring *k) {
        return k ? k->generation : 0;
}

char **keyring_kids(const Keyring *k) {
        return k ? k->kids : NULL;
}

static const Key *keyring_find(const Keyring *k, const char *kid) {
        for (size_t i = 0; i < k->n_keys; i++)
                if (streq(k->keys[i].kid, kid))
                        return &k->keys[i];
        return NULL;
}

static bool keyring_has(const Keyring *k, const char *kid) {
        return keyring_find(k, kid) != NULL;
}

int keyring_jwks(const Keyring *k, json_t **ret) {
        json_auto_t *keys = NULL, *jwks = NULL;

        if (!k || !ret)
                return -EINVAL;

        keys = json_array();
        if (!keys)
                return -ENOMEM;

        for (size_t i = 0; i < k->n_keys; i++) {
                _cleanup_(freep) char *x = NULL;
                json_t *jwk;
                int r;

                r = b64url_encode(k->keys[i].pk, sizeof k->keys[i].pk, &x);
                if (r < 0)
                        return r;
                jwk = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}",
                                "kty", "OKP",
                                "crv", "Ed25519",
                                "x", x,
                                "kid", k->keys[i].kid,
                                "use", "sig",
                                "alg", "EdDSA");
                if (!jwk || json_array_append_new(keys, jwk) < 0)
                        return -ENOMEM;
        }

        jwks = json_pack("{s:O}", "keys", keys);
        if (!jwks)
                return -ENOMEM;
        *ret = TAKE_PTR(jwks);
        return 0;
}

/* ---- JWS / JWT ---- */

static bool alg_is_allowed(const char *alg) {
        /* RFC 8037 "EdDSA" and its fully specified RFC 9864 name. Never "none", never HMAC. */
        return streq(alg, "EdDSA") || streq(alg, "Ed25519");
}

static int json_dumps_new(const json_t *j, char **ret) {
        char *s;

        s = json_dumps(j, JSON_COMPACT);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int json_pack_error(const json_error_t *e) {
        return json_error_code(e) == json_error_out_of_memory ? -ENOMEM : -EINVAL;
}

int jwt_sign(const Keyring *k, const JwtClaims *c, const char *alg_name, char **ret) {
        _cleanup_(freep) char *claims_json = NULL, *out = NULL;
        json_auto_t *claims = NULL;
        uint8_t sig[crypto_sign_BYTES];
        char header_json[128];
        const Key *key;
        json_error_t e;
        size_t hjl, cjl, hl, cl, sl, n;
        int r;

        if (!k || !c || !ret || k->n_keys == 0)
                return -EINVAL;
        if (!alg_name)
                alg_name = "EdDSA";
        if (!alg_is_allowed(alg_name))
                return -EINVAL;
        if (!c->iss || !c->sub || !c->aud || !c->jti || !c->customer_id || !c->publisher_id)
                return -EINVAL;
        if (c->iat > INT64_MAX || c->nbf > INT64_MAX || c->exp > INT64_MAX)
                return -EINVAL;

        key = &k->keys[0];

        /* The header is what json_dumps(JSON_COMPACT) made of {alg, typ, kid}, written directly:
         * alg is one of two names and the kid base64url, so nothing needs escaping. */
        r = snprintf(header_json, sizeof header_json, "{\"alg\":\"%s\",\"typ\":\"" JWT_TYP "\",\"kid\":\"%s\"}",
                     alg_name, key->kid);
        if (r < 0 || (size_t) r >= sizeof header_json)
                return -EINVAL;
        hjl = (size_t) r;
        claims = json_pack_ex(&e, 0, "{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:s, s:s}",
                              "iss", c->iss,
                              "sub", c->sub,
                              "aud", c->aud,
                              "exp", (json_int_t) c->exp,
                              "iat", (json_int_t) c->iat,
                              "nbf", (json_int_t) c->nbf,
                              "jti", c->jti,
                              "customerId", c->customer_id,
                              "publisherId", c->publisher_id);
        if (!claims)
                return json_pack_error(&e);
        if (c->sid) {
                json_t *sid = json_string(c->sid);      /* NULL for non-UTF-8 too */

                if (!sid)
                        return -EINVAL;
                if (json_object_set_new(claims, "sid", sid) < 0)
                        return -ENOMEM;
        }
        r = json_dumps_new(claims, &claims_json);
        if (r < 0)
                return r;
        cjl = strlen(claims_json);

        /* header "." claims "." signature, each base64url, encoded in place. */
        hl = sodium_base64_ENCODED_LEN(hjl, B64URL) - 1;
        cl = sodium_base64_ENCODED_LEN(cjl, B64URL) - 1;
        sl = sodium_base64_ENCODED_LEN(crypto_sign_BYTES, B64URL) - 1;
        n = hl + 1 + cl + 1 + sl;
        if (n > JWT_MAX)
                return -EINVAL;  /* would not verify */
        out = malloc(n + 1);
        if (!out)
                return -ENOMEM;
        sodium_bin2base64(out, hl + 1, (const unsigned char *) header_json, hjl, B64URL);
        out[hl] = '.';
        sodium_bin2base64(out + hl + 1, cl + 1, (const unsigned char *) claims_json, cjl, B64URL);

        /* The signing input is ASCII(base64url(header) '.' base64url(claims)). */
        if (crypto_sign_detached(sig, NULL, (const unsigned char *) out, hl + 1 + cl, key->sk) != 0)
                return -EIO;
        out[hl + 1 + cl] = '.';
        sodium_bin2base64(out + hl + 1 + cl + 1, sl + 1, sig, sizeof sig, B64URL);

        *ret = TAKE_PTR(out);
        return 0;
}

typedef struct JwsParts {
        const char *header;             /* also the start of the signing input */
        size_t header_len;
        const char *payload;
        size_t payload_len;
        const char *signature;
        size_t signature_len;
} JwsParts;

static int jws_split(const char *compact, JwsParts *ret) {
        const char *dot1, *dot2;
        size_t len;

        if (!compact)
                return -EBADMSG;
        len = strnlen(compact, JWT_MAX + 1);
        if (len > JWT_MAX)
                return -EBADMSG;

        dot1 = memchr(compact, '.', len);
        if (!dot1)
                return -EBADMSG;
        dot2 = memchr(dot1 + 1, '.', len - (size_t) (dot1 + 1 - compact));
        if (!dot2)
                return -EBADMSG;
        if (memchr(dot2 + 1, '.', len - (size_t) (dot2 + 1 - compact)))
                return -EBADMSG;

        *ret = (JwsParts) {
                .header = compact,
                .header_len = (size_t) (dot1 - compact),
                .payload = dot1 + 1,
                .payload_len = (size_t) (dot2 - dot1 - 1),
                .signature = dot2 + 1,
                .signature_len = len - (size_t) (dot2 + 1 - compact),
        };
        if (ret->header_len == 0 || ret->payload_len == 0 || ret->signature_len == 0)
                return -EBADMSG;
        return 0;
}

static int jws_check_signature(const uint8_t pk[static crypto_sign_PUBLICKEYBYTES], const JwsParts *p) {
        uint8_t sig[crypto_sign_BYTES];
        size_t n;
        int r;

        r = b64url_decode(p->signature, p->signature_len, sig, sizeof sig, &n);
        if (r < 0)
                return r;
        if (n != sizeof sig)
                return -EBADMSG;
        if (crypto_sign_verify_detached(sig, (const unsigned char *) p->header,
                                        p->header_len + 1 + p->payload_len, pk) != 0)
                return -EBADMSG;
        return 0;
}

int jws_verify_ed25519(const uint8_t pk[static crypto_sign_PUBLICKEYBYTES], const char *compact) {
        JwsParts p;
        int r;

        r = jws_split(compact, &p);
        if (r < 0)
                return r;
        return jws_check_signature(pk, &p);
}

/* Decodes one base64url part holding a JSON object; duplicate keys are refused. */
static int jws_part_json(const char *s, size_t len, json_t **ret) {
        _cleanup_(freep) char *buf = NULL;
        json_t *j;
        size_t n;
        int r;

        r = b64url_decode_alloc(s, len, &buf, &n);
        if (r < 0)
                return r;
        j = json_loadb(buf, n, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(j)) {
                json_decref(j);
                return -EBADMSG;
        }
        *ret = j;
        return 0;
}

static bool typ_is_allowed(const char *typ) {
        /* RFC 9068 2.1: "at+jwt", or the full media type; media types compare case-insensitively. */
        return strcasecmp(typ, JWT_TYP) == 0 || strcasecmp(typ, "application/" JWT_TYP) == 0;
}

/* Returns the key named by a well-formed header, -ENOKEY when no key of k has its kid, or
 * -EBADMSG. */
static int jwt_check_header(const Keyring *k, const JwsParts *p, const Key **ret) {
        json_auto_t *h = NULL;
        const char *field, *alg = NULL, *typ = NULL, *kid = NULL;
        const Key *key;
        json_t *v;
        int r;

        r = jws_part_json(p->header, p->header_len, &h);
        if (r < 0)
                return r;

        /* Exactly these three: no crit, no jku/jwk/x5u (keys are only ever ours), nothing else. */
        json_object_foreach(h, field, v) {
                if (!json_is_string(v))
                        return -EBADMSG;
                if (streq(field, "alg"))
                        alg = json_string_value(v);
                else if (streq(field, "typ"))
                        typ = json_string_value(v);
                else if (streq(field, "kid"))
                        kid = json_string_value(v);
                else
                        return -EBADMSG;
        }
        if (!alg || !typ || !kid)
                return -EBADMSG;
        if (!alg_is_allowed(alg) || !typ_is_allowed(typ))
                return -EBADMSG;

        key = keyring_find(k, kid);
        if (!key)
                return -ENOKEY;
        *ret = key;
        return 0;
}

static int claim_string(json_t *claims, const char *field, char **ret) {
        json_t *v = json_object_get(claims, field);
        char *s;

        if (!json_is_string(v) || json_string_length(v) == 0)
                return -EBADMSG;
        s = strdup(json_string_value(v));
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int claim_time(json_t *claims, const char *field, uint64_t *ret) {
        json_t *v = json_object_get(claims, field);

        if (!json_is_integer(v) || json_integer_value(v) < 0)
                return -EBADMSG;
        *ret = (uint64_t) json_integer_value(v);
        return 0;
}

int jwt_verify(const Keyring *k, const char *token, const char *issuer, uint64_t now_sec,
               uint64_t leeway_sec, JwtClaims *ret) {
        _cleanup_(jwt_claims_done) JwtClaims c = {};
        json_auto_t *claims = NULL;
        const Key *key;
        JwsParts p;
        int r;

        if (!k || !issuer || !ret)
                return -EINVAL;

        r = jws_split(token, &p);
        if (r < 0)
                return r;
        r = jwt_check_header(k, &p, &key);
        if (r < 0)
                return r;
        /* Nothing in the payload is looked at before the signature is known to be ours. */
        r = jws_check_signature(key->pk, &p);
        if (r < 0)
                return r;

        r = jws_part_json(p.payload, p.payload_len, &claims);
        if (r < 0)
                return r;

        if ((r = claim_string(claims, "iss", &c.iss)) < 0 ||
            (r = claim_string(claims, "sub", &c.sub)) < 0 ||
            (r = claim_string(claims, "aud", &c.aud)) < 0 ||
            (r = claim_string(claims, "jti", &c.jti)) < 0 ||
            (r = claim_string(claims, "customerId", &c.customer_id)) < 0 ||
            (r = claim_string(claims, "publisherId", &c.publisher_id)) < 0 ||
            (r = claim_time(claims, "iat", &c.iat)) < 0 ||
            (r = claim_time(claims, "nbf", &c.nbf)) < 0 ||
            (r = claim_time(claims, "exp", &c.exp)) < 0)
                return r;
        if (json_object_get(claims, "sid")) {
                r = claim_string(claims, "sid", &c.sid);
                if (r < 0)
                        return r;
        }

        if (!streq(c.iss, issuer))
                return -EBADMSG;

        /* Written so that nothing overflows: expired when now >= exp + leeway, not yet valid when
         * now + leeway < nbf. */
        if (now_sec >= c.exp && now_sec - c.exp >= leeway_sec)
                return -ETIME;
        if (c.nbf > now_sec && c.nbf - now_sec > leeway_sec)
                return -ETIME;

        c.kid = strdup(key->kid);
        if (!c.kid)
                return -ENOMEM;

        *ret = c;
        c = (JwtClaims) {};
        return 0;
}

void jwt_claims_done(JwtClaims *c) {
        if (!c)
                return;
        free(c->iss);
        free(c->sub);
        free(c->aud);
        free(c->jti);
        free(c->customer_id);
        free(c->publisher_id);
        free(c->kid);
        free(c->sid);
        *c = (JwtClaims) {};
}

/* ---- the cache of verified access JWTs (tokens.h) ---- */

#define JWT_CACHE_WAYS 4u

typedef struct JwtCacheEntry {
        uint8_t hash[crypto_generichash_BYTES]; /* keyed BLAKE2b-256 of the token */
        bool used;
        uint64_t last_used;                     /* JwtCache.tick of the last hit or the insertion */
        JwtClaims claims;                       /* what jwt_verify() returned for it */
} JwtCacheEntry;

struct JwtCache {
        uint8_t key[crypto_generichash_KEYBYTES];       /* random, this cache's only */
        size_t n_sets;
        JwtCacheEntry *entries;                 /* n_sets * JWT_CACHE_WAYS */
        uint64_t revocations;                   /* jwt_cache_revocations when last emptied */
        uint64_t tick;
        JwtCacheStats stats;
};

/* Bumped by jwt_cache_revoke(); a cache that has seen fewer empties itself before a lookup. */
static uint64_t jwt_cache_revocations;

static int jwt_claims_copy(const JwtClaims *from, JwtClaims *ret) {
        _cleanup_(jwt_claims_done) JwtClaims c = {
                .iat = from->iat,
                .nbf = from->nbf,
                .exp = from->exp,
        };
        const char *const src[] = { from->iss, from->sub, from->aud, from->jti, from->customer_id,
                                    from->publisher_id, from->kid, from->sid };
        char **const dst[] = { &c.iss, &c.sub, &c.aud, &c.jti, &c.customer_id, &c.publisher_id, &c.kid, &c.sid };

        for (size_t i = 0; i < ELEMENTSOF(src); i++) {
                if (!src[i])
                        continue;
                *dst[i] = strdup(src[i]);
                if (!*dst[i])
                        return -ENOMEM;
        }
        *ret = c;
        c = (JwtClaims) {};
        return 0;
}

static void jwt_cache_entry_drop(JwtCache *c, JwtCacheEntry *e) {
        if (!e->used)
                return;
        jwt_claims_done(&e->claims);
        sodium_memzero(e->hash, sizeof e->hash);
        e->used = false;
        c->stats.entries--;
}

static void jwt_cache_flush(JwtCache *c) {
        if (!c)
                return;
        for (size_t i = 0; i < c->n_sets * JWT_CACHE_WAYS; i++)
                jwt_cache_entry_drop(c, &c->entries[i]);
        c->stats.flushes++;
}

static JwtCache *jwt_cache_free(JwtCache *c) {
        if (!c)
                return NULL;
        jwt_cache_flush(c);
        free(c->entries);
        sodium_memzero(c->key, sizeof c->key);
        free(c);
        return NULL;
}

static JwtCache *jwt_cache_new(size_t capacity) {
        JwtCache *c;

        if (capacity == 0 || capacity > SIZE_MAX / sizeof(JwtCacheEntry) - JWT_CACHE_WAYS)
                return NULL;
        c = calloc(1, sizeof(JwtCache));
        if (!c)
                return NULL;
        c->n_sets = (capacity + JWT_CACHE_WAYS - 1) / JWT_CACHE_WAYS;
        c->entries = calloc(c->n_sets * JWT_CACHE_WAYS, sizeof(JwtCacheEntry));
        if (!c->entries) {
                free(c);
                return NULL;
        }
        randombytes_buf(c->key, sizeof c->key);
        c->revocations = __atomic_load_n(&jwt_cache_revocations, __ATOMIC_RELAXED);
        c->stats.capacity = c->n_sets * JWT_CACHE_WAYS;
        return c;
}

void jwt_cache_revoke(void) {
        __atomic_add_fetch(&jwt_cache_revocations, 1, __ATOMIC_RELAXED);
}

void jwt_cache_stats(const Keyring *k, JwtCacheStats *ret) {
        if (!ret)
                return;
        *ret = k && k->cache ? k->cache->stats : (JwtCacheStats) {};
}

int jwt_cache_set_capacity(Keyring *k, size_t capacity) {
        JwtCache *c = NULL;

        if (!k)
                return -EINVAL;
        if (capacity > 0) {
                c = jwt_cache_new(capacity);
                if (!c)
                        return -ENOMEM;
        }
        jwt_cache_free(k->cache);
        k->cache = c;
        return 0;
}

/* The set of a hash: its first four bytes, which the keyed hash makes unpredictable. */
static JwtCacheEntry *jwt_cache_set(JwtCache *c, const uint8_t hash[static crypto_generichash_BYTES]) {
        uint32_t h = (uint32_t) hash[0] | (uint32_t) hash[1] << 8 | (uint32_t) hash[2] << 16 |
                (uint32_t) hash[3] << 24;

        return &c->entries[(h % c->n_sets) * JWT_CACHE_WAYS];
}

/* Where a new entry goes in set: a free way, else one whose token has expired, else the least
 * recently used (counted as an eviction). */
static JwtCacheEntry *jwt_cache_victim(JwtCache *c, JwtCacheEntry *set, uint64_t now_sec) {
        JwtCacheEntry *lru = &set[0];

        for (unsigned i = 0; i < JWT_CACHE_WAYS; i++)
                if (!set[i].used)
                        return &set[i];
        for (unsigned i = 0; i < JWT_CACHE_WAYS; i++) {
                if (now_sec >= set[i].claims.exp) {
                        jwt_cache_entry_drop(c, &set[i]);
                        return &set[i];
                }
                if (set[i].last_used < lru->last_used)
                        lru = &set[i];
        }
        jwt_cache_entry_drop(c, lru);
        c->stats.evictions++;
        return lru;
}

int jwt_verify_cached(const Keyring *k, const char *token, const char *issuer, uint64_t now_sec,
                      uint64_t leeway_sec, JwtClaims *ret) {
        uint8_t hash[crypto_generichash_BYTES];
        JwtCacheEntry *set, *e;
        uint64_t revocations;
        JwtCache *c;
        size_t len;
        int r;

        if (!k || !issuer || !ret)
                return -EINVAL;
        c = k->cache;
        if (!c || !token)
                return jwt_verify(k, token, issuer, now_sec, leeway_sec, ret);
        len = strnlen(token, JWT_MAX + 1);
        if (len > JWT_MAX)
                return jwt_verify(k, token, issuer, now_sec, leeway_sec, ret);

        /* A revocation since the last lookup: nothing verified before it is used again. */
        revocations = __atomic_load_n(&jwt_cache_revocations, __ATOMIC_RELAXED);
        if (c->revocations != revocations) {
                jwt_cache_flush(c);
                c->revocations = revocations;
        }

        if (crypto_generichash(hash, sizeof hash, (const unsigned char *) token, len, c->key, sizeof c->key) != 0)
                return -EIO;
        set = jwt_cache_set(c, hash);
        for (unsigned i = 0; i < JWT_CACHE_WAYS; i++) {
                e = &set[i];
                if (!e->used || sodium_memcmp(e->hash, hash, sizeof hash) != 0)
                        continue;
                /* Never past the token's exp: from there on (the leeway) jwt_verify() decides. */
                if (now_sec >= e->claims.exp) {
                        jwt_cache_entry_drop(c, e);
                        break;
                }
                /* The same answer as jwt_verify(), or jwt_verify() gives it (a clock set back
                 * before nbf, another issuer). */
                if ((e->claims.nbf > now_sec && e->claims.nbf - now_sec > leeway_sec) ||
                    !streq(e->claims.iss, issuer))
                        break;
                r = jwt_claims_copy(&e->claims, ret);
                if (r < 0)
                        return r;
                e->last_used = ++c->tick;
                c->stats.hits++;
                return 1;
        }

        c->stats.misses++;
        return jwt_verify(k, token, issuer, now_sec, leeway_sec, ret);
}

void jwt_cache_remember(const Keyring *k, const char *token, const JwtClaims *claims, uint64_t now_sec) {
        uint8_t hash[crypto_generichash_BYTES];
        JwtCacheEntry *set, *e;
        JwtCache *c;
        size_t len;

        c = k ? k->cache : NULL;
        if (!c || !token || !claims || now_sec >= claims->exp || !claims->iss)
                return;
        len = strnlen(token, JWT_MAX + 1);
        if (len > JWT_MAX)
                return;
        if (c->revocations != __atomic_load_n(&jwt_cache_revocations, __ATOMIC_RELAXED))
                return;         /* a revocation since the lookup: the next lookup empties the cache */
        if (crypto_generichash(hash, sizeof hash, (const unsigned char *) token, len, c->key, sizeof c->key) != 0)
                return;
        set = jwt_cache_set(c, hash);
        for (unsigned i = 0; i < JWT_CACHE_WAYS; i++)
                if (set[i].used && sodium_memcmp(set[i].hash, hash, sizeof hash) == 0)
                        return;         /* there already (and refused by a check of the lookup) */
        e = jwt_cache_victim(c, set, now_sec);
        if (jwt_claims_copy(claims, &e->claims) < 0)
                return;         /* not cached: no harm */
        memcpy(e->hash, hash, sizeof hash);
        e->used = true;
        e->last_used = ++c->tick;
        c->stats.entries++;
}

/* ---- random tokens and hashes ---- */

int token_random(size_t bytes, char **ret) {
        uint8_t buf[TOKEN_RANDOM_MAX];
        int r;

        if (!ret || bytes < 16 || bytes > TOKEN_RANDOM_MAX)
                return -EINVAL;

        randombytes_buf(buf, bytes);
        r = b64url_encode(buf, bytes, ret);
        sodium_memzero(buf, bytes);
        return r;
}

int token_random_from(const char *alphabet, size_t n, char **ret) {
        size_t m;
        char *s;

        if (!alphabet || !ret || n == 0 || n > TOKEN_RANDOM_MAX)
                return -EINVAL;
        m = strlen(alphabet);
        if (m == 0 || m > UINT32_MAX)
                return -EINVAL;

        s = malloc(n + 1);
        if (!s)
                return -ENOMEM;
        /* randombytes_uniform() rejects samples instead of reducing them modulo m: no bias. */
        for (size_t i = 0; i < n; i++)
                s[i] = alphabet[randombytes_uniform((uint32_t) m)];
        s[n] = 0;
        *ret = s;
        return 0;
}

int token_random_digits(size_t n, char **ret) {
        int r;

        if (!ret || n == 0 || n > TOKEN_RANDOM_MAX)
                return -EINVAL;

        r = token_random_from("0123456789", n, ret);
        if (r < 0)
                return r;
        (*ret)[0] = (char) ('1' + randombytes_uniform(9));
        return 0;
}

void token_hash(const char *token, char ret[static TOKEN_HASH_STRLEN + 1]) {
        uint8_t h[crypto_generichash_BYTES];

        (void) crypto_generichash(h, sizeof h, (const unsigned char *) token, strlen(token), NULL, 0);
        (void) sodium_bin2hex(ret, TOKEN_HASH_STRLEN + 1, h, sizeof h);
}

/* ---- sealing a token with another token ---- */

#define SEAL_CONTEXT "idmd token_seal v1: successor key"

_Static_assert(sizeof(SEAL_CONTEXT) - 1 >= crypto_generichash_KEYBYTES_MIN &&
               sizeof(SEAL_CONTEXT) - 1 <= crypto_generichash_KEYBYTES_MAX, "BLAKE2b key length");
_Static_assert(crypto_secretbox_KEYBYTES == crypto_generichash_BYTES, "secretbox key from BLAKE2b-256");

/* key = BLAKE2b-256(key_token) keyed with a fixed context: a sealing key is never the hash the
 * store keeps for the same token (token_hash is unkeyed), so the store alone cannot derive it. */
static int seal_key(const char *key_token, uint8_t key[static crypto_secretbox_KEYBYTES]) {
        if (!key_token || key_token[0] == 0)
                return -EINVAL;
        if (crypto_generichash(key, crypto_secretbox_KEYBYTES, (const unsigned char *) key_token,
                               strlen(key_token), (const unsigned char *) SEAL_CONTEXT,
                               sizeof(SEAL_CONTEXT) - 1) != 0)
                return -EIO;
        return 0;
}

int token_seal(const char *key_token, const char *plaintext, char **ret) {
        _cleanup_(wiped_buf_done) WipedBuf box = {};
        uint8_t key[crypto_secretbox_KEYBYTES];
        size_t n;
        int r;

        if (!plaintext || !ret)
                return -EINVAL;
        n = strnlen(plaintext, TOKEN_SEAL_PLAINTEXT_MAX + 1);
        if (n == 0 || n > TOKEN_SEAL_PLAINTEXT_MAX)
                return -EINVAL;

        r = wiped_buf_alloc(&box, crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + n);
        if (r < 0)
                return r;
        r = seal_key(key_token, key);
        if (r < 0)
                return r;

        randombytes_buf(box.data, crypto_secretbox_NONCEBYTES);
        r = crypto_secretbox_easy((unsigned char *) box.data + crypto_secretbox_NONCEBYTES,
                                  (const unsigned char *) plaintext, n, (const unsigned char *) box.data, key);
        sodium_memzero(key, sizeof key);
        if (r != 0)
                return -EIO;
        return b64url_encode(box.data, box.size, ret);
}

int token_unseal(const char *key_token, const char *sealed, char **ret) {
        _cleanup_(wiped_buf_done) WipedBuf box = {}, plain = {};
        uint8_t key[crypto_secretbox_KEYBYTES];
        const size_t overhead = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES,
                max = sodium_base64_ENCODED_LEN(overhead + TOKEN_SEAL_PLAINTEXT_MAX, B64URL) - 1;
        size_t len, n = 0;
        int r;

        if (!sealed || !ret)
                return -EINVAL;
        len = strnlen(sealed, max + 1);
        if (len > max)
                return -EBADMSG;

        r = wiped_buf_alloc(&box, len / 4 * 3 + 3);
        if (r < 0)
                return r;
        r = b64url_decode(sealed, len, box.data, box.size, &n);
        if (r < 0)
                return r;
        if (n <= overhead || n - overhead > TOKEN_SEAL_PLAINTEXT_MAX)
                return -EBADMSG;

        r = wiped_buf_alloc(&plain, n - overhead + 1);
        if (r < 0)
                return r;
        r = seal_key(key_token, key);
        if (r < 0)
                return r;
        r = crypto_secretbox_open_easy((unsigned char *) plain.data,
                                       (const unsigned char *) box.data + crypto_secretbox_NONCEBYTES,
                                       n - crypto_secretbox_NONCEBYTES, (const unsigned char *) box.data, key);
        sodium_memzero(key, sizeof key);
        if (r != 0)
                return -EBADMSG;
        plain.data[n - overhead] = 0;
        if (strlen(plain.data) != n - overhead)
                return -EBADMSG;        /* we never seal a NUL */

        *ret = TAKE_PTR(plain.data);
        plain.size = 0;
        return 0;
}

bool token_equal(const void *a, const void *b, size_t n) {
        return sodium_memcmp(a, b, n) == 0;
}
