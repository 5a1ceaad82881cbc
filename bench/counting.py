"""Shared by the training benches: count real (attention_mask = 1) and computed tokens per step."""


class CountsPaddedTokens:
    """Mixin for a transformers Trainer fed padded batches with an attention mask."""

    real_tokens = 0
    computed_tokens = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self.real_tokens += int(inputs["attention_mask"].sum())
            self.computed_tokens += inputs["input_ids"].numel()
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
