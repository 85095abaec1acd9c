"""Hardware-in-the-loop harness: fault plans, the network-namespace target, the fault proxy and the plan runner.

It sits on top of the product (imports edge/ and shared/); nothing but tests and the CLI imports it.
"""
