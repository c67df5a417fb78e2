"""KCL consumers: the template's Kinesis functions as KCL MultiLangDaemon record processors.

One generic processor (:mod:`wattstream.hosting.kcl.processor`) runs any template function's
Lambda handler with Lambda's event source mapping semantics; :mod:`wattstream.hosting.kcl.binding`
resolves a consumer from the deployed stack; :mod:`wattstream.hosting.kcl.host` is the process the
daemon starts; ``deploy/kcl/*.properties`` configure the daemon. amazon_kclpy is the
optional ``kcl`` extra: nothing here imports it until a processor is built.

Why here and not under ``services/``: this hosts handlers of several services (as the
local runner does) and belongs to none of them; services never import each other.
"""
