"""Vendor knowledge: tenant profiles, FHIR validation rules and one adapter per EHR vendor.

Nothing here performs I/O except reading the tenant file; it imports nothing above it.
"""
