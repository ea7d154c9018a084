"""Shadow traffic: compare the candidate's answers with the primary's, off the client's path.

- `compare`: pure diff engine (status, headers, JSON/text/binary bodies, per-route rules)
- `noise`: Diffy's noise cancellation (raw vs primary-vs-primary counts per field)
- `mirror`: `ShadowMirror`, the per-route bounded queues and workers the handler submits to
- `store`: diff stores (SQLite default, Redis for several replicas)
- `report`: aggregation and text/JSON/HTML rendering; `cli`: `strangler report`

See docs/shadow.md.
"""
