"""The edge, the glasses' own deployable: sources, hearing, seeing, the router, the
client of the cloud gateway, and the runtime that joins them.

Importing anything here never imports the gateway or its server-only dependencies
(a test checks it in a fresh interpreter).
"""
