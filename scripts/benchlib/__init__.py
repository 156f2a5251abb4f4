"""Pieces of ``scripts/bench``: the WebRTC audio echo benchmark.

Modules, one concept each:

- ICE stays on 127.0.0.1 through ``relay.webrtc.peer.restrict_host_addresses``
- ``audio``     the pre-encoded Opus click train and click detection in decoded audio
- ``metrics``   sans-I/O statistics over recorded RTP arrivals and click times
- ``procstat``  CPU time and RSS of a process tree, from /proc
- ``baseline``  the two baseline echo servers (bare, right-sized frames)
- ``load``      the load process: N headless aiortc client sessions
- ``runner``    starts, pins, drives and stops the processes of one benchmark run
- ``capacity``  ``--capacity``: the ramp to the most calls each ``--workers`` count holds
- ``floor``     a call's audio work alone (decode, encode, SRTP), as CPU per call
- ``report``    the table, the JSON file and the PNG plot
"""
