"""Sandbox EHR: a real HTTP FHIR R4 server persisted in SQLite.

It is a separate world from the product: the product only talks to it over HTTP
and must never import it. Each tenant (``/fhir/{tenant}/``) behaves like one EHR
vendor ("personality") and can have faults injected through ``/_admin/faults``.
"""
