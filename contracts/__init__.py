"""The example kernels used by the demo, the docs and the tests.

* :mod:`contracts.calc` — a calculator service's kernel (``CalcRoute``).
* :mod:`contracts.catalog` — a kernel that uses every supported field type (``CatalogRoute``).
"""
