"""Access rules (deny list, allow-list mode, bans, node tokens) on every door,
and client addresses behind a trusted reverse proxy."""
from __future__ import annotations

import ipaddress
import random

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport

from helpers import announce_request, bdecode, info_hash
from clients import Node, Client, UDPClient, announce_target
from tracker.core import MODE_ALLOW, AccessPolicy, TrackerCore, TrackerError
from tracker.doors.http import HTTPDoorSettings, HTTPTrackerFactory
from tracker.line.door import LineDoorSettings, LineTrackerFactory
from tracker.doors.udp import UDPTrackerProtocol

H1, H2 = info_hash(1), info_hash(2)


@pytest.fixture
def core():
    return TrackerCore(rng=random.Random(2))


def doors(core):
    clock = Clock()
    clock.advance(1000)
    http = HTTPTrackerFactory(core, clock, HTTPDoorSettings())
    udp = UDPTrackerProtocol(core, clock)
    transport = FakeDatagramTransport()
    udp.makeConnection(transport)
    line = LineTrackerFactory(core, clock, LineDoorSettings())
    return http, (udp, transport), line


def refused_everywhere(core, swarm: int, host: str, message: str, at_hello: bool = False):
    """HTTP and UDP announces are refused with `message`; the line door refuses
    the node's HELLO (`at_hello`: a banned address) or else its HAVE."""
    http, (udp, transport), line = doors(core)
    reply = Client(http, host).announce(info_hash=info_hash(swarm))
    assert reply == {b"failure reason": message.encode()}
    reply = UDPClient(udp, transport, (host, 1)).announce(swarm=swarm)
    assert reply == {"error": message}
    node = Node(line, host)
    if at_hello:
        assert node.hello("edge-1") == ["ERR 403 " + message]
    else:
        assert node.hello("edge-1") == ["OK HELLO edge-1 entries=0"]
        assert node.send("HAVE " + info_hash(swarm).hex()) == ["ERR 403 " + message]
    assert info_hash(swarm) not in core.swarms


def accepted_everywhere(core, swarm: int, host: str):
    http, (udp, transport), line = doors(core)
    assert b"peers" in Client(http, host).announce(info_hash=info_hash(swarm))
    assert "error" not in UDPClient(udp, transport, (host, 1)).announce(swarm=swarm, peer=2)
    node = Node(line, host)
    node.hello("edge-1")
    assert node.send("HAVE " + info_hash(swarm).hex()) == ["OK HAVE " + info_hash(swarm).hex()]
    assert len(core.swarms[info_hash(swarm)]) == 3


def test_open_mode_tracks_everything(core):
    accepted_everywhere(core, 1, "10.0.0.1")


def test_denied_content_is_refused_on_every_door(core):
    core.access.add("deny", H1)
    refused_everywhere(core, 1, "10.0.0.1", "this content is not tracked here")
    accepted_everywhere(core, 2, "10.0.0.1")
    # Counted by the door that refused it, the line door's HAVE too.
    assert core.stats.failures == {("http", "content_denied"): 1, ("udp", "content_denied"): 1,
                                   ("line", "content_denied"): 1}


def test_allow_list_mode_tracks_only_listed_content(core):
    core.access.set_mode(MODE_ALLOW)
    core.access.add("allow", H2)
    refused_everywhere(core, 1, "10.0.0.1", "this tracker does not track that content")
    accepted_everywhere(core, 2, "10.0.0.1")


def test_banned_range_is_refused_on_every_door(core):
    core.access.ban("10.9.0.0/16")
    refused_everywhere(core, 1, "10.9.3.4", "your address is banned from this tracker",
                       at_hello=True)
    accepted_everywhere(core, 1, "10.8.0.1")


def test_banned_node_is_closed_at_hello(core):
    core.access.ban("10.9.0.0/16")
    _, _, line = doors(core)
    node = Node(line, "10.9.0.5")
    assert node.hello("edge-1") == ["ERR 403 your address is banned from this tracker"]
    assert node.closed


def test_ipv6_bans(core):
    core.access.ban("2001:db8::/32")
    with pytest.raises(TrackerError):
        core.announce(announce_request(ip="2001:db8::7"), 0.0)
    core.announce(announce_request(ip="2001:db9::7"), 0.0)


def test_rules_take_effect_at_once_and_can_be_lifted(core):
    core.announce(announce_request(swarm=1, peer=1), 0.0)
    core.access.add("deny", H1)
    with pytest.raises(TrackerError):
        core.announce(announce_request(swarm=1, peer=2), 0.0)
    core.access.remove("deny", H1)
    core.announce(announce_request(swarm=1, peer=2), 0.0)
    assert core.access.active is False


def test_node_tokens_from_the_policy(core):
    core.access.node_tokens["edge-1"] = "t0ken"
    _, _, line = doors(core)
    assert Node(line).hello("edge-1", token="t0ken") == ["OK HELLO edge-1 entries=0"]
    bad = Node(line)
    assert bad.hello("edge-1", token="nope") == ["ERR 401 wrong or missing token for node edge-1"]
    assert bad.closed


def test_policy_validates_its_input():
    policy = AccessPolicy()
    with pytest.raises(ValueError):
        policy.ban("not-a-network")
    with pytest.raises(ValueError):
        policy.set_mode("closed")
    with pytest.raises(ValueError):
        policy.add("maybe", H1)
    assert policy.ban("192.0.2.7/24") == "192.0.2.0/24"


# -- reverse proxies ----------------------------------------------------------------------


def proxied_factory(core, header=b"x-forwarded-for"):
    return HTTPTrackerFactory(core, Clock(), HTTPDoorSettings(
        trusted_proxies=(ipaddress.ip_network("10.0.0.0/24"),), proxy_header=header))


def test_forwarded_address_from_a_trusted_proxy_is_used(core):
    client = Client(proxied_factory(core), "10.0.0.5")
    reply = bdecode(client.get(announce_target(), headers=b"X-Forwarded-For: 198.51.100.7, 10.0.0.9\r\n")[2])
    peer = next(core.swarms[H1].views())
    assert peer.ip == "198.51.100.7"
    assert reply[b"external ip"] == bytes([198, 51, 100, 7])


def test_x_real_ip_when_configured(core):
    client = Client(proxied_factory(core, b"x-real-ip"), "10.0.0.5")
    client.get(announce_target(), headers=b"X-Real-IP: 2001:db8::9\r\nX-Forwarded-For: 1.1.1.1\r\n")
    assert next(core.swarms[H1].views()).ip == "2001:db8::9"


def test_forwarded_header_from_an_untrusted_source_is_ignored(core):
    client = Client(proxied_factory(core), "192.0.2.77")
    client.get(announce_target(), headers=b"X-Forwarded-For: 198.51.100.7\r\n")
    assert next(core.swarms[H1].views()).ip == "192.0.2.77"


def test_proxy_header_ignored_when_no_proxy_is_trusted(core):
    client = Client(HTTPTrackerFactory(core, Clock(), HTTPDoorSettings()), "10.0.0.5")
    client.get(announce_target(), headers=b"X-Forwarded-For: 198.51.100.7\r\n")
    assert next(core.swarms[H1].views()).ip == "10.0.0.5"


def test_unreadable_forwarded_address_is_a_failure(core):
    client = Client(proxied_factory(core), "10.0.0.5")
    reply = bdecode(client.get(announce_target(), headers=b"X-Forwarded-For: garbage\r\n")[2])
    assert reply == {b"failure reason": b"the proxy sent an unreadable client address"}
    assert core.swarms == {}


def test_bans_apply_to_the_forwarded_address(core):
    core.access.ban("198.51.100.0/24")
    client = Client(proxied_factory(core), "10.0.0.5")
    reply = bdecode(client.get(announce_target(), headers=b"X-Forwarded-For: 198.51.100.7\r\n")[2])
    assert reply == {b"failure reason": b"your address is banned from this tracker"}
