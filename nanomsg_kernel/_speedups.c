/* The compiled codec: one interpreter over a contract's layout table.
 *
 * Python builds a Plan per contract and per nested record (nanomsg_kernel/compiled.py): the
 * class, and per field its tag, slot offset, type node and default. encode() and decode()
 * walk a plan; nothing is generated per contract.
 *
 * The pure-Python codec is the reference. This one takes only what it is sure of: exact
 * types, well-formed msgpack, every check of the pure path. On anything else (a value to
 * convert, a bad byte, an unknown tag out of range, a validator's refusal, a body longer
 * than the object budget) it gives up without a trace and the Core calls the pure codec,
 * which decides, and raises its own precise error. So both codecs give the same frames,
 * objects and errors by construction; the differential tests and the fuzzer check it.
 *
 * Bounds: every length is checked against the bytes present before anything is made; a
 * body longer than max_objects bytes is left to the pure path, which counts its objects
 * first; nesting is bounded by the plan (and by MAX_DEPTH while skipping unknown values).
 */
#include "_speedups.h"
#include <structmember.h>
#include <string.h>
#include <stdint.h>

#define MAX_DEPTH 64
#define HEADER 26

enum { K_INT, K_FLOAT, K_BOOL, K_STR, K_BYTES, K_ENUM, K_OPT, K_LIST, K_TUPLE, K_FTUPLE, K_DICT,
       K_RECORD, K_OTHER };

typedef struct Plan Plan;

typedef struct Node {
    int kind;
    struct Node *inner;      /* OPT, LIST, TUPLE; DICT: the value */
    struct Node **items;     /* FTUPLE */
    Py_ssize_t nitems;
    int key_str;             /* DICT: str keys (else int) */
    PyObject *enum_cls;      /* ENUM */
    PyObject *by_value;      /* ENUM: value -> member */
    Plan *plan;              /* RECORD (a strong reference) */
    PyObject *encode;        /* OTHER: the spec's converters */
    PyObject *decode;
    PyObject *shared;        /* OTHER: a type whose exact instances are immutable (uuid), or NULL */
} Node;

typedef struct {
    long long tag;
    Py_ssize_t offset;
    Node *node;
    PyObject *deflt;         /* NULL: required */
    int factory;             /* deflt is a factory to call */
} Field;

struct Plan {
    PyObject_HEAD
    PyTypeObject *cls;
    Py_ssize_t n;
    Field *fields;
    Py_ssize_t unknown_offset;
    PyObject *seen_unknown;  /* the layout's [bool] list */
    PyObject *build;         /* None: fill the slots; else build(*values) */
    long route;
    PyObject *prefixes;      /* tuple of 10-byte header prefixes by kind (contracts) */
    int head;                /* the fixmap byte of a body of exactly the fields, or -1 */
};

static PyObject *Raw_type;      /* nanomsg_kernel.types.Raw */
static PyObject *unpack_fn;     /* bytes -> the msgpack value, as the pure codec reads it */
static PyObject *pack_fn;       /* value -> bytes, as the pure codec writes it */
static PyObject *str_value_;    /* "_value_" */
static PyObject *str_data;      /* "data" */
PyObject *nk_empty_tuple;

/* -- nodes ------------------------------------------------------------------------------ */

static PyTypeObject Plan_Type;

static void node_free(Node *n) {
    if (!n) return;
    node_free(n->inner);
    for (Py_ssize_t i = 0; i < n->nitems; i++) node_free(n->items[i]);
    PyMem_Free(n->items);
    Py_XDECREF(n->enum_cls); Py_XDECREF(n->by_value); Py_XDECREF((PyObject *)n->plan);
    Py_XDECREF(n->encode); Py_XDECREF(n->decode); Py_XDECREF(n->shared);
    PyMem_Free(n);
}

/* A node from its description: ("int",), ("opt", d), ("list", d), ("tuple", d),
 * ("ftuple", (d, ...)), ("dict", key_is_str, d), ("enum", cls, by_value),
 * ("record", plan), ("other", encode, decode[, shared_type]). */
static Node *node_new(PyObject *d) {
    if (!PyTuple_Check(d) || PyTuple_GET_SIZE(d) < 1 || !PyUnicode_Check(PyTuple_GET_ITEM(d, 0))) {
        PyErr_SetString(PyExc_TypeError, "a node description is a tuple (kind, ...)");
        return NULL;
    }
    const char *k = PyUnicode_AsUTF8(PyTuple_GET_ITEM(d, 0));
    if (!k) return NULL;
    Node *n = PyMem_Calloc(1, sizeof(Node));
    if (!n) { PyErr_NoMemory(); return NULL; }
    Py_ssize_t size = PyTuple_GET_SIZE(d);
#define ARG(i) (size > (i) ? PyTuple_GET_ITEM(d, (i)) : Py_None)
    if (!strcmp(k, "int")) n->kind = K_INT;
    else if (!strcmp(k, "float")) n->kind = K_FLOAT;
    else if (!strcmp(k, "bool")) n->kind = K_BOOL;
    else if (!strcmp(k, "str")) n->kind = K_STR;
    else if (!strcmp(k, "bytes")) n->kind = K_BYTES;
    else if (!strcmp(k, "opt") || !strcmp(k, "list") || !strcmp(k, "tuple")) {
        n->kind = k[0] == 'o' ? K_OPT : k[0] == 'l' ? K_LIST : K_TUPLE;
        if (!(n->inner = node_new(ARG(1)))) goto fail;
    } else if (!strcmp(k, "ftuple")) {
        n->kind = K_FTUPLE;
        PyObject *items = ARG(1);
        if (!PyTuple_Check(items)) { PyErr_SetString(PyExc_TypeError, "ftuple items"); goto fail; }
        n->items = PyMem_Calloc(PyTuple_GET_SIZE(items) + 1, sizeof(Node *));
        if (!n->items) { PyErr_NoMemory(); goto fail; }
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(items); i++) {
            if (!(n->items[i] = node_new(PyTuple_GET_ITEM(items, i)))) goto fail;
            n->nitems = i + 1;
        }
    } else if (!strcmp(k, "dict")) {
        n->kind = K_DICT;
        n->key_str = PyObject_IsTrue(ARG(1));
        if (!(n->inner = node_new(ARG(2)))) goto fail;
    } else if (!strcmp(k, "enum")) {
        n->kind = K_ENUM;
        if (!PyDict_Check(ARG(2))) { PyErr_SetString(PyExc_TypeError, "enum by_value"); goto fail; }
        n->enum_cls = Py_NewRef(ARG(1));
        n->by_value = Py_NewRef(ARG(2));
    } else if (!strcmp(k, "record")) {
        n->kind = K_RECORD;
        if (!PyObject_TypeCheck(ARG(1), &Plan_Type)) { PyErr_SetString(PyExc_TypeError, "record plan"); goto fail; }
        n->plan = (Plan *)Py_NewRef(ARG(1));
    } else if (!strcmp(k, "other")) {
        n->kind = K_OTHER;
        n->encode = Py_NewRef(ARG(1));
        n->decode = Py_NewRef(ARG(2));
        if (ARG(3) != Py_None) n->shared = Py_NewRef(ARG(3));
    } else {
        PyErr_Format(PyExc_ValueError, "unknown node kind %s", k);
        goto fail;
    }
#undef ARG
    return n;
fail:
    node_free(n);
    return NULL;
}

/* -- plans ------------------------------------------------------------------------------ */

Py_ssize_t nk_slot_offset(PyObject *descr) {
    if (!Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyErr_SetString(PyExc_TypeError, "a field's slot must be a member descriptor");
        return -1;
    }
    PyMemberDef *m = ((PyMemberDescrObject *)descr)->d_member;
    if (m->type != T_OBJECT_EX || (m->flags & READONLY)) {
        PyErr_SetString(PyExc_TypeError, "a field's slot must be a writable object slot");
        return -1;
    }
    return m->offset;
}

static void Plan_dealloc(Plan *p) {
    for (Py_ssize_t i = 0; i < p->n; i++) {
        node_free(p->fields[i].node);
        Py_XDECREF(p->fields[i].deflt);
    }
    PyMem_Free(p->fields);
    Py_XDECREF(p->cls); Py_XDECREF(p->seen_unknown); Py_XDECREF(p->build); Py_XDECREF(p->prefixes);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

/* Plan(cls, unknown_slot, seen_unknown, build, fields, route, prefixes)
 * fields: ((tag, slot, node, default_kind, default), ...); default_kind 0 required, 1 value,
 * 2 factory. */
static PyObject *Plan_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *cls, *unknown, *seen, *build, *fields, *prefixes;
    long route;
    if (!PyArg_ParseTuple(args, "O!OO!OO!lO", &PyType_Type, &cls, &unknown, &PyList_Type, &seen, &build,
                          &PyTuple_Type, &fields, &route, &prefixes))
        return NULL;
    Plan *p = (Plan *)type->tp_alloc(type, 0);
    if (!p) return NULL;
    p->cls = (PyTypeObject *)Py_NewRef(cls);
    p->seen_unknown = Py_NewRef(seen);
    p->build = Py_NewRef(build);
    p->prefixes = Py_NewRef(prefixes);
    p->route = route;
    if ((p->unknown_offset = nk_slot_offset(unknown)) < 0) goto fail;
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    p->fields = PyMem_Calloc(n + 1, sizeof(Field));
    if (!p->fields) { PyErr_NoMemory(); goto fail; }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f = PyTuple_GET_ITEM(fields, i);
        PyObject *slot, *node, *deflt;
        int dkind;
        Field *fd = &p->fields[i];
        if (!PyArg_ParseTuple(f, "LOOiO", &fd->tag, &slot, &node, &dkind, &deflt)) goto fail;
        p->n = i + 1;
        if ((fd->offset = nk_slot_offset(slot)) < 0) goto fail;
        if (!(fd->node = node_new(node))) goto fail;
        fd->deflt = dkind ? Py_NewRef(deflt) : NULL;
        fd->factory = dkind == 2;
    }
    p->head = n < 16 ? 0x80 | (int)n : -1;
    return (PyObject *)p;
fail:
    Py_DECREF(p);
    return NULL;
}

static PyTypeObject Plan_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "nanomsg_kernel._speedups.Plan",
    .tp_basicsize = sizeof(Plan),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The layout table of one contract or record, as the compiled codec reads it.",
    .tp_new = Plan_new,
    .tp_dealloc = (destructor)Plan_dealloc,
};

/* -- reading msgpack -------------------------------------------------------------------- */

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} Reader;

#define NEED(r, k) if ((r)->end - (r)->p < (Py_ssize_t)(k)) return -1

static inline uint64_t be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

/* The end of the object at r->p (no decoding), nested at most MAX_DEPTH deep. */
static int skip(Reader *r, int depth) {
    if (depth > MAX_DEPTH) return -1;
    NEED(r, 1);
    unsigned char b = *r->p++;
    uint64_t count = 0, size = 0;
    int per = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) return 0;
    if (b >= 0xa0 && b <= 0xbf) size = b & 0x1f;
    else if (b >= 0x80 && b <= 0x8f) { count = b & 0x0f; per = 2; }
    else if (b >= 0x90 && b <= 0x9f) { count = b & 0x0f; per = 1; }
    else switch (b) {
        case 0xcc: case 0xd0: size = 1; break;
        case 0xcd: case 0xd1: size = 2; break;
        case 0xce: case 0xd2: case 0xca: size = 4; break;
        case 0xcf: case 0xd3: case 0xcb: size = 8; break;
        case 0xd4: size = 2; break;
        case 0xd5: size = 3; break;
        case 0xd6: size = 5; break;
        case 0xd7: size = 9; break;
        case 0xd8: size = 17; break;
        case 0xc4: case 0xd9: NEED(r, 1); size = be(r->p, 1); r->p += 1; break;
        case 0xc5: case 0xda: NEED(r, 2); size = be(r->p, 2); r->p += 2; break;
        case 0xc6: case 0xdb: NEED(r, 4); size = be(r->p, 4); r->p += 4; break;
        case 0xc7: NEED(r, 1); size = be(r->p, 1) + 1; r->p += 1; break;
        case 0xc8: NEED(r, 2); size = be(r->p, 2) + 1; r->p += 2; break;
        case 0xc9: NEED(r, 4); size = be(r->p, 4) + 1; r->p += 4; break;
        case 0xdc: NEED(r, 2); count = be(r->p, 2); r->p += 2; per = 1; break;
        case 0xdd: NEED(r, 4); count = be(r->p, 4); r->p += 4; per = 1; break;
        case 0xde: NEED(r, 2); count = be(r->p, 2); r->p += 2; per = 2; break;
        case 0xdf: NEED(r, 4); count = be(r->p, 4); r->p += 4; per = 2; break;
        default: return -1;  /* 0xc1 */
    }
    if (per) {
        if (count * per > (uint64_t)(r->end - r->p)) return -1;  /* each takes a byte at least */
        for (uint64_t i = 0; i < count * per; i++)
            if (skip(r, depth + 1) < 0) return -1;
        return 0;
    }
    if (size > (uint64_t)(r->end - r->p)) return -1;
    r->p += size;
    return 0;
}

/* An int: 1 and *v set (or *u for a uint64 above INT64_MAX, *big = 1); 0 if not an int. */
static int read_int(Reader *r, long long *v, int *big, uint64_t *u) {
    if (r->p >= r->end) return -1;
    unsigned char b = *r->p;
    *big = 0;
    if (b <= 0x7f) { *v = b; r->p++; return 1; }
    if (b >= 0xe0) { *v = (signed char)b; r->p++; return 1; }
    int n;
    switch (b) {
        case 0xcc: case 0xd0: n = 1; break;
        case 0xcd: case 0xd1: n = 2; break;
        case 0xce: case 0xd2: n = 4; break;
        case 0xcf: case 0xd3: n = 8; break;
        default: return 0;
    }
    if (r->end - r->p < 1 + n) return -1;
    uint64_t x = be(r->p + 1, n);
    r->p += 1 + n;
    if (b >= 0xd0) {  /* signed */
        if (n == 1) *v = (int8_t)x;
        else if (n == 2) *v = (int16_t)x;
        else if (n == 4) *v = (int32_t)x;
        else *v = (int64_t)x;
    } else if (n == 8 && x > (uint64_t)INT64_MAX) {
        *big = 1; *u = x;
    } else {
        *v = (long long)x;
    }
    return 1;
}

/* A str or bin header: the payload's length, or -1 if the next object is not one. */
static Py_ssize_t read_sized(Reader *r, int want_str) {
    if (r->p >= r->end) return -1;
    unsigned char b = *r->p;
    uint64_t len;
    int w;
    if (want_str && b >= 0xa0 && b <= 0xbf) { len = b & 0x1f; w = 0; }
    else if (want_str && (b == 0xd9 || b == 0xda || b == 0xdb)) w = 1 << (b - 0xd9);
    else if (!want_str && (b == 0xc4 || b == 0xc5 || b == 0xc6)) w = 1 << (b - 0xc4);
    else return -1;
    if (r->end - r->p < 1 + w) return -1;
    if (w) len = be(r->p + 1, w);
    r->p += 1 + w;
    if (len > (uint64_t)(r->end - r->p)) return -1;
    return (Py_ssize_t)len;
}

/* A container header of the wanted kind (2: map, 1: array): its count, or -1. */
static Py_ssize_t read_count(Reader *r, int map) {
    if (r->p >= r->end) return -1;
    unsigned char b = *r->p;
    uint64_t n;
    int w = 0;
    unsigned char fix = map ? 0x80 : 0x90;
    if (b >= fix && b <= fix + 0x0f) n = b & 0x0f;
    else if (b == (map ? 0xde : 0xdc)) w = 2;
    else if (b == (map ? 0xdf : 0xdd)) w = 4;
    else return -1;
    if (r->end - r->p < 1 + w) return -1;
    if (w) n = be(r->p + 1, w);
    r->p += 1 + w;
    if (n * (map ? 2 : 1) > (uint64_t)(r->end - r->p)) return -1;
    return (Py_ssize_t)n;
}

static PyObject *decode_record(Plan *p, Reader *r);

/* Any msgpack value as the pure codec's msgpack reads it (for converters of other types). */
static PyObject *decode_any(Reader *r) {
    if (r->p >= r->end) return NULL;
    unsigned char b = *r->p;
    long long v; int big; uint64_t u;
    if (b == 0xc0) { r->p++; Py_RETURN_NONE; }
    if (b == 0xc2) { r->p++; Py_RETURN_FALSE; }
    if (b == 0xc3) { r->p++; Py_RETURN_TRUE; }
    int got = read_int(r, &v, &big, &u);
    if (got < 0) return NULL;
    if (got) return big ? PyLong_FromUnsignedLongLong(u) : PyLong_FromLongLong(v);
    Py_ssize_t len;
    const unsigned char *start = r->p;
    if ((len = read_sized(r, 1)) >= 0) { r->p += len; return PyUnicode_DecodeUTF8((const char *)r->p - len, len, NULL); }
    r->p = start;
    if ((len = read_sized(r, 0)) >= 0) { r->p += len; return PyBytes_FromStringAndSize((const char *)r->p - len, len); }
    r->p = start;
    if (b == 0xca || b == 0xcb) {
        int n = b == 0xca ? 4 : 8;
        if (r->end - r->p < 1 + n) return NULL;
        uint64_t x = be(r->p + 1, n);
        r->p += 1 + n;
        if (n == 4) { uint32_t x32 = (uint32_t)x; float f; memcpy(&f, &x32, 4); return PyFloat_FromDouble(f); }
        double dbl; memcpy(&dbl, &x, 8); return PyFloat_FromDouble(dbl);
    }
    /* arrays, maps, ext: msgpack reads the span */
    if (skip(r, 0) < 0) return NULL;
    PyObject *span = PyBytes_FromStringAndSize((const char *)start, r->p - start);
    if (!span) return NULL;
    PyObject *out = PyObject_CallOneArg(unpack_fn, span);
    Py_DECREF(span);
    return out;
}

static PyObject *decode_node(Node *n, Reader *r) {
    long long v; int big; uint64_t u;
    Py_ssize_t len, i;
    if (r->p >= r->end) return NULL;
    unsigned char b = *r->p;
    switch (n->kind) {
    case K_INT:
        if (read_int(r, &v, &big, &u) != 1 || big) return NULL;
        return PyLong_FromLongLong(v);
    case K_FLOAT:
        if (b == 0xca || b == 0xcb) return decode_any(r);
        if (read_int(r, &v, &big, &u) != 1) return NULL;
        return PyFloat_FromDouble(big ? (double)u : (double)v);
    case K_BOOL:
        if (b == 0xc2 || b == 0xc3) { r->p++; return Py_NewRef(b == 0xc3 ? Py_True : Py_False); }
        return NULL;
    case K_STR:
        if ((len = read_sized(r, 1)) < 0) return NULL;
        r->p += len;
        return PyUnicode_DecodeUTF8((const char *)r->p - len, len, NULL);
    case K_BYTES:
        if ((len = read_sized(r, 0)) < 0) return NULL;
        r->p += len;
        return PyBytes_FromStringAndSize((const char *)r->p - len, len);
    case K_ENUM: {
        PyObject *key;
        if ((b >= 0xa0 && b <= 0xbf) || b == 0xd9 || b == 0xda || b == 0xdb) {
            if ((len = read_sized(r, 1)) < 0) return NULL;
            r->p += len;
            key = PyUnicode_DecodeUTF8((const char *)r->p - len, len, NULL);
        } else {
            if (read_int(r, &v, &big, &u) != 1) return NULL;
            key = big ? PyLong_FromUnsignedLongLong(u) : PyLong_FromLongLong(v);
        }
        if (!key) return NULL;
        PyObject *member = PyDict_GetItemWithError(n->by_value, key);
        Py_DECREF(key);
        return member ? Py_NewRef(member) : NULL;
    }
    case K_OPT:
        if (b == 0xc0) { r->p++; Py_RETURN_NONE; }
        return decode_node(n->inner, r);
    case K_LIST: case K_TUPLE: case K_FTUPLE: {
        if ((len = read_count(r, 0)) < 0) return NULL;
        if (n->kind == K_FTUPLE && len != n->nitems) return NULL;
        PyObject *out = n->kind == K_LIST ? PyList_New(len) : PyTuple_New(len);
        if (!out) return NULL;
        for (i = 0; i < len; i++) {
            PyObject *x = decode_node(n->kind == K_FTUPLE ? n->items[i] : n->inner, r);
            if (!x) { Py_DECREF(out); return NULL; }
            if (n->kind == K_LIST) PyList_SET_ITEM(out, i, x); else PyTuple_SET_ITEM(out, i, x);
        }
        return out;
    }
    case K_DICT: {
        if ((len = read_count(r, 1)) < 0) return NULL;
        PyObject *out = PyDict_New();
        if (!out) return NULL;
        for (i = 0; i < len; i++) {
            PyObject *key;
            if (n->key_str) {
                Py_ssize_t kl = read_sized(r, 1);
                if (kl < 0) goto dict_fail;
                r->p += kl;
                key = PyUnicode_DecodeUTF8((const char *)r->p - kl, kl, NULL);
            } else {
                if (read_int(r, &v, &big, &u) != 1 || big) goto dict_fail;
                key = PyLong_FromLongLong(v);
            }
            if (!key) goto dict_fail;
            int has = PyDict_Contains(out, key);
            PyObject *x = has ? NULL : decode_node(n->inner, r);  /* a repeated key: the pure path refuses it */
            if (!x || PyDict_SetItem(out, key, x) < 0) { Py_DECREF(key); Py_XDECREF(x); goto dict_fail; }
            Py_DECREF(key); Py_DECREF(x);
        }
        return out;
    dict_fail:
        Py_DECREF(out);
        return NULL;
    }
    case K_RECORD:
        return decode_record(n->plan, r);
    case K_OTHER: {
        PyObject *x = decode_any(r);
        if (!x) return NULL;
        PyObject *out = PyObject_CallOneArg(n->decode, x);
        Py_DECREF(x);
        return out;
    }
    }
    return NULL;
}

/* A record's map: every known field checked, unknown fields kept as Raw, then the object. */
static PyObject *decode_record(Plan *p, Reader *r) {
    Py_ssize_t len = read_count(r, 1);
    if (len < 0) return NULL;
    Py_ssize_t nf = p->n, i, j;
    PyObject *small[16] = {0};
    PyObject **values = nf <= 16 ? small : PyMem_Calloc(nf, sizeof(PyObject *));
    PyObject *unknown = NULL, *obj = NULL;
    if (!values) return NULL;
    for (i = 0; i < len; i++) {
        long long tag; int big; uint64_t u;
        if (read_int(r, &tag, &big, &u) != 1 || big) goto done;
        Py_ssize_t at = -1;
        if (i < nf && p->fields[i].tag == tag) at = i;  /* the encoder's order */
        else for (j = 0; j < nf; j++) if (p->fields[j].tag == tag) { at = j; break; }
        if (at >= 0) {
            if (values[at]) goto done;  /* a repeated tag */
            if (!(values[at] = decode_node(p->fields[at].node, r))) goto done;
            continue;
        }
        if (tag < 0 || tag > 0xFFFFFFFFLL) goto done;
        const unsigned char *start = r->p;
        if (skip(r, 0) < 0) goto done;
        if (!unknown && !(unknown = PyDict_New())) goto done;
        PyObject *key = PyLong_FromLongLong(tag);
        if (!key) goto done;
        int has = PyDict_Contains(unknown, key);
        PyObject *data = has ? NULL : PyBytes_FromStringAndSize((const char *)start, r->p - start);
        PyObject *raw = data ? PyObject_CallOneArg(Raw_type, data) : NULL;
        Py_XDECREF(data);
        if (!raw || PyDict_SetItem(unknown, key, raw) < 0) { Py_DECREF(key); Py_XDECREF(raw); goto done; }
        Py_DECREF(key); Py_DECREF(raw);
    }
    for (j = 0; j < nf; j++) {
        if (values[j]) continue;
        Field *f = &p->fields[j];
        if (!f->deflt) goto done;  /* a required field is missing */
        values[j] = f->factory ? PyObject_CallNoArgs(f->deflt) : Py_NewRef(f->deflt);
        if (!values[j]) goto done;
    }
    if (p->build == Py_None) {
        obj = PyBaseObject_Type.tp_new(p->cls, nk_empty_tuple, NULL);  /* object.__new__(cls) */
    } else {
        obj = PyObject_Vectorcall(p->build, values, nf, NULL);
    }
    if (!obj) goto done;
    if (p->build == Py_None) {
        for (j = 0; j < nf; j++) {
            PyObject **slot = (PyObject **)((char *)obj + p->fields[j].offset);
            Py_XSETREF(*slot, values[j]);
            values[j] = NULL;
        }
    }
    if (unknown) {
        PyObject **slot = (PyObject **)((char *)obj + p->unknown_offset);
        Py_XSETREF(*slot, unknown);
        unknown = NULL;
        if (PyList_GET_SIZE(p->seen_unknown) && PyList_GET_ITEM(p->seen_unknown, 0) != Py_True)
            PyList_SetItem(p->seen_unknown, 0, Py_NewRef(Py_True));
    }
done:
    for (j = 0; j < nf; j++) Py_XDECREF(values[j]);
    if (values != small) PyMem_Free(values);
    Py_XDECREF(unknown);
    return obj;
}

/* -- writing msgpack -------------------------------------------------------------------- */

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
    PyObject *bytes;  /* the PyBytes being filled */
} Writer;

static int grow(Writer *w, Py_ssize_t more) {
    if (w->len + more <= w->cap) return 0;
    Py_ssize_t cap = w->cap * 2;
    if (cap < w->len + more) cap = w->len + more + 64;
    if (_PyBytes_Resize(&w->bytes, cap) < 0) return -1;
    w->buf = PyBytes_AS_STRING(w->bytes);
    w->cap = cap;
    return 0;
}

static inline int put(Writer *w, const void *p, Py_ssize_t n) {
    if (grow(w, n) < 0) return -1;
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    return 0;
}

static inline int put_be(Writer *w, unsigned char b, uint64_t v, int n) {
    if (grow(w, 1 + n) < 0) return -1;
    char *o = w->buf + w->len;
    o[0] = (char)b;
    for (int i = n; i >= 1; i--) { o[i] = (char)(v & 0xff); v >>= 8; }
    w->len += 1 + n;
    return 0;
}

static int put_int(Writer *w, long long d) {
    if (d < -(1LL << 5)) {
        if (d < -(1LL << 15)) return d < -(1LL << 31) ? put_be(w, 0xd3, (uint64_t)d, 8) : put_be(w, 0xd2, (uint64_t)d, 4);
        return d < -(1 << 7) ? put_be(w, 0xd1, (uint64_t)d, 2) : put_be(w, 0xd0, (uint64_t)d, 1);
    }
    if (d < (1 << 7)) { unsigned char c = (unsigned char)d; return put(w, &c, 1); }
    if (d < (1 << 16)) return d < (1 << 8) ? put_be(w, 0xcc, d, 1) : put_be(w, 0xcd, d, 2);
    return d < (1LL << 32) ? put_be(w, 0xce, d, 4) : put_be(w, 0xcf, d, 8);
}

static int put_header(Writer *w, uint64_t n, unsigned char fix, int fixmax, unsigned char b16, unsigned char b32) {
    if (n < (uint64_t)fixmax) { unsigned char c = fix | (unsigned char)n; return put(w, &c, 1); }
    if (n < 65536) return put_be(w, b16, n, 2);
    if (n > 0xFFFFFFFFULL) return -2;
    return put_be(w, b32, n, 4);
}

static int put_str(Writer *w, PyObject *s) {
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (!u) return -1;
    int rc;
    if (n < 32) { unsigned char c = 0xa0 | (unsigned char)n; rc = put(w, &c, 1); }
    else if (n < 256) rc = put_be(w, 0xd9, n, 1);
    else if (n < 65536) rc = put_be(w, 0xda, n, 2);
    else if ((uint64_t)n <= 0xFFFFFFFFULL) rc = put_be(w, 0xdb, n, 4);
    else return -1;
    return rc < 0 ? -1 : put(w, u, n);
}

static int put_bytes(Writer *w, const char *p, Py_ssize_t n) {
    int rc;
    if (n < 256) rc = put_be(w, 0xc4, n, 1);
    else if (n < 65536) rc = put_be(w, 0xc5, n, 2);
    else if ((uint64_t)n <= 0xFFFFFFFFULL) rc = put_be(w, 0xc6, n, 4);
    else return -1;
    return rc < 0 ? -1 : put(w, p, n);
}

static int put_double(Writer *w, double d) {
    uint64_t x;
    memcpy(&x, &d, 8);
    return put_be(w, 0xcb, x, 8);
}

/* An int64 from an exact int, or -1 (not one, or out of range). */
static int exact_int(PyObject *v, long long *out) {
    if (!PyLong_CheckExact(v)) return -1;
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (*out == -1 && PyErr_Occurred())) { PyErr_Clear(); return -1; }
    return 0;
}

/* A value a converter returned: what the pure codec's packer writes for it. */
static int put_any(Writer *w, PyObject *v) {
    long long d;
    if (v == Py_None) { unsigned char c = 0xc0; return put(w, &c, 1); }
    if (v == Py_True || v == Py_False) { unsigned char c = v == Py_True ? 0xc3 : 0xc2; return put(w, &c, 1); }
    if (exact_int(v, &d) == 0) return put_int(w, d);
    if (PyFloat_CheckExact(v)) return put_double(w, PyFloat_AS_DOUBLE(v));
    if (PyUnicode_CheckExact(v)) return put_str(w, v);
    if (PyBytes_CheckExact(v)) return put_bytes(w, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
    PyObject *b = PyObject_CallOneArg(pack_fn, v);
    if (!b) return -1;
    int rc = PyBytes_Check(b) ? put(w, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b)) : -1;
    Py_DECREF(b);
    return rc;
}

static int encode_record(Plan *p, PyObject *obj, Writer *w);

static int encode_node(Node *n, PyObject *v, Writer *w) {
    long long d;
    Py_ssize_t i, len;
    switch (n->kind) {
    case K_INT:
        if (exact_int(v, &d) < 0) return -1;
        return put_int(w, d);
    case K_FLOAT:
        if (!PyFloat_CheckExact(v)) return -1;
        return put_double(w, PyFloat_AS_DOUBLE(v));
    case K_BOOL:
        if (v != Py_True && v != Py_False) return -1;
        { unsigned char c = v == Py_True ? 0xc3 : 0xc2; return put(w, &c, 1); }
    case K_STR:
        if (!PyUnicode_CheckExact(v)) return -1;
        return put_str(w, v);
    case K_BYTES:
        if (!PyBytes_CheckExact(v)) return -1;
        return put_bytes(w, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
    case K_ENUM: {
        if ((PyObject *)Py_TYPE(v) != n->enum_cls) return -1;
        PyObject *x = PyObject_GetAttr(v, str_value_);
        if (!x) return -1;
        int rc = exact_int(x, &d) == 0 ? put_int(w, d) : PyUnicode_CheckExact(x) ? put_str(w, x) : -1;
        Py_DECREF(x);
        return rc;
    }
    case K_OPT:
        if (v == Py_None) { unsigned char c = 0xc0; return put(w, &c, 1); }
        return encode_node(n->inner, v, w);
    case K_LIST: case K_TUPLE: case K_FTUPLE: {
        PyObject **items;
        if (PyList_CheckExact(v)) { len = PyList_GET_SIZE(v); items = ((PyListObject *)v)->ob_item; }
        else if (PyTuple_CheckExact(v)) { len = PyTuple_GET_SIZE(v); items = ((PyTupleObject *)v)->ob_item; }
        else return -1;
        if (n->kind == K_FTUPLE && len != n->nitems) return -1;
        if (put_header(w, len, 0x90, 16, 0xdc, 0xdd) < 0) return -1;
        for (i = 0; i < len; i++) {
            /* a list may change under a converter's call: read each item afresh */
            PyObject *x = PyList_CheckExact(v) ? (i < PyList_GET_SIZE(v) ? PyList_GET_ITEM(v, i) : NULL) : items[i];
            if (!x) return -1;
            Py_INCREF(x);
            int rc = encode_node(n->kind == K_FTUPLE ? n->items[i] : n->inner, x, w);
            Py_DECREF(x);
            if (rc < 0) return -1;
        }
        if (PyList_CheckExact(v) && PyList_GET_SIZE(v) != len) return -1;
        return 0;
    }
    case K_DICT: {
        if (!PyDict_CheckExact(v)) return -1;
        len = PyDict_GET_SIZE(v);
        if (put_header(w, len, 0x80, 16, 0xde, 0xdf) < 0) return -1;
        Py_ssize_t pos = 0, seen = 0;
        PyObject *k, *x;
        while (PyDict_Next(v, &pos, &k, &x)) {
            int rc;
            if (++seen > len) return -1;
            Py_INCREF(k); Py_INCREF(x);
            if (n->key_str) rc = PyUnicode_CheckExact(k) ? put_str(w, k) : -1;
            else rc = exact_int(k, &d) == 0 ? put_int(w, d) : -1;
            if (rc == 0) rc = encode_node(n->inner, x, w);
            Py_DECREF(k); Py_DECREF(x);
            if (rc < 0) return -1;
            if (PyDict_GET_SIZE(v) != len) return -1;
        }
        return seen == len ? 0 : -1;
    }
    case K_RECORD:
        if (Py_TYPE(v) != n->plan->cls) return -1;
        return encode_record(n->plan, v, w);
    case K_OTHER: {
        PyObject *x = PyObject_CallOneArg(n->encode, v);
        if (!x) return -1;
        int rc = put_any(w, x);
        Py_DECREF(x);
        return rc;
    }
    }
    return -1;
}

/* encode_record's work, with the record's unknown fields held (a converter called while its
 * fields are written cannot free them under it). */
static int encode_fields(Plan *p, PyObject *obj, Writer *w, PyObject *unknown) {
    Py_ssize_t extra = 0, j;
    if (unknown && unknown != Py_None) {
        /* fields kept from a newer version: written back as the bytes received */
        if (!PyDict_CheckExact(unknown)) return -1;
        Py_ssize_t pos = 0;
        PyObject *k, *x;
        while (PyDict_Next(unknown, &pos, &k, &x)) {
            long long tag;
            if (exact_int(k, &tag) < 0 || (PyObject *)Py_TYPE(x) != Raw_type) return -1;
            for (j = 0; j < p->n; j++) if (p->fields[j].tag == tag) return -1;
            extra++;
        }
    }
    if (put_header(w, p->n + extra, 0x80, 16, 0xde, 0xdf) < 0) return -1;
    for (j = 0; j < p->n; j++) {
        Field *f = &p->fields[j];
        PyObject *v = *(PyObject **)((char *)obj + f->offset);
        if (!v) return -1;
        if (put_int(w, f->tag) < 0) return -1;
        Py_INCREF(v);
        int rc = encode_node(f->node, v, w);
        Py_DECREF(v);
        if (rc < 0) return -1;
    }
    if (extra) {
        Py_ssize_t pos = 0, seen = 0;
        PyObject *k, *x;
        int rc = 0;
        while (rc == 0 && PyDict_Next(unknown, &pos, &k, &x)) {
            long long tag;
            PyObject *data;
            if (++seen > extra || exact_int(k, &tag) < 0 || (PyObject *)Py_TYPE(x) != Raw_type) { rc = -1; break; }
            rc = put_int(w, tag);
            if (rc == 0 && (data = PyObject_GetAttr(x, str_data)) != NULL) {
                rc = PyBytes_CheckExact(data) ? put(w, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data)) : -1;
                Py_DECREF(data);
            } else rc = -1;
        }
        if (seen != extra) rc = -1;
        if (rc < 0) return -1;
    }
    return 0;
}

static int encode_record(Plan *p, PyObject *obj, Writer *w) {
    PyObject *unknown = *(PyObject **)((char *)obj + p->unknown_offset);
    Py_XINCREF(unknown);
    int rc = encode_fields(p, obj, w, unknown);
    Py_XDECREF(unknown);
    return rc;
}

/* -- isolation (an in-process call's request and reply) ---------------------------------- */

/* 1 when a field of this type may ever be shared: never a container or a record (not even
 * its None, as the pure codec's Layout.isolated decides by type). */
static int shareable(Node *n) {
    return n->kind <= K_ENUM || (n->kind == K_OPT && shareable(n->inner)) || (n->kind == K_OTHER && n->shared);
}

/* 1 when v passes the encoder's rules as it is and is immutable, so that another party may
 * share it (the pure codec's Layout.isolated, field by field); 0: copy it through the codec. */
static int isolated_node(Node *n, PyObject *v) {
    long long d;
    switch (n->kind) {
    case K_INT: return exact_int(v, &d) == 0;
    case K_FLOAT: return PyFloat_CheckExact(v);
    case K_BOOL: return v == Py_True || v == Py_False;
    case K_STR: return PyUnicode_CheckExact(v) && PyUnicode_IS_ASCII(v);  /* no lone surrogate */
    case K_BYTES: return PyBytes_CheckExact(v);
    case K_ENUM: return (PyObject *)Py_TYPE(v) == n->enum_cls;
    case K_OPT: return v == Py_None ? shareable(n->inner) : isolated_node(n->inner, v);
    case K_OTHER: return n->shared && (PyObject *)Py_TYPE(v) == n->shared;
    }
    return 0;  /* containers and records are copied */
}

static int isolated_record(Plan *p, PyObject *obj) {
    for (Py_ssize_t j = 0; j < p->n; j++) {
        PyObject *v = *(PyObject **)((char *)obj + p->fields[j].offset);
        if (!v || !isolated_node(p->fields[j].node, v)) return 0;
    }
    return 1;
}

/* -- the codec's core ------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *by_class;        /* class -> Plan */
    PyObject *by_route;        /* route int -> Plan */
    PyObject *kind_type;       /* Kind */
    Py_ssize_t check_above;    /* bodies longer than this: the pure path checks and counts */
    PyObject *pure_encode, *pure_decode, *pure_decode_request, *pure_encode_body, *pure_read_body, *pure_isolate;
} Core;

static void Core_dealloc(Core *c) {
    PyObject_GC_UnTrack(c);
    Py_XDECREF(c->by_class); Py_XDECREF(c->by_route); Py_XDECREF(c->kind_type);
    Py_XDECREF(c->pure_encode); Py_XDECREF(c->pure_decode); Py_XDECREF(c->pure_decode_request);
    Py_XDECREF(c->pure_encode_body); Py_XDECREF(c->pure_read_body); Py_XDECREF(c->pure_isolate);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static int Core_traverse(Core *c, visitproc visit, void *arg) {
    Py_VISIT(c->by_class); Py_VISIT(c->by_route); Py_VISIT(c->kind_type);
    Py_VISIT(c->pure_encode); Py_VISIT(c->pure_decode); Py_VISIT(c->pure_decode_request);
    Py_VISIT(c->pure_encode_body); Py_VISIT(c->pure_read_body); Py_VISIT(c->pure_isolate);
    return 0;
}

static int Core_clear(Core *c) {
    Py_CLEAR(c->by_class); Py_CLEAR(c->by_route); Py_CLEAR(c->kind_type);
    Py_CLEAR(c->pure_encode); Py_CLEAR(c->pure_decode); Py_CLEAR(c->pure_decode_request);
    Py_CLEAR(c->pure_encode_body); Py_CLEAR(c->pure_read_body); Py_CLEAR(c->pure_isolate);
    return 0;
}

/* Core(by_class, by_route, Kind, check_above, encode, decode, decode_request, encode_body, read_body,
 * isolate): the last six are the pure codec's, called for whatever the compiled one leaves. */
static PyObject *Core_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *a, *b, *k, *e, *d, *dr, *eb, *rb, *is;
    Py_ssize_t above;
    if (!PyArg_ParseTuple(args, "O!O!OnOOOOOO", &PyDict_Type, &a, &PyDict_Type, &b, &k, &above, &e, &d, &dr, &eb,
                          &rb, &is))
        return NULL;
    Core *c = (Core *)type->tp_alloc(type, 0);
    if (!c) return NULL;
    c->by_class = Py_NewRef(a); c->by_route = Py_NewRef(b); c->kind_type = Py_NewRef(k);
    c->check_above = above;
    c->pure_encode = Py_NewRef(e); c->pure_decode = Py_NewRef(d); c->pure_decode_request = Py_NewRef(dr);
    c->pure_encode_body = Py_NewRef(eb); c->pure_read_body = Py_NewRef(rb); c->pure_isolate = Py_NewRef(is);
    return (PyObject *)c;
}

/* The whole frame of msg, or NULL with no error set: the pure path decides. */
static PyObject *encode_frame(Core *c, PyObject *msg, PyObject *kind, PyObject *corr, PyObject *timeout) {
    Plan *p = (Plan *)PyDict_GetItemWithError(c->by_class, (PyObject *)Py_TYPE(msg));
    if (!p) return NULL;
    long k = 1;
    unsigned long long cid = 0, tmo = 0;
    if (kind) {
        if ((PyObject *)Py_TYPE(kind) != c->kind_type) return NULL;
        k = PyLong_AsLong(kind);
        if (k < 0 || k >= PyTuple_GET_SIZE(p->prefixes)) { PyErr_Clear(); return NULL; }
    }
    if (corr) {
        if (!PyLong_CheckExact(corr)) return NULL;
        cid = PyLong_AsUnsignedLongLong(corr);
        if (PyErr_Occurred()) { PyErr_Clear(); return NULL; }
    }
    if (timeout) {
        if (!PyLong_CheckExact(timeout)) return NULL;
        tmo = PyLong_AsUnsignedLongLong(timeout);
        if (PyErr_Occurred() || tmo > 0xFFFFFFFFULL) { PyErr_Clear(); return NULL; }
    }
    PyObject *prefix = PyTuple_GET_ITEM(p->prefixes, k);
    if (!PyBytes_Check(prefix) || PyBytes_GET_SIZE(prefix) != 10) return NULL;
    Writer w = {0};
    w.cap = 128;
    if (!(w.bytes = PyBytes_FromStringAndSize(NULL, w.cap))) return NULL;
    w.buf = PyBytes_AS_STRING(w.bytes);
    w.len = HEADER;
    if (encode_record(p, msg, &w) < 0 || w.len - HEADER > c->check_above) {
        Py_XDECREF(w.bytes);
        PyErr_Clear();
        return NULL;
    }
    uint64_t size = w.len - HEADER;
    unsigned char *h = (unsigned char *)w.buf;
    memcpy(h, PyBytes_AS_STRING(prefix), 10);
    for (int i = 0; i < 8; i++) h[10 + i] = (unsigned char)(cid >> (56 - 8 * i));
    for (int i = 0; i < 4; i++) h[18 + i] = (unsigned char)(tmo >> (24 - 8 * i));
    for (int i = 0; i < 4; i++) h[22 + i] = (unsigned char)(size >> (24 - 8 * i));
    if (_PyBytes_Resize(&w.bytes, w.len) < 0) { PyErr_Clear(); return NULL; }
    return w.bytes;
}

static PyObject *Core_encode(Core *c, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    PyObject *kind = NULL, *corr = NULL, *timeout = NULL;
    if (nargs != 1) goto pure;
    if (kwnames) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, i));
            if (!name) return NULL;
            PyObject *v = args[nargs + i];
            if (!strcmp(name, "kind")) kind = v;
            else if (!strcmp(name, "correlation_id")) corr = v;
            else if (!strcmp(name, "timeout_ms")) timeout = v;
            else if (!strcmp(name, "metadata")) {  /* none: no block; a block is the pure path's */
                if (v != Py_None && !(PyDict_CheckExact(v) && PyDict_GET_SIZE(v) == 0)) goto pure;
            }
            else goto pure;
        }
    }
    PyObject *out = encode_frame(c, args[0], kind, corr, timeout);
    if (out) return out;
    PyErr_Clear();
pure:
    return PyObject_Vectorcall(c->pure_encode, args, nargs, kwnames);
}

/* The body of msg alone (for isolate and encode_body), or the pure path's. */
static PyObject *Core_encode_body(Core *c, PyObject *msg) {
    Plan *p = (Plan *)PyDict_GetItemWithError(c->by_class, (PyObject *)Py_TYPE(msg));
    if (p) {
        Writer w = {0};
        w.cap = 128;
        if (!(w.bytes = PyBytes_FromStringAndSize(NULL, w.cap))) return NULL;
        w.buf = PyBytes_AS_STRING(w.bytes);
        if (encode_record(p, msg, &w) == 0 && w.len <= c->check_above && _PyBytes_Resize(&w.bytes, w.len) == 0)
            return w.bytes;
        Py_XDECREF(w.bytes);
    }
    PyErr_Clear();
    return PyObject_CallOneArg(c->pure_encode_body, msg);
}

/* The object of plan p in body [data, data+len), or NULL with no error: the pure path decides. */
static PyObject *decode_body(Core *c, Plan *p, const char *data, Py_ssize_t len) {
    if (len > c->check_above) return NULL;  /* may hold more objects than the budget: counted first */
    Reader r = {(const unsigned char *)data, (const unsigned char *)data + len};
    PyObject *obj = decode_record(p, &r);
    if (obj && r.p != r.end) Py_CLEAR(obj);
    if (!obj) PyErr_Clear();
    return obj;
}

static inline unsigned be16(const unsigned char *h) { return (h[0] << 8) | h[1]; }
static inline uint32_t be32(const unsigned char *h) { return ((uint32_t)h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3]; }

/* A frame's header as the hot path reads it: the plan of its route, or NULL (the pure path
 * reads it: error frames, CANCEL, flags, unknown routes, bad headers). */
static Plan *frame_plan(Core *c, PyObject *frame, int request_only) {
    if (!PyBytes_CheckExact(frame) || PyBytes_GET_SIZE(frame) < HEADER) return NULL;
    const unsigned char *h = (const unsigned char *)PyBytes_AS_STRING(frame);
    if (h[0] != 'N' || h[1] != 'K' || h[2] != 1) return NULL;
    if (request_only ? h[3] != 1 : (h[3] != 1 && h[3] != 2 && h[3] != 4)) return NULL;
    if (h[8] || h[9]) return NULL;  /* flags */
    if (be32(h + 22) != (uint32_t)(PyBytes_GET_SIZE(frame) - HEADER)) return NULL;
    PyObject *route = PyLong_FromLong(be16(h + 4));
    if (!route) return NULL;
    Plan *p = (Plan *)PyDict_GetItemWithError(c->by_route, route);
    Py_DECREF(route);
    return p;
}

static PyObject *Core_decode(Core *c, PyObject *frame) {
    Plan *p = frame_plan(c, frame, 0);
    if (p) {
        PyObject *obj = decode_body(c, p, PyBytes_AS_STRING(frame) + HEADER, PyBytes_GET_SIZE(frame) - HEADER);
        if (obj) return obj;
    }
    PyErr_Clear();
    return PyObject_CallOneArg(c->pure_decode, frame);
}

static PyObject *Core_decode_request(Core *c, PyObject *frame) {
    Plan *p = frame_plan(c, frame, 1);
    if (p) {
        PyObject *obj = decode_body(c, p, PyBytes_AS_STRING(frame) + HEADER, PyBytes_GET_SIZE(frame) - HEADER);
        if (obj) {
            const unsigned char *h = (const unsigned char *)PyBytes_AS_STRING(frame);
            uint64_t cid = ((uint64_t)be32(h + 10) << 32) | be32(h + 14);
            PyObject *out = Py_BuildValue("(NKkl)", obj, (unsigned long long)cid, (unsigned long)be32(h + 18), p->route);
            return out;
        }
    }
    PyErr_Clear();
    return PyObject_CallOneArg(c->pure_decode_request, frame);
}

/* read_body(route, body): the object of a body (bytes) of the contract at route. */
static PyObject *Core_read_body(Core *c, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "read_body(route, body)"); return NULL; }
    if (PyBytes_CheckExact(args[1])) {
        Plan *p = (Plan *)PyDict_GetItemWithError(c->by_route, args[0]);
        if (p) {
            PyObject *obj = decode_body(c, p, PyBytes_AS_STRING(args[1]), PyBytes_GET_SIZE(args[1]));
            if (obj) return obj;
        }
        PyErr_Clear();
    }
    return PyObject_Vectorcall(c->pure_read_body, args, nargs, NULL);
}

/* isolate(msg): msg itself when it may be shared as it is, else the pure path's copy or error. */
static PyObject *Core_isolate(Core *c, PyObject *msg) {
    Plan *p = (Plan *)PyDict_GetItemWithError(c->by_class, (PyObject *)Py_TYPE(msg));
    if (p && isolated_record(p, msg)) return Py_NewRef(msg);
    if (!p && PyErr_Occurred()) return NULL;
    return PyObject_CallOneArg(c->pure_isolate, msg);
}

static PyMethodDef Core_methods[] = {
    {"encode", (PyCFunction)(void (*)(void))Core_encode, METH_FASTCALL | METH_KEYWORDS,
     "encode(msg, *, kind=Kind.REQUEST, correlation_id=0, timeout_ms=0, metadata=None): the frame of msg."},
    {"decode", (PyCFunction)Core_decode, METH_O, "decode(frame): the message of a frame."},
    {"decode_request", (PyCFunction)Core_decode_request, METH_O,
     "decode_request(frame): (message, correlation_id, timeout_ms, route), or None."},
    {"encode_body", (PyCFunction)Core_encode_body, METH_O, "encode_body(msg): the body of msg."},
    {"read_body", (PyCFunction)(void (*)(void))Core_read_body, METH_FASTCALL,
     "read_body(route, body): the message of a body."},
    {"isolate", (PyCFunction)Core_isolate, METH_O,
     "isolate(msg): msg as the other side of a wire would receive it (itself, when it may be shared)."},
    {NULL}
};

static PyTypeObject Core_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "nanomsg_kernel._speedups.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One codec's compiled paths, with the pure codec's for what they leave.",
    .tp_new = Core_new,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_traverse = (traverseproc)Core_traverse,
    .tp_clear = (inquiry)Core_clear,
    .tp_methods = Core_methods,
};

/* configure(Raw, unpack, pack): the pure codec's pieces the compiled one shares. */
static PyObject *configure(PyObject *mod, PyObject *args) {
    PyObject *raw, *unpack, *pack;
    if (!PyArg_ParseTuple(args, "OOO", &raw, &unpack, &pack)) return NULL;
    Py_XSETREF(Raw_type, Py_NewRef(raw));
    Py_XSETREF(unpack_fn, Py_NewRef(unpack));
    Py_XSETREF(pack_fn, Py_NewRef(pack));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"configure", configure, METH_VARARGS, "configure(Raw, unpack, pack)"},
    {NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "nanomsg_kernel._speedups",
    "The compiled codec: one interpreter over a contract's layout table (see nanomsg_kernel.compiled).",
    -1, module_methods,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    if (PyType_Ready(&Plan_Type) < 0 || PyType_Ready(&Core_Type) < 0) return NULL;
    if (!(str_value_ = PyUnicode_InternFromString("_value_"))) return NULL;
    if (!(str_data = PyUnicode_InternFromString("data"))) return NULL;
    if (!(nk_empty_tuple = PyTuple_New(0))) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Plan", (PyObject *)&Plan_Type) < 0 ||
        PyModule_AddObjectRef(m, "Core", (PyObject *)&Core_Type) < 0 || nk_evolve_ready(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
