"""Shared test setup: every async test runs on trio and on asyncio.

Async test functions are marked for anyio's pytest plugin automatically; the
``anyio_backend`` fixture parametrizes them over both backends. A test that is
backend-specific by nature overrides ``anyio_backend`` (or uses pytest-trio's
``@pytest.mark.trio`` for trio-only tools such as the mock clock).
"""

from __future__ import annotations

import inspect

# The anthropic SDK's first import takes seconds (more on a loaded machine): done once at
# collection, so that no test pays it inside a hang guard.
import anthropic  # noqa: F401
import pytest
from anthropic_server import AnthropicServer, anthropic_server  # noqa: F401  (the fixture, for every module)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="run the long variants")


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    # Mark before parametrization so anyio's plugin sees the mark when it generates tests.
    if not (isinstance(collector, pytest.Module | pytest.Class) and collector.funcnamefilter(name)):
        return
    if inspect.iscoroutinefunction(obj):
        marks = {mark.name for mark in getattr(obj, "pytestmark", [])}
        module_marks = {mark.name for mark in getattr(collector.obj, "pytestmark", [])}
        if not ({"trio", "anyio"} & (marks | module_marks)):
            pytest.mark.anyio(obj)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="long variant: pass --run-slow")
    for item in items:
        if item.get_closest_marker("slow") is not None and not config.getoption("--run-slow"):
            item.add_marker(skip_slow)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(anthropic_server: AnthropicServer) -> AnthropicServer:  # noqa: F811
    """A loopback Messages API server for one test: ``anthropic_server`` by the short name
    the Messages API tests use (a module or class may still define its own)."""
    return anthropic_server


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory: pytest.TempPathFactory) -> object:
    """One local Ray for the whole session (2 CPUs, no dashboard), started at first use.

    Ray's session files go under a temporary folder, its token auth is off (no
    ``~/.ray/auth_token`` written), and the workers import this checkout (and the test
    helpers) through ``PYTHONPATH``. Those variables are set only while Ray starts (its
    processes copy the environment then) and restored at once, so no other test sees them.
    """
    ray = pytest.importorskip("ray")
    import os
    import pathlib
    import warnings

    here = pathlib.Path(__file__).resolve().parent
    paths = [str(here.parent), str(here), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    ray_env = {
        "RAY_TMPDIR": str(tmp_path_factory.mktemp("ray")),
        "RAY_AUTH_MODE": "disabled",
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
    }
    saved = {name: os.environ.get(name) for name in ray_env}
    os.environ.update(ray_env)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    yield ray
    ray.shutdown()
