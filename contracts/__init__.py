"""The example kernels used by the demo, the docs and the tests.

* :mod:`nanomsg_kernel.contracts.calc` — a calculator service's kernel (``CalcRoute``).
* :mod:`nanomsg_kernel.contracts.catalog` — a kernel that uses every supported field type (``CatalogRoute``).
"""
