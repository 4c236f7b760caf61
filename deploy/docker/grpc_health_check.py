#!/usr/bin/env python3
"""grpc.health.v1 Check over plaintext HTTP/2, with nothing but Python's standard library.

The container's HEALTHCHECK: Debian has no grpc-health-probe package and zigzag-cli has no health
command, and pulling python3-grpcio into the runtime image for one call would be heavy. A
health Check is one tiny unary call, so this speaks just enough HTTP/2 (RFC 9113) to make it:
connection preface, SETTINGS, one HEADERS frame (HPACK literals, no Huffman, no dynamic table) and
one DATA frame carrying HealthCheckRequest{service}. It does not decode the server's headers: a
gRPC reply with a message is a DATA frame holding HealthCheckResponse, and status SERVING is the
bytes 08 01. Anything else (no message, another status, a reset, a timeout) is unhealthy.

  grpc_health_check.py [HOST:PORT] [SERVICE] [TIMEOUT_S]
  default 127.0.0.1:50051, "zigzag.v1.Engine" (ready; "" = live), 3 seconds.
Exit 0 when SERVING, 1 otherwise (the reason on stderr).
"""

import socket
import struct
import sys
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x6, 0x7
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", stream) + payload


def hpack_int(value, prefix_bits, first_byte=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte | value])
    out = [first_byte | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name, value):
    # "Literal Header Field without Indexing -- New Name" (0x00), raw (non-Huffman) strings.
    name, value = name.encode(), value.encode()
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def check(target, service, timeout):
    host, _, port = target.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        headers = b"".join(hpack_literal(n, v) for n, v in (
            (":method", "POST"), (":scheme", "http"), (":path", "/grpc.health.v1.Health/Check"),
            (":authority", target), ("content-type", "application/grpc"), ("te", "trailers"),
            ("grpc-timeout", f"{max(1, int(timeout * 1000))}m")))
        message = b"\x0a" + varint(len(service.encode())) + service.encode() if service else b""
        body = b"\x00" + struct.pack(">I", len(message)) + message
        sock.sendall(PREFACE + frame(SETTINGS, 0, 0) +
                     frame(HEADERS, END_HEADERS, 1, headers) + frame(DATA, END_STREAM, 1, body))
        buffer, data = b"", b""
        while True:
            while len(buffer) >= 9:
                length = int.from_bytes(buffer[:3], "big")
                if len(buffer) < 9 + length:
                    break
                kind, flags = buffer[3], buffer[4]
                stream = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
                payload, buffer = buffer[9:9 + length], buffer[9 + length:]
                if kind == SETTINGS and not flags & ACK:
                    sock.sendall(frame(SETTINGS, ACK, 0))
                elif kind == PING and not flags & ACK:
                    sock.sendall(frame(PING, ACK, 0, payload))
                elif kind == GOAWAY:
                    return False, "the server sent GOAWAY"
                elif kind == RST_STREAM and stream == 1:
                    return False, "the server reset the stream"
                elif kind == DATA and stream == 1:
                    data += payload
                    if len(data) >= 5:
                        size = int.from_bytes(data[1:5], "big")
                        if len(data) >= 5 + size:
                            reply = data[5:5 + size]
                            if reply == b"\x08\x01":
                                return True, "SERVING"
                            status = reply[1] if len(reply) == 2 and reply[0] == 0x08 else None
                            names = {0: "UNKNOWN", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
                            return False, names.get(status, f"unexpected reply {reply.hex()}")
                if stream == 1 and kind in (DATA, HEADERS) and flags & END_STREAM:
                    return False, "no health status in the reply (unknown service?)"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False, "timed out"
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                return False, "the server closed the connection"
            buffer += chunk


def main(argv):
    target = argv[1] if len(argv) > 1 else "127.0.0.1:50051"
    service = argv[2] if len(argv) > 2 else "zigzag.v1.Engine"
    timeout = float(argv[3]) if len(argv) > 3 else 3.0
    try:
        healthy, why = check(target, service, timeout)
    except (OSError, ValueError) as error:
        healthy, why = False, str(error)
    if not healthy:
        print(f"grpc_health_check {target} '{service}': {why}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
