"""Hosting: running the template's Lambda handlers outside Lambda, with Lambda's semantics.

Production code, importable without the local emulator (moto), the dashboard or the
forecasting libraries:

* :mod:`.template`: the template model (functions, event source mappings, a stack's
  description);
* :mod:`.lambda_model`: a function bound to its handler, invoked as Lambda invokes it;
* :mod:`.settler`: THE event-source-mapping semantics (partial batch responses, bisecting,
  retries, record age, the on-failure destination), one state machine every host drives;
* :mod:`.kcl`: the KCL MultiLangDaemon host; :mod:`.kafka`: the faust host.

The local runner (:mod:`wattstream.local.runner`) is built on these too; it only adds the
pollers for the local stack.
"""
