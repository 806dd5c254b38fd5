"""A tiny question-answering model trained for seconds on generated facts, so reader tests need no download.

Contexts hold filler sentences and, most of the time, one fact "The code of <name> is <number>."; the question
is "What is the code of <name>?". Contexts without the fact teach the no-answer (CLS) output, SQuAD 2.0 style.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

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


def examples(count: int, seed: int = 0) -> list[tuple[str, str, str | None]]:
    """(question, context, answer or None) triples."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        name = rng.choice(NAMES)
        sentences = rng.sample(FILLER, rng.randint(1, 3))
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


def train_tiny_reader(folder: Path, tokenizer_path: Path, steps: int = 250, seed: int = 0) -> Path:
    """Train a 2-layer BERT question-answering model and save it (with a fast tokenizer) to ``folder``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=512)
    model = BertForQuestionAnswering(config)
    data = examples(steps * 32, seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        batch = data[step * 32 : (step + 1) * 32]
        encoding = tokenizer([q for q, _, _ in batch], [c for _, c, _ in batch], padding=True,
                             return_offsets_mapping=True, return_tensors="pt")
        starts, ends = [], []
        for row, (_, context, answer) in enumerate(batch):
            if answer is None:
                starts.append(0)
                ends.append(0)
                continue
            first = context.index(f" is {answer}.") + 4
            last = first + len(answer)
            sequence = encoding.sequence_ids(row)
            offsets = encoding["offset_mapping"][row].tolist()
            tokens = [t for t, (s, e) in enumerate(offsets) if sequence[t] == 1 and s < last and e > first]
            starts.append(tokens[0])
            ends.append(tokens[-1])
        inputs = {k: v for k, v in encoding.items() if k != "offset_mapping"}
        loss = model(**inputs, start_positions=torch.tensor(starts), end_positions=torch.tensor(ends)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


if __name__ == "__main__":  # python -m tests.qa_model FOLDER TOKENIZER_FOLDER
    train_tiny_reader(Path(sys.argv[1]), Path(sys.argv[2]))
