"""How many sources a process decodes at once, and each one's memory
(``chalicelib.sandbox.pool_sizing``): one rule for the imaging workers, an SQS
batch's concurrency and the local pump."""

from __future__ import annotations

import pytest

from chalicelib.sandbox import (
    MB_PER_VCPU,
    WORKER_MEMORY_SHARE,
    available_cpus,
    pool_sizing,
    worker_memory_bytes,
)

MB = 1 << 20
DEFAULT_WORKER_MB = int(MB_PER_VCPU * WORKER_MEMORY_SHARE)  # 1,061 MB


def on_lambda(memory_mb: int) -> dict[str, str]:
    return {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb)}


@pytest.mark.parametrize(
    ("memory_mb", "cpus", "workers", "worker_mb"),
    [
        (512, 2, 1, 307),  # a fraction of a vCPU: one worker, as before
        (1769, 2, 1, 1061),  # one vCPU: the default event handler, as before
        (3008, 2, 1, 1804),  # 1.7 vCPUs: no second worker on 0.7 of one
        (3538, 2, 2, 1061),  # two vCPUs
        (7076, 4, 4, 1061),
        (10240, 6, 5, 1228),  # 5.8 vCPUs
        (10240, 2, 2, 3072),  # fewer CPUs than vCPUs: the CPUs bound it
    ],
)
def test_on_lambda_one_worker_per_whole_vcpu(
    memory_mb: int, cpus: int, workers: int, worker_mb: int
) -> None:
    sizing = pool_sizing(on_lambda(memory_mb), cpus=cpus)
    assert (sizing.workers, sizing.memory_bytes // MB) == (workers, worker_mb)
    assert sizing.function_mb == memory_mb


def test_on_lambda_the_workers_together_stay_inside_the_function() -> None:
    for memory_mb in range(128, 10241, 7):
        for cpus in (1, 2, 3, 6, 64):
            sizing = pool_sizing(on_lambda(memory_mb), cpus=cpus)
            assert 1 <= sizing.workers <= min(cpus, 6)
            # 60 % of the function for all workers together, the rest for the handler
            assert sizing.total_bytes <= memory_mb * WORKER_MEMORY_SHARE * MB
            handler_mb = memory_mb - sizing.total_bytes / MB
            assert handler_mb >= 0.4 * memory_mb - 1
            if sizing.workers > 1:
                # concurrency never gives a file less than the default function's worker
                assert sizing.memory_bytes // MB >= DEFAULT_WORKER_MB
                assert handler_mb / sizing.workers >= 0.4 * MB_PER_VCPU - 1


@pytest.mark.parametrize(
    ("cpus", "physical_mb", "workers"),
    [(1, 16000, 1), (2, 23000, 2), (4, 16000, 4), (16, 64000, 6), (8, 4000, 2), (2, 1000, 1)],
)
def test_off_lambda_one_worker_per_cpu_each_with_the_default_functions_memory(
    cpus: int, physical_mb: int, workers: int
) -> None:
    sizing = pool_sizing({}, cpus=cpus, physical_mb=physical_mb)
    assert sizing.workers == workers
    assert sizing.memory_bytes == DEFAULT_WORKER_MB * MB  # as the default function's one worker
    assert sizing.function_mb is None


def test_an_unreadable_memory_size_counts_as_off_lambda() -> None:
    assert pool_sizing({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "lots"}, cpus=2).function_mb is None


def test_the_machines_cpus_by_default() -> None:
    assert pool_sizing({}, physical_mb=64000).workers == min(available_cpus(), 6)


def test_worker_memory_for_an_explicit_number_of_workers() -> None:
    # backfill's --workers: on Lambda they still share the 60 %, elsewhere each has 1,061 MB
    assert worker_memory_bytes(4, on_lambda(3538)) // MB == int(3538 * 0.6 / 4)
    assert worker_memory_bytes(4, {}) // MB == DEFAULT_WORKER_MB
    assert worker_memory_bytes(1, on_lambda(1769)) // MB == DEFAULT_WORKER_MB
