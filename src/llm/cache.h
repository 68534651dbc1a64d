/* cache.h: successful LLM responses on disk, keyed by the request.
 *
 * A nightly run that is killed and restarted must not pay twice for what it
 * already received, so every response the server answered with HTTP 2xx and a
 * well-formed reply is stored under <dir>/<key[0:2]>/<key>.json, where key is
 * the SHA-256 of the canonical request (request.h: method, URL path and sorted
 * body; no header, so no API key). An entry is one JSON object:
 *
 *   {"format": "autointerp-llm-cache/1", "key": ..., "method": ..., "path": ...,
 *    "request": <the body sent, as JSON>, "response_sha256": ...,
 *    "response": "<the body received, verbatim, as a string>"}
 *
 * written atomically (temp file, then rename), so a reader sees a whole entry
 * or none, however the writing process dies. Entries are not fsync'd one by
 * one: that would stall the transfer loop for milliseconds per reply, and the
 * cache only saves money, it holds no result. After an operating-system crash
 * an entry may be missing or torn; reading detects that and the request is
 * simply fetched again. Reading verifies the format, that the stored request hashes to the
 * key and that the response matches its digest; anything else is "corrupt":
 * the caller refetches and the new entry overwrites it.
 */
#ifndef AUTOINTERP_LLM_CACHE_H
#define AUTOINTERP_LLM_CACHE_H

#include <stddef.h>

/* <dir>/<ab>/<key>.json, malloc'd. */
char *llm_cache_path(const char *dir, const char *key);

/* 1 and the stored response body in *body (malloc'd, *n bytes) on a hit; 0 when
 * there is no entry; -1 when the entry is corrupt (err_msg says why). */
int llm_cache_get(const char *dir, const char *key, char **body, size_t *n);

/* Store an entry (creates the fan-out directory). -1 with err_msg on failure. */
int llm_cache_put(const char *dir, const char *key, const char *method, const char *path,
                  const char *request_body, const char *response, size_t n);

#endif
