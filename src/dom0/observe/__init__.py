"""Seeing guests: list and top's samples, explanations of states and Xen's device numbers, the support bundle."""
