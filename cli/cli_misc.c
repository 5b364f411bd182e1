/* cli_misc.c — the small subcommands: synth (engine/eng_synth), stats and report
 * (reports/rep_commands), info (model description, including its tokenizer as `run` would
 * load it: eng_tok_load_model). Parsing only. */
#include "cli/cli.h"
#include "engine/eng_model.h"
#include "engine/eng_synth.h"
#include "engine/eng_tokenizer.h"
#include "analysis/ana_diag.h"
#include "reports/rep_commands.h"
#include "reports/rep_timeline.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_synth(int argc, char **argv) {
  const char *C = "synth", *out = NULL, *v;
  eng_synth_opts o;
  eng_synth_defaults(&o);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    long x;
    if (cli_is_help(a)) {
      printf("usage: moescope synth -o DIR [--family mixtral|qwen2_moe|qwen3_moe|olmoe|deepseek_v2|deepseek_v3|gpt_oss|\n"
             "       switch|hierarchical] [--layers L] [--experts E] [--top-k K]\n"
             "       [--hidden H] [--vocab V] [--heads N] [--kv-heads N] [--intermediate I] [--max-pos N]\n"
             "       [--plant none|specialization|collapse] [--plant-layers 1,3|all] [--collapse-experts N]\n"
             "       [--seed S] [--dtype f32|bf16|f16]\n"
             "Writes a random HF-layout model of the family (HF config fields and tensor names) whose\n"
             "router has known planted structure (mixtral, switch, hierarchical; recorded in config.json\n"
             "under \"moescope_synth\"). switch = top-1 with capacity, hierarchical = group gate then experts.\n");
      return CLI_OK;
    }
    struct { const char *name; int *dst; long lo, hi; } ints[] = {
      {"--layers", &o.layers, 1, 256}, {"--experts", &o.experts, 1, 1024}, {"--top-k", &o.top_k, 1, 1024},
      {"--hidden", &o.hidden, 2, 65536}, {"--vocab", &o.vocab, 2, 1 << 22}, {"--heads", &o.heads, 1, 1024},
      {"--kv-heads", &o.kv_heads, 1, 1024}, {"--intermediate", &o.intermediate, 1, 1 << 20},
      {"--max-pos", &o.max_pos, 1, 1 << 20}, {"--collapse-experts", &o.collapse_experts, 1, 1024}};
    int handled = 0;
    for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++)
      if (!strcmp(a, ints[k].name)) {
        if (!(v = cli_value(argc, argv, &i, C))) return CLI_USAGE;
        if (cli_int(v, ints[k].lo, ints[k].hi, &x))
          return cli_fail(CLI_USAGE, C, "%s: invalid value '%s' (expected an integer in %ld..%ld)", a, v, ints[k].lo, ints[k].hi);
        *ints[k].dst = (int)x;
        handled = 1;
      }
    if (handled) continue;
    if (!strcmp(a, "-o") || !strcmp(a, "--out")) { if (!(out = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (!strcmp(a, "--family")) { if (!(o.family = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (!strcmp(a, "--plant")) { if (!(o.plant = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (!strcmp(a, "--plant-layers")) { if (!(o.plant_layers = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (!strcmp(a, "--dtype")) { if (!(o.dtype = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (!strcmp(a, "--seed")) {
      if (!(v = cli_value(argc, argv, &i, C))) return CLI_USAGE;
      if (cli_int(v, 0, LONG_MAX, &x)) return cli_fail(CLI_USAGE, C, "--seed: invalid value '%s'", v);
      o.seed = (unsigned long long)x;
    } else return cli_fail(CLI_USAGE, C, "unknown option '%s' (see moescope synth --help)", a);
  }
  if (!out) return cli_fail(CLI_USAGE, C, "missing -o DIR");
  char err[1024];
  if (eng_synth_validate(&o, err, sizeof err)) return cli_fail(CLI_USAGE, C, "%s", err);
  if (eng_synth_write(&o, out, err, sizeof err)) return cli_fail(CLI_ERR, C, "%s", err);
  fprintf(stderr, "moescope synth: wrote %s (%s, %d layers, %d experts, top-%d, plant %s)\n", out, o.family,
          o.layers, o.experts, o.top_k, o.plant);
  return CLI_OK;
}

/* stats / report share: DB [--run ID] */
static int db_cmd(int argc, char **argv, const char *C, int is_report) {
  const char *db = NULL, *out = NULL, *v;
  long run = -1;
  int json = 0;
  unsigned docs = REP_DOC_ALL;
  rep_report_opts ro;
  rep_report_opts_default(&ro);
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      if (is_report) printf("usage: moescope report TRACE.db -o DIR [--run ID] [--format html,md,tex,pdf]\n"
                            "                       [--timeline-batches N | FIRST:N | all]\n"
                            "Writes DIR/index.html (self-contained), report.md, report.tex (booktabs, PDF figures),\n"
                            "tables/*.csv and figures (PNG + SVG for html/md, PDF for tex/pdf): load heatmap,\n"
                            "balance per layer, label preference, co-activation, cross-layer transitions, load\n"
                            "along position, gate-weight distributions, top tokens per expert. Default: all.\n"
                            "Also gpu_timeline: GPU kernels per (device, stream) coloured by op, layer bands above\n"
                            "(from the CPU op timers when the trace has no kernels), over a window of whole forward\n"
                            "batches: --timeline-batches N = the first N (default 4), FIRST:N from batch FIRST, all;\n"
                            "and the time tables of `export --time` (by layer, op, expert; cost of imbalance).\n");
      else printf("usage: moescope stats TRACE.db [--run ID] [--json | --csv] [--structure]\n"
                  "Balance per layer: CV, MaxVio, normalised entropy, Gini, min/max, dead experts, Jain's\n"
                  "index, capacity overflow (share of slots dropped at capacity factor 1, 1.25, 2 per batch),\n"
                  "Switch aux loss and router z-loss (when router probabilities were recorded).\n"
                  "--structure (text or --json) adds co-activation, cross-layer MI, repetition, position\n"
                  "drift, label test, token specialization, gate weights and the top tokens of every expert\n"
                  "per layer (needs routing rows).\n");
      return CLI_OK;
    }
    if (!strcmp(a, "--format") && is_report) {
      char ferr[256];
      if (!(v = cli_value(argc, argv, &i, C))) return CLI_USAGE;
      if (!(docs = rep_parse_formats(v, ferr, sizeof ferr))) return cli_fail(CLI_USAGE, C, "%s", ferr);
      continue;
    }
    if (!strcmp(a, "--timeline-batches") && is_report) {
      char terr[256];
      if (!(v = cli_value(argc, argv, &i, C))) return CLI_USAGE;
      if (rep_tl_parse_window(v, &ro.tl_first, &ro.tl_batches, terr, sizeof terr)) return cli_fail(CLI_USAGE, C, "%s", terr);
      continue;
    }
    if (!strcmp(a, "--run")) {
      if (!(v = cli_value(argc, argv, &i, C))) return CLI_USAGE;
      if (cli_int(v, 1, LONG_MAX, &run)) return cli_fail(CLI_USAGE, C, "--run: invalid run id '%s'", v);
    } else if (!strcmp(a, "--json") && !is_report) json = (json & ~3) | 1;
    else if (!strcmp(a, "--csv") && !is_report) json = (json & ~3) | REP_STATS_CSV;
    else if (!strcmp(a, "--structure") && !is_report) json |= REP_STATS_STRUCTURE;
    else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && is_report) { if (!(out = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (!strcmp(a, "--db")) { if (!(db = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (a[0] == '-') return cli_fail(CLI_USAGE, C, "unknown option '%s' (see moescope %s --help)", a, C);
    else if (!db) db = a;
    else return cli_fail(CLI_USAGE, C, "unexpected argument '%s'", a);
  }
  if (!db) db = "trace.db";
  char err[1024] = "";
  if (is_report) {
    if (!out) return cli_fail(CLI_USAGE, C, "missing -o DIR");
    ro.docs = docs;
    if (rep_report_cmd_opts(db, run, out, &ro, err, sizeof err)) return cli_fail(CLI_ERR, C, "%s", err);
    fprintf(stderr, "moescope report: wrote %s/%s\n", out, docs & REP_DOC_HTML ? "index.html" : docs & REP_DOC_MD ? "report.md"
            : docs & REP_DOC_TEX ? "report.tex" : "*.pdf");
    return CLI_OK;
  }
  if (rep_stats_cmd(db, run, json, stdout, err, sizeof err)) return cli_fail(CLI_ERR, C, "%s", err);
  return CLI_OK;
}

int cli_stats(int argc, char **argv) { return db_cmd(argc, argv, "stats", 0); }
int cli_report(int argc, char **argv) { return db_cmd(argc, argv, "report", 1); }

int cli_diagnose(int argc, char **argv);
int cli_diagnose(int argc, char **argv) {
  const char *C = "diagnose", *db = NULL, *v;
  long run = -1;
  int json = 0;
  ana_diag_thr t;
  ana_diag_thr_default(&t);
  struct { const char *name; double *dst; double lo, hi; } opts[] = {
    {"--min-slots", &t.min_slots, 0, 1e12}, {"--collapse-frac", &t.collapse_frac, 0, 1},
    {"--collapse-share", &t.collapse_share, 0, 1}, {"--collapse-tok", &t.collapse_tok, 0, 1},
    {"--imb-cv", &t.imb_cv, 0, 1e6}, {"--imb-maxvio", &t.imb_maxvio, 0, 1e6}, {"--dead-frac", &t.dead_frac, 0, 1},
    {"--sat-frac", &t.sat_frac, 0, 1}, {"--pinned-w", &t.pinned_w, 0, 1}, {"--uniform-tol", &t.uniform_tol, 0, 10},
    {"--margin", &t.margin, 0, 1}, {"--drift-js", &t.drift_js, 0, 1}, {"--alpha", &t.alpha, 0, 1}};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (cli_is_help(a)) {
      printf("usage: moescope diagnose TRACE.db [--run ID] [--json] [threshold options]\n"
             "Verdict per MoE layer: healthy, imbalanced, collapsed, dead experts, router saturation, drift,\n"
             "with the evidence. Exit status 0 = healthy, 3 = findings, 1 = error, 2 = usage.\n"
             "Thresholds (defaults): collapsed when the busiest ceil(--collapse-frac 0.25 x E) experts hold\n"
             ">= --collapse-share 0.55 of the slots, or the busiest expert is in the top-k of >= --collapse-tok\n"
             "0.667 of the tokens; --imb-cv 0.5, --imb-maxvio 1.0, --alpha 1e-3 (significance), --dead-frac 0.1\n"
             "(of the fair share), --sat-frac 0.5, --pinned-w 0.99, --uniform-tol 0.05, --margin 1e-3,\n"
             "--drift-js 0.5 (bits), --min-slots 10 (per expert; below: insufficient data).\n");
      return CLI_OK;
    }
    int handled = 0;
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++)
      if (!strcmp(a, opts[k].name)) {
        if (!(v = cli_value(argc, argv, &i, C))) return CLI_USAGE;
        if (cli_double(v, opts[k].lo, opts[k].hi, opts[k].dst))
          return cli_fail(CLI_USAGE, C, "%s: invalid value '%s' (expected a number in %g..%g)", a, v, opts[k].lo, opts[k].hi);
        handled = 1;
      }
    if (handled) continue;
    if (!strcmp(a, "--run")) {
      if (!(v = cli_value(argc, argv, &i, C))) return CLI_USAGE;
      if (cli_int(v, 1, LONG_MAX, &run)) return cli_fail(CLI_USAGE, C, "--run: invalid run id '%s'", v);
    } else if (!strcmp(a, "--json")) json = 1;
    else if (!strcmp(a, "--db")) { if (!(db = cli_value(argc, argv, &i, C))) return CLI_USAGE; }
    else if (a[0] == '-') return cli_fail(CLI_USAGE, C, "unknown option '%s' (see moescope diagnose --help)", a);
    else if (!db) db = a;
    else return cli_fail(CLI_USAGE, C, "unexpected argument '%s'", a);
  }
  if (!db) db = "trace.db";
  char err[1024] = "";
  int findings = 0;
  if (rep_diagnose_cmd(db, run, &t, json, stdout, &findings, err, sizeof err)) return cli_fail(CLI_ERR, C, "%s", err);
  return findings ? 3 : CLI_OK;
}

int cli_info(int argc, char **argv) {
  const char *C = "info", *dir = NULL;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      printf("usage: moescope info [MODEL_DIR|FILE.gguf|TRACE.db]\n"
             "A model: architecture, router, parameters (total / active per token), dtypes, tokenizer.\n"
             "A trace DB: its meta table and, per run, model, policy, record level, device, row counts, labels.\n");
      return CLI_OK;
    }
    if (argv[i][0] == '-') return cli_fail(CLI_USAGE, C, "unknown option '%s'", argv[i]);
    if (dir) return cli_fail(CLI_USAGE, C, "one model or trace DB at a time (got '%s' and '%s')", dir, argv[i]);
    dir = argv[i];
  }
  if (!dir) dir = cli_default_model();
  char err[1024];
  { /* a SQLite file is a trace DB */
    char magic[16] = {0};
    FILE *f = fopen(dir, "rb");
    size_t got = f ? fread(magic, 1, sizeof magic, f) : 0;
    if (f) fclose(f);
    if (got == sizeof magic && !memcmp(magic, "SQLite format 3", 16)) {
      if (rep_info_cmd(dir, stdout, err, sizeof err)) return cli_fail(CLI_ERR, C, "%s", err);
      return CLI_OK;
    }
    if (f && got >= 4 && memcmp(magic, "GGUF", 4))
      return cli_fail(CLI_ERR, C, "%s: not a model folder, a GGUF file or a trace DB", dir);
  }
  eng_model m;
  if (eng_model_load(&m, dir, err, sizeof err)) return cli_fail(CLI_ERR, C, "%s", err);
  const eng_config *c = &m.cfg;
  const eng_router_cfg *r = &c->router;
  int dense = 0;
  char dl[256] = "";
  for (int l = 0; l < c->n_layers; l++)
    if (!c->moe_layer[l]) {
      if (dense < 16) snprintf(dl + strlen(dl), sizeof dl - strlen(dl), "%s%d", dense ? "," : "", l);
      dense++;
    }
  char router[256];
  switch (r->kind) {
  case ENG_ROUTER_SOFTMAX_TOPK:
    snprintf(router, sizeof router, "softmax top-%d%s%s", c->top_k, c->norm_topk_prob ? ", renormalised" : ", not renormalised",
             r->scale != 1.0f ? ", scaled" : "");
    break;
  case ENG_ROUTER_GROUP_LIMITED:
    snprintf(router, sizeof router, "softmax group-limited greedy top-%d (groups %d, best %d by max), x %g", c->top_k,
             r->n_group, r->topk_group, (double)r->scale);
    break;
  case ENG_ROUTER_SIGMOID_GROUP:
    snprintf(router, sizeof router, "sigmoid + selection bias, groups %d (best %d by top-2 sum), top-%d%s, x %g", r->n_group,
             r->topk_group, c->top_k, c->norm_topk_prob ? ", renormalised" : "", (double)r->scale);
    break;
  case ENG_ROUTER_TOPK_SOFTMAX: snprintf(router, sizeof router, "top-%d of logits (+bias), softmax over the %d", c->top_k, c->top_k); break;
  case ENG_ROUTER_SWITCH: snprintf(router, sizeof router, "switch top-1, capacity factor %g", (double)r->capacity_factor); break;
  default: snprintf(router, sizeof router, "hierarchical: %d groups, top-%d inside the chosen group", r->n_group, c->top_k); break;
  }
  char attn[160];
  if (c->mla)
    snprintf(attn, sizeof attn, "MLA (kv_lora %d, q_lora %d, nope %d + rope %d, v %d)", c->kv_lora_rank, c->q_lora_rank,
             c->qk_nope_dim, c->qk_rope_dim, c->v_head_dim);
  else
    snprintf(attn, sizeof attn, "GQA%s%s%s%s", c->qkv_bias ? ", qkv bias" : "",
             c->qk_norm == ENG_QKNORM_HEAD ? ", q/k norm per head" : c->qk_norm == ENG_QKNORM_FULL ? ", q/k norm" : "",
             c->sliding_window ? ", sliding window (alternating)" : "", c->attn_sinks ? ", sinks" : "");
  printf("model        %s\narchitecture %s\nlayers       %d (%d MoE, %d dense%s%s%s)\nhidden       %d\n"
         "heads        %d (kv %d, head_dim %d)\nattention    %s\nrope         theta %g%s%s\n"
         "experts      %d x %s %d, top-%d\nrouter       %s\nshared       %s\nvocab        %d\ncontext      %d\n"
         "rms_eps      %g\ndtype        %s (stored), float32 (compute)\n"
         "parameters   %zu total, %zu active per token (%.1f%%)\nsha256       %s\n",
         dir, c->model_type, c->n_layers, c->n_layers - dense, dense, dense ? ": " : "", dl, dense > 16 ? ",..." : "",
         c->hidden, c->n_heads, c->n_kv_heads, c->head_dim, attn, (double)c->rope_theta, c->rope_yarn ? ", YaRN" : "",
         c->rope_interleave ? ", interleaved" : "", c->n_experts,
         c->expert_act == ENG_ACT_SWIGLU_OAI ? "clamped SwiGLU" : "SwiGLU", c->intermediate, c->top_k, router,
         c->shared_intermediate ? (c->shared_gated ? "1 shared expert, sigmoid-gated" : "shared experts, ungated") : "none",
         c->vocab, c->max_pos, (double)c->rms_eps, m.dtype, m.n_params, m.n_active_params,
         100.0 * (double)m.n_active_params / (double)m.n_params, m.sha256);
  if (c->shared_intermediate) printf("shared_ffn   %d wide (%d expert%s)\n", c->shared_intermediate, c->n_shared_experts,
                                     c->n_shared_experts == 1 ? "" : "s");
  eng_tokenizer *tok = NULL;
  char src[PATH_MAX + 16];
  if (eng_tok_load_model(&tok, dir, src, sizeof src, err, sizeof err) == 0) {
    printf("tokenizer    %s, %d ids, normalizer %s, bos %d, eos %d (%s)\n",
           eng_tok_kind(tok) == ENG_TOK_SPM ? "SentencePiece BPE" : "byte-level BPE", eng_tok_vocab_size(tok),
           eng_tok_norm_name(eng_tok_norm(tok)), eng_tok_bos(tok), eng_tok_eos(tok), src);
    eng_tok_free(tok);
  } else {
    printf("tokenizer    none (%s)\n", err);
  }
  eng_model_free(&m);
  return CLI_OK;
}
