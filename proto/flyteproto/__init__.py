"""betterproto2 code generated from the flyteidl2 descriptors by ``proto/generate.py``.

Do not edit: run ``python proto/generate.py`` instead.
"""
