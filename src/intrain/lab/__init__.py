"""`intrain lab`: the paper's analyses on a problem family whose every intermediate value is known.

With ground truth (`intrain.truth`) each claim can be checked exactly: whether an intervention helps a
continuation (table1), apart from how good the proposer is (the oracle proposer and its noise knobs).
"""
