"""SEFT: self-evolution fine-tuning for policy optimization (Findings EMNLP 2024)."""
