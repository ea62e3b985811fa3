"""Options (command line > TOML file > default), makeService, and the expiry timer."""
from __future__ import annotations

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.usage import UsageError

from helpers import announce_request
from tracker.core import TrackerCore, TrackerSettings
from tracker.expiry import ExpiryService
from tracker.options import DEFAULT_HTTP, DEFAULT_LINE, Options
from tracker.service import makeService


@pytest.fixture(autouse=True)
def no_ambient_config(monkeypatch, tmp_path):
    """Neither $TRACKER_CONFIG nor a ./tracker.toml of the developer's leaks in."""
    monkeypatch.delenv("TRACKER_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


class MemoryReactorWithUDP(MemoryReactorClock):
    """MemoryReactorClock records TCP listeners; this records UDP ones too."""

    def __init__(self):
        super().__init__()
        self.udpServers = []

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        self.udpServers.append((port, protocol, interface, maxPacketSize))
        return _FakeUDPPort()


class _FakeUDPPort:
    def stopListening(self):
        return None


def parse(*args):
    config = Options()
    config.parseOptions(list(args))
    return config


def test_defaults():
    config = parse()
    assert config["http"] == [DEFAULT_HTTP]
    assert config["udp"] == [("::", 6969)]
    assert config["line"] == [DEFAULT_LINE]
    assert (config["line-grace"], config["line-idle-timeout"], config["node-token"]) == (60, 300, {})
    assert (config["interval"], config["min-interval"], config["peer-ttl"]) == (1800, 900, None)
    assert (config["numwant"], config["max-numwant"]) == (50, 200)
    assert config["allow-ip-param"] is False
    assert config["config"] is None


def test_command_line_values_are_converted():
    config = parse("--interval", "600", "--min-interval", "60", "--allow-ip-param",
                   "--http", "tcp:1:interface=127.0.0.1", "--http", "tcp6:1:interface=\\:\\:1")
    assert config["interval"] == 600 and config["min-interval"] == 60
    assert config["allow-ip-param"] is True
    assert config["http"] == ["tcp:1:interface=127.0.0.1", "tcp6:1:interface=\\:\\:1"]


def test_file_beats_default_and_command_line_beats_file(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('interval = 1200\nmin_interval = 100\nnumwant = 20\n'
                    'http = "tcp:7000"\nallow-ip-param = true\n')
    config = parse("--config", str(path), "--numwant", "30")
    assert config["interval"] == 1200
    assert config["min-interval"] == 100
    assert config["numwant"] == 30
    assert config["http"] == ["tcp:7000"]
    assert config["allow-ip-param"] is True


def test_command_line_beats_file_even_when_it_repeats_the_default(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text("interval = 1200\n")
    assert parse("--config", str(path), "--interval", "1800")["interval"] == 1800


def test_config_found_by_environment_and_default_path(tmp_path, monkeypatch):
    (tmp_path / "tracker.toml").write_text("interval = 1000\n")
    assert parse()["interval"] == 1000
    other = tmp_path / "other.toml"
    other.write_text("interval = 2000\n")
    monkeypatch.setenv("TRACKER_CONFIG", str(other))
    assert parse()["interval"] == 2000


@pytest.mark.parametrize("args,content,message", [
    (["--interval", "soon"], None, "option --interval: 'soon' is not valid"),
    (["--numwant", "-3"], None, "must be zero or more"),
    (["--interval", "100", "--min-interval", "200"], None, "must not exceed interval"),
    ([], "intervall = 5\n", "unknown setting 'intervall'"),
    ([], "interval = [1\n", "is not valid TOML"),
    ([], 'interval = "x"\n', "interval in"),
    ([], "http = 5\n", "must be an endpoint string"),
])
def test_bad_settings_give_a_one_line_usage_error(tmp_path, args, content, message):
    if content is not None:
        path = tmp_path / "bad.toml"
        path.write_text(content)
        args = args + ["--config", str(path)]
    with pytest.raises(UsageError) as caught:
        parse(*args)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_config_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read config file"):
        parse("--config", str(tmp_path / "nope.toml"))


def test_memory_caps_default_to_a_share_of_this_machines_memory(monkeypatch):
    from tracker import options
    memory = options.physical_memory_bytes()
    assert 2 ** 26 <= memory < 2 ** 50
    config = parse()
    assert config["max-swarms"] == memory // 2 // 1536
    assert config["max-peers"] == memory // 2 // 192
    config = parse("--max-swarms", "10", "--max-peers", "20", "--db", "off")
    settings = makeService(config, MemoryReactorWithUDP()).core.settings
    assert (settings.max_swarms, settings.max_peers) == (10, 20)


def test_make_service_builds_listeners_without_touching_the_network():
    reactor = MemoryReactorWithUDP()
    config = parse("--http", "tcp:7001:interface=127.0.0.1", "--http", "tcp6:7002:interface=\\:\\:1",
                   "--udp", "127.0.0.1:7003", "--udp", "[::1]:7004",
                   "--line", "tcp:7005:interface=127.0.0.1", "--admin", "tcp:7006:interface=127.0.0.1",
                   "--ws", "tcp:7007:interface=127.0.0.1",
                   "--interval", "100", "--min-interval", "50", "--db", "off")
    service = makeService(config, reactor)
    assert reactor.tcpServers == [] and reactor.udpServers == []
    listeners = [s for s in service if isinstance(s, StreamServerEndpointService)]
    assert len(listeners) == 5  # two HTTP, one line, one admin, one WebSocket
    assert service.core.settings.interval_s == 100
    service.startService()
    assert sorted((port, iface) for port, _, _, iface in reactor.tcpServers) == [
        (7001, "127.0.0.1"), (7002, "::1"), (7005, "127.0.0.1"), (7006, "127.0.0.1"),
        (7007, "127.0.0.1")]
    assert sorted((port, iface) for port, _, iface, _ in reactor.udpServers) == [
        (7003, "127.0.0.1"), (7004, "::1")]
    service.stopService()


def test_node_tokens_from_command_line_and_file(tmp_path):
    assert parse("--node-token", "edge-1=abc", "--node-token", "edge-2=x=y")["node-token"] == {
        "edge-1": "abc", "edge-2": "x=y"}
    path = tmp_path / "t.toml"
    path.write_text('[node-token]\nedge-1 = "abc"\n')
    assert parse("--config", str(path))["node-token"] == {"edge-1": "abc"}
    with pytest.raises(UsageError, match="ID=SECRET"):
        parse("--node-token", "edge-1")


def test_line_off():
    assert parse("--line", "off", "--admin", "off")["line"] == []


def test_off_given_twice_is_still_off():
    assert parse("--ws", "off", "--ws", "off")["ws"] == []


@pytest.mark.parametrize("spec,expected", [
    ("6969", [("::", 6969)]),
    ("127.0.0.1:7000", [("127.0.0.1", 7000)]),
    ("[::1]:7000", [("::1", 7000)]),
    ("off", []),
])
def test_udp_addresses(spec, expected):
    assert parse("--udp", spec)["udp"] == expected


@pytest.mark.parametrize("spec,message", [
    ("::1:7000", "brackets"),
    ("host:7000", "not an IP address"),
    ("70000", "port must be 1 to 65535"),
    ("[::1]7000", "expected [IPV6]:PORT"),
])
def test_bad_udp_addresses_are_usage_errors(spec, message):
    with pytest.raises(UsageError, match=message.replace("[", "\\[")):
        parse("--udp", spec)


def test_service_expires_peers_on_its_timer():
    reactor = MemoryReactorClock()
    config = parse("--http", "tcp:7001:interface=127.0.0.1", "--interval", "100", "--udp", "off",
                   "--line", "off", "--ws", "off", "--admin", "off",
                   "--min-interval", "50", "--sweep-interval", "10", "--db", "off")
    service = makeService(config, reactor)
    service.startService()
    service.core.announce(announce_request(), reactor.seconds())
    reactor.advance(190)
    assert service.core.peer_count == 1
    for _ in range(3):
        reactor.advance(10)
    assert service.core.peer_count == 0
    service.stopService()


def test_expiry_service_yields_between_slices():
    clock = Clock()
    core = TrackerCore(TrackerSettings(interval_s=10))
    for n in range(100):
        core.announce(announce_request(peer=n, port=1000 + n), 0.0)
    expiry = ExpiryService(core, clock, interval_s=60, slice_size=10)
    clock.advance(30)  # past the 20 s time to live, before the timer's first sweep
    expiry.startService()
    expiry.start_sweep()  # a sweep runs one slice, then hands the reactor back
    assert expiry.sweeping
    assert core.peer_count == 90

    def run_next_slice():
        # The slice scheduled for "now" (the periodic timer is due later).
        (pending,) = [c for c in clock.getDelayedCalls() if c.getTime() == clock.seconds()]
        run = pending.func
        pending.cancel()
        run()

    run_next_slice()
    assert core.peer_count == 80
    slices = 2
    while expiry.sweeping:
        run_next_slice()
        slices += 1
    assert core.peer_count == 0
    assert slices >= 10
    expiry.stopService()
    assert clock.getDelayedCalls() == []


def test_timer_starts_a_sweep_every_interval():
    clock = Clock()
    core = TrackerCore(TrackerSettings(interval_s=10))
    expiry = ExpiryService(core, clock, interval_s=60, slice_size=10)
    expiry.startService()
    core.announce(announce_request(peer=1), 0.0)
    clock.advance(60)
    assert core.peer_count == 0
    core.announce(announce_request(peer=2), 60.0)
    clock.advance(60)
    assert core.peer_count == 0
    expiry.stopService()
    assert clock.getDelayedCalls() == []
