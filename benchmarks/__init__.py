"""The benchmark of sqlmodel-cache against its performance targets; ``bench.py`` runs it.

No module here imports ``sqlmodel_cache`` at import time: the child process that measures a
plain ``Session.get`` without the library runs these same modules, and must never load it.
"""
