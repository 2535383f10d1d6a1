"""`python -m bench.chaos`: the chaos soak.

A standalone mesh of real processes (two of every service over one PostgreSQL and one
SeaweedFS, `tests/support/replicas.py`) carries a mixed load (uploads, some cut on purpose
and resumed; live WebSocket sessions; SSE subscribers; CRUD) while one process is
SIGKILLed every `--kill-every-s` seconds and started again on its port: a kind at a time,
round-robin over a shuffled order of the kinds (PostgreSQL, gpu-node, gpu-proxy,
meeting-service, gateway), a random replica of the kind. The checks at the end are in
`bench.chaos.checks`; docs/bench.md ("Chaos soak") describes the whole run.
"""
