"""Backbones: one interface, input_ids (B, L) [+ attention_mask] -> logits (B, L, V)."""
