import gc

import pytest

from ground.collection import collection_paused


@pytest.fixture
def collector():
    was = gc.isenabled()
    yield
    gc.enable() if was else gc.disable()


def test_the_collector_is_paused_in_the_block_and_runs_again_after_the_outermost_one(collector):
    gc.enable()
    with collection_paused():
        assert not gc.isenabled()
        with collection_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer block still runs
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled_and_an_error_still_ends_the_pause(collector):
    gc.disable()
    with collection_paused():
        pass
    assert not gc.isenabled()
    gc.enable()
    with pytest.raises(ValueError):
        with collection_paused():
            raise ValueError("the work failed")
    assert gc.isenabled()


def test_cyclic_garbage_made_in_the_block_is_left_to_the_collector_after_it(collector):
    gc.enable()
    gc.collect()
    with collection_paused():
        ring: list = []
        ring.append(ring)
        del ring
    assert gc.collect() >= 1  # the ring, unreachable, was not lost: the first collection after frees it
