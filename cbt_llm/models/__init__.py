"""Loading models and tokenizers, the offline tiny model, and a local OpenAI-compatible server."""
