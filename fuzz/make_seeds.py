#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (run from anywhere).

Seeds are small valid inputs that start the fuzzers deep in each parser:
datagrams of protocol version 1 (docs/protocol.md; layout as in
src/wire/header.cpp) for fuzz_wire, framed datagram sequences for fuzz_engine
(layout in fuzz/fuzz_engine.cpp), membership message bodies for
fuzz_membership and config files for fuzz_config. The output
is deterministic; the generated files are committed, so rerun this only when
the protocol or the harness input layout changes.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# Message types and flags (src/wire/header.hpp).
REQUEST, RESPONSE, IN_PROGRESS, FRAGMENT_ACK, STATUS_QUERY, UNKNOWN_CALL = 1, 2, 3, 4, 5, 6
PING, GOSSIP = 16, 17
FLAG_AUTH, FLAG_FOR_RESPONSE = 1, 2
ACK_SIZE = 4 + 256 // 8

PEER_NODE = 77                   # node id of the fuzz_engine peer
PEER_IP, PEER_PORT = 0x0A000002, 7000


def header(mtype, payload, message_id=1, index=0, count=1, total=None, flags=0,
           node_id=PEER_NODE, deadline_us=0):
    """The 56-byte header followed by the payload."""
    if total is None:
        total = len(payload)
    h = struct.pack("<HBBHHQIHHQIIIHHII", 0x4252, 1, mtype, flags, 0, node_id, PEER_IP,
                    PEER_PORT, 0, message_id, index, count, total, len(payload), 0,
                    deadline_us, 0)
    assert len(h) == 56
    return h + payload


def mp_str(s):
    b = s.encode()
    if len(b) < 32:
        return bytes([0xA0 | len(b)]) + b
    if len(b) < 256:
        return bytes([0xD9, len(b)]) + b
    return bytes([0xDA]) + struct.pack(">H", len(b)) + b


def mp_bin(b):
    return bytes([0xC6]) + struct.pack(">I", len(b)) + b


def mp(v):
    """MessagePack of a Python value (None, bool, int >= 0, str, list, dict)."""
    if v is None:
        return b"\xc0"
    if v is True or v is False:
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        if v < 128:
            return bytes([v])
        if v < 1 << 8:
            return b"\xcc" + struct.pack(">B", v)
        if v < 1 << 16:
            return b"\xcd" + struct.pack(">H", v)
        if v < 1 << 32:
            return b"\xce" + struct.pack(">I", v)
        return b"\xcf" + struct.pack(">Q", v)
    if isinstance(v, str):
        return mp_str(v)
    if isinstance(v, list):
        assert len(v) < 16
        return bytes([0x90 | len(v)]) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        assert len(v) < 16
        return bytes([0x80 | len(v)]) + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)


def request_body(service, args):
    """[service, args]; args is an already packed array."""
    return b"\x92" + mp_str(service) + args


def response_ok(result):
    return b"\x92\x00" + result


def response_error(code, message):
    return b"\x92" + bytes([code]) + mp_str(message)


def fragment_ack(cumulative, sack_indices=()):
    sack = bytearray(32)
    for i in sack_indices:
        sack[i // 8] |= 1 << (i % 8)
    return struct.pack("<I", cumulative) + bytes(sack)


def fragments(mtype, body, size, message_id, flags=0, deadline_us=0):
    """The datagrams of one message split into fragments of `size` bytes."""
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    return [header(mtype, p, message_id, i, len(parts), len(body), flags,
                   deadline_us=deadline_us) for i, p in enumerate(parts)]


def engine_input(setup, datagrams):
    """fuzz_engine framing: setup byte, then (gap ms, len u16 LE, bytes)."""
    out = bytes([setup])
    for gap, d in datagrams:
        out += bytes([gap]) + struct.pack("<H", len(d)) + d
    return out


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def wire_seeds():
    echo = request_body("echo", b"\x92\x01\xa1x")  # ["echo", [1, "x"]]
    big = request_body("echo", b"\x91" + mp_bin(bytes(range(256)) * 12))
    frags = fragments(REQUEST, big, 1024, 5)
    seeds = {
        "request": header(REQUEST, echo, deadline_us=2_000_000),
        "response_ok": header(RESPONSE, response_ok(b"\xa5hello")),
        "response_error": header(RESPONSE, response_error(5, "no such service")),
        "fragment_first": frags[0],
        "fragment_last": frags[-1],
        "fragment_ack": header(FRAGMENT_ACK, fragment_ack(3, [1, 4, 200])),
        "fragment_ack_response": header(FRAGMENT_ACK, fragment_ack(0, [0, 2]),
                                        flags=FLAG_FOR_RESPONSE),
        "status_query": header(STATUS_QUERY, b""),
        "in_progress": header(IN_PROGRESS, b""),
        "unknown_call": header(UNKNOWN_CALL, b""),
        "ping": header(PING, b"\x93\x01\x02\x03"),
        "auth_flag": header(REQUEST, echo, flags=FLAG_AUTH) + bytes(16),
        # Bare payloads (no header): the decoders also run on the whole input.
        "payload_request": echo,
        "payload_response_nested": response_ok(b"\x82\xa1a\x93\x01\x02\x03\xa1b\x81\xa1c\xc0"),
        "payload_str16": request_body("s" * 300, b"\x90"),
    }
    for name, data in seeds.items():
        write("fuzz_wire", name, data)


def engine_seeds():
    calls = 0x03          # call 1 (small) and call 2 (15 fragments) to the peer
    delayed = 0x07        # and the handler answers 30 ms late
    echo = request_body("echo", b"\x91\x07")
    big_req = request_body("echo", b"\x91" + mp_bin(bytes(3000)))
    req_frags = fragments(REQUEST, big_req, 1400, 10, deadline_us=500_000)
    resp_frags = fragments(RESPONSE, response_ok(mp_bin(bytes(2500))), 1400, 1)
    seeds = {
        # A request, its duplicate, and a status query for it.
        "request_dup_query": engine_input(0, [
            (0, header(REQUEST, echo, 3, deadline_us=1_000_000)),
            (5, header(REQUEST, echo, 3, deadline_us=1_000_000)),
            (40, header(STATUS_QUERY, b"", 3)),
        ]),
        # A running (delayed) request: duplicates get kInProgress.
        "request_in_progress": engine_input(delayed, [
            (0, header(REQUEST, echo, 4)),
            (1, header(REQUEST, echo, 4)),
            (1, header(STATUS_QUERY, b"", 4)),
        ]),
        # A three-fragment request, out of order, one fragment repeated.
        "fragmented_request": engine_input(0, [
            (0, req_frags[2]), (1, req_frags[0]), (1, req_frags[0]), (2, req_frags[1]),
            (3, header(STATUS_QUERY, b"", 10)),
        ]),
        # A fragmented response to call 1, and acks for call 2's request.
        "responses_and_acks": engine_input(calls, [
            (1, resp_frags[1]), (1, resp_frags[0]),
            (2, header(FRAGMENT_ACK, fragment_ack(4, [1, 2, 5]), 2)),
            (2, header(FRAGMENT_ACK, fragment_ack(15), 2)),
            (3, header(IN_PROGRESS, b"", 2)),
            (80, header(RESPONSE, response_error(7, "handler threw"), 2)),
        ]),
        # Call 1 answered at once; call 2 told "unknown" (resend) then answered.
        "unknown_then_response": engine_input(calls, [
            (2, header(RESPONSE, response_ok(b"\x07"), 1)),
            (2, header(UNKNOWN_CALL, b"", 2)),
            (30, header(FRAGMENT_ACK, fragment_ack(15), 2)),
            (5, header(RESPONSE, response_ok(b"\xc0"), 2)),
        ]),
        # A request for a fragmented response, acked selectively by the peer.
        "big_response_acks": engine_input(0, [
            (0, header(REQUEST, request_body("big", b"\x90"), 20)),
            (2, header(FRAGMENT_ACK, fragment_ack(0, [0, 1, 3]), 20, flags=FLAG_FOR_RESPONSE)),
            (2, header(FRAGMENT_ACK, fragment_ack(40), 20, flags=FLAG_FOR_RESPONSE)),
            (20, header(REQUEST, request_body("big", b"\x90"), 20)),
        ]),
        # Errors: not found, a failing handler, an oversized response, a bad body.
        "errors": engine_input(0, [
            (0, header(REQUEST, request_body("nope", b"\x90"), 30)),
            (0, header(REQUEST, request_body("fail", b"\x90"), 31)),
            (0, header(REQUEST, request_body("huge", b"\x90"), 32)),
            (0, header(REQUEST, b"\x92\xa4echo\x01", 33)),
            (0, header(REQUEST, echo, 34, total=1 << 21, count=2048)),
        ]),
    }
    for name, data in seeds.items():
        write("fuzz_engine", name, data)


def membership_seeds():
    # Update: [state, ip, port, life, incarnation, from_ip, from_port, meta|nil],
    # meta: [name, version, [services], weight, {tags}] (src/membership/messages.hpp).
    meta = ["BroachRpc", "1.0.0", ["add", "echo"], 100, {"zone": "a"}]
    alive = [0, 0x0A000002, 7000, 1732400000000, 3, 0, 0, meta]
    suspect = [1, 0x0A000003, 7001, 1732400000123, 5, 0x0A000002, 7000, None]
    dead = [2, 0x0A000004, 7002, 1732400000456, 1, 0x0A000002, 7000, meta]
    left = [3, 0x0A000005, 7003, 1732400000789, 9, 0, 0, None]
    seeds = {
        "ping": mp([1, 7, None, [alive, suspect]]),
        "ack": mp([2, 7, None, []]),
        "ping_req": mp([3, 8, [0x0A000003, 7001], [dead]]),
        "nack": mp([4, 8, None, [left]]),
        "gossip": mp([5, 0, None, [alive, suspect, dead, left]]),
        "push_pull_join": mp([True, [alive]]),
        "push_pull": mp([False, [alive, suspect, dead, left]]),
    }
    for name, data in seeds.items():
        write("fuzz_membership", name, data)


def config_seeds():
    full = {
        "name": "BroachRpc", "version": "1.0.0", "logLevel": "info",
        "params": {
            "rpcPort": 18080, "rpcIp": "127.0.0.1",
            "clusterAddress": ["127.0.0.1:18081", "10.0.0.2:18080"],
            "rpcTimeOut": 6, "udpTimeOut": 3,
            "threadPool": {"core": 3, "threadMax": 15, "keepAliveTime": 9, "queueMax": 1000,
                           "isExcInfo": "False", "createThreadThreshold": 2},
            "broach": {"transport": {
                "maxDatagramBytes": 1472, "maxMessageBytes": 67108864, "sendWindow": 128,
                "rtoInitialMs": 20, "rtoMinMs": 2, "rtoMaxMs": 1000,
                "dedupMaxEntries": 100000, "dedupMaxBytes": 67108864,
                "reassemblyMaxBytesPerPeer": 134217728, "reassemblyMaxBytesTotal": 536870912,
                "socketBufferBytes": 4194304}},
        },
    }
    seeds = {
        "full.json": json.dumps(full, indent=2),
        "minimal.json": '{"name": "svc", "params": {"rpcPort": 0}}',
        "unknown_keys.json": '{"name": "svc", "extra": 1, "params": {"threadPool": {"x": true}}}',
        "bad_values.json": '{"params": {"rpcIp": "1.2.3.256", "rpcTimeOut": -1, '
                           '"clusterAddress": ["a:1"]}}',
        "flags.json": '{"logLevel": "WARNING", "params": {"threadPool": {"isExcInfo": true, '
                      '"core": 2, "threadMax": 2}}}',
    }
    for name, text in seeds.items():
        write("fuzz_config", name, text.encode())


if __name__ == "__main__":
    wire_seeds()
    engine_seeds()
    membership_seeds()
    config_seeds()
