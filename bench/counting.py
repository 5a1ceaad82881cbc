"""Shared by the training benches: count real (attention_mask = 1) and computed tokens per step."""


class CountsPaddedTokens:
    """Mixin for a transformers Trainer fed padded batches with an attention mask, or padding-free rows."""

    real_tokens = 0
    computed_tokens = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            mask = inputs.get("attention_mask")
            # Padding-free (TRL's BFD packing): one flattened row, no mask, and no padding off Neuron
            # (pad_to_multiple_of="auto" pads only there), so every position is a real token.
            self.real_tokens += int(mask.sum()) if mask is not None else inputs["input_ids"].numel()
            self.computed_tokens += inputs["input_ids"].numel()
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
