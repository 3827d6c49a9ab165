"""LoRA fine-tuning with TRL and PEFT from YAML recipes, and merging an adapter into its base."""
