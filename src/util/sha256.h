/* sha256.h: SHA-256 (FIPS 180-4), streaming and one-shot.
 *
 * The pipeline keys things by content: a stage's config hash decides whether its
 * outputs are still valid, and the LLM response cache is keyed by a hash of the
 * request. Both need a stable, collision-resistant digest and nothing more, so
 * this is a small portable implementation (no OpenSSL dependency). Hex output is
 * lower case, 64 characters plus the terminating NUL.
 */
#ifndef AUTOINTERP_UTIL_SHA256_H
#define AUTOINTERP_UTIL_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_BYTES 32
#define SHA256_HEX_CHARS 65 /* 64 hex digits + NUL */

struct sha256_ctx {
    uint32_t h[8];    /* chaining state */
    uint64_t n_bytes; /* total message length so far */
    unsigned char block[64];
    size_t n_block; /* bytes waiting in block[] */
};

void sha256_init(struct sha256_ctx *c);
void sha256_update(struct sha256_ctx *c, const void *data, size_t n);
/* Pads, writes the digest and wipes the context (re-init to reuse it). */
void sha256_final(struct sha256_ctx *c, uint8_t out[SHA256_DIGEST_BYTES]);

/* One-shot helpers. */
void sha256_bytes(const void *data, size_t n, uint8_t out[SHA256_DIGEST_BYTES]);
void sha256_hex(const void *data, size_t n, char out[SHA256_HEX_CHARS]);
void sha256_str_hex(const char *s, char out[SHA256_HEX_CHARS]); /* strlen(s) bytes */
void sha256_to_hex(const uint8_t digest[SHA256_DIGEST_BYTES], char out[SHA256_HEX_CHARS]);

/* Digest of a whole file, read in blocks; errors name the path. */
int sha256_file_hex(const char *path, char out[SHA256_HEX_CHARS]);

#endif
