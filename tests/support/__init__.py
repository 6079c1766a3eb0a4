"""Test helpers: real peers, certificates, scripted peers, routing checks."""
