"""transformers' ``Trainer`` for the reader, evaluating windows in their order.

With ``train_sampling_strategy="group_by_length"`` (less padding, so faster on a CPU) transformers also groups the
evaluation set by length, shuffling it; decoding needs each question's windows in order.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Sampler, SequentialSampler
from transformers import Trainer


class QuestionAnsweringTrainer(Trainer):
    def _get_eval_sampler(self, eval_dataset: Any) -> Sampler | None:
        return SequentialSampler(eval_dataset)
