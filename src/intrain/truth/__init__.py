"""Ground truth for the arithmetic family: where an attempt first goes wrong, and what fixes it.

`expressions` evaluates arithmetic in free text (never with `eval`) and finds its equations;
`arithmetic` compares an attempt with the problem's chain of operations; `oracle` writes faulty
attempts and the proposer output a perfect (or controllably noisy) verifier would give.
"""
