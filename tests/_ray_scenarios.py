"""Ray scenarios that need a Ray of their own, run as a subprocess by test_ray_cluster.py.

``python tests/_ray_scenarios.py cluster``: a two-node cluster (``ray.cluster_utils``)
where the node holding one of a batch's two actors is removed mid-batch (a fresh node
joins for the replacement actor).
``python tests/_ray_scenarios.py uninitialised``: a RayRunnable used before ``ray.init``.
Each prints one JSON line with what it saw.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import anyio
import ray


def cluster() -> dict[str, Any]:
    from _ray_probe import Probe, gated_double
    from ray.cluster_utils import Cluster

    from engine.ray import RayRunnable

    world = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    second = world.add_node(num_cpus=1)
    ray.init(address=world.address, log_to_driver=False)
    try:
        probe = Probe.options(resources={"node:__internal_head__": 0.001}).remote()
        # Each actor holds its node's one CPU, so there is one on each node.
        remote = RayRunnable(gated_double(probe), num_actors=2, actor_options={"num_cpus": 1})
        actors = remote.start_actors()
        nodes = ray.get([actor.node.remote() for actor in actors])
        results: list[Any] = []

        async def main() -> None:
            async def run() -> None:
                results.extend(await remote.abatch(list(range(8)), max_concurrency=8))

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(run)
                await anyio.to_thread.run_sync(ray.get, probe.wait_for.remote("entered", 8))
                world.remove_node(second)
                world.add_node(num_cpus=1)  # where the lost actor's replacement can go
                await anyio.to_thread.run_sync(ray.get, probe.wait_for.remote("entered", 12))
                await anyio.to_thread.run_sync(ray.get, probe.open_gate.remote())

        anyio.run(main, backend=sys.argv[2] if len(sys.argv) > 2 else "trio")
        state = ray.get(probe.read.remote())
        return {
            "results": results,
            "nodes": sorted(set(nodes)),
            "second": second.node_id,
            "entered": state["entered"],
            "actors": len(remote.actors),
        }
    finally:
        ray.shutdown()
        world.shutdown()


def uninitialised() -> dict[str, Any]:
    from engine import RunnableLambda
    from engine.ray import RayRunnable

    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="LOG %(name)s %(message)s")
    assert not ray.is_initialized()
    remote = RayRunnable(RunnableLambda(abs), num_actors=1)
    try:
        result = remote.invoke(-3)
        return {"result": result, "initialised": ray.is_initialized()}
    finally:
        ray.shutdown()


if __name__ == "__main__":
    print("RESULT", json.dumps({"cluster": cluster, "uninitialised": uninitialised}[sys.argv[1]]()))
