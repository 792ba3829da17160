#!/usr/bin/env python3
"""One Envoy flush into a fresh gateway: N new stats, each its own datagram, sent as one
burst (as Envoy's statsd sink sends them), on loopback.

Usage: scripts/bench-envoy-burst.py BINARY N [GATEWAY FLAGS...]

Prints the datagrams sent and received, statsd_exporter_udp_packet_drops_total, and the
kernel's drop count for the gateway's socket (/proc/net/udp); the last two must be equal.
"""

import re
import socket
import subprocess
import sys
import time
import urllib.request

STATS = [
    ("upstream_rq_total", "c"),
    ("upstream_cx_active", "g"),
    ("upstream_rq_time", "ms"),
    ("membership_healthy", "g"),
    ("upstream_cx_connect_ms", "ms"),
]


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def kernel_drops(port):
    local = "0100007F:%04X" % port
    lines = open("/proc/net/udp").read().splitlines()[1:]
    return sum(int(f[12]) for f in map(str.split, lines) if f[1] == local)


def main():
    binary, n, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    web, udp = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_DGRAM)
    gateway = subprocess.Popen(
        [
            binary,
            f"--web.listen-address=127.0.0.1:{web}",
            f"--statsd.listen-udp=127.0.0.1:{udp}",
            "--statsd.listen-tcp=",
            "--statsd.udp-sockets=1",
            *extra,
        ],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{web}/metrics"

    def scrape():
        body = urllib.request.urlopen(url).read().decode()
        value = lambda name: int(float(re.search(rf"^{name} (\S+)$", body, re.M).group(1)))
        return value("statsd_exporter_udp_packets_total"), value(
            "statsd_exporter_udp_packet_drops_total"
        )

    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(url)
                break
            except OSError:
                time.sleep(0.05)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(n):
            stat, kind = STATS[i % len(STATS)]
            service = i // len(STATS)
            line = f"envoy.cluster.outbound|9080||svc{service}.default.svc.cluster.local.{stat}:1|{kind}"
            sender.sendto(line.encode(), ("127.0.0.1", udp))
        deadline = time.time() + 30
        while True:
            received, drops = scrape()
            if received + drops >= n or time.time() > deadline:
                break
            time.sleep(0.1)
        flags = " ".join(extra) or "(defaults)"
        print(
            f"{flags}: sent {n}, received {received}, "
            f"drops_total {drops}, kernel drops {kernel_drops(udp)}"
        )
    finally:
        gateway.kill()
        gateway.wait()


if __name__ == "__main__":
    main()
