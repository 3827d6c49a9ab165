"""Answers from OpenAI-compatible teachers: the client, the resumable runner, generate, batch, annotate and the quality checks."""
