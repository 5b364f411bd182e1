/* eng_model.h — a loaded MoE model: its configuration (from HF config.json) and its
 * weights (float32 in memory, converted on load from F32/BF16/F16 safetensors; BF16 is
 * widened exactly). Knows the tensor-name variants of each supported family and checks
 * every shape against the config, refusing with one error line that names the tensor.
 *
 * Families in this step: mixtral (classic block_sparse_moe.* names and the
 * transformers-5 packed mlp.experts.gate_up_proj / down_proj layout).
 */
#ifndef MOESCOPE_ENG_MODEL_H
#define MOESCOPE_ENG_MODEL_H

#include <stddef.h>
#include <stdint.h>

typedef struct eng_config {
  char model_type[32];        /* "mixtral" */
  char torch_dtype[16];       /* "bfloat16", "float32", ... (informational) */
  int vocab, hidden, n_layers, n_heads, n_kv_heads, head_dim;
  int intermediate;           /* per-expert FFN width */
  int n_experts, top_k, n_shared_experts;
  int max_pos;
  float rms_eps, rope_theta;
  int norm_topk_prob;         /* renormalise the k gate weights */
  int tie_embeddings;
  int bos_id, eos_id;         /* -1 when absent */
} eng_config;

typedef struct eng_expert { float *w1, *w3, *w2; } eng_expert;  /* [I,H], [I,H], [H,I] */

typedef struct eng_layer {
  float *attn_norm, *q, *k, *v, *o;   /* [H], [nh*hd,H], [nkv*hd,H], [nkv*hd,H], [H,nh*hd] */
  float *moe_norm;                    /* [H] */
  float *gate;                        /* router [E,H] */
  eng_expert *experts;                /* [E] */
} eng_layer;

typedef struct eng_model {
  eng_config cfg;
  char dir[1024];
  char dtype[16];             /* dominant stored dtype: "F32", "BF16", "F16" */
  float *embed;               /* [V,H] */
  eng_layer *layers;
  float *final_norm;          /* [H] */
  float *lm_head;             /* [V,H] */
  size_t n_params;            /* total parameters */
  size_t n_active_params;     /* parameters touched per token (k of E experts) */
  char sha256[65];            /* of the weight file(s), hex */
} eng_model;

/* Parses config.json into cfg. 0 or -1 with an error naming the file and field. */
int eng_config_load(eng_config *cfg, const char *path, char *err, size_t errlen);

/* Loads dir/config.json and the safetensors weights. 0 or -1 (+err). */
int eng_model_load(eng_model *m, const char *dir, char *err, size_t errlen);
void eng_model_free(eng_model *m);

#endif
