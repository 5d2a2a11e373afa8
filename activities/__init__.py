"""Every side effect of a write, one Temporal activity per step.

``command_steps`` holds the cheap, pure steps (run as local activities); ``ehr_steps`` the EHR
I/O (regular activities, retried by Temporal under the error taxonomy in ``errors``).
"""
