"""The shared resource bounds: connection caps and the announce token bucket."""
import resource

from tracker.limits import (
    REFUSED_PER_ADDRESS, REFUSED_TOTAL, AnnounceRateLimiter, ConnectionLimiter,
    default_max_connections, raise_open_file_limit,
)


def test_connections_per_address_are_capped_and_released():
    limiter = ConnectionLimiter(max_total=100, max_per_address=2)
    assert limiter.admit("10.0.0.1") is None
    assert limiter.admit("10.0.0.1") is None
    assert limiter.admit("10.0.0.1") == REFUSED_PER_ADDRESS
    # Another address is not affected by the first one's flood.
    assert limiter.admit("10.0.0.2") is None
    assert limiter.open == 3
    limiter.release("10.0.0.1")
    assert limiter.admit("10.0.0.1") is None
    assert limiter.refused == {REFUSED_TOTAL: 0, REFUSED_PER_ADDRESS: 1}


def test_total_connections_are_capped_whatever_the_address():
    limiter = ConnectionLimiter(max_total=3, max_per_address=10)
    for n in range(3):
        assert limiter.admit("10.0.0.%d" % n) is None
    assert limiter.admit("10.0.0.9") == REFUSED_TOTAL
    limiter.release("10.0.0.0")
    assert limiter.admit("10.0.0.9") is None
    assert limiter.open == 3


def test_releasing_an_unknown_address_changes_nothing():
    limiter = ConnectionLimiter(max_total=3, max_per_address=1)
    limiter.release("10.0.0.1")
    assert limiter.open == 0 and limiter.per_address == {}


def test_per_address_table_forgets_closed_addresses():
    limiter = ConnectionLimiter(max_total=10, max_per_address=10)
    for n in range(5):
        limiter.admit("10.0.0.%d" % n)
        limiter.release("10.0.0.%d" % n)
    assert limiter.per_address == {} and limiter.open == 0


def test_token_bucket_allows_a_burst_then_the_rate():
    limiter = AnnounceRateLimiter(rate=2.0, burst=3)
    assert [limiter.allow("10.0.0.1", 100.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.refused == 1
    # Half a second later one token (2/s) has come back.
    assert limiter.allow("10.0.0.1", 100.5) is True
    assert limiter.allow("10.0.0.1", 100.5) is False
    # Others have their own bucket.
    assert limiter.allow("10.0.0.2", 100.5) is True


def test_token_bucket_refills_no_higher_than_the_burst():
    limiter = AnnounceRateLimiter(rate=10.0, burst=2)
    limiter.allow("10.0.0.1", 0.0)
    results = [limiter.allow("10.0.0.1", 1000.0) for _ in range(3)]
    assert results == [True, True, False]


def test_token_bucket_table_is_bounded():
    limiter = AnnounceRateLimiter(rate=1.0, burst=5, max_addresses=8)
    for n in range(100):
        limiter.allow("10.0.%d.1" % n, float(n))
        assert len(limiter) <= 8


def test_token_bucket_keeps_busy_addresses_when_idle_ones_can_go():
    limiter = AnnounceRateLimiter(rate=1.0, burst=2, max_addresses=4)
    for n in range(3):
        limiter.allow("idle-%d" % n, 0.0)
    for _ in range(2):
        limiter.allow("busy", 10.0)
    assert limiter.allow("busy", 10.0) is False
    # A new address when the table is full drops the idle buckets (refilled
    # long ago) and keeps the busy one, still empty.
    limiter.allow("new", 10.0)
    assert limiter.allow("busy", 10.0) is False


def test_open_file_limit_is_raised_to_the_hard_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        if hard != resource.RLIM_INFINITY and soft == hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(64, hard // 2), hard))
        before, after = raise_open_file_limit()
        now_soft, now_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert after == now_soft
        assert now_hard == hard
        if hard != resource.RLIM_INFINITY:
            assert now_soft == hard
        assert before <= after
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_default_connection_cap_keeps_a_reserve():
    assert default_max_connections(20000) == 20000 - 128
    assert default_max_connections(100) == 64


def test_an_ipv6_slash_64_counts_as_one_address():
    limiter = ConnectionLimiter(max_total=100, max_per_address=2)
    assert limiter.admit("2001:db8:1:2::1") is None
    assert limiter.admit("2001:db8:1:2::ffff") is None
    assert limiter.admit("2001:db8:1:2:aaaa::7") == REFUSED_PER_ADDRESS
    assert limiter.admit("2001:db8:1:3::1") is None  # the next /64 is someone else
    limiter.release("2001:db8:1:2::1")
    assert limiter.admit("2001:db8:1:2:bbbb::9") is None
    rate = AnnounceRateLimiter(rate=1.0, burst=1)
    assert rate.allow("2001:db8:9:9::1", 0.0) is True
    assert rate.allow("2001:db8:9:9::2", 0.0) is False


def test_a_full_table_of_busy_addresses_forgets_only_the_oldest_quarter():
    limiter = AnnounceRateLimiter(rate=1.0, burst=1, max_addresses=8)
    for n in range(8):
        limiter.allow("10.0.0.%d" % n, 0.0)  # every bucket empty: none idle
    limiter.allow("10.0.1.1", 0.0)
    assert len(limiter) == 7
    # The newest of the busy ones are still held to their rate.
    assert limiter.allow("10.0.0.7", 0.0) is False
    # The oldest were forgotten: they get a new burst.
    assert limiter.allow("10.0.0.0", 0.0) is True
