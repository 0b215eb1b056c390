"""This machine's sustained memory bandwidth, and the decode speed it allows (a roofline).

Decoding one token of a small language model reads every weight once (plus the KV cache, small at
short context), so `bandwidth / weight bytes per token` is an upper bound on tokens/s that no runtime
can beat; a measured tokens/s divided by that bound says how close a runtime gets.

Bandwidth is measured with a copy (`np.copyto(dst, src)`) of a float64 array far larger than the
last-level cache, after a warm-up copy that also faults in every page. The convention is STREAM's
"Copy": **read bytes + written bytes** (2 x array size per copy). Why that one: it is the number
published for machines (STREAM, vendor sheets) so ours can be compared with them, and it counts the
bytes the program asks for. The hardware moves a little more (a write-allocate reads `dst` before
writing it), so the true DRAM traffic is up to 1.5x what is counted, and a read-only stream such as
a decoder's weight read can run somewhat faster than this number: the roofline is a guide, not a
wall. Numbers are GB/s with GB = 1e9 bytes.

Copies run on 1 thread and on N threads (`threads`), each thread copying its own contiguous slice;
numpy releases the GIL inside `copyto`, so the slices run in parallel. Several threads usually reach
more of the memory bus than one (one core cannot keep enough misses in flight), so a 2-thread
runtime should be compared with the 2-thread bandwidth.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time

import numpy as np

log = logging.getLogger(__name__)

CONVENTION = "STREAM copy: read + written bytes (2 x array bytes per copy), GB = 1e9 bytes"


def _timed_copy(dst: np.ndarray, src: np.ndarray, threads: int) -> float:
    """Seconds for one copy of `src` into `dst` split over `threads` threads (1 = the calling thread)."""
    if threads == 1:
        start = time.perf_counter()
        np.copyto(dst, src)
        return time.perf_counter() - start
    bounds = np.linspace(0, src.size, threads + 1).astype(int)
    # all workers wait at the barrier, so thread start-up is not timed; the clock stops at the last join
    barrier = threading.Barrier(threads + 1)

    def work(lo: int, hi: int) -> None:
        barrier.wait()
        np.copyto(dst[lo:hi], src[lo:hi])

    workers = [threading.Thread(target=work, args=(lo, hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    return time.perf_counter() - start


def memory_bandwidth(size_mb: int = 512, repeats: int = 7, threads: tuple[int, ...] = (1, 2)) -> dict:
    """Sustained copy bandwidth of this machine, median and best over `repeats` copies per thread count.

    `size_mb` is the size of each of the two arrays (source and destination); keep it far beyond the
    last-level cache (tens of MB on servers) or the result measures the cache. Returns::

        {"size_mb", "repeats", "convention",
         "median_gb_s", "best_gb_s",              # 1 thread
         "by_threads": {"1": {"median_gb_s", "best_gb_s", "seconds": [...]}, "2": {...}}}
    """
    if size_mb <= 0 or repeats <= 0:
        raise ValueError(f"size_mb and repeats must be positive, got {size_mb}, {repeats}")
    if not threads or min(threads) < 1:
        raise ValueError(f"threads must be positive thread counts, got {threads}")
    src = np.full(size_mb * 2**20 // 8, 1.0)
    dst = np.empty_like(src)
    moved = 2 * src.nbytes  # read src + write dst
    by_threads = {}
    for n in threads:
        _timed_copy(dst, src, n)  # warm-up: faults in dst's pages, spins the threads' cores up
        seconds = [_timed_copy(dst, src, n) for _ in range(repeats)]
        rates = [moved / s / 1e9 for s in seconds]
        by_threads[str(n)] = {
            "median_gb_s": statistics.median(rates),
            "best_gb_s": max(rates),
            "seconds": seconds,
        }
        log.info("copy bandwidth, %d thread(s): median %.1f GB/s, best %.1f GB/s", n, by_threads[str(n)]["median_gb_s"], max(rates))
    first = by_threads[str(threads[0])]
    return {
        "size_mb": size_mb,
        "repeats": repeats,
        "convention": CONVENTION,
        "median_gb_s": first["median_gb_s"],
        "best_gb_s": first["best_gb_s"],
        "by_threads": by_threads,
    }


def roofline_tokens_per_s(weight_bytes_per_token: int, bandwidth_gb_s: float) -> float:
    """Upper bound on decode tokens/s when each token must stream `weight_bytes_per_token` from memory.

    For a decoder that is every weight read in a forward step: all layer matrices, the norms, and the
    output projection (with tied embeddings the whole embedding matrix is read for the logits, so it
    counts once; the input lookup reads one row and is negligible).
    """
    if weight_bytes_per_token <= 0 or bandwidth_gb_s <= 0:
        raise ValueError(f"need positive bytes and bandwidth, got {weight_bytes_per_token}, {bandwidth_gb_s}")
    return bandwidth_gb_s * 1e9 / weight_bytes_per_token
