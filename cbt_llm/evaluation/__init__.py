"""Predictions, metrics for Chinese, the CBT-structure score, the LLM judge and the report."""
