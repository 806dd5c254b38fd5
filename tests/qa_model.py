"""A tiny question-answering model trained for seconds on generated facts, so reader tests need no download.

Contexts hold filler sentences and, most of the time, one fact "The code of <name> is <number>."; the question
is "What is the code of <name>?". Contexts without the fact teach the no-answer (CLS) output, SQuAD 2.0 style.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

NAMES = ["alice", "bruno", "chen", "dmitri", "elena", "farid", "greta", "hiro", "ines", "jonas", "kofi", "lena",
         "marco", "nadia", "oscar", "priya", "quentin", "rosa", "sven", "tariq", "ulla", "viktor", "wen", "yusuf"]
FILLER = ["The weather was mild that week.", "Meetings start after lunch on Mondays.",
          "The office kitchen was cleaned yesterday.", "Parking is free for visitors.",
          "Everyone likes the new coffee machine.", "The library closes early in summer.",
          "Trains to the city leave every hour.", "The garden has roses and tulips."]


def fact(name: str, code: int) -> str:
    return f"The code of {name} is {code}."


def question(name: str) -> str:
    return f"What is the code of {name}?"


def examples(count: int, seed: int = 0, max_filler: int = 3) -> list[tuple[str, str, str | None]]:
    """(question, context, answer or None) triples; contexts hold 1 to ``max_filler`` filler sentences."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        name = rng.choice(NAMES)
        sentences = [rng.choice(FILLER) for _ in range(rng.randint(1, max_filler))]
        answer = str(rng.randint(100, 9999)) if rng.random() < 0.75 else None
        if answer is not None:
            sentences.insert(rng.randint(0, len(sentences)), fact(name, int(answer)))
        out.append((question(name), " ".join(sentences), answer))
    return out


def write_squad(path: Path, count: int, seed: int = 0, titles: int = 4) -> Path:
    """A SQuAD 2.0 file of ``count`` generated questions, one paragraph each, spread over ``titles`` articles."""
    articles: list[dict] = [{"title": f"article {number}", "paragraphs": []} for number in range(titles)]
    for number, (text, context, answer) in enumerate(examples(count, seed)):
        qa: dict = {"id": f"{seed}-{number}", "question": text, "is_impossible": answer is None, "answers": []}
        if answer is not None:
            qa["answers"] = [{"text": answer, "answer_start": context.index(f" is {answer}.") + 4}]
        articles[number % titles]["paragraphs"].append({"context": context, "qas": [qa]})
    path.write_text(json.dumps({"version": "v2.0", "data": articles}), encoding="utf-8")
    return path


def save_tiny_bert(folder: Path, tokenizer_path: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer BERT with the MiniLM tokenizer: a base to train a reader or reranker from."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def save_random_reader(folder: Path, tokenizer: Any, architecture: str = "bert", seed: int = 0) -> Path:
    """A randomly initialised 1-layer question-answering model (``bert`` or ``roberta``) with ``tokenizer``, saved
    to ``folder``: for tests of how the reader reads (inputs, padding, offsets), not of what it answers."""
    import torch
    from transformers import BertConfig, BertForQuestionAnswering, RobertaConfig, RobertaForQuestionAnswering

    torch.manual_seed(seed)
    shape = {"vocab_size": len(tokenizer), "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 64, "pad_token_id": tokenizer.pad_token_id}
    if architecture == "roberta":  # its positions start after the padding token's id
        model = RobertaForQuestionAnswering(RobertaConfig(**shape, max_position_embeddings=514 + shape["pad_token_id"]))
    else:
        model = BertForQuestionAnswering(BertConfig(**shape))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def train_tiny_reader(folder: Path, tokenizer_path: Path, steps: int = 300, seed: int = 0) -> Path:
    """Train a 2-layer BERT question-answering model and save it (with a fast tokenizer) to ``folder``.

    It learns from windows cut the way the reader cuts them (64 tokens, stride 16, for contexts of up to 12
    sentences), so an answer near a window's edge, or in no window at all, is seen in training. One thread and
    deterministic kernels make the model the same from run to run on a machine, whatever its load.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=512)
    model = BertForQuestionAnswering(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 30,
                                                                             2.0 * (steps - step) / steps))
    features = _windows(tokenizer, examples(steps * 32, seed, max_filler=12))
    model.train()
    for step in range(steps):
        batch = features[step * 32 : (step + 1) * 32]
        inputs = tokenizer.pad([f for f, _, _ in batch], return_tensors="pt")
        loss = model(**inputs, start_positions=torch.tensor([s for _, s, _ in batch]),
                     end_positions=torch.tensor([e for _, _, e in batch])).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _windows(tokenizer: Any, data: list[tuple[str, str, str | None]]) -> list[tuple[dict[str, list[int]], int, int]]:
    """Reader-style windows (64 tokens, stride 16) labelled with the answer's tokens, or the CLS token when the
    window does not hold the whole answer."""
    encoding = tokenizer([q for q, _, _ in data], [c for _, c, _ in data], truncation="only_second", max_length=64,
                         stride=16, return_overflowing_tokens=True, return_offsets_mapping=True)
    features = []
    for window, sample in enumerate(encoding["overflow_to_sample_mapping"]):
        _, context, answer = data[sample]
        start = end = 0
        if answer is not None:
            first = context.index(f" is {answer}.") + 4
            last = first + len(answer)
            sequence = encoding.sequence_ids(window)
            offsets = encoding["offset_mapping"][window]
            tokens = [t for t, (s, e) in enumerate(offsets) if sequence[t] == 1 and s < last and e > first]
            if tokens and offsets[tokens[0]][0] <= first and offsets[tokens[-1]][1] >= last:
                start, end = tokens[0], tokens[-1]
        features.append(({"input_ids": encoding["input_ids"][window],
                          "attention_mask": encoding["attention_mask"][window]}, start, end))
    random.Random(len(features)).shuffle(features)
    return features


if __name__ == "__main__":  # python -m tests.qa_model FOLDER TOKENIZER_FOLDER
    train_tiny_reader(Path(sys.argv[1]), Path(sys.argv[2]))
