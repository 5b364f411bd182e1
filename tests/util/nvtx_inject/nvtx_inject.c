/* nvtx_inject.c — a minimal NVTX3 injection library for tests (built as a shared library
 * by CMake when the NVTX3 headers exist). Loaded by NVTX through NVTX_INJECTION64_PATH at
 * the first NVTX call; it hooks domain create, category naming, string registration,
 * domain push/pop (and the global push/pop) and appends one line per event to the file
 * named by $MOESCOPE_NVTX_LOG:
 *   domain <name>
 *   push <domain> <category> <payload-type> <payload> <message>
 *   pop <domain>
 * so that tests can check nesting, names and payloads of the ranges moescope emits. */
#include <nvtx3/nvToolsExt.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE *g_log;

typedef struct dom { char name[128]; } dom;
typedef struct str { char text[256]; } str;
/* static pools: nothing to free, nothing for a leak checker to report */
static dom g_doms[64];
static str g_strs[1024];
static int g_ndoms, g_nstrs;

static const char *dom_name(nvtxDomainHandle_t d) { return d ? ((const dom *)(const void *)d)->name : "(default)"; }

static nvtxDomainHandle_t NVTX_API my_domain_create(const char *name) {
  if (g_ndoms >= 64) return NULL;
  dom *d = &g_doms[g_ndoms++];
  snprintf(d->name, sizeof d->name, "%s", name ? name : "");
  if (g_log) { fprintf(g_log, "domain %s\n", d->name); fflush(g_log); }
  return (nvtxDomainHandle_t)(void *)d;
}

static void NVTX_API my_name_category(nvtxDomainHandle_t d, uint32_t cat, const char *name) {
  if (g_log) { fprintf(g_log, "category %s %u %s\n", dom_name(d), cat, name ? name : ""); fflush(g_log); }
}

static nvtxStringHandle_t NVTX_API my_register_string(nvtxDomainHandle_t d, const char *s) {
  (void)d;
  if (g_nstrs >= 1024) return NULL;
  str *h = &g_strs[g_nstrs++];
  snprintf(h->text, sizeof h->text, "%s", s ? s : "");
  return (nvtxStringHandle_t)(void *)h;
}

static int NVTX_API my_push_ex(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a) {
  const char *msg = "";
  if (a->messageType == NVTX_MESSAGE_TYPE_ASCII && a->message.ascii) msg = a->message.ascii;
  else if (a->messageType == NVTX_MESSAGE_TYPE_REGISTERED && a->message.registered)
    msg = ((const str *)(const void *)a->message.registered)->text;
  long long pl = a->payloadType == NVTX_PAYLOAD_TYPE_INT64 ? (long long)a->payload.llValue
               : a->payloadType == NVTX_PAYLOAD_TYPE_INT32 ? (long long)a->payload.iValue : 0;
  if (g_log) {
    fprintf(g_log, "push %s %u %d %lld %s%s\n", dom_name(d), a->category, (int)a->payloadType, pl,
            a->messageType == NVTX_MESSAGE_TYPE_REGISTERED ? "@" : "", msg);
    fflush(g_log);
  }
  return 0;
}

static int NVTX_API my_pop(nvtxDomainHandle_t d) {
  if (g_log) { fprintf(g_log, "pop %s\n", dom_name(d)); fflush(g_log); }
  return 0;
}

static int NVTX_API my_push_a(const char *m) {
  if (g_log) { fprintf(g_log, "push (default) 0 0 0 %s\n", m ? m : ""); fflush(g_log); }
  return 0;
}
static int NVTX_API my_pop_global(void) { return my_pop(NULL); }

static int set(NvtxFunctionTable t, unsigned size, unsigned id, NvtxFunctionPointer fn) {
  if (!t || id >= size || !t[id]) return 0;
  *t[id] = fn;
  return 1;
}

/* Says why the injection is refused (the test then finds no records and fails loudly). */
static int inject_fail(const char *why) {
  fprintf(stderr, "nvtx_inject: %s\n", why);
  return 0;
}

__attribute__((visibility("default"))) int InitializeInjectionNvtx2(NvtxGetExportTableFunc_t get) {
  const char *path = getenv("MOESCOPE_NVTX_LOG");
  g_log = path ? fopen(path, "w") : NULL;
  if (path && !g_log) return inject_fail("cannot open MOESCOPE_NVTX_LOG");
  const NvtxExportTableCallbacks *cb = (const NvtxExportTableCallbacks *)get(NVTX_ETID_CALLBACKS);
  if (!cb) return inject_fail("no NVTX callback export table");
  NvtxFunctionTable core = NULL, core2 = NULL;
  unsigned n1 = 0, n2 = 0;
  if (!cb->GetModuleFunctionTable(NVTX_CB_MODULE_CORE, &core, &n1) ||
      !cb->GetModuleFunctionTable(NVTX_CB_MODULE_CORE2, &core2, &n2))
    return inject_fail("no NVTX core function tables");
  set(core, n1, NVTX_CBID_CORE_RangePushA, (NvtxFunctionPointer)my_push_a);
  set(core, n1, NVTX_CBID_CORE_RangePop, (NvtxFunctionPointer)my_pop_global);
  set(core2, n2, NVTX_CBID_CORE2_DomainCreateA, (NvtxFunctionPointer)my_domain_create);
  set(core2, n2, NVTX_CBID_CORE2_DomainNameCategoryA, (NvtxFunctionPointer)my_name_category);
  set(core2, n2, NVTX_CBID_CORE2_DomainRegisterStringA, (NvtxFunctionPointer)my_register_string);
  set(core2, n2, NVTX_CBID_CORE2_DomainRangePushEx, (NvtxFunctionPointer)my_push_ex);
  set(core2, n2, NVTX_CBID_CORE2_DomainRangePop, (NvtxFunctionPointer)my_pop);
  if (g_log) { fprintf(g_log, "init\n"); fflush(g_log); }
  return 1;
}
