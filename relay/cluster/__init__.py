"""Many relay processes on one machine: ``relay serve --workers N``.

A supervisor (:mod:`relay.cluster.supervisor`) starts N worker processes, each an ordinary
``relay serve`` with its own calls, event loop and UDP sockets; they share the HTTP port
through ``SO_REUSEPORT``, so the kernel spreads new connections between them. The
supervisor restarts a worker that dies, forwards SIGTERM and SIGINT so every worker
drains (relay/server/drain.py), and owns a private runtime directory its workers share.
"""
