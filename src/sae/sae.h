/* sae.h: the sparse autoencoder of Braun et al. 2024 and its forward/backward.
 *
 *     pre = W_enc x + b_enc          W_enc (d_sae,d_in), b_enc (d_sae)
 *     c   = ReLU(pre)                (N,d_sae), sparse once trained
 *     D_j = w_j / ‖w_j‖              w_j = dictionary direction j (length d_in)
 *     x̂   = Σ_j c_j D_j + b_dec     (N,d_in)
 *
 * The decoder is normalised INSIDE the forward pass, so the gradient reaching w_j
 * is the gradient at D_j projected off D_j and divided by ‖w_j‖:
 *     dw_j = (g_j − D_j (D_j·g_j)) / ‖w_j‖,   g_j = Σ_rows c_j dx̂.
 *
 * Storage. All parameters live in ONE float buffer (struct sae.mem) in the order
 * of struct sae_params; gradients and Adam moments use the same layout (point
 * into any buffer of sae.n_params floats with sae_point_params). The decoder is
 * stored feature-major, W_dec (d_sae,d_in): row j is direction w_j, contiguous,
 * because every sparse operation reads or writes whole directions. This is the
 * TRANSPOSE of the paper's / PyTorch's W_dec (d_in,d_sae); files (sae_io.h) store
 * the paper's orientation.
 *
 * Sparsity. The encoder must be a dense product (it decides which features are
 * active); it runs in chunks of SAE_CHUNK rows so the dense (rows,d_sae)
 * pre-activations never exist for a whole batch, and only the positive entries
 * are kept (struct sae_codes, CSR by row plus a CSC copy by feature). Everything
 * after it involves only active (row, feature) pairs: the decoder product, the
 * gradient into c, the decoder gradient and the encoder weight gradient (dW_enc
 * row j = Σ over rows where j fired of dpre·x). These run feature by feature
 * (CSC), so each direction is read once per batch however many rows use it.
 * When codes are dense (early training: half the features fire at
 * initialisation) the same quantities are computed with sgemm on dense chunks;
 * sae_use_dense() says which path a batch takes (by density above
 * SAE_DENSE_THRESHOLD, unless sae_work.path forces one). Both give the same
 * maths up to rounding.
 *
 * Determinism: the only parallelism is inside OpenBLAS, so results are
 * bit-identical for a given seed and BLAS thread count.
 */
#ifndef AUTOINTERP_SAE_SAE_H
#define AUTOINTERP_SAE_SAE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Rows per dense encoder chunk: large enough for sgemm to run at full rate. */
#define SAE_CHUNK 512
/* Codes denser than this (nnz / (rows·d_sae)) take the dense sgemm path. */
#define SAE_DENSE_THRESHOLD 0.02

struct sae_params {
    float *W_enc; /* (d_sae,d_in) */
    float *b_enc; /* (d_sae) */
    float *W_dec; /* (d_sae,d_in): row j is direction w_j, unnormalised (transposed vs paper) */
    float *b_dec; /* (d_in) */
};

struct sae {
    int d_in, d_sae;
    size_t n_params; /* floats in mem */
    float *mem;      /* owned parameter buffer */
    struct sae_params p;
    float *inv_norm; /* (d_sae) 1/‖w_j‖ (0 for a zero direction); sae_refresh_norms */
};

/* Sparse codes of n_rows inputs: only c > 0 is stored. */
struct sae_codes {
    int n_rows, d_sae;
    int64_t nnz, cap;
    int64_t *row_ptr; /* (n_rows+1) CSR: entries of row r are [row_ptr[r], row_ptr[r+1]) */
    int32_t *col;     /* (nnz) feature ids, ascending within a row */
    float *val;       /* (nnz) c > 0 */
    /* CSC view: feat_ptr (d_sae+1) is filled by sae_encode (feature j's entries are
     * [feat_ptr[j], feat_ptr[j+1]), so feat_ptr also counts activations per
     * feature); row and fval only once sae_codes_by_feature has run (the sparse
     * backward does; dense codes never need them). */
    int64_t *feat_ptr;
    int32_t *row;      /* (nnz) row ids, ascending within a feature */
    float *fval;       /* (nnz) */
    bool by_feature;   /* row and fval are current */
    int64_t fcap;
};

/* Scratch for one SAE: a dense chunk (SAE_CHUNK,d_sae) pair, and on the dense path a
 * (d_sae,d_in) buffer for the decoder-direction gradient. */
enum sae_path { SAE_PATH_AUTO, SAE_PATH_DENSE, SAE_PATH_SPARSE };

struct sae_work {
    enum sae_path path; /* AUTO (by density) unless a test or benchmark forces one */
    float *chunk;  /* (SAE_CHUNK,d_sae) */
    float *chunk2; /* (SAE_CHUNK,d_sae) */
    float *gdir;   /* (d_sae,d_in), allocated on first dense backward */
    float *vec;    /* (d_in) */
};

/* A zeroed SAE of the given size (checks the sizes). */
int sae_new(struct sae *s, int d_in, int d_sae);
void sae_free(struct sae *s);
/* Paper initialisation, deterministic in seed (GSL mt19937):
 *   W_enc, b_enc ~ U(−1/√d_in, 1/√d_in)      (PyTorch nn.Linear default)
 *   W_dec (paper orientation d_in × d_sae) with orthonormal rows (QR of a Gaussian)
 *   b_dec ~ U(−1/√d_sae, 1/√d_sae)            (nn.Linear default for the decoder) */
int sae_init(struct sae *s, uint64_t seed);
/* Point p into a buffer of s->n_params floats laid out like s->mem. */
void sae_point_params(const struct sae *s, float *mem, struct sae_params *p);
/* Recompute inv_norm from W_dec; call after every change to the parameters. */
void sae_refresh_norms(struct sae *s);
/* The normalised decoder D (d_sae,d_in), row j = D_j. */
void sae_normalised_decoder(const struct sae *s, float *D);

int sae_work_init(struct sae_work *w, const struct sae *s);
void sae_work_free(struct sae_work *w);
void sae_codes_free(struct sae_codes *c);

// x (N,d_in) -> codes (N rows): the CSR and feat_ptr.
int sae_encode(const struct sae *s, struct sae_work *w, const float *x, int N,
               struct sae_codes *codes);
// codes (N rows) -> xhat (N,d_in)
int sae_decode(const struct sae *s, struct sae_work *w, const struct sae_codes *codes,
               float *xhat);
/* Adds the gradients of the loss to grads, given
 *   x (N,d_in)     the inputs the codes were made from,
 *   dxhat (N,d_in) dLoss/dx̂ (may be NULL: no reconstruction term),
 *   l1_grad        dLoss/dc_j for every active c_j (λ / (N_total·d_in) for the
 *                  paper's sparsity term S = λ·mean_rows ‖c‖₁ / d_in).
 * Gradients flow into W_enc, b_enc (rows of active features only), W_dec (through
 * the normalisation, active directions only) and b_dec. */
int sae_backward(const struct sae *s, struct sae_work *w, const float *x,
                 struct sae_codes *codes, const float *dxhat, float l1_grad,
                 const struct sae_params *grads);

bool sae_codes_dense(const struct sae_codes *codes);
/* The path sae_decode/sae_backward take for these codes with this work. */
bool sae_use_dense(const struct sae_work *w, const struct sae_codes *codes);
/* Build the CSC copy (row, fval) from the CSR; a no-op when current. */
int sae_codes_by_feature(struct sae_codes *codes);
/* Σ c over all entries (for the sparsity term and L0 statistics). */
double sae_codes_l1(const struct sae_codes *codes);

#endif
