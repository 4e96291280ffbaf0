"""Guests' memory: what each one really uses (`dom0 mem`), moving a balloon (`dom0 mem set`), and how many more
guests fit (`dom0 plan`). `dom0 doctor` (dom0.doctor) builds on the same readings."""
