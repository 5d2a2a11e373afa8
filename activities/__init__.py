"""Every side effect of a write, one Temporal activity per step.

``command_steps`` holds the cheap, pure steps (run as local activities); ``ehr_writes`` the EHR
steps of a write and ``sweep_reads`` those of a reconciliation sweep (regular activities, retried
by Temporal under the error taxonomy in ``errors``). Every EHR request goes through
``ehr_client``.
"""
