/* eng_bpe.c — the hash maps and the BPE merge loop behind eng_tokenizer.c.
 *
 * eng_smap: open-addressing map from a byte string (not copied) to two ints; used for the
 * vocabulary while loading and as a per-call word cache while encoding.
 * eng_pmap: open-addressing map from a token pair to (merge rank, merged id).
 * eng_bpe_merge: merges one pre-tokenized word with a doubly linked list of symbols and a
 * binary min-heap of candidate pairs keyed by (rank, position), the same order as Hugging
 * Face tokenizers (lowest rank first; among equal ranks the leftmost), so each word costs
 * O(n log n) instead of the O(n^2) of the textbook loop.
 */
#include "engine/eng_bpe.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a, then a final mix */
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  h ^= h >> 29;
  h *= 0xbf58476d1ce4e5b9ull;
  return h ^ (h >> 32);
}

static uint64_t hash_u64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

static size_t cap_for(size_t expect) {
  size_t cap = 16;
  while (cap < expect * 2 + 1) cap <<= 1;
  return cap;
}

/* ---- string map ------------------------------------------------------------------ */

int eng_smap_init(eng_smap *m, size_t expect) {
  m->cap = cap_for(expect);
  m->n = 0;
  m->e = calloc(m->cap, sizeof *m->e);
  return m->e ? 0 : -1;
}

void eng_smap_free(eng_smap *m) {
  free(m->e);
  m->e = NULL;
  m->cap = m->n = 0;
}

static eng_smap_ent *smap_slot(eng_smap_ent *e, size_t cap, const char *key, size_t len) {
  size_t i = hash_bytes(key, len) & (cap - 1);
  while (e[i].key && !(e[i].len == len && memcmp(e[i].key, key, len) == 0)) i = (i + 1) & (cap - 1);
  return &e[i];
}

int eng_smap_put(eng_smap *m, const char *key, size_t len, int val, int val2) {
  if ((m->n + 1) * 2 > m->cap) {
    size_t ncap = m->cap * 2;
    eng_smap_ent *ne = calloc(ncap, sizeof *ne);
    if (!ne) return -1;
    for (size_t i = 0; i < m->cap; i++)
      if (m->e[i].key) *smap_slot(ne, ncap, m->e[i].key, m->e[i].len) = m->e[i];
    free(m->e);
    m->e = ne;
    m->cap = ncap;
  }
  eng_smap_ent *s = smap_slot(m->e, m->cap, key, len);
  if (!s->key) m->n++;
  s->key = key ? key : "";
  s->len = (uint32_t)len;
  s->val = val;
  s->val2 = val2;
  return 0;
}

const eng_smap_ent *eng_smap_get(const eng_smap *m, const char *key, size_t len) {
  if (!m->e) return NULL;
  const eng_smap_ent *s = smap_slot(m->e, m->cap, key, len);
  return s->key ? s : NULL;
}

/* ---- pair map -------------------------------------------------------------------- */

int eng_pmap_init(eng_pmap *m, size_t expect) {
  m->cap = cap_for(expect);
  m->n = 0;
  m->e = malloc(m->cap * sizeof *m->e);
  if (!m->e) return -1;
  for (size_t i = 0; i < m->cap; i++) m->e[i].rank = -1;
  return 0;
}

void eng_pmap_free(eng_pmap *m) {
  free(m->e);
  m->e = NULL;
  m->cap = m->n = 0;
}

static uint64_t pair_key(int a, int b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static eng_pmap_ent *pmap_slot(eng_pmap_ent *e, size_t cap, uint64_t key) {
  size_t i = hash_u64(key) & (cap - 1);
  while (e[i].rank >= 0 && e[i].key != key) i = (i + 1) & (cap - 1);
  return &e[i];
}

int eng_pmap_put(eng_pmap *m, int a, int b, int rank, int id) {
  if ((m->n + 1) * 2 > m->cap) {
    size_t ncap = m->cap * 2;
    eng_pmap_ent *ne = malloc(ncap * sizeof *ne);
    if (!ne) return -1;
    for (size_t i = 0; i < ncap; i++) ne[i].rank = -1;
    for (size_t i = 0; i < m->cap; i++)
      if (m->e[i].rank >= 0) *pmap_slot(ne, ncap, m->e[i].key) = m->e[i];
    free(m->e);
    m->e = ne;
    m->cap = ncap;
  }
  uint64_t key = pair_key(a, b);
  eng_pmap_ent *s = pmap_slot(m->e, m->cap, key);
  if (s->rank < 0) m->n++;
  s->key = key;
  s->rank = rank;
  s->id = id;
  return 0;
}

int eng_pmap_get(const eng_pmap *m, int a, int b, int *id) {
  const eng_pmap_ent *s = pmap_slot(m->e, m->cap, pair_key(a, b));
  if (s->rank < 0) return -1;
  *id = s->id;
  return s->rank;
}

/* ---- BPE merge of one word ---------------------------------------------------------- */

void eng_bpe_scratch_free(eng_bpe_scratch *s) {
  free(s->prev);
  free(s->next);
  free(s->heap);
  memset(s, 0, sizeof *s);
}

static void heap_push(int64_t *h, size_t *n, int64_t v) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (h[p] <= v) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = v;
}

static int64_t heap_pop(int64_t *h, size_t *n) {
  int64_t top = h[0], v = h[--(*n)];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && h[c + 1] < h[c]) c++;
    if (v <= h[c]) break;
    h[i] = h[c];
    i = c;
  }
  if (*n) h[i] = v;
  return top;
}

int eng_bpe_merge(const eng_pmap *m, eng_bpe_scratch *s, int *syms, int n) {
  if (n < 2) return n;
  if (n == 2) { /* the common short case, no heap */
    int id;
    if (eng_pmap_get(m, syms[0], syms[1], &id) >= 0) { syms[0] = id; return 1; }
    return 2;
  }
  if ((size_t)n > s->cap) {
    size_t cap = (size_t)n * 2;
    int *p = realloc(s->prev, cap * sizeof *p);
    if (p) s->prev = p;
    int *q = realloc(s->next, cap * sizeof *q);
    if (q) s->next = q;
    /* every merge pushes at most 2 pairs: n - 1 initial + 2 (n - 1) later */
    int64_t *h = realloc(s->heap, cap * 3 * sizeof *h);
    if (h) s->heap = h;
    if (!p || !q || !h) return -1;
    s->cap = cap;
  }
  int *prev = s->prev, *next = s->next;
  int64_t *heap = s->heap;
  size_t hn = 0;
  int id;
  for (int i = 0; i < n; i++) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
    if (i + 1 < n) {
      int r = eng_pmap_get(m, syms[i], syms[i + 1], &id);
      if (r >= 0) heap_push(heap, &hn, ((int64_t)r << 32) | i);
    }
  }
  while (hn) {
    int64_t top = heap_pop(heap, &hn);
    int rank = (int)(top >> 32), i = (int)(top & 0xffffffff);
    if (syms[i] < 0 || next[i] < 0) continue; /* merged away meanwhile */
    int j = next[i];
    if (eng_pmap_get(m, syms[i], syms[j], &id) != rank) continue; /* stale entry */
    syms[i] = id;
    syms[j] = -1;
    next[i] = next[j];
    if (next[j] >= 0) prev[next[j]] = i;
    if (prev[i] >= 0) {
      int r = eng_pmap_get(m, syms[prev[i]], syms[i], &id);
      if (r >= 0) heap_push(heap, &hn, ((int64_t)r << 32) | prev[i]);
    }
    if (next[i] >= 0) {
      int r = eng_pmap_get(m, syms[i], syms[next[i]], &id);
      if (r >= 0) heap_push(heap, &hn, ((int64_t)r << 32) | i);
    }
  }
  int k = 0;
  for (int i = 0; i >= 0; i = next[i]) syms[k++] = syms[i];
  return k;
}
