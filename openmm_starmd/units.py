"""Unit constants. Inside the package: nm, ps, ns for strides; converted once at the boundary."""

ANGSTROM_PER_NM = 10.0
NM_PER_ANGSTROM = 0.1
PS_PER_NS = 1000.0
