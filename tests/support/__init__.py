"""Helpers for the protocol, gateway and reliability tests (real sockets, loopback only)."""
