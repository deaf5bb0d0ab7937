/* What the sources of the _speedups extension share (_speedups.c, _evolve.c). */
#ifndef NK_SPEEDUPS_H
#define NK_SPEEDUPS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* The offset of a writable object slot from its member descriptor, or -1 with TypeError. */
Py_ssize_t nk_slot_offset(PyObject *descr);

/* () : the arguments of object.__new__(cls). */
extern PyObject *nk_empty_tuple;

/* Adds Evolver, evolve and use_evolve to the module (_evolve.c); -1 on error. */
int nk_evolve_ready(PyObject *module);

#endif
