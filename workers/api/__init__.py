"""``writeback api``: the HTTP front door (README, "HTTP API"). One small module per job:

- ``app.py``: the app factory ``create_app`` and the process's lifespan (Temporal connection);
- ``config.py``: the API's config file (issuer, audience, JWKS, clients, limits);
- ``auth.py``: bearer tokens (JWT), SMART v2 scopes, the client's tenants: the ``Principal``;
- ``rate_limit.py``: per-client token buckets (429 + Retry-After);
- ``outcomes.py``: every error as a FHIR OperationOutcome, built in one place;
- ``fhir_body.py``: reading a FHIR JSON body (413, 415, 400) and FHIR-style headers;
- ``idempotency.py``: the Idempotency-Key header, content-derived keys, the request digest;
- ``submission.py``: starting a write (validated at the door first) and the 201/202 answer;
- ``fhir_routes.py``: ``POST /fhir/{tenant}/{Type}``, ``PUT /fhir/{tenant}/{Type}/{id}``;
- ``bundle_routes.py``: ``POST /fhir/{tenant}`` (a transaction Bundle as a saga, a batch as writes)
  and ``GET /writes/{id}/transaction-response``;
- ``write_routes.py``: ``GET /writes/{id}``, ``GET /review``, ``POST /writes/{id}/$resolve``;
- ``state.py``: what every route shares (client, tenants, keys, verifier, limiter);
- ``dev_setup.py``: the dev stack's issuer, JWKS, API caller key, clients and caller registry;
- ``bundles.py``, ``bundle_references.py``, ``bundle_problem.py``, ``bundle_responses.py``: FHIR
  transaction and batch Bundles as sagas and writes, and their response Bundles (pure translation
  functions, which ``bundle_routes.py`` serves).
"""
