"""DDPG mixed-precision bit-width search (CIM-AQ) and the training CLI ``cimc-rl``."""
