"""Answers from OpenAI-compatible teachers: generate, batch, annotate, the quality check and near-duplicates."""
