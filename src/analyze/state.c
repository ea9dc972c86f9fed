/* SPDX-License-Identifier: MIT */
/*
 * The decoded device state (--state): a small tree of objects, arrays and
 * strings bump-allocated from an arena while the walk runs, rendered as
 * indented JSON text in one pass (the layout of QEMU's analyser). Building
 * a jansson tree for the 300,000 values of a real stream and dumping it cost
 * 20 times the walk; this costs about as much as the walk. Never prints.
 */
#include "an_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define ARENA_CHUNK (1u << 20)

struct an_arena_chunk {
	struct an_arena_chunk *next;
	size_t used, cap;
	_Alignas(16) unsigned char data[];
};

void *an_arena_alloc(struct an_arena *a, size_t n)
{
	n = (n + 15) & ~(size_t)15;
	struct an_arena_chunk *c = a->head;
	if (!c || c->cap - c->used < n) {
		/* grow geometrically from 16 KiB: small streams stay cheap */
		size_t cap = c ? c->cap * 2 : 16384;
		if (cap > ARENA_CHUNK)
			cap = ARENA_CHUNK;
		if (cap < n)
			cap = n;
		if (a->max && (a->total > a->max || cap > a->max - a->total)) {
			a->over = true;
			return NULL;
		}
		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->next = a->head;
		c->used = 0;
		c->cap = cap;
		a->head = c;
		a->total += cap;
	}
	void *p = c->data + c->used;
	c->used += n;
	return p;
}

void an_arena_free(struct an_arena *a)
{
	struct an_arena_chunk *c = a->head;
	while (c) {
		struct an_arena_chunk *n = c->next;
		free(c);
		c = n;
	}
	a->head = NULL;
	a->total = 0;
}

static char *arena_strndup(struct an_arena *a, const char *s, size_t n)
{
	char *p = an_arena_alloc(a, n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = 0;
	}
	return p;
}

struct an_node *an_node_new(struct an_arena *a, enum an_node_type t, const char *str, size_t len)
{
	struct an_node *n = an_arena_alloc(a, sizeof(*n));
	if (!n)
		return NULL;
	memset(n, 0, sizeof(*n));
	n->type = t;
	if (str) {
		n->str = arena_strndup(a, str, len);
		if (!n->str)
			return NULL;
		n->len = len;
	}
	return n;
}

static void append(struct an_node *parent, struct an_node *child)
{
	child->next = NULL;
	if (parent->last)
		parent->last->next = child;
	else
		parent->first = child;
	parent->last = child;
}

/*
 * As QEMU's analyser does: arrays (array_len, or "index"ed elements) become
 * arrays, and a key met again turns into an array of all its values (the
 * existing node is converted in place, so *slot stays valid).
 */
int an_node_put(struct an_arena *a, struct an_node *obj, const char *key, struct an_node *v, bool arr,
		struct an_node **slot)
{
	if (!obj || !v)
		return v ? 0 : -ENOMEM;
	struct an_node *old = slot ? *slot : NULL;
	if (!old) {
		struct an_node *put = v;
		if (arr) {
			put = an_node_new(a, AN_NODE_ARR, NULL, 0);
			if (!put)
				return -ENOMEM;
			append(put, v);
		}
		put->key = key;
		append(obj, put);
		if (slot)
			*slot = put;
		return 0;
	}
	if (old->type == AN_NODE_ARR) {
		append(old, v);
		return 0;
	}
	struct an_node *moved = an_node_new(a, old->type, NULL, 0);
	if (!moved)
		return -ENOMEM;
	*moved = *old;
	moved->key = NULL;
	moved->next = NULL;
	struct an_node *keep_next = old->next;
	memset(old, 0, sizeof(*old));
	old->type = AN_NODE_ARR;
	old->key = key;
	old->next = keep_next;
	if (obj->last == old)
		obj->last = old;
	append(old, moved);
	append(old, v);
	return 0;
}

/* ----------------------------------------------------------------- render */

struct tbuf {
	char *p;
	size_t len, cap;
	size_t max; /* 0: no cap */
	bool oom, over;
};

static bool tb_reserve(struct tbuf *b, size_t n)
{
	if (b->oom)
		return false;
	if (b->cap - b->len >= n)
		return true;
	size_t cap = b->cap ? b->cap : 1 << 16;
	while (cap - b->len < n)
		cap *= 2;
	if (b->max && cap > b->max) {
		if (b->max - b->len < n) {
			b->oom = b->over = true;
			return false;
		}
		cap = b->max;
	}
	char *np = realloc(b->p, cap);
	if (!np) {
		b->oom = true;
		return false;
	}
	b->p = np;
	b->cap = cap;
	return true;
}

static void tb_put(struct tbuf *b, const char *s, size_t n)
{
	if (tb_reserve(b, n)) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
	}
}

static void tb_indent(struct tbuf *b, int level)
{
	if (tb_reserve(b, 1 + (size_t)level * 4)) {
		b->p[b->len++] = '\n';
		memset(b->p + b->len, ' ', (size_t)level * 4);
		b->len += (size_t)level * 4;
	}
}

static void tb_str(struct tbuf *b, const char *s, size_t n)
{
	static const char hx[] = "0123456789abcdef";
	if (!tb_reserve(b, n * 6 + 2))
		return;
	char *o = b->p + b->len;
	*o++ = '"';
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
		} else if (c < 0x20 || c > 0x7e) {
			/* The value reads as hm_escape spells it (\xNN): the text
			 * stays printable ASCII and valid JSON whatever the peer
			 * sent (raw 0x80-0xff would be invalid UTF-8 or C1). */
			memcpy(o, "\\\\x", 3);
			o[3] = hx[c >> 4];
			o[4] = hx[c & 15];
			o += 5;
		} else {
			*o++ = (char)c;
		}
	}
	*o++ = '"';
	b->len = (size_t)(o - b->p);
}

static void render(struct tbuf *b, const struct an_node *n, int level)
{
	switch (n->type) {
	case AN_NODE_STR:
		tb_str(b, n->str, n->len);
		return;
	case AN_NODE_TRUE:
		tb_put(b, "true", 4);
		return;
	case AN_NODE_FALSE:
		tb_put(b, "false", 5);
		return;
	case AN_NODE_OBJ:
	case AN_NODE_ARR: {
		bool obj = n->type == AN_NODE_OBJ;
		if (!n->first) {
			tb_put(b, obj ? "{}" : "[]", 2);
			return;
		}
		tb_put(b, obj ? "{" : "[", 1);
		for (const struct an_node *c = n->first; c; c = c->next) {
			tb_indent(b, level + 1);
			if (obj) {
				tb_str(b, c->key, strlen(c->key));
				tb_put(b, ": ", 2);
			}
			render(b, c, level + 1);
			if (c->next)
				tb_put(b, ",", 1);
		}
		tb_indent(b, level);
		tb_put(b, obj ? "}" : "]", 1);
		return;
	}
	}
}

char *an_node_render(const struct an_node *root, size_t max, size_t *len, bool *over)
{
	struct tbuf b = {.max = max};
	render(&b, root, 0);
	tb_put(&b, "\n", 1);
	if (!tb_reserve(&b, 1) || b.oom) {
		free(b.p);
		if (over)
			*over = b.over;
		return NULL;
	}
	b.p[b.len] = 0;
	if (len)
		*len = b.len;
	return b.p;
}

/* ------------------------------------------------------------------ index */

uint64_t an_hash_str(const char *s, uint64_t seed)
{
	uint64_t h = 0xcbf29ce484222325ull ^ seed;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

static uint64_t seed_value;
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;

static void seed_init(void)
{
	uint64_t v = 0;
	if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != (ssize_t)sizeof(v))
		v = hm_now_ns() ^ (uint64_t)(uintptr_t)&v; /* no entropy yet: still unknown outside */
	seed_value = v | 1;
}

uint64_t an_hash_seed(void)
{
	pthread_once(&seed_once, seed_init);
	return seed_value;
}

uint64_t an_hash_mix(uint64_t key)
{
	key ^= an_hash_seed();
	key ^= key >> 33;
	key *= 0xff51afd7ed558ccdull;
	key ^= key >> 33;
	key *= 0xc4ceb9fe1a85ec53ull;
	key ^= key >> 33;
	return key;
}

static size_t slot_of(uint64_t key, size_t cap)
{
	return (size_t)an_hash_mix(key) & (cap - 1);
}

int an_index_put(struct an_index *ix, uint64_t key, uint32_t val)
{
	if ((ix->n + 1) * 2 > ix->cap) {
		size_t cap = ix->cap ? ix->cap * 2 : 64;
		uint64_t *k = malloc(cap * sizeof(*k));
		uint32_t *v = malloc(cap * sizeof(*v));
		if (!k || !v) {
			free(k);
			free(v);
			return -ENOMEM;
		}
		for (size_t i = 0; i < cap; i++)
			v[i] = UINT32_MAX;
		for (size_t i = 0; i < ix->cap; i++) {
			if (ix->vals[i] == UINT32_MAX)
				continue;
			size_t j = slot_of(ix->keys[i], cap);
			while (v[j] != UINT32_MAX)
				j = (j + 1) & (cap - 1);
			k[j] = ix->keys[i];
			v[j] = ix->vals[i];
		}
		free(ix->keys);
		free(ix->vals);
		ix->keys = k;
		ix->vals = v;
		ix->cap = cap;
	}
	size_t j = slot_of(key, ix->cap);
	while (ix->vals[j] != UINT32_MAX)
		j = (j + 1) & (ix->cap - 1);
	ix->keys[j] = key;
	ix->vals[j] = val;
	ix->n++;
	return 0;
}

int64_t an_index_find(const struct an_index *ix, uint64_t key, bool (*fn)(void *, uint32_t), void *opaque)
{
	if (!ix->cap)
		return -1;
	for (size_t j = slot_of(key, ix->cap); ix->vals[j] != UINT32_MAX; j = (j + 1) & (ix->cap - 1))
		if (ix->keys[j] == key && (!fn || fn(opaque, ix->vals[j])))
			return ix->vals[j];
	return -1;
}

void an_index_free(struct an_index *ix)
{
	free(ix->keys);
	free(ix->vals);
	memset(ix, 0, sizeof(*ix));
}
