"""Offline training: BPTT, OTTT and S-TLLR."""
