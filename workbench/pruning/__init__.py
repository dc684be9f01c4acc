"""BlockPruner: fine-grained block pruning of LLMs (Findings ACL 2025, arXiv 2406.10594)."""
