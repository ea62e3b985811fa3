"""The fuzz harnesses of the three door parsers (tools/fuzzing/).

Their checks can fail (a malformed reply is caught); their seeds and random bytes
run through each door without a finding; and, when atheris is installed
(CPython), a short coverage-guided run of each door ends without one."""
from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))
from fuzzing.checks import (MalformedReply, check_http_replies, check_line_output,  # noqa: E402
                            check_udp_reply)
from fuzzing.harnesses import HARNESSES, DoorLoggedFailure  # noqa: E402
from fuzzing.seeds import SEEDS  # noqa: E402

DOORS = sorted(HARNESSES)
CI_RUNS = 20_000  # inputs of the coverage-guided run in CI, per door (a few seconds each)


def test_http_check_accepts_replies_and_catches_malformed_ones():
    good = b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nd1:ai1e1:bi2ee"
    head_then_get = b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\n" + good
    assert [s for s, _ in check_http_replies(good + head_then_get)] == [200, 200, 200]
    for bad in (b"HTTP/1.0 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnot b",
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nd1:a", b"HTTP/1.1 500 Oops\r\n"
                b"Content-Length: 0\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"):
        with pytest.raises(MalformedReply):
            check_http_replies(bad)


def test_udp_check_catches_bad_sizes_actions_and_amplification():
    request = bytes(16)
    assert check_udp_reply(bytes(8) + bytes(8), request, proved=False) == 0
    for reply, proved in ((b"\0\0\0\1" + bytes(4) + bytes(13), True), (b"\0\0\0\7" + bytes(12), True),
                          (bytes(4), True), (b"\0\0\0\3" + bytes(4) + b"\xff" * 10, True),
                          (b"\0\0\0\3" + bytes(4) + b"x" * 20, False)):
        with pytest.raises(MalformedReply):
            check_udp_reply(reply, request, proved)


def test_line_check_catches_unknown_and_unfinished_lines():
    assert check_line_output(b"OK HELLO a entries=0\nPEER 1.2.3.4 1 seeder door=http\nEND\n", 4096)
    for bad in (b"OK\nHELLO\n", b"OK PONG", b"ERR oops\n", b"\xff\xfe\n"):
        with pytest.raises(MalformedReply):
            check_line_output(bad, 4096)


def test_a_failure_the_door_logs_is_a_finding():
    harness = HARNESSES["line"]()
    from twisted.logger import Logger
    try:
        raise ValueError("a bug")
    except ValueError:
        Logger().failure("caught by a door")
    with pytest.raises(DoorLoggedFailure, match="a bug"):
        harness.one_input(b"\0PING\n")


@pytest.mark.parametrize("door", DOORS)
def test_seeds_and_random_bytes_pass_through_each_door(door):
    harness = HARNESSES[door]()
    rng = random.Random(13)
    inputs = list(SEEDS[door])
    for _ in range(300):  # the seeds, byte-flipped and cut, and plain noise
        seed = bytearray(rng.choice(SEEDS[door]))
        for _ in range(rng.randrange(1, 6)):
            seed[rng.randrange(len(seed))] = rng.randrange(256)
        inputs.append(bytes(seed[:rng.randrange(1, len(seed) + 1)]))
        inputs.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
    for data in inputs:
        harness.one_input(data)


@pytest.mark.parametrize("door", DOORS)
def test_coverage_guided_run_finds_nothing(door, tmp_path):
    pytest.importorskip("atheris", reason="atheris is CPython only (the fuzz extra)")
    result = subprocess.run([sys.executable, str(TOOLS / "fuzz.py"), door, "--runs", str(CI_RUNS),
                             "--corpus", str(tmp_path / "corpus")],
                            capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done %d runs" % CI_RUNS in result.stderr
