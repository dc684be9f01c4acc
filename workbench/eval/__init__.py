"""Evaluation shared by the papers: perplexity, zero-shot tasks, chat judging."""
