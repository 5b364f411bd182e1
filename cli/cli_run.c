/* cli_run.c — `moescope run`: parses options, loads model + tokenizer (eng_tok_load_model:
 * a folder's tokenizer.json or a GGUF file's embedded vocabulary), opens the trace
 * sink, then scores or generates each input (files, a labelled folder, prompts, ids)
 * through engine/eng_session, printing perplexity per label or generated text. */
#include "cli/cli.h"
#include "engine/eng_cuda.h"
#include "engine/eng_forward.h"
#include "engine/eng_npy.h"
#include "engine/eng_session.h"
#include "engine/eng_tokenizer.h"
#include "engine/eng_util.h"
#include "probes/prb_sink.h"
#include "probes/prb_nvtx.h"

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CMD "run"

typedef struct input { int kind; const char *arg; char *label; char *own; int *ids; int n; } input; /* kind: 0 file, 1 prompt, 2 ids */

static void usage(FILE *f) {
  fprintf(f,
    "usage: moescope run [--model DIR|FILE.gguf] INPUTS [--score | --generate N] [options]\n\n"
    "inputs (repeatable, processed in order; each becomes one sequence in the trace):\n"
    "  --file F [--label NAME]   a text file (label defaults to the file name up to the first '.')\n"
    "  --dir D [--split S]       every D/<label>.<S>.txt (or D/*.txt), labelled by file name\n"
    "  --prompt TEXT             a prompt\n"
    "  --ids 1,5,9               token ids instead of text\n"
    "modes:\n"
    "  --score                   teacher-forced nll per token, perplexity per label (the default)\n"
    "  --generate N              generate N tokens after each prompt / ids (stops at EOS)\n"
    "  --ignore-eos              keep generating past the end-of-sequence token\n"
    "  --temperature T --top-p P --seed S   sampling (T = 0: greedy, the default)\n"
    "options:\n"
    "  --model DIR|FILE.gguf     HF-layout model folder (default: models/tiny-mixtral) or a GGUF file;\n"
    "                            tokenizer: DIR/tokenizer.json, or the GGUF's embedded vocabulary\n"
    "                            (else tokenizer.json next to the file)\n"
    "  --db PATH                 trace DB, a new run is appended (default trace.db)\n"
    "  --record LEVEL            off | counts | topk (default) | full\n"
    "  --route SPEC              router policy: native (default) | topk | topp | capacity | expert_choice |\n"
    "                            bias | group | noisy | hash | random, e.g. capacity:cf=1.25,k=2 (README)\n"
    "  --window N                scoring window in tokens (default: the model's context)\n"
    "  --max-tokens N            use at most N tokens of each file\n"
    "  --batch N                 tokens per forward batch (default 256)\n"
    "  --threads N               CPU threads (default: all cores)\n"
    "  --device cpu|cuda         compute device (default cpu)\n"
    "  --expert-gemm own|cublas  --device cuda: routed-expert GEMMs on our fp32 kernels (default) or on\n"
    "                            tensor cores via cuBLAS (BF16 activations, F32 accumulation; env\n"
    "                            MOESCOPE_EXPERT_GEMM when the option is not given)\n"
    "  --dump-logits FILE.npy    write the logits of every forwarded position, float32 [tokens, vocab]\n"
    "  --quiet                   no per-label table / text on stdout\n");
}

static char *label_from_path(const char *p) {
  const char *b = strrchr(p, '/');
  b = b ? b + 1 : p;
  size_t n = strcspn(b, ".");
  char *s = malloc(n + 1);
  memcpy(s, b, n);
  s[n] = 0;
  return s;
}

static int parse_ids(const char *s, int **ids, int *n) {
  int cap = 16;
  *ids = malloc(sizeof(int) * cap);
  *n = 0;
  const char *p = s;
  while (*p) {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || v < 0 || v > INT_MAX) { free(*ids); return -1; }
    if (*n == cap) { cap *= 2; *ids = realloc(*ids, sizeof(int) * cap); }
    (*ids)[(*n)++] = (int)v;
    p = end;
    if (*p == ',') p++;
    else if (*p) { free(*ids); return -1; }
  }
  if (*n > 0) return 0;
  free(*ids);
  *ids = NULL;
  return -1;
}

typedef struct label_acc { char *label; double nll; long n; long tokens; } label_acc;

static int dump_cb(void *u, const float *logits, int n, int V) {
  char err[256];
  if (eng_npy_append(u, logits, (size_t)n, err, sizeof err)) { fprintf(stderr, "moescope run: %s\n", err); return 1; }
  (void)V;
  return 0;
}

static int print_tok(void *u, int id) {
  const eng_tokenizer *tok = u;
  size_t len;
  const char *p = tok ? eng_tok_piece(tok, id, &len) : NULL;
  if (p) fwrite(p, 1, len, stdout);
  fflush(stdout);
  return 0;
}

static int add_dir(input **in, int *n_in, const char *dir, const char *split) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  struct dirent *e;
  char suffix[64];
  snprintf(suffix, sizeof suffix, ".%s.txt", split ? split : "");
  char **names = NULL;
  int nn = 0;
  while ((e = readdir(d))) {
    size_t L = strlen(e->d_name), S = strlen(split ? suffix : ".txt");
    if (L <= S || strcmp(e->d_name + L - S, split ? suffix : ".txt")) continue;
    names = realloc(names, sizeof(char *) * (nn + 1));
    names[nn++] = strdup(e->d_name);
  }
  closedir(d);
  for (int i = 0; i < nn; i++) /* sorted for a stable order */
    for (int j = i + 1; j < nn; j++)
      if (strcmp(names[j], names[i]) < 0) { char *t = names[i]; names[i] = names[j]; names[j] = t; }
  for (int i = 0; i < nn; i++) {
    char *p = malloc(strlen(dir) + strlen(names[i]) + 2);
    sprintf(p, "%s/%s", dir, names[i]);
    *in = realloc(*in, sizeof(input) * (*n_in + 1));
    (*in)[*n_in] = (input){0, p, label_from_path(names[i]), p, NULL, 0};
    (*n_in)++;
    free(names[i]);
  }
  free(names);
  return nn;
}

int cli_run(int argc, char **argv) {
  const char *model_dir = NULL, *db = "trace.db", *route = "native", *device = "cpu", *dump = NULL;
  int expert_gemm = -1;   /* --expert-gemm; -1: not given (eng_cuda_ctx_init reads MOESCOPE_EXPERT_GEMM) */
  int level = PRB_LEVEL_TOPK, score = 0, quiet = 0, ignore_eos = 0;
  long generate = -1, window = 0, max_tokens = 0, batch = 256, threads = 0, seed = 0;
  double temperature = 0, top_p = 1;
  input *in = NULL;
  int n_in = 0, rc = CLI_ERR;
  char **dir_paths = NULL;
  int n_dirs = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    if (cli_is_help(a)) { usage(stdout); free(in); return CLI_OK; }
#define VAL() do { if (!(v = cli_value(argc, argv, &i, CMD))) goto usage_err; } while (0)
#define INT(dst, lo, hi) do { VAL(); if (cli_int(v, lo, hi, &(dst))) { cli_fail(CLI_USAGE, CMD, "%s: invalid value '%s' (expected an integer in %ld..%ld)", a, v, (long)(lo), (long)(hi)); goto usage_err; } } while (0)
    if (!strcmp(a, "--model")) { VAL(); model_dir = v; }
    else if (!strcmp(a, "--file")) { VAL(); in = realloc(in, sizeof(input) * (n_in + 1)); in[n_in++] = (input){0, v, NULL, NULL, NULL, 0}; }
    else if (!strcmp(a, "--prompt")) { VAL(); in = realloc(in, sizeof(input) * (n_in + 1)); in[n_in++] = (input){1, v, NULL, NULL, NULL, 0}; }
    else if (!strcmp(a, "--ids")) { VAL(); in = realloc(in, sizeof(input) * (n_in + 1)); in[n_in++] = (input){2, v, NULL, NULL, NULL, 0}; }
    else if (!strcmp(a, "--label")) {
      VAL();
      if (n_in == 0) { cli_fail(CLI_USAGE, CMD, "--label must follow the --file/--prompt/--ids it names"); goto usage_err; }
      free(in[n_in - 1].label);
      in[n_in - 1].label = strdup(v);
    }
    else if (!strcmp(a, "--dir")) { VAL(); dir_paths = realloc(dir_paths, sizeof(char *) * (n_dirs + 1)); dir_paths[n_dirs++] = (char *)v; }
    else if (!strcmp(a, "--split")) {
      VAL();
      if (!n_dirs) { cli_fail(CLI_USAGE, CMD, "--split must follow --dir"); goto usage_err; }
      int got = add_dir(&in, &n_in, dir_paths[--n_dirs], v);
      if (got <= 0) { cli_fail(CLI_USAGE, CMD, "--dir %s: no *.%s.txt files found", dir_paths[n_dirs], v); goto usage_err; }
    }
    else if (!strcmp(a, "--score")) score = 1;
    else if (!strcmp(a, "--generate")) INT(generate, 0, 1000000);
    else if (!strcmp(a, "--temperature")) { VAL(); if (cli_double(v, 0, 100, &temperature)) { cli_fail(CLI_USAGE, CMD, "--temperature: invalid value '%s'", v); goto usage_err; } }
    else if (!strcmp(a, "--top-p")) { VAL(); if (cli_double(v, 1e-6, 1, &top_p)) { cli_fail(CLI_USAGE, CMD, "--top-p: invalid value '%s' (expected 0 < p <= 1)", v); goto usage_err; } }
    else if (!strcmp(a, "--seed")) INT(seed, 0, LONG_MAX);
    else if (!strcmp(a, "--db")) { VAL(); db = v; }
    else if (!strcmp(a, "--record")) {
      VAL();
      level = prb_level_parse(v);
      if (level < 0) { cli_fail(CLI_USAGE, CMD, "--record: unknown level '%s' (off, counts, topk, full)", v); goto usage_err; }
    }
    else if (!strcmp(a, "--route")) { VAL(); route = v; }
    else if (!strcmp(a, "--window")) INT(window, 2, 1 << 24);
    else if (!strcmp(a, "--max-tokens")) INT(max_tokens, 1, LONG_MAX);
    else if (!strcmp(a, "--batch")) INT(batch, 1, 65536);
    else if (!strcmp(a, "--threads")) INT(threads, 1, 1024);
    else if (!strcmp(a, "--device")) { VAL(); device = v; }
    else if (!strcmp(a, "--expert-gemm")) {
      VAL();
      expert_gemm = eng_cuda_expert_gemm_parse(v);
      if (expert_gemm < 0) { cli_fail(CLI_USAGE, CMD, "--expert-gemm: unknown value '%s' (own, cublas)", v); goto usage_err; }
    }
    else if (!strcmp(a, "--dump-logits")) { VAL(); dump = v; }
    else if (!strcmp(a, "--quiet")) quiet = 1;
    else if (!strcmp(a, "--ignore-eos")) ignore_eos = 1;
    else { cli_fail(CLI_USAGE, CMD, "unknown option '%s' (see moescope run --help)", a); goto usage_err; }
  }
  for (int d = 0; d < n_dirs; d++)
    if (add_dir(&in, &n_in, dir_paths[d], NULL) <= 0) { cli_fail(CLI_USAGE, CMD, "--dir %s: no *.txt files found", dir_paths[d]); goto usage_err; }
  free(dir_paths);
  dir_paths = NULL;
  if (n_in == 0) { cli_fail(CLI_USAGE, CMD, "no input: give --file, --dir, --prompt or --ids (see --help)"); goto usage_err; }
  int use_cuda = !strcmp(device, "cuda");
  if (strcmp(device, "cpu") && !use_cuda) {
    cli_fail(CLI_USAGE, CMD, "--device: unknown device '%s' (cpu, cuda)", device);
    rc = CLI_USAGE;
    goto out_inputs;
  }
  if (expert_gemm >= 0 && !use_cuda) {
    cli_fail(CLI_USAGE, CMD, "--expert-gemm needs --device cuda");
    rc = CLI_USAGE;
    goto out_inputs;
  }
  if (use_cuda) {
    char why[512];
    if (!eng_cuda_available(why, sizeof why)) { rc = cli_fail(CLI_ERR, CMD, "--device cuda: %s; use --device cpu", why); goto out_inputs; }
  }
  if (!model_dir) model_dir = cli_default_model();
  if (threads > 0) krn_set_threads((int)threads);

  char err[1024];
  eng_model model;
  if (eng_model_load(&model, model_dir, err, sizeof err)) { rc = cli_fail(CLI_ERR, CMD, "%s", err); goto out_inputs; }
  eng_tokenizer *tok = NULL;
  char tok_src[PATH_MAX + 16] = "";
  { /* a folder: its tokenizer.json; a GGUF file: the embedded vocabulary, else tokenizer.json beside it */
    int need_tok = 0;
    for (int i = 0; i < n_in; i++) if (in[i].kind != 2) need_tok = 1;
    if (eng_tok_load_model(&tok, model_dir, tok_src, sizeof tok_src, err, sizeof err)) {
      if (need_tok) { rc = cli_fail(CLI_ERR, CMD, "%s", err); goto out_model; }
      tok = NULL;
    }
  }
  /* Reads, tokenizes and range-checks every input before the trace DB is opened, so a bad
   * input fails with one error line and leaves no partial run behind. */
  for (int i = 0; i < n_in; i++) {
    int *ids = NULL, n = 0;
    if (in[i].kind == 2) {
      if (parse_ids(in[i].arg, &ids, &n)) { rc = cli_fail(CLI_USAGE, CMD, "--ids: expected comma-separated non-negative integers, got '%s'", in[i].arg); goto out_tok; }
    } else {
      size_t len = 0, nn = 0;
      char *text = in[i].kind == 0 ? eng_read_file(in[i].arg, &len, SIZE_MAX - 1, err, sizeof err) : strdup(in[i].arg);
      if (!text) { rc = cli_fail(CLI_ERR, CMD, "%s", in[i].kind == 0 ? err : "out of memory"); goto out_tok; }
      if (in[i].kind == 1) len = strlen(text);
      int erc = eng_tok_encode(tok, text, len, &ids, &nn, err, sizeof err);
      free(text);
      if (erc) { rc = cli_fail(CLI_ERR, CMD, "%s", err); goto out_tok; }
      n = (int)nn;
    }
    for (int t = 0; t < n; t++)
      if (ids[t] >= model.cfg.vocab) {
        if (in[i].kind == 2) rc = cli_fail(CLI_USAGE, CMD, "--ids: token id %d out of range (vocab %d)", ids[t], model.cfg.vocab);
        else rc = cli_fail(CLI_ERR, CMD, "%s: token id %d is outside the model's vocab (%d); tokenizer and model do not match",
                           tok_src, ids[t], model.cfg.vocab);
        free(ids);
        goto out_tok;
      }
    int ctx = window > 0 ? (int)window : model.cfg.max_pos, used = max_tokens > 0 && n > max_tokens ? (int)max_tokens : n;
    if (in[i].kind != 0 && !score && generate > 0 && used > ctx) {
      rc = cli_fail(CLI_USAGE, CMD, "prompt of %d tokens does not fit the context (%d)", used, ctx);
      free(ids);
      goto out_tok;
    }
    in[i].ids = ids;
    in[i].n = n;
  }
  eng_policy *pol = NULL;
  if (eng_policy_create_cfg(&pol, route, &model.cfg.router, err, sizeof err)) {
    rc = cli_fail(CLI_USAGE, CMD, "%s", err);
    goto out_tok;
  }
  prb_sink *sink = NULL;
  prb_scope *scope = NULL;   /* NVTX ranges + CUPTI (probes/prb_nvtx.h) */
  prb_probe probe = prb_probe_none();
  int64_t run_id = 0;
  char *cmdline = cli_join(argc + 1, argv - 1);
  if (level > PRB_LEVEL_OFF) {
    if (prb_sink_open(&sink, db, 0, err, sizeof err)) { rc = cli_fail(CLI_ERR, CMD, "%s", err); free(cmdline); goto out_pol; }
    prb_run_info ri = {model_dir, model.sha256, model.cfg.model_type, pol->spec, device, model.dtype, cmdline,
                       model.cfg.n_layers, model.cfg.n_experts, model.cfg.top_k, model.cfg.n_shared_experts,
                       krn_get_threads(), level};
    if (prb_sink_begin_run(sink, &ri, &run_id, err, sizeof err)) {
      rc = cli_fail(CLI_ERR, CMD, "%s", err);
      prb_sink_close(sink, err, sizeof err);
      free(cmdline);
      goto out_pol;
    }
    if (tok && level >= PRB_LEVEL_TOPK) {
      int V = model.cfg.vocab;
      const char **pieces = calloc((size_t)V, sizeof(char *));
      size_t *lens = calloc((size_t)V, sizeof(size_t));
      for (int id = 0; id < V; id++) { pieces[id] = eng_tok_piece(tok, id, &lens[id]); if (!pieces[id]) { pieces[id] = ""; lens[id] = 0; } }
      prb_sink_vocab(sink, V, pieces, lens);
      free(pieces); free(lens);
    }
    probe = prb_sink_probe(sink, level);
  }
  free(cmdline);
  {
    prb_scope_opts so = prb_scope_defaults(run_id);
    so.cupti = !strcmp(device, "cuda");
    char warn[512];
    scope = prb_scope_open(&probe, &so, warn, sizeof warn);
    if (warn[0] && !quiet) fprintf(stderr, "moescope run: %s\n", warn);
  }
  int ctx_len = window > 0 ? (int)window : model.cfg.max_pos;
  eng_ctx ctx;
  eng_cuda_ctx *gctx = NULL;   /* --device cuda: the GPU context replaces ctx */
  memset(&ctx, 0, sizeof ctx);
  if (use_cuda ? eng_cuda_ctx_init(&gctx, &model, pol, probe, ctx_len, (int)batch, err, sizeof err)
               : eng_ctx_init(&ctx, &model, krn_cpu_backend(), pol, probe, ctx_len, (int)batch, err, sizeof err)) {
    rc = cli_fail(CLI_ERR, CMD, "%s", err);
    goto out_sink;
  }
  if (gctx && expert_gemm >= 0 && eng_cuda_set_expert_gemm(gctx, expert_gemm, err, sizeof err)) {
    rc = cli_fail(CLI_ERR, CMD, "%s", err);
    goto out_ctx;
  }
  eng_npy npy;
  int have_npy = 0;
  if (dump) {
    if (eng_npy_open(&npy, dump, (size_t)model.cfg.vocab, err, sizeof err)) { rc = cli_fail(CLI_ERR, CMD, "%s", err); goto out_ctx; }
    have_npy = 1;
  }
  label_acc *acc = calloc((size_t)n_in, sizeof(label_acc));
  int n_acc = 0, failed = 0;
  eng_sampler sampler = {(float)temperature, (float)top_p, (uint64_t)seed};
  for (int i = 0; i < n_in && !failed; i++) {
    int *ids = in[i].ids, n = in[i].n;
    in[i].ids = NULL;
    const char *source = in[i].kind == 2 ? "ids" : in[i].kind == 1 ? "prompt" : in[i].arg;
    if (max_tokens > 0 && n > max_tokens) n = (int)max_tokens;
    if (n == 0) { fprintf(stderr, "moescope run: %s: no tokens, skipped\n", in[i].arg); free(ids); continue; }
    const char *label = in[i].label ? in[i].label : (in[i].kind == 0 ? NULL : (in[i].kind == 1 ? "prompt" : "ids"));
    char *own_label = label ? NULL : label_from_path(in[i].arg);
    if (!label) label = own_label;
    int do_gen = in[i].kind != 0 && !score && generate > 0;
    long n_new = do_gen ? generate : 0;
    if (probe.sequence) probe.sequence(probe.ctx, i, label, source, n + (int)n_new);
    if (!do_gen) {
      eng_score_result res;
      if (n > ctx_len && window == 0 && !quiet && in[i].kind != 0)
        fprintf(stderr, "moescope run: input longer than the context (%d), scored in windows\n", ctx_len);
      if (gctx ? eng_cuda_score(gctx, ids, n, ctx_len, i, NULL, &res, have_npy ? dump_cb : NULL, &npy, err, sizeof err)
               : eng_score(&ctx, ids, n, ctx_len, i, NULL, &res, have_npy ? dump_cb : NULL, &npy, err, sizeof err)) {
        rc = cli_fail(CLI_ERR, CMD, "%s", err[0] ? err : "scoring failed");
        failed = 1;
      } else {
        int a = 0;
        while (a < n_acc && strcmp(acc[a].label, label)) a++;
        if (a == n_acc) acc[n_acc++].label = strdup(label);
        acc[a].nll += res.nll_sum;
        acc[a].n += res.n_scored;
        acc[a].tokens += n;
      }
    } else {
      int *out = malloc(sizeof(int) * (size_t)(n_new + 1)), nout = 0;
      if (n + n_new > ctx_len) n_new = ctx_len - n;
      if (n_new < 0) { rc = cli_fail(CLI_USAGE, CMD, "prompt of %d tokens does not fit the context (%d)", n, ctx_len); failed = 1; }
      else {
        if (!quiet && tok) { char *t; size_t tl; if (!eng_tok_decode(tok, ids, (size_t)n, &t, &tl)) { fwrite(t, 1, tl, stdout); free(t); } }
        int stop = ignore_eos ? -1 : tok ? eng_tok_eos(tok) : model.cfg.eos_id;
        if (gctx ? eng_cuda_generate(gctx, ids, n, (int)n_new, &sampler, stop, i, out, &nout, quiet ? NULL : print_tok, tok,
                                     have_npy ? dump_cb : NULL, &npy, err, sizeof err)
                 : eng_generate(&ctx, ids, n, (int)n_new, &sampler, stop, i, out, &nout,
                                quiet ? NULL : print_tok, tok, have_npy ? dump_cb : NULL, &npy, err, sizeof err)) {
          rc = cli_fail(CLI_ERR, CMD, "%s", err[0] ? err : "generation failed");
          failed = 1;
        }
        if (!quiet) {
          if (!tok) for (int t = 0; t < nout; t++) printf("%s%d", t ? "," : "", out[t]);
          printf("\n");
        }
      }
      free(out);
    }
    free(own_label);
    free(ids);
  }
  if (!failed && !quiet && n_acc > 0) {
    printf("%-16s %10s %10s %12s %10s\n", "label", "tokens", "scored", "mean_nll", "ppl");
    for (int a = 0; a < n_acc; a++)
      printf("%-16s %10ld %10ld %12.6f %10.3f\n", acc[a].label, acc[a].tokens, acc[a].n,
             acc[a].n ? acc[a].nll / acc[a].n : NAN, acc[a].n ? exp(acc[a].nll / acc[a].n) : NAN);
  }
  for (int a = 0; a < n_acc; a++) free(acc[a].label);
  free(acc);
  if (have_npy && eng_npy_close(&npy, err, sizeof err) && !failed) { rc = cli_fail(CLI_ERR, CMD, "%s", err); failed = 1; }
  if (!failed) rc = CLI_OK;
out_ctx:
  eng_ctx_free(&ctx);
  eng_cuda_ctx_free(gctx);
out_sink:
  if (sink && prb_sink_close(sink, err, sizeof err) && rc == CLI_OK) rc = cli_fail(CLI_ERR, CMD, "%s", err);
  if (scope) {
    char warn[512];
    if (prb_scope_close(scope, sink ? db : NULL, err, sizeof err, warn, sizeof warn) && rc == CLI_OK)
      rc = cli_fail(CLI_ERR, CMD, "%s", err);
    if (warn[0] && !quiet) fprintf(stderr, "moescope run: %s\n", warn);
  }
  /* reported at the end, so that a failing run prints only its one error line */
  if (sink && rc == CLI_OK && !quiet)
    fprintf(stderr, "moescope run: recorded run %lld into %s (level %s)\n", (long long)run_id, db, prb_level_name(level));
out_pol:
  eng_policy_free(pol);
out_tok:
  eng_tok_free(tok);
out_model:
  eng_model_free(&model);
out_inputs:
  for (int i = 0; i < n_in; i++) { free(in[i].label); free(in[i].own); free(in[i].ids); }
  free(in);
  return rc;
usage_err:
  free(dir_paths);
  for (int i = 0; i < n_in; i++) { free(in[i].label); free(in[i].own); free(in[i].ids); }
  free(in);
  return CLI_USAGE;
}
