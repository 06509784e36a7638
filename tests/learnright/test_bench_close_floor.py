"""What no close can avoid: the least wall time, from the parts' CPU and the cores (pure arithmetic)."""

from learnright.bench_close_floor import FloorParts, floor_seconds


def test_the_floor_is_the_parts_cpu_over_the_cores_and_never_less_than_the_bare_query():
    parts = FloorParts(statements=4_000, sign_cpu_seconds=0.30, store_cpu_seconds=0.29)
    assert floor_seconds(bare_seconds=0.12, bare_cpu_seconds=0.21, parts=parts, cores=2) == (0.21 + 0.30 + 0.29) / 2
    cheap = FloorParts(statements=10, sign_cpu_seconds=0.01, store_cpu_seconds=0.01)
    assert floor_seconds(bare_seconds=0.5, bare_cpu_seconds=0.6, parts=cheap, cores=2) == 0.5
