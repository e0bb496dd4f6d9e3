"""Measurement side of the harness: statistics, the result file schema, the paper's reference
table and console reports. Kept free of KVM code so results can be read and compared anywhere."""
