"""Toxic span detection, YNU-HPCC at SemEval-2021 Task 5."""
