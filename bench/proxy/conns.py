#!/usr/bin/env python3
"""Opens COUNT keep-alive client connections to HOST:PORT, sends one `GET /` on each and reads its answer,
then holds them all open, sending nothing more, for HOLD seconds, and exits by itself.

Used by bench/proxy.sh to measure a proxy's memory with many idle keep-alive client connections. Prints
`ready open=N answered=N failed=N seconds=S` (flushed) once every connection is open and answered (or has
failed), and `done held=N closed_by_peer=N` at the end. At most INFLIGHT connections are being opened or awaiting
their answer at once, so a short listen backlog does not turn into SYN retransmissions. The whole run is bounded:
the opening phase by --open-timeout, the hold by HOLD.

With --tls CA, each connection is HTTPS (ALPN http/1.1, server name --server-name), its certificate verified against
the CA certificate in the file CA.

With --h2, each connection speaks HTTP/2: with prior knowledge over plain TCP (h2c), by ALPN `h2` over TLS. The
client sends its preface, an empty SETTINGS frame and one GET on stream 1, acknowledges the server's SETTINGS, and
counts the connection answered once stream 1 has ended with `:status 200`; then it holds the connection, sending
nothing more (not even a PING).
"""

import argparse
import errno
import selectors
import socket
import ssl
import struct
import sys
import time

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS, H2_HEADERS, H2_DATA = 4, 1, 0
H2_END_STREAM, H2_ACK = 0x1, 0x1


def h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def h2_request(scheme: str) -> bytes:
    """The preface, an empty SETTINGS frame, and `GET /` on stream 1 (HPACK: indexed :method GET, :scheme, :path /,
    then :authority as a literal without indexing)."""
    authority = b"bench"
    block = bytes([0x82, 0x87 if scheme == "https" else 0x86, 0x84, 0x01, len(authority)]) + authority
    return H2_PREFACE + h2_frame(H2_SETTINGS, 0, 0) + h2_frame(H2_HEADERS, 0x4 | H2_END_STREAM, 1, block)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--hold", type=float, default=20.0, help="seconds to hold the connections once all are open")
    ap.add_argument("--inflight", type=int, default=200)
    ap.add_argument("--open-timeout", type=float, default=60.0)
    ap.add_argument(
        "--sources",
        type=int,
        default=1,
        help="spread the connections over source addresses 127.0.0.1 to 127.0.0.N (one address has ~28k ports)",
    )
    ap.add_argument("--tls", metavar="CA", help="speak TLS, verifying the server against this CA certificate (PEM)")
    ap.add_argument("--server-name", default="bench.test", help="the name the TLS server's certificate must have")
    ap.add_argument("--h2", action="store_true", help="speak HTTP/2 (h2c with prior knowledge, or ALPN h2 over TLS)")
    args = ap.parse_args()
    tls = None
    if args.tls:
        tls = ssl.create_default_context(cafile=args.tls)
        tls.set_alpn_protocols(["h2"] if args.h2 else ["http/1.1"])

    if args.h2:
        request = h2_request("https" if tls else "http")
    else:
        request = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: conns.py\r\n\r\n"
    sel = selectors.DefaultSelector()
    state = {}  # fd -> [sock, phase, buffer]
    held = []
    failed = 0
    started = 0
    deadline = time.monotonic() + args.open_timeout
    t0 = time.monotonic()

    def start_one():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if args.sources > 1:
            s.bind((f"127.0.0.{1 + started % args.sources}", 0))
        s.setblocking(False)
        err = s.connect_ex((args.host, args.port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            return False
        state[s.fileno()] = [s, "connecting", b"", None]
        sel.register(s, selectors.EVENT_WRITE)
        return True

    def drop(s):
        nonlocal failed
        failed += 1
        sel.unregister(s)
        del state[s.fileno()]
        s.close()

    def handshake(s, entry) -> bool:
        """Advances the TLS handshake; True once it is done."""
        try:
            s.do_handshake()
        except ssl.SSLWantReadError:
            sel.modify(s, selectors.EVENT_READ)
            return False
        except ssl.SSLWantWriteError:
            sel.modify(s, selectors.EVENT_WRITE)
            return False
        return True

    def send_request(s, entry):
        try:
            s.send(request)
        except OSError:
            drop(s)
            return
        entry[1] = "reading"
        sel.modify(s, selectors.EVENT_READ)

    def receive(s):
        """What the socket has now: bytes, b"" at its end, None when nothing yet (TLS records not complete)."""
        try:
            data = s.recv(65536)
        except ssl.SSLWantReadError:
            return None
        except OSError:
            return b""
        # A TLS socket may hold more decrypted bytes than one recv returned.
        while tls is not None and data and s.pending():
            data += s.recv(s.pending())
        return data

    def h2_answered(s, entry) -> bool | None:
        """Reads whole frames off entry's buffer (acknowledging SETTINGS); True once stream 1 ended with status
        200, False once it ended otherwise, None while it has not ended."""
        buf = entry[2]
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            kind, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            payload, buf = buf[9 : 9 + length], buf[9 + length :]
            if kind == H2_SETTINGS and not flags & H2_ACK:
                s.send(h2_frame(H2_SETTINGS, H2_ACK, 0))
            elif stream == 1 and kind == H2_HEADERS and not entry[3]:
                # :status 200 is index 8 of HPACK's static table; no padding or priority is asked for here.
                entry[3] = "ok" if payload[:1] == b"\x88" else "bad"
            if stream == 1 and kind in (H2_HEADERS, H2_DATA) and flags & H2_END_STREAM:
                entry[2] = buf
                return entry[3] == "ok"
        entry[2] = buf
        return None

    def answered(buf: bytes) -> bool:
        head, sep, body = buf.partition(b"\r\n\r\n")
        if not sep:
            return False
        length = None
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            return body.endswith(b"0\r\n\r\n")
        return len(body) >= (length or 0)

    while (started < args.count or state) and time.monotonic() < deadline:
        while started < args.count and len(state) < args.inflight:
            started += 1
            if not start_one():
                failed += 1
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            entry = state[s.fileno()]
            if entry[1] == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    drop(s)
                    continue
                if tls is None:
                    send_request(s, entry)
                    continue
                # Connected: TLS from here on, on the same descriptor.
                sel.unregister(s)
                del state[s.fileno()]
                try:
                    s = tls.wrap_socket(s, server_hostname=args.server_name, do_handshake_on_connect=False)
                except OSError:
                    failed += 1
                    s.close()
                    continue
                entry = [s, "handshaking", b"", None]
                state[s.fileno()] = entry
                sel.register(s, selectors.EVENT_WRITE)
            elif entry[1] == "handshaking":
                try:
                    done = handshake(s, entry)
                except OSError:
                    drop(s)
                    continue
                if done and args.h2 and s.selected_alpn_protocol() != "h2":
                    # The server did not agree to HTTP/2: a failed connection, not one to send a preface on.
                    drop(s)
                elif done:
                    send_request(s, entry)
            else:
                data = receive(s)
                if data is None:
                    continue
                if not data:
                    drop(s)
                    continue
                entry[2] += data
                if args.h2:
                    try:
                        status_ok = h2_answered(s, entry)
                    except OSError:
                        drop(s)
                        continue
                    done = status_ok is not None
                else:
                    done = answered(entry[2])
                    status_ok = entry[2].startswith(b"HTTP/1.1 200")
                if done:
                    sel.unregister(s)
                    del state[s.fileno()]
                    if status_ok:
                        held.append(s)
                    else:
                        failed += 1
                        s.close()
    for entry in state.values():  # did not finish in time
        failed += 1
        entry[0].close()
    state.clear()

    print(
        f"ready open={len(held)} answered={len(held)} failed={failed} seconds={time.monotonic() - t0:.1f}",
        flush=True,
    )

    # Hold: watch for connections the server closes (readable with EOF) while sending nothing.
    for s in held:
        sel.register(s, selectors.EVENT_READ)
    closed = 0
    end = time.monotonic() + args.hold
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=max(0.0, min(0.5, end - time.monotonic()))):
            s = key.fileobj
            data = receive(s)
            if data is not None and not data:
                closed += 1
                sel.unregister(s)
    print(f"done held={len(held) - closed} closed_by_peer={closed}", flush=True)
    for s in held:
        s.close()
    return 0 if failed == 0 and closed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
