"""Write small, real Alpaca-format instruction sets from the local GLUE and OOD data.

Alpaca itself needs the hub; this turns the labelled sentences under ../shared/data into
instructions with short answers, so `task=alpaca` has real data to run on offline:

- train.jsonl / validation.jsonl: SST-2, CoLA, RTE, MRPC and STS-B (train / dev splits),
  `--per-task` / `--eval-per-task` records each, mixed;
- OOD sets, one file each: yelp and imdb (the SST-2 instruction on other review domains),
  sick_nli (the RTE instruction on SICK), sick_relatedness (the STS-B instruction on SICK).

    python scripts/make_instructions.py --root ../shared/data --out outputs/instructions
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from emoe_cli.data.sources import load_source

SENTIMENT = "Classify the sentiment of this review as positive or negative."
ACCEPTABILITY = "Is this sentence grammatically acceptable? Answer yes or no."
ENTAILMENT = "Does the first sentence entail the second? Answer yes or no."
PARAPHRASE = "Do these two sentences mean the same thing? Answer yes or no."
SIMILARITY = ("Rate how similar these two sentences are in meaning, from 0 (unrelated) to 5 "
              "(the same meaning).")


def pair(a: str, b: str) -> str:
    return f"Sentence 1: {a}\nSentence 2: {b}"


def yes_no(condition: bool) -> str:
    return "yes" if condition else "no"


# source -> (instruction, input from a row, output from a row); label ids as in labels.py
TEMPLATES = {
    "sst2": (SENTIMENT, lambda r: r["text_a"], lambda r: ("negative", "positive")[r["label"]]),
    "cola": (ACCEPTABILITY, lambda r: r["text_a"], lambda r: yes_no(r["label"] == 1)),
    "rte": (ENTAILMENT, lambda r: pair(r["text_a"], r["text_b"]),
            lambda r: yes_no(r["label"] == 0)),  # 0 entailment, 1 not_entailment
    "mrpc": (PARAPHRASE, lambda r: pair(r["text_a"], r["text_b"]),
             lambda r: yes_no(r["label"] == 1)),
    "stsb": (SIMILARITY, lambda r: pair(r["text_a"], r["text_b"]),
             lambda r: f"{r['label']:.1f}"),
}
OOD = {"yelp": "sst2", "imdb": "sst2", "sick_nli": "rte", "sick_relatedness": "stsb"}
TRAIN_TASKS = ("sst2", "cola", "rte", "mrpc", "stsb")


def instruction(source: str, template: str, row: dict) -> dict:
    task_instruction, make_input, make_output = TEMPLATES[template]
    if source == "sick_nli":  # 3-way: only entailment (0) is "yes"
        make_output = TEMPLATES["rte"][2]
    return {"instruction": task_instruction, "input": make_input(row),
            "output": make_output(row), "source": source}


def sample(source: str, split: str, root: Path, size: int, seed: int,
           template: str | None = None) -> list[dict]:
    data = load_source(source, split, root)
    indices = random.Random(seed).sample(range(len(data)), min(size, len(data)))
    return [instruction(source, template or source, data[i]) for i in indices]


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"{path}: {len(records)} records")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("outputs/instructions"))
    parser.add_argument("--per-task", type=int, default=400, help="train records per task")
    parser.add_argument("--eval-per-task", type=int, default=40, help="dev records per task")
    parser.add_argument("--ood-size", type=int, default=200, help="records per OOD set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    for split, size, name in (("train", args.per_task, "train"),
                              ("validation", args.eval_per_task, "validation")):
        records = [r for task in TRAIN_TASKS
                   for r in sample(task, split, args.root, size, args.seed)]
        random.Random(args.seed).shuffle(records)
        write_jsonl(args.out / f"{name}.jsonl", records)
    for source, template in OOD.items():
        split = "test"
        write_jsonl(args.out / f"{source}.jsonl",
                    sample(source, split, args.root, args.ood_size, args.seed, template))


if __name__ == "__main__":
    main()
