/* render.h: how a token's bytes are shown to the explainer and the simulator.
 *
 * Prompts list one token per line ("token<TAB>activation" for the explainer,
 * "index<TAB>token" for the simulator), so a token's display string must never
 * contain a tab or a newline, must not hide whitespace that changes its meaning
 * (" cat" and "cat" are different tokens), and must survive bytes that are not
 * text at all: GPT-2's byte-level tokens often hold half a UTF-8 character, and
 * llama2.c has one token per raw byte. The simulator answers one value per line
 * in order, so alignment is by position; rendering only has to make each token
 * readable and unambiguous. The rules (applied left to right over the bytes):
 *
 *   space 0x20            "␣"  (U+2423, every space, so " the" is "␣the")
 *   newline 0x0A          "↵"  (U+21B5)
 *   tab 0x09              "⇥"  (U+21E5)
 *   other control bytes   "<0xNN>" (0x00-0x1F, 0x7F; e.g. CR is "<0x0D>")
 *   bytes that are not part of a complete, valid UTF-8 character inside this
 *   token (partial sequences, stray continuation bytes, overlong forms,
 *   surrogates)        "<0xNN>" per byte (so GPT-2's first half of "—" is "<0xE2><0x80>")
 *   invisible or space-like characters (C1 controls, U+00A0, U+00AD, U+1680,
 *   U+2000-U+200F, U+2028-U+202F, U+205F-U+206F, U+3000, U+FEFF)
 *                         "<U+XXXX>"
 *   the marker glyphs themselves (␣ ↵ ⇥) appearing literally in a token
 *                         their UTF-8 bytes as "<0xNN>" each
 *   "<" followed by "0x" or "U+" (text that would read as a marker)
 *                         "<0x3C>"
 *   everything else       as is
 *
 * Special tokens are shown by name, decided by id, not by text: GPT-2's EOT
 * (which is also its BOS) "<|endoftext|>", llama2.c's BOS "<s>", EOS "</s>" and
 * <unk> "<unk>". An ordinary token whose rendering happens to equal one of
 * those names gets its "<" written as "<0x3C>". With these rules rendering is
 * injective: render_decode() recovers the bytes of any ordinary token (tested
 * over the whole GPT-2 vocabulary and random byte strings).
 *
 * A render_vocab holds the display string of every id, computed once per
 * tokenizer (50,257 short strings for GPT-2, well under a megabyte).
 */
#ifndef AUTOINTERP_INTERP_RENDER_H
#define AUTOINTERP_INTERP_RENDER_H

#include <stddef.h>
#include <stdint.h>

#include "tok/tokenizer.h"

#define RENDER_SPACE "\xE2\x90\xA3"   /* ␣ U+2423 */
#define RENDER_NEWLINE "\xE2\x86\xB5" /* ↵ U+21B5 */
#define RENDER_TAB "\xE2\x87\xA5"     /* ⇥ U+21E5 */

struct render_vocab {
    int n;        /* ids 0..n-1 */
    char **text;  /* [n] display strings, owned */
    unsigned char *special; /* [n] 1 for special tokens (shown by name) */
};

/* The display string of raw token bytes, by the rules above (malloc'd). */
char *render_bytes(const char *bytes, size_t n);

/* Inverse of render_bytes for ordinary tokens: the bytes of a display string
 * (malloc'd, *n_out bytes, NUL-terminated for convenience). Fails on a
 * malformed marker such as "<0xZZ>". */
int render_decode(const char *display, char **bytes, size_t *n_out);

/* Every id of a loaded tokenizer; errors name the id. */
struct render_vocab *render_vocab_from_tokenizer(const struct tokenizer *tok);

/* A vocabulary from raw token bytes (tests, synthetic vocabularies). names[i]
 * (may be NULL, or NULL entries) marks id i as special with that display name. */
struct render_vocab *render_vocab_from_bytes(const char *const *bytes, const size_t *lens, int n,
                                             const char *const *names);
void render_vocab_free(struct render_vocab *v);

/* Display string of id, or NULL when out of range (err_msg names the id). */
const char *render_token(const struct render_vocab *v, int32_t id);

#endif
