"""The one home of test helpers; each is written once and imported as ``support.<module>``.

- ``aio``: run a coroutine with a deadline, an in-process gateway on loopback
- ``cli``: run ``glasses-agent`` / ``glasses-models`` in a fresh interpreter, one-line errors
- ``daemon``: a server program (redis-server, haproxy) in a folder, with its log
- ``faultproxy``: a TCP proxy that drops, stalls and cuts connections
- ``gateway_proc``: the gateway as a real child process (its /healthz and /metrics)
- ``haproxy_proc``: HAProxy running ``deploy/haproxy.cfg`` in front of replicas
- ``images``: photos, rendered signs, barcodes and QR codes, videos
- ``net``: ``free_port``
- ``rawsock``: a hand-written websocket client for hostile-client tests
- ``redis_proc``: a real ``redis-server`` (``deploy/redis.conf``) on a free port
- ``replicas``: gateway replicas as processes sharing one Redis
- ``speech``: spoken questions (espeak-ng, flite), composed recordings, WAV files
- ``wire``: raw websocket access, for messages a good client would not send

Fixtures shared by several modules (the speech recogniser) are in ``tests/conftest.py``.
"""
