"""Pieces shared by uploads and downloads: bounded concurrency and a file's parts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

MiB = 1 << 20
GiB = 1 << 30


async def run_bounded(jobs: Iterable[Callable[[], Awaitable[None]]], limit: int) -> None:
    """Run `jobs` with at most `limit` at a time. The first failure cancels the rest (and
    is raised once they have ended): no transfer keeps going after its run failed."""
    slots = asyncio.Semaphore(max(1, limit))

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with slots:
            await job()

    tasks = [asyncio.ensure_future(one(job)) for job in jobs]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def part_ranges(size: int, part_size: int) -> list[tuple[int, int, int]]:
    """(part number from 1, offset, length) of a file of `size` bytes cut in `part_size`."""
    return [
        (number, offset, min(part_size, size - offset))
        for number, offset in enumerate(range(0, size, part_size), start=1)
    ]
