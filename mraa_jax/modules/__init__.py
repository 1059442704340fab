"""Flax modules of MRAA, one file per paper component."""
