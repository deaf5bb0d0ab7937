/* The compiled evolve: a copy of a contract with some fields changed, for the classes whose
 * construction is only filling their slots (no validator, converter or own __init__).
 *
 * Python generates each class's evolve (nanomsg_kernel.contract._build_evolve): the reference.
 * An Evolver holds that function, the class, and each field's keyword and slot offset. It
 * takes only what it is sure of (one positional argument of exactly the class, keywords that
 * name fields, once each, every slot of the original filled) and hands anything else to the
 * generated function, which decides and raises its own error: both give equal copies that
 * share the same values, and the same errors (tests/test_compiled_evolve.py).
 *
 * Part of the _speedups extension (its module init calls nk_evolve_ready).
 */
#include "_speedups.h"
#include <structmember.h>

#define SMALL 16

typedef struct {
    PyObject_HEAD
    PyTypeObject *cls;
    Py_ssize_t n;
    PyObject *names;             /* tuple of the fields' keywords, interned, in field order */
    Py_ssize_t *offsets;         /* each field's slot */
    Py_ssize_t unknown_offset;   /* the slot of the fields a decoder did not know */
    PyObject *seen_unknown;      /* the layout's [bool]: whether objects may carry unknown fields */
    PyObject *pure;              /* the generated evolve: everything this one leaves */
    vectorcallfunc vectorcall;
} Evolver;

static PyObject *str_nk_evolve;
static PyObject *pure_evolve;     /* nanomsg_kernel.contract's own evolve(msg, **changes) */

static inline PyObject **slot(PyObject *obj, Py_ssize_t offset) {
    return (PyObject **)((char *)obj + offset);
}

/* The field a keyword names, or -1. */
static Py_ssize_t field_of(Evolver *e, PyObject *name) {
    for (Py_ssize_t j = 0; j < e->n; j++)
        if (PyTuple_GET_ITEM(e->names, j) == name) return j;
    for (Py_ssize_t j = 0; j < e->n; j++) {  /* a keyword that is not the interned string */
        int eq = PyUnicode_Compare(PyTuple_GET_ITEM(e->names, j), name);
        if (eq == 0) return j;
        if (eq == -1 && PyErr_Occurred()) { PyErr_Clear(); return -1; }
    }
    return -1;
}

/* The copy, or NULL with no error set: the generated evolve decides. */
static PyObject *evolved(Evolver *e, PyObject *self, PyObject *const *changes, PyObject *kwnames) {
    Py_ssize_t n = e->n, j;
    PyObject *small[2 * SMALL];
    PyObject **values = n <= SMALL ? small : PyMem_Malloc(2 * n * sizeof(PyObject *));
    PyObject **given = values + n;  /* the keyword that changed each field, or NULL */
    PyObject *obj = NULL;
    if (!values) return NULL;
    for (j = 0; j < n; j++) {
        values[j] = *slot(self, e->offsets[j]);
        given[j] = NULL;
    }
    if (kwnames) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            j = field_of(e, PyTuple_GET_ITEM(kwnames, i));
            if (j < 0 || given[j]) goto done;  /* not a field, or named twice */
            values[j] = given[j] = changes[i];
        }
    }
    for (j = 0; j < n; j++)
        if (!values[j]) goto done;  /* a slot never filled: the generated evolve raises */
    PyObject *unknown = NULL;
    PyObject *seen = e->seen_unknown;
    if (PyList_GET_SIZE(seen) && PyList_GET_ITEM(seen, 0) != Py_False) {
        if (PyList_GET_ITEM(seen, 0) != Py_True) goto done;
        unknown = *slot(self, e->unknown_offset);
        if (unknown && !(PyDict_CheckExact(unknown) && PyDict_GET_SIZE(unknown))) {
            if (!PyDict_CheckExact(unknown)) goto done;
            unknown = NULL;  /* empty: not copied */
        }
    }
    obj = PyBaseObject_Type.tp_new(e->cls, nk_empty_tuple, NULL);  /* object.__new__(cls) */
    if (!obj) { PyErr_Clear(); goto done; }
    for (j = 0; j < n; j++) Py_XSETREF(*slot(obj, e->offsets[j]), Py_NewRef(values[j]));
    if (unknown) Py_XSETREF(*slot(obj, e->unknown_offset), Py_NewRef(unknown));
done:
    if (values != small) PyMem_Free(values);
    return obj;
}

static PyObject *Evolver_vectorcall(Evolver *e, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    if (PyVectorcall_NARGS(nargsf) == 1 && Py_IS_TYPE(args[0], e->cls)) {
        PyObject *obj = evolved(e, args[0], args + 1, kwnames);
        if (obj) return obj;
    }
    return PyObject_Vectorcall(e->pure, args, nargsf, kwnames);
}

/* Evolver(cls, names, slots, unknown_slot, seen_unknown, pure) */
static PyObject *Evolver_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    PyObject *cls, *names, *slots, *unknown, *seen, *pure;
    if (!PyArg_ParseTuple(args, "O!O!O!OO!O", &PyType_Type, &cls, &PyTuple_Type, &names, &PyTuple_Type, &slots,
                          &unknown, &PyList_Type, &seen, &pure))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    if (PyTuple_GET_SIZE(slots) != n) {
        PyErr_SetString(PyExc_ValueError, "one slot per name");
        return NULL;
    }
    Evolver *e = (Evolver *)type->tp_alloc(type, 0);
    if (!e) return NULL;
    e->vectorcall = (vectorcallfunc)Evolver_vectorcall;
    e->cls = (PyTypeObject *)Py_NewRef(cls);
    e->seen_unknown = Py_NewRef(seen);
    e->pure = Py_NewRef(pure);
    if (!(e->names = PyTuple_New(n))) goto fail;
    if (!(e->offsets = PyMem_Calloc(n + 1, sizeof(Py_ssize_t)))) { PyErr_NoMemory(); goto fail; }
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *name = PyTuple_GET_ITEM(names, j);
        if (!PyUnicode_CheckExact(name)) { PyErr_SetString(PyExc_TypeError, "a field's name is a str"); goto fail; }
        Py_INCREF(name);
        PyUnicode_InternInPlace(&name);
        PyTuple_SET_ITEM(e->names, j, name);
        if ((e->offsets[j] = nk_slot_offset(PyTuple_GET_ITEM(slots, j))) < 0) goto fail;
    }
    e->n = n;
    if ((e->unknown_offset = nk_slot_offset(unknown)) < 0) goto fail;
    return (PyObject *)e;
fail:
    Py_DECREF(e);
    return NULL;
}

static int Evolver_traverse(Evolver *e, visitproc visit, void *arg) {
    Py_VISIT(e->cls); Py_VISIT(e->names); Py_VISIT(e->seen_unknown); Py_VISIT(e->pure);
    return 0;
}

static int Evolver_clear(Evolver *e) {
    Py_CLEAR(e->cls); Py_CLEAR(e->names); Py_CLEAR(e->seen_unknown); Py_CLEAR(e->pure);
    return 0;
}

static void Evolver_dealloc(Evolver *e) {
    PyObject_GC_UnTrack(e);
    Evolver_clear(e);
    PyMem_Free(e->offsets);
    Py_TYPE(e)->tp_free((PyObject *)e);
}

/* As a class attribute it binds like a function: obj.evolve(...) is evolve(obj, ...). */
static PyObject *Evolver_get(PyObject *self, PyObject *obj, PyObject *type) {
    if (obj == NULL || obj == Py_None) return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

/* What introspection asks of a function (name, doc, signature) is the generated one's. */
static PyObject *Evolver_getattro(Evolver *e, PyObject *name) {
    PyObject *found = PyObject_GenericGetAttr((PyObject *)e, name);
    if (found || !PyErr_ExceptionMatches(PyExc_AttributeError)) return found;
    PyErr_Clear();
    return PyObject_GetAttr(e->pure, name);
}

static PyObject *Evolver_doc(Evolver *e, void *closure) {
    return PyObject_GetAttrString(e->pure, "__doc__");
}

static PyGetSetDef Evolver_getset[] = {
    {"__doc__", (getter)Evolver_doc, NULL, NULL, NULL},
    {NULL}
};

static PyMemberDef Evolver_members[] = {
    {"__wrapped__", T_OBJECT, offsetof(Evolver, pure), READONLY, "The generated evolve this one stands for."},
    {NULL}
};

static PyTypeObject Evolver_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "nanomsg_kernel._speedups.Evolver",
    .tp_basicsize = sizeof(Evolver),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_doc = "A contract class's compiled evolve(self, /, **changes).",
    .tp_new = Evolver_new,
    .tp_dealloc = (destructor)Evolver_dealloc,
    .tp_traverse = (traverseproc)Evolver_traverse,
    .tp_clear = (inquiry)Evolver_clear,
    .tp_vectorcall_offset = offsetof(Evolver, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = Evolver_get,
    .tp_getattro = (getattrofunc)Evolver_getattro,
    .tp_members = Evolver_members,
    .tp_getset = Evolver_getset,
};

/* evolve(msg, /, **changes): the class's Evolver, else the pure evolve. */
static PyObject *evolve(PyObject *mod, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    if (nargs == 1) {
        PyObject *fast = PyObject_GetAttr((PyObject *)Py_TYPE(args[0]), str_nk_evolve);
        if (fast && Py_IS_TYPE(fast, &Evolver_Type)) {
            PyObject *out = Evolver_vectorcall((Evolver *)fast, args, 1, kwnames);
            Py_DECREF(fast);
            return out;
        }
        Py_XDECREF(fast);
        PyErr_Clear();
    }
    if (!pure_evolve) {
        PyErr_SetString(PyExc_RuntimeError, "evolve: nanomsg_kernel.contract is not loaded");
        return NULL;
    }
    return PyObject_Vectorcall(pure_evolve, args, nargs, kwnames);
}

/* use_evolve(pure): the pure module-level evolve, for what the compiled one leaves. */
static PyObject *use_evolve(PyObject *mod, PyObject *pure) {
    Py_XSETREF(pure_evolve, Py_NewRef(pure));
    Py_RETURN_NONE;
}

static PyMethodDef evolve_methods[] = {
    {"evolve", (PyCFunction)(void (*)(void))evolve, METH_FASTCALL | METH_KEYWORDS,
     "evolve(msg, /, **changes)\n--\n\nA copy of msg with changes applied (the compiled nanomsg_kernel.evolve)."},
    {"use_evolve", use_evolve, METH_O, "use_evolve(pure): the evolve that decides what the compiled one leaves."},
    {NULL}
};

int nk_evolve_ready(PyObject *module) {
    if (PyType_Ready(&Evolver_Type) < 0) return -1;
    if (!(str_nk_evolve = PyUnicode_InternFromString("__nk_evolve__"))) return -1;
    if (PyModule_AddObjectRef(module, "Evolver", (PyObject *)&Evolver_Type) < 0) return -1;
    return PyModule_AddFunctions(module, evolve_methods);
}
