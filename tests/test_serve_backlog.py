"""The server's listen backlog holds a burst of new connections (socketserver's default of 5
dropped SYNs: clients saw resets and 1/2/3 s retransmit stalls)."""

from __future__ import annotations

import socket

import ops_support as S
from sentiloop.bundle import Bundle, build_bundle
from sentiloop.serve import PredictionService, make_server


def test_a_burst_of_128_connections_is_queued_not_dropped(tmp_path):
    S.fit_lexicon(S.corpus(10)).save(tmp_path / "lexicon")
    build_bundle(
        tmp_path / "bundle",
        member_dirs={"lexicon": tmp_path / "lexicon"},
        weights=None,
        classes=S.CLASSES,
        language="en",
    )
    server = make_server(PredictionService(Bundle.load(tmp_path / "bundle")), port=0)
    socks = []
    try:  # nobody accepts yet: every handshake must wait in the backlog
        for _ in range(128):
            s = socket.create_connection(server.server_address[:2], timeout=0.5)
            socks.append(s)
    finally:
        for s in socks:
            s.close()
        server.server_close()
    assert len(socks) == 128
