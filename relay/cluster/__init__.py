"""Many relay processes as one.

On one machine, ``relay serve --workers N``: a supervisor (:mod:`.supervisor`) starts N
worker processes, each an ordinary ``relay serve`` with its own calls, event loop and UDP
sockets; they share the HTTP port through ``SO_REUSEPORT``, so the kernel spreads new
connections between them. The supervisor restarts a worker that dies, forwards SIGTERM and
SIGINT so every worker drains (relay/server/drain.py), and owns a private runtime directory
its workers share.

Across processes and machines: call ids that name their owner (:mod:`.ids`), the directory
that finds the owner (:mod:`.directory`: the supervisor's runtime directory, or Redis),
forwarding of follow-up requests to it (:mod:`.forward`), and limits counted across every
process (:mod:`.limits`); :mod:`.node` holds one process's part in all of it.
"""
