/* cmd_sae_convert.c: `autointerp sae-convert IN OUT`, between SAELens folders and
 * autointerp SAE files.
 *
 * A SAELens folder (cfg.json + sae_weights.safetensors) becomes an SAE file that
 * every stage reads (extract, sae-eval, the report's geometry), so a dictionary
 * trained elsewhere goes through the whole interpretability pipeline; an SAE
 * file becomes a SAELens folder that SAELens (and anything reading its format)
 * loads. Both directions are the mappings of src/sae/saelens.h: export then
 * import gives back every tensor bit for bit.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "interp/interp.h"
#include "io/atomic.h"
#include "sae/sae_io.h"
#include "sae/saelens.h"
#include "util/error.h"
#include "util/log.h"

static const struct cli_opt opts[] = {
    {"name", 0, "NAME", "import: the SAE's name (default: OUT's file name without .h5)"},
    {"model-name", 0, "NAME", "export: cfg.json model_name (default: the SAE's model path)"},
    {"context", 0, "T",
     "export: cfg.json context_size (default: the SAE's data.context, else 128)"},
    {0},
};

static const struct cli_command cmd = {
    .name = "sae-convert",
    .summary = "convert an SAE between a SAELens folder and an autointerp SAE file",
    .usage = "autointerp sae-convert [options] IN OUT",
    .description =
        "IN a SAELens folder (cfg.json + sae_weights.safetensors, architecture \"standard\"):\n"
        "OUT is an autointerp SAE file (.h5) that extract, sae-eval and report read; its\n"
        "type is \"imported\" and its config keeps the folder's context_size and prepend_bos.\n"
        "IN an autointerp SAE file (.h5): OUT is a SAELens folder holding our function\n"
        "exactly (apply_b_dec_to_input false, the column-normalised decoder).\n"
        "Export then import reproduces every tensor bit for bit.",
    .opts = opts,
    .min_positional = 2,
    .max_positional = 2,
};

static int import_folder(const struct cli_args *a, const char *in, const char *out) {
    size_t n = strlen(out);
    if (n < 4 || strcmp(out + n - 3, ".h5") != 0)
        return cli_usage_error(&cmd, "importing %s: OUT must be an .h5 file, got '%s'", in, out);
    struct sae s;
    struct saelens_info info;
    if (saelens_import(in, &s, &info) < 0) return cli_fail();
    char hook[64], config[256];
    /* SAELens's own hook name (resid_pre or resid_post, both read here) */
    snprintf(hook, sizeof hook, "%s", info.hook_name);
    snprintf(config, sizeof config,
             "{\"imported_from\": \"saelens\", \"data\": {\"context\": %d, \"prepend_bos\": %s}}",
             info.context_size > 1 ? info.context_size : 128, info.prepend_bos ? "true" : "false");
    char *name = cli_value(a, "name") ? xstrdup(cli_value(a, "name")) : interp_sae_name(out);
    struct sae_meta meta = {
        .name = name,
        .type = "imported",
        .hook_name = hook,
        .model_path = info.model_name ? info.model_name : "",
        .config = config,
        .spec_hash = "",
        .layer = info.layer,
        .ratio = s.d_sae / s.d_in,
        .d_in = s.d_in,
        .d_sae = s.d_sae,
    };
    int rc = name ? sae_file_write(out, &s, &meta, NULL, NULL) : -1;
    if (rc == 0)
        printf("%s: SAE %s, %d -> %d features at %s%s%s\n", out, name, s.d_in, s.d_sae, hook,
               info.folded_b_dec ? " (b_dec folded into b_enc)" : "",
               info.rescaled ? " (decoder rows made unit)" : "");
    free(name);
    sae_free(&s);
    saelens_info_free(&info);
    return rc == 0 ? 0 : cli_fail();
}

static int export_file(const struct cli_args *a, const char *in, const char *out) {
    struct sae s;
    struct sae_meta meta;
    if (sae_file_read(in, &s, &meta) < 0) return cli_fail();
    int context = 128;
    bool bos = true;
    sae_meta_data_settings(&meta, &context, &bos, NULL);
    if (context < 2 || context > 1 << 20) context = 128; /* not a usable stored value */
    long long ctx;
    int rc = cli_int(a, "context", context, 2, 1 << 20, &ctx);
    if (rc == 0) {
        struct saelens_export_opts o = {
            .model_name = cli_value(a, "model-name") ? cli_value(a, "model-name") : meta.model_path,
            .layer = (int)meta.layer,
            .hook_name = meta.hook_name,
            .context_size = (int)ctx,
            .prepend_bos = bos};
        rc = saelens_export(&s, out, &o) == 0 ? 0 : cli_fail();
        if (rc == 0)
            printf("%s: SAELens folder for %s (%d -> %d features at %s)\n", out, meta.name, s.d_in,
                   s.d_sae, meta.hook_name);
    }
    sae_free(&s);
    sae_meta_free(&meta);
    return rc;
}

int cmd_sae_convert(int argc, char **argv) {
    struct cli_args a;
    int rc = cli_parse(&cmd, argc, argv, &a);
    if (rc != CLI_GO_ON) return rc;
    const char *in = a.positional[0], *out = a.positional[1];
    if (dir_exists(in))
        rc = import_folder(&a, in, out);
    else
        rc = export_file(&a, in, out);
    cli_args_free(&a);
    return rc;
}
