"""Scale-out on Ray: :class:`RayRunnable` runs a runnable on a pool of Ray actors.

Needs the optional ``ray`` extra (``pip install -e '.[ray]'``: plain ``ray``, no
dashboard). Importing this module does not import Ray; making a ``RayRunnable`` does.
It composes like any runnable::

    remote = RayRunnable(prompt | model | parser, num_actors=4, actor_options={"num_cpus": 1})
    results = await remote.abatch(inputs, max_concurrency=32)
    async with (retriever | remote).astream(question) as chunks: ...

API keys should come from the workers' environment (``actor_options={"runtime_env":
{"env_vars": ...}}`` or the cluster's own), not from a model built with ``api_key=...``:
such a model is pickled with its key (``nodes.SecretShippedWarning`` says so).
"""

from ._ray import RayRunnable as RayRunnable

__all__ = ("RayRunnable",)
