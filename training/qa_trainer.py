"""transformers' ``Trainer`` for the reader: evaluating windows in their order, and learning from teachers' soft
targets as well as the gold spans when distilling.

With ``train_sampling_strategy="group_by_length"`` (less padding, so faster on a CPU) transformers also groups the
evaluation set by length, shuffling it; decoding needs each question's windows in order.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Sampler, SequentialSampler
from transformers import Trainer

from training.distillation import TEACHER_KEYS, Distillation, soft_target_loss


class QuestionAnsweringTrainer(Trainer):
    def __init__(self, *args: Any, distillation: Distillation | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.distillation = distillation

    def _get_eval_sampler(self, eval_dataset: Any) -> Sampler | None:
        return SequentialSampler(eval_dataset)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """The gold spans' loss, mixed with the teachers' soft-target loss on training windows that carry them."""
        teacher = [inputs.pop(key) for key in TEACHER_KEYS if key in inputs]
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if teacher and self.distillation is not None:
            soft = soft_target_loss(outputs.start_logits, outputs.end_logits, *teacher, self.distillation.temperature)
            loss = (1 - self.distillation.weight) * loss + self.distillation.weight * soft
        return (loss, outputs) if return_outputs else loss
