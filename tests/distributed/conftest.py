"""One Ray for the distributed tests: a real local Ray (not local mode) with 2 CPUs, started once by the
session fixture `ray_session` and shut down as soon as the last test of this folder has run (the folder is
skipped without the `distributed` extra). Ray sets
environment variables in the process that starts it (RAY_AUTH_MODE, PYTHONBREAKPOINT, ...): they are put
back as they were, with torch's thread count, so nothing leaks into the other tests."""

import os
from pathlib import Path

import pytest
import torch

_before: dict = {"env": dict(os.environ), "threads": torch.get_num_threads()}  # before Ray is imported
try:
    import ray
except ImportError:  # without the distributed extra these tests are not collected
    collect_ignore_glob = ["test_*.py"]

HERE = Path(__file__).parent


def start_ray() -> None:
    if not _before:
        _before.update(env=dict(os.environ), threads=torch.get_num_threads())
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)


def stop_ray() -> None:
    """Shut Ray down and put the environment and torch's threads back as they were before it started."""
    ray.shutdown()
    if not _before:
        return
    env = _before["env"]
    for k in [k for k in os.environ if k not in env and k != "PYTEST_CURRENT_TEST"]:
        del os.environ[k]
    os.environ.update({k: v for k, v in env.items() if k != "PYTEST_CURRENT_TEST"})
    torch.set_num_threads(_before["threads"])
    _before.clear()


@pytest.fixture(scope="session")
def ray_session():
    start_ray()
    yield
    stop_ray()


@pytest.fixture(autouse=True)
def _ray_up(ray_session):
    if not ray.is_initialized():  # stopped after an earlier pass through this folder
        start_ray()


def pytest_runtest_teardown(item, nextitem):
    if nextitem is None or HERE not in Path(str(nextitem.path)).parents:  # the last test here
        stop_ray()


@pytest.fixture
def ray_cluster():
    """A `ray.cluster_utils.Cluster` of a head and a second node (1 CPU each) in place of the session's Ray,
    which starts again afterwards."""
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
