/* eng_config.c — reads a Hugging Face config.json into eng_config, checking that every
 * field the forward pass needs is present, of the right type and consistent. */
#include "engine/eng_util.h"
#include "engine/eng_model.h"

#include <cjson/cJSON.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* integer field: required (dflt < -1 means required) */
static int get_int(const cJSON *root, const char *key, int dflt, int *out, const char *path, char *err, size_t errlen) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!v || cJSON_IsNull(v)) {
    if (dflt < -1) return eng_errf(err, errlen, "%s: missing required field '%s'", path, key);
    *out = dflt;
    return 0;
  }
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= INT_MIN && v->valuedouble <= INT_MAX) ||
      v->valuedouble != floor(v->valuedouble))
    return eng_errf(err, errlen, "%s: field '%s' must be an integer", path, key);
  *out = (int)v->valuedouble;
  return 0;
}

static int get_float(const cJSON *root, const char *key, double dflt, float *out, const char *path, char *err, size_t errlen) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  if (!v || cJSON_IsNull(v)) { *out = (float)dflt; return 0; }
  if (!cJSON_IsNumber(v) || !(fabs(v->valuedouble) <= FLT_MAX))
    return eng_errf(err, errlen, "%s: field '%s' must be a number (float32 range)", path, key);
  *out = (float)v->valuedouble;
  return 0;
}

static int get_bool(const cJSON *root, const char *key, int dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  if (cJSON_IsBool(v)) return cJSON_IsTrue(v);
  return dflt;
}

/* bos/eos may be an int or a list of ints (first taken); -1 when absent, -2 when not a
 * non-negative int */
static int get_token_id(const cJSON *root, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
  if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0);
  if (!cJSON_IsNumber(v)) return -1;
  double d = v->valuedouble;
  if (!(d >= 0 && d <= INT_MAX) || d != floor(d)) return -2;
  return (int)d;
}

int eng_config_load(eng_config *c, const char *path, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  char *txt = eng_read_file(path, NULL, (size_t)16 << 20, err, errlen);
  if (!txt) return -1;
  cJSON *root = cJSON_Parse(txt);
  free(txt);
  if (!root || !cJSON_IsObject(root)) { cJSON_Delete(root); return eng_errf(err, errlen, "%s: malformed JSON", path); }
  int rc = 0;
  const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
  if (!cJSON_IsString(mt)) { rc = eng_errf(err, errlen, "%s: missing string field 'model_type'", path); goto done; }
  snprintf(c->model_type, sizeof c->model_type, "%s", mt->valuestring);
  if (strcmp(c->model_type, "mixtral")) {
    rc = eng_errf(err, errlen, "%s: model_type '%s' is not supported yet (supported: mixtral)", path, c->model_type);
    goto done;
  }
  const cJSON *td = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
  if (!td) td = cJSON_GetObjectItemCaseSensitive(root, "dtype");
  snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", cJSON_IsString(td) ? td->valuestring : "float32");
  if ((rc = get_int(root, "vocab_size", -2, &c->vocab, path, err, errlen)) ||
      (rc = get_int(root, "hidden_size", -2, &c->hidden, path, err, errlen)) ||
      (rc = get_int(root, "num_hidden_layers", -2, &c->n_layers, path, err, errlen)) ||
      (rc = get_int(root, "num_attention_heads", -2, &c->n_heads, path, err, errlen)) ||
      (rc = get_int(root, "num_key_value_heads", 0, &c->n_kv_heads, path, err, errlen)) ||
      (rc = get_int(root, "head_dim", 0, &c->head_dim, path, err, errlen)) ||
      (rc = get_int(root, "intermediate_size", -2, &c->intermediate, path, err, errlen)) ||
      (rc = get_int(root, "num_local_experts", -2, &c->n_experts, path, err, errlen)) ||
      (rc = get_int(root, "num_experts_per_tok", 2, &c->top_k, path, err, errlen)) ||
      (rc = get_int(root, "max_position_embeddings", 4096, &c->max_pos, path, err, errlen)) ||
      (rc = get_float(root, "rms_norm_eps", 1e-5, &c->rms_eps, path, err, errlen)) ||
      (rc = get_float(root, "rope_theta", 1e6, &c->rope_theta, path, err, errlen)))
    goto done;
  if (c->n_kv_heads == 0) c->n_kv_heads = c->n_heads;
  if (c->head_dim == 0 && c->n_heads > 0) c->head_dim = c->hidden / c->n_heads;
  c->norm_topk_prob = 1; /* Mixtral always renormalises */
  c->tie_embeddings = get_bool(root, "tie_word_embeddings", 0);
  c->bos_id = get_token_id(root, "bos_token_id");
  c->eos_id = get_token_id(root, "eos_token_id");
  if (c->bos_id < -1 || c->eos_id < -1) {
    rc = eng_errf(err, errlen, "%s: field '%s' must be a non-negative integer token id", path,
               c->bos_id < -1 ? "bos_token_id" : "eos_token_id");
  } else if (c->vocab <= 0 || c->hidden <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
      c->head_dim <= 0 || c->intermediate <= 0 || c->n_experts <= 0 || c->max_pos <= 0) {
    rc = eng_errf(err, errlen, "%s: sizes must be positive (vocab, hidden, layers, heads, head_dim, experts)", path);
  } else if (c->n_heads % c->n_kv_heads) {
    rc = eng_errf(err, errlen, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", path,
               c->n_heads, c->n_kv_heads);
  } else if (c->top_k <= 0 || c->top_k > c->n_experts) {
    rc = eng_errf(err, errlen, "%s: num_experts_per_tok %d must be in 1..num_local_experts (%d)", path, c->top_k,
               c->n_experts);
  } else if (c->head_dim % 2 || c->head_dim > 1024) {
    rc = eng_errf(err, errlen, "%s: head_dim %d must be even and <= 1024", path, c->head_dim);
  } else if (!(c->rms_eps > 0) || !(c->rope_theta > 0)) {
    rc = eng_errf(err, errlen, "%s: rms_norm_eps and rope_theta must be positive", path);
  } else if ((double)c->vocab * c->hidden > 4e10 || c->n_experts > 4096 || c->n_layers > 4096) {
    rc = eng_errf(err, errlen, "%s: implausible sizes", path);
  } else if (c->max_pos > (1 << 24)) {
    rc = eng_errf(err, errlen, "%s: max_position_embeddings %d is implausibly large (limit %d)", path, c->max_pos, 1 << 24);
  }
done:
  cJSON_Delete(root);
  return rc;
}
