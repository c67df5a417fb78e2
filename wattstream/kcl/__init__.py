"""The ``wattstream kcl`` commands; the KCL host itself is :mod:`wattstream.hosting.kcl`."""
