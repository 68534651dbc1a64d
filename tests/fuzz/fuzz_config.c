/* fuzz_config.c: the experiment-config loader on arbitrary text.
 *
 * config_parse must accept or reject any bytes with a message. An accepted
 * config is printed back (config_to_json) and parsed again: the resolved tree
 * is complete and valid, so the second parse must succeed with the same hash.
 */
#include "fuzz_common.h"

#include "config/config.h"

int fuzz_config(const uint8_t *data, size_t size) {
    err_clear();
    char *text = fuzz_cstr(data, size);
    struct config cfg;
    int rc = config_parse(&cfg, text, "fuzz.json");
    free(text);
    if (rc != 0) return fuzz_outcome(rc, "config_parse");
    char h1[65], h2[65];
    FUZZ_CHECK(config_hash(&cfg, h1) == 0, "config_hash: %s", err_msg());
    char *json = config_to_json(&cfg);
    FUZZ_CHECK(json != NULL, "config_to_json: %s", err_msg());
    struct config again;
    FUZZ_CHECK(config_parse(&again, json, "fuzz-resolved.json") == 0,
               "the resolved config does not parse again: %s", err_msg());
    FUZZ_CHECK(config_hash(&again, h2) == 0, "config_hash: %s", err_msg());
    FUZZ_CHECK(strcmp(h1, h2) == 0, "resolving twice changed the hash");
    config_free(&again);
    free(json);
    config_free(&cfg);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_config(data, size);
    return 0;
}
#endif
