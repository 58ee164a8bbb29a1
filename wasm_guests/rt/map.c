/* map.c - object maps with string keys.
 *
 * Entries live in one array in no particular order; the first `sorted` of
 * them are in key order (bytewise). Maps with more than MAP_SMALL entries
 * also have an open-addressing hash index (linear probing, load <= 1/2,
 * backward-shift deletion) of entry index + 1. Anything that walks a map in
 * order (keys, values, display, CBOR, iteration) calls map_sort first, which
 * sorts only the unsorted tail and merges it in: inserting keys and then
 * reading them in order is O(n log n), not O(n^2).
 *
 * Removal moves the last entry into the hole (O(1)), shortening the sorted
 * prefix to the hole.
 */
#include "rt.h"

/* The last key hashed: `if w in m { m[w] += 1 }` hashes the same slice three
 * times. A slice's bytes never change while it is alive (strings are
 * immutable; a buffer grows only past every slice), and its memory is reused
 * only after a collection, which forgets the cache (map_gc_forget). */
static int64_t last_key = -1; /* no slice is 4 GiB long */
static uint32_t last_hash;

uint32_t hash_key(V k) {
    if (k.p == last_key) return last_hash;
    const uint8_t *p = s_ptr(k);
    uint32_t n = s_len(k), h = 2166136261u;
    for (uint32_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    h ^= h >> 15;
    last_key = k.p;
    last_hash = h;
    return h;
}

/* The last entry found or inserted by key: `if w in m { m[w] += 1 }` finds the same entry
 * three times. Valid while the map's entries keep their places: forgotten when entries
 * move (map_remove, map_sort, clear) and at a collection (a map's or a slice's memory may
 * then be reused). */
static const Map *hit_map;
static int64_t hit_key;
static uint32_t hit_idx;

void map_forget_hit(void) { hit_map = 0; }

static inline void remember(const Map *m, V key, uint32_t i) {
    hit_map = m;
    hit_key = key.p;
    hit_idx = i;
}

static inline int is_hit(const Map *m, V key) { return m == hit_map && key.p == hit_key && hit_idx < m->len; }

static inline int key_eq(int64_t a, V b) {
    return a == b.p || ((uint64_t)a >> 32 == s_len(b) && memcmp((void *)(uintptr_t)(uint32_t)a, s_ptr(b), s_len(b)) == 0);
}

Map *map_new(uint32_t cap) {
    Map *m = alloc(sizeof(Map) + (uint64_t)sz_mul(cap, sizeof(Entry))); /* entries in the same block */
    m->depth = 1;
    if (cap) m->e = (Entry *)(m + 1);
    m->cap = cap;
    return m;
}

/* The index slot of key (found=1) or the empty slot where it would go. */
static uint32_t probe(const Map *m, V key, uint32_t h, int *found) {
    uint32_t mask = m->icap - 1, i = h & mask;
    for (;;) {
        uint32_t x = m->idx[i];
        if (!x) {
            *found = 0;
            return i;
        }
        const Entry *e = &m->e[x - 1];
        if (e->hash == h && key_eq(e->key, key)) {
            *found = 1;
            return i;
        }
        i = (i + 1) & mask;
    }
}

static void index_fill(Map *m) {
    uint32_t mask = m->icap - 1;
    memset(m->idx, 0, (size_t)m->icap * 4);
    for (uint32_t k = 0; k < m->len; k++) {
        uint32_t i = m->e[k].hash & mask;
        while (m->idx[i]) i = (i + 1) & mask;
        m->idx[i] = k + 1;
    }
}

static void index_build(Map *m, uint32_t icap) {
    m->idx = alloc(sz_mul(icap, 4));
    m->icap = icap;
    index_fill(m);
}

static int64_t find_linear(const Map *m, V key) {
    uint32_t n = s_len(key);
    for (uint32_t i = 0; i < m->len; i++) {
        if ((uint64_t)m->e[i].key >> 32 == n && key_eq(m->e[i].key, key)) return i;
    }
    return -1;
}

Entry *map_find(Map *m, V key) {
    if (is_hit(m, key)) return &m->e[hit_idx];
    int64_t i;
    if (m->icap) {
        int found;
        uint32_t s = probe(m, key, hash_key(key), &found);
        if (!found) return 0;
        i = m->idx[s] - 1;
    } else {
        i = find_linear(m, key);
        if (i < 0) return 0;
    }
    remember(m, key, (uint32_t)i);
    return &m->e[i];
}

/* map_find for a constant key (a literal, which lives as long as the run) whose
 * hash h the compiler computed. A hit makes the entry's key that very slice (the
 * same bytes), so later lookups of the constant compare pointers, not bytes:
 * records decoded from params share the script's key after their first lookup. */
Entry *map_find_h(Map *m, V key, uint32_t h) {
    Entry *e = 0;
    if (m->icap) {
        int found;
        uint32_t s = probe(m, key, h, &found);
        if (found) e = &m->e[m->idx[s] - 1];
    } else {
        Entry *x = m->e;
        for (uint32_t i = 0, n = m->len; i < n; i++)
            if (x[i].hash == h && key_eq(x[i].key, key)) {
                e = &x[i];
                break;
            }
    }
    if (e) e->key = key.p;
    return e;
}

void map_set(Map *m, V key, V val) { map_set_h(m, key, hash_key(key), val); }

/* map_set for a key whose hash h is known (a constant key of a map literal). */
void map_set_h(Map *m, V key, uint32_t h, V val) {
    note_child(&m->depth, val);
    uint32_t slot = 0;
    if (is_hit(m, key)) {
        m->e[hit_idx].tag = val.tag;
        m->e[hit_idx].p = val.p;
        return;
    }
    if (m->icap) {
        int found;
        slot = probe(m, key, h, &found);
        if (found) {
            remember(m, key, m->idx[slot] - 1);
            Entry *e = &m->e[m->idx[slot] - 1];
            e->tag = val.tag;
            e->p = val.p;
            return;
        }
    } else {
        Entry *x = m->e;
        for (uint32_t i = 0, n = m->len; i < n; i++)
            if (x[i].hash == h && key_eq(x[i].key, key)) {
                remember(m, key, i);
                x[i].tag = val.tag;
                x[i].p = val.p;
                return;
            }
    }
    if (m->len == m->cap) {
        uint64_t cap = (uint64_t)m->cap * 2;
        if (cap < 4) cap = 4;
        Entry *e = alloc(sz_mul(cap, sizeof(Entry)));
        memcpy(e, m->e, (size_t)m->len * sizeof(Entry));
        m->e = e;
        m->cap = (uint32_t)cap;
    }
    uint32_t n = m->len;
    Entry *e = &m->e[n];
    e->key = key.p;
    e->tag = val.tag;
    e->hash = h;
    e->p = val.p;
    m->len = n + 1;
    remember(m, key, n);
    if (m->sorted == n && (n == 0 || str_cmp(mk(T_STR, m->e[n - 1].key), key) < 0)) m->sorted = n + 1;
    if (m->icap) {
        if ((uint64_t)m->len * 2 > m->icap) index_build(m, sz_mul(m->icap, 2));
        else m->idx[slot] = n + 1;
    } else if (m->len > MAP_SMALL) {
        index_build(m, 32);
    }
}

int map_remove(Map *m, V key, V *out) {
    uint32_t i;
    hit_map = 0;
    if (m->icap) {
        int found;
        uint32_t s = probe(m, key, hash_key(key), &found);
        if (!found) return 0;
        i = m->idx[s] - 1;
        /* backward-shift deletion of slot s */
        uint32_t mask = m->icap - 1, hole = s, j = s;
        for (;;) {
            j = (j + 1) & mask;
            uint32_t x = m->idx[j];
            if (!x) break;
            uint32_t home = m->e[x - 1].hash & mask;
            int stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
            if (!stays) {
                m->idx[hole] = x;
                hole = j;
            }
        }
        m->idx[hole] = 0;
    } else {
        int64_t k = find_linear(m, key);
        if (k < 0) return 0;
        i = (uint32_t)k;
    }
    *out = entry_val(&m->e[i]);
    uint32_t last = m->len - 1;
    if (i != last) {
        if (m->icap) {
            uint32_t mask = m->icap - 1, k = m->e[last].hash & mask;
            while (m->idx[k] != last + 1) k = (k + 1) & mask;
            m->idx[k] = i + 1;
        }
        m->e[i] = m->e[last];
    }
    m->len = last;
    if (m->sorted > i) m->sorted = i;
    return 1;
}

/* scratch space for merging the sorted tail (map_sort never re-enters) */
static Entry *scratch;
static uint32_t scratch_cap;

void map_gc_forget(void) {
    hit_map = 0;
    scratch = 0;
    scratch_cap = 0;
    last_key = -1;
}

void map_sort(Map *m) {
    uint32_t n = m->len, s = m->sorted;
    hit_map = 0;
    if (s >= n) {
        m->sorted = n;
        return;
    }
    uint32_t k = n - s;
    sort_entries(m->e + s, k);
    if (s > 0 && str_cmp(mk(T_STR, m->e[s - 1].key), mk(T_STR, m->e[s].key)) > 0) {
        if (scratch_cap < k) {
            scratch = alloc(sz_mul(k, sizeof(Entry)));
            scratch_cap = k;
        }
        memcpy(scratch, m->e + s, (size_t)k * sizeof(Entry));
        /* merge backwards: prefix e[0..s) and tail scratch[0..k) into e[0..n) */
        int64_t a = (int64_t)s - 1, b = (int64_t)k - 1, w = (int64_t)n - 1;
        while (b >= 0) {
            if (a >= 0 && str_cmp(mk(T_STR, m->e[a].key), mk(T_STR, scratch[b].key)) > 0) m->e[w--] = m->e[a--];
            else m->e[w--] = scratch[b--];
        }
    }
    m->sorted = n;
    if (m->icap) index_fill(m);
}

Map *map_clone1(Map *m) {
    uint32_t n = m->len;
    Map *c = map_new(n);
    for (uint32_t i = 0; i < n; i++) {
        c->e[i] = m->e[i];
        share(entry_val(&m->e[i]));
    }
    c->len = n;
    c->depth = m->depth;
    c->sorted = m->sorted;
    if (m->icap) {
        c->idx = alloc(sz_mul(m->icap, 4));
        c->icap = m->icap;
        memcpy(c->idx, m->idx, (size_t)m->icap * 4);
    }
    return c;
}
