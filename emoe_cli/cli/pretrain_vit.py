"""`emoe-pretrain-vit`: pre-train a small ViT from scratch on ONE digits domain and save it as
an ordinary Hugging Face folder (config, weights, image processor) for `model=vit-digits`.

Why: EMoE converts a *pre-trained* model, and no pre-trained ViT can be downloaded here.
This stands in for ImageNet pre-training at toy scale. It is supervised on the chosen
domain's labels, so that domain must not be the held-out one in a leave-one-out run; the
saved config records the domain (`emoe_pretraining`) and every run copies it into its
results.json.

    emoe-pretrain-vit --data-root ../shared/data               # MNIST, a few CPU minutes
    emoe-pretrain-vit --domain usps --out /tmp/vit-usps --epochs 5
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import transformers

from emoe_cli.data.digits import DIGIT_READERS, digits_domain
from emoe_cli.data.pixels import PixelEncoder, encode_once
from emoe_cli.engine.allocator import keep_freed_memory
from emoe_cli.errors import UserError

DEFAULT_OUT = "~/.cache/emoe/vit-digits"


def build_model(args) -> tuple[transformers.ViTForImageClassification, object]:
    """A ViT shaped like a tiny ViT-S (FFN = 4 x hidden) and its matching image processor."""
    config = transformers.ViTConfig(
        image_size=args.image_size, patch_size=args.patch_size, num_channels=3,
        hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
        intermediate_size=4 * args.hidden, num_labels=10,
        id2label={i: str(i) for i in range(10)}, label2id={str(i): i for i in range(10)})
    processor = transformers.ViTImageProcessor(
        size={"height": args.image_size, "width": args.image_size},
        image_mean=[0.5] * 3, image_std=[0.5] * 3)
    torch.manual_seed(args.seed)
    return transformers.ViTForImageClassification(config), processor


def random_shift(pixels: torch.Tensor, generator: torch.Generator, most: int = 2
                 ) -> torch.Tensor:
    """Move each image by up to `most` pixels (zero padding): a cheap augmentation that
    keeps the backbone from relying on MNIST's exact centring."""
    padded = torch.nn.functional.pad(pixels, (most,) * 4)
    size = pixels.shape[-1]
    out = torch.empty_like(pixels)
    offsets = torch.randint(0, 2 * most + 1, (len(pixels), 2), generator=generator)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy:dy + size, dx:dx + size]
    return out


@torch.no_grad()
@torch.no_grad()
def accuracy(model, pixels: torch.Tensor, labels: torch.Tensor, encoder: PixelEncoder) -> float:
    model.eval()
    hits = sum(int((model(pixel_values=encoder.normalize(pixels[i:i + 512])).logits
                    .argmax(-1) == labels[i:i + 512]).sum()) for i in range(0, len(labels), 512))
    return hits / len(labels)


def pretrain(args) -> dict:
    """Train, evaluate on a held-back tenth of the domain, save; returns what was recorded."""
    started = time.perf_counter()
    model, processor = build_model(args)
    encoder = PixelEncoder.for_model(processor, channels=3)
    rows = encode_once(digits_domain(args.domain, Path(args.data_root)), encoder)[:]
    pixels, labels = torch.as_tensor(rows["pixels"]), torch.as_tensor(rows["label"])
    order = torch.as_tensor(np.random.default_rng(args.seed).permutation(len(labels)))
    held = max(1, len(labels) // 10)
    test, train = order[:held], order[held:]

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps = args.epochs * math.ceil(len(train) / args.batch_size)
    schedule = transformers.get_cosine_schedule_with_warmup(optimizer, steps // 10, steps)
    generator = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        shuffled = train[torch.randperm(len(train), generator=generator)]
        for i in range(0, len(shuffled), args.batch_size):
            batch = shuffled[i:i + args.batch_size]
            inputs = encoder.normalize(random_shift(pixels[batch], generator))
            loss = model(pixel_values=inputs, labels=labels[batch]).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        heldback = accuracy(model, pixels[test], labels[test], encoder)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss.item():.4f}, held-back accuracy "
              f"{heldback:.4f}, {time.perf_counter() - started:.0f} s", flush=True)

    record = {"domain": args.domain, "examples": len(train), "heldback_examples": held,
              "heldback_accuracy": heldback,
              "epochs": args.epochs, "seed": args.seed,
              "seconds": round(time.perf_counter() - started, 1),
              "note": "pre-trained from scratch by emoe-pretrain-vit, not a published model"}
    model.config.emoe_pretraining = record
    out = Path(args.out).expanduser()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return record


def _bad_input(message: str) -> None:
    """One line and exit code 2, as emoe-run reports bad input (argparse adds its usage)."""
    print(f"emoe-pretrain-vit: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="emoe-pretrain-vit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domain", default="mnist", choices=sorted(DIGIT_READERS))
    parser.add_argument("--data-root", default="../shared/data",
                        help="the folder holding digits/ (MNIST, USPS)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="where the model folder is written")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--patch-size", type=int, default=7)
    parser.add_argument("--hidden", type=int, default=192)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "image_size", "patch_size", "hidden", "layers",
                 "heads"):
        if getattr(args, name) < 1:
            _bad_input(f"--{name.replace('_', '-')}={getattr(args, name)} is invalid; "
                       "valid: a whole number of at least 1")
    try:
        keep_freed_memory()
    except UserError as error:
        _bad_input(str(error))
    record = pretrain(args)
    print(f"saved {Path(args.out).expanduser()}: pre-trained on {record['domain']} "
          f"({record['examples']} images), held-back accuracy "
          f"{record['heldback_accuracy']:.4f}, {record['seconds']} s")


if __name__ == "__main__":
    main()
