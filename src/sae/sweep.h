/* sweep.h: the `train` stage: every SAE a config asks for, trained once.
 *
 * A config's sweep is layers × types × lambdas (of that type) × seeds; each
 * SAE is named "L<layer>-<type>-lam<λ>-s<seed>" (λ printed with %g, e.g.
 * "L1-local-lam4-s0", "L6-e2e_ds-lam0.5-s1") and lives in
 * <results_dir>/<experiment>/saes/<name>.h5 (layout in sae_io.h). Its spec
 * hash is the SHA-256 of a canonical JSON of everything that decides its
 * weights and metrics (setting, sizes, training and evaluation options, seeds,
 * model and token paths); a file whose spec_hash matches is complete and is
 * skipped, anything else is (re)trained, resuming from <name>.ckpt.h5 when one
 * of the same spec exists. After the sweep, saes/sweep.csv and saes/sweep.json
 * list every SAE of the config with its final metrics:
 *
 *   sweep.csv  one header line, then one row per SAE with the columns
 *              name,type,layer,lambda,seed,ratio,d_sae,train_tokens,final_loss,l0,
 *              alive,alive_fraction,dead,ce_orig,ce_sae,ce_increase,kl,
 *              explained_variance,mse,file
 *   sweep.json {"experiment": ..., "saes": [{the same keys, plus
 *              "mse_downstream": {"<resid index>": mse, ...},
 *              "density_hist": {"log10_edges": [...], "counts": [...]}}]}
 *
 * Seeds: an SAE with sae.seeds entry s uses RNG seed s + seed·0x9E3779B97F4A7C15
 * (mod 2^64; = s when the master `seed` is 0) for its initialisation and data order.
 */
#ifndef AUTOINTERP_SAE_SWEEP_H
#define AUTOINTERP_SAE_SWEEP_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "sae/objective.h"

#define SAE_LOCKSTEP 4

struct sae_spec {
    char name[96];
    struct sae_setting set;
    uint64_t seed;     /* the sae.seeds entry */
    uint64_t rng_seed; /* what sae_init and the data order use */
    char hash[65];
};

struct sae_sweep {
    int n;
    struct sae_spec *specs;
};

/* Where the data comes from (config values unless overridden on the command line). */
struct sae_sources {
    const char *model_path, *train_tokens, *eval_tokens;
};

/* Expand the config's sweep (hashes included). */
int sae_sweep_plan(const struct config *cfg, const struct sae_sources *src,
                   struct sae_sweep *out);
void sae_sweep_free(struct sae_sweep *s);

/* <results_dir>/<experiment>/saes (malloc'd). */
char *sae_sweep_dir(const struct config *cfg);

struct sae_sweep_result {
    int trained, skipped;
};

/* Train and evaluate every SAE not yet complete, then write the sweep tables.
 * max_steps > 0 stops each SAE after that many steps of this call (tests); such
 * an SAE is left unfinished (its checkpoint stays) and the call still succeeds.
 * The opened model and data are shared by all SAEs of the sweep. */
int sae_sweep_run(const struct config *cfg, const struct sae_sources *src, int64_t max_steps,
                  struct sae_sweep_result *res);

#endif
