"""airbench94's recipe in PyTorch, the framework it was published in, on imagerec's prepared
CIFAR-10 splits: a reference that tells the recipe's translation to Keras (params.yaml's cifar10
section) apart from the data (issue 18).

    pip install torch==2.13.0            # the CPU build; torch is no dependency of imagerec
    python benchmarks/airbench_torch.py [--train-on train|train+val] [--seed 0] [--epochs 9.9]
        [--prepared data/prepared/cifar10] [--label NAME] [--results benchmarks/results/airbench_torch.json]

Written from the paper (Keller Jordan, "94% on CIFAR-10 in 3.29 seconds on a single GPU",
arXiv:2404.00498) and its hyperparameters, not copied from its code: the network of 64/256/256
widths behind a frozen 2x2 patch-whitening convolution (its bias trained for the first 3 epochs),
identity-initialised convolutions, batch norm without weights (epsilon 1e-12, momentum 0.6 in
Keras' terms) whose biases learn 64x faster, logits x 1/9, Nesterov SGD on the summed,
label-smoothed (0.2) loss at airbench's decoupled rate (11.5 per 1,024 examples, momentum 0.85,
weight decay 0.0153 per 1,024), the triangular schedule (0.2x, peak at 23% of the steps, 0.07x),
batches of 1,024 with the last partial one dropped, 2-pixel translations of reflect-padded images,
alternating flips, weight averaging every 5 steps from epoch 3 and, for the test score, flips
and 1-pixel shifts averaged in logit space. Float32 on the CPU (airbench trains in float16 on a
GPU).

`--train-on train` trains on the pipeline's 45,000 training images and scores its 5,000
validation images (no test-time augmentation) after every epoch; `train+val` trains on all
50,000, as airbench does. The test split is scored once, at the end. Each run records its
per-epoch curve, test accuracy with and without test-time augmentation, train seconds (scoring
excluded) and the machine; results merge into the JSON by label (default: the --train-on value
and the seed), and the script prints them all as a table. Run by hand, never in tests: 9.9
epochs take about 20 minutes on two cores.
"""
import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common import REPO, RESULTS, machine, write_result

WIDTHS = (64, 256, 256)
BATCH_SIZE = 1024
LR, MOMENTUM, WEIGHT_DECAY, BIAS_SCALER = 11.5, 0.85, 0.0153, 64.0  # per 1,024 examples
LABEL_SMOOTHING = 0.2
WHITEN_BIAS_EPOCHS, WHITEN_EPS, WHITEN_IMAGES = 3, 5e-4, 5000
AVERAGE_FROM_EPOCH, AVERAGE_EVERY, AVERAGE_DECAY, AVERAGE_POWER = 3, 5, 0.95, 3.0
TRANSLATE = 2


def batch_norm(channels):
    norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)  # PyTorch's momentum weighs the new batch
    norm.weight.requires_grad = False  # stays 1: no per-channel weight
    return norm


def conv(channels_in, channels_out):
    layer = nn.Conv2d(channels_in, channels_out, 3, padding="same", bias=False)
    with torch.no_grad():  # the first channels_in filters copy their input: an implicit residual
        nn.init.dirac_(layer.weight[:channels_in])
    return layer


class Block(nn.Module):
    """A convolution, 2x2 max pooling, then a second convolution at half the size; batch norm and
    GELU after each."""

    def __init__(self, channels_in, channels_out):
        super().__init__()
        self.conv1, self.norm1 = conv(channels_in, channels_out), batch_norm(channels_out)
        self.conv2, self.norm2 = conv(channels_out, channels_out), batch_norm(channels_out)

    def forward(self, x):
        x = F.gelu(self.norm1(F.max_pool2d(self.conv1(x), 2)))
        return F.gelu(self.norm2(self.conv2(x)))


class Net(nn.Module):
    def __init__(self, whitening_width=24):
        super().__init__()
        self.whiten = nn.Conv2d(3, whitening_width, 2, bias=True)
        self.whiten.weight.requires_grad = False
        nn.init.zeros_(self.whiten.bias)
        widths = (whitening_width, *WIDTHS)
        self.blocks = nn.Sequential(*(Block(a, b) for a, b in zip(widths, widths[1:])))
        self.head = nn.Linear(WIDTHS[-1], 10, bias=False)

    def forward(self, x):
        x = self.blocks(F.gelu(self.whiten(x)))
        return self.head(torch.amax(x, dim=(2, 3))) / 9  # the 3x3 map's maximum, logits x 1/9


def fit_whitening(layer, images):
    """Eigenvectors of the 2x2 patches' covariance, each over the square root of its eigenvalue,
    as they are and negated."""
    patches = images.unfold(2, 2, 1).unfold(3, 2, 1)  # (n, c, 31, 31, 2, 2)
    flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
    values, vectors = torch.linalg.eigh(flat.T @ flat / len(flat))
    kernels = (vectors.T / torch.sqrt(values + WHITEN_EPS)[:, None]).reshape(12, 3, 2, 2).flip(0)
    with torch.no_grad():
        layer.weight.copy_(torch.cat([kernels, -kernels]).float())


def triangle(step, total, start=0.2, peak=0.23, end=0.07):
    top = int(peak * total)
    if step < top:
        return start + (1 - start) * step / top
    return 1 + (end - 1) * (step - top) / (total - top)


def epoch_batches(images, labels, epoch, first_flips, generator):
    """One epoch's shuffled batches: every image mirrored in alternate epochs (from a coin flip
    per image) and shifted by up to 2 pixels each way within its reflect-padded border."""
    flipped = first_flips ^ (epoch % 2 == 1)
    x = torch.where(flipped[:, None, None, None], images.flip(-1), images)
    padded = F.pad(x, (TRANSLATE,) * 4, mode="reflect")
    shifts = torch.randint(0, 2 * TRANSLATE + 1, (len(x), 2), generator=generator)
    out, size = torch.empty_like(x), x.shape[-1]
    for dy in range(2 * TRANSLATE + 1):
        for dx in range(2 * TRANSLATE + 1):
            chosen = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            out[chosen] = padded[chosen, :, dy:dy + size, dx:dx + size]
    order = torch.randperm(len(x), generator=generator)
    for start in range(0, len(x) - BATCH_SIZE + 1, BATCH_SIZE):
        batch = order[start:start + BATCH_SIZE]
        yield out[batch].contiguous(memory_format=torch.channels_last), labels[batch]


@torch.no_grad()
def logits(net, images, tta):
    """The network's logits; with `tta`, airbench's six views: the average over the mirror
    image, at half weight, beside the same average for the image shifted one pixel up-left and
    one pixel down-right."""
    def mirrored(v):
        return 0.5 * (net(v) + net(v.flip(-1)))

    net.eval()
    outputs = []
    for x in images.split(1000):
        if not tta:
            outputs.append(net(x))
            continue
        size, padded = x.shape[-1], F.pad(x, (1,) * 4, mode="reflect")
        shifted = 0.5 * (mirrored(padded[:, :, :size, :size]) + mirrored(padded[:, :, 2:, 2:]))
        outputs.append(0.5 * mirrored(x) + 0.5 * shifted)
    return torch.cat(outputs)


def accuracy(net, images, labels, tta=False):
    return round((logits(net, images, tta).argmax(1) == labels).float().mean().item(), 4)  # exact for 5,000 or 10,000


def load(prepared: Path, split: str):
    images = torch.from_numpy(np.load(prepared / f"{split}_images.npy")).permute(0, 3, 1, 2).float() / 255
    return images, torch.from_numpy(np.load(prepared / f"{split}_labels.npy")).long()


def train(args) -> dict:
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    splits = {split: load(args.prepared, split) for split in ("train", "val", "test")}
    train_images, train_labels = splits["train"]
    if args.train_on == "train+val":
        train_images = torch.cat([train_images, splits["val"][0]])
        train_labels = torch.cat([train_labels, splits["val"][1]])
    mean = train_images.mean(dim=(0, 2, 3), keepdim=True)
    std = train_images.std(dim=(0, 2, 3), keepdim=True)
    def normalise(x):
        return ((x - mean) / std).contiguous(memory_format=torch.channels_last)
    train_images = normalise(train_images)
    val_images, test_images = normalise(splits["val"][0]), normalise(splits["test"][0])

    net = Net().to(memory_format=torch.channels_last)
    fit_whitening(net.whiten, train_images[:WHITEN_IMAGES])
    # airbench's decoupled hyperparameters in PyTorch's terms (its loss is summed over the batch)
    scale = 1024 * (1 + 1 / (1 - MOMENTUM))
    lr, decay = LR / scale, WEIGHT_DECAY * BATCH_SIZE / scale
    biases = [p for name, p in net.named_parameters() if "norm" in name and p.requires_grad]
    others = [p for name, p in net.named_parameters() if "norm" not in name and p.requires_grad]
    optimizer = torch.optim.SGD([dict(params=biases, lr=lr * BIAS_SCALER, weight_decay=decay / (lr * BIAS_SCALER)),
                                 dict(params=others, lr=lr, weight_decay=decay / lr)],
                                momentum=MOMENTUM, nesterov=True)
    steps_per_epoch = len(train_images) // BATCH_SIZE
    total = math.ceil(steps_per_epoch * args.epochs)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: triangle(step, total))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING, reduction="sum")
    first_flips = torch.rand(len(train_images), generator=generator) < 0.5
    average, step, seconds, curve = None, 0, 0.0, []
    for epoch in range(math.ceil(args.epochs)):
        started = time.perf_counter()
        net.whiten.bias.requires_grad = epoch < WHITEN_BIAS_EPOCHS
        net.train()
        for x, y in epoch_batches(train_images, train_labels, epoch, first_flips, generator):
            loss = loss_fn(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if epoch >= AVERAGE_FROM_EPOCH and step % AVERAGE_EVERY == 0:
                if average is None:
                    average = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    average_into(net, average, AVERAGE_DECAY ** AVERAGE_EVERY * (step / total) ** AVERAGE_POWER)
            if step >= total:
                break
        if average is not None:
            average_into(net, average, 1.0)  # every epoch ends on the average
        seconds += time.perf_counter() - started
        point = {"epoch": epoch + 1, "seconds": round(seconds, 1), "train_loss": round(loss.item() / BATCH_SIZE, 4)}
        if args.train_on == "train":
            point["val_accuracy"] = accuracy(net, val_images, splits["val"][1])
        curve.append(point)
        print(json.dumps(point), flush=True)
    test_labels = splits["test"][1]
    return {"train_images": len(train_images), "epochs": args.epochs, "steps": step, "train_seconds": round(seconds, 1),
            "test_accuracy": accuracy(net, test_images, test_labels, tta=True),
            "test_accuracy_no_tta": accuracy(net, test_images, test_labels), "test_images": len(test_labels),
            "last_val_accuracy": curve[-1].get("val_accuracy"), "curve": curve}


@torch.no_grad()
def average_into(net, average, decay):
    """The weights (batch norm's statistics too) move to their moving average, then become it."""
    for name, value in net.state_dict().items():
        if value.dtype.is_floating_point:
            average[name].lerp_(value, 1 - decay)
            value.copy_(average[name])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-on", choices=["train", "train+val"], default="train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=float, default=9.9)
    parser.add_argument("--prepared", type=Path, default=REPO / "data/prepared/cifar10")
    parser.add_argument("--label", help="the run's name in the results "
                                        "(default: the --train-on value and the seed, as 'train seed 0')")
    parser.add_argument("--results", type=Path, default=RESULTS / "airbench_torch.json")
    args = parser.parse_args()
    if not (args.prepared / "train_images.npy").exists():
        parser.error(f"{args.prepared} has no prepared images: run `dvc repro preprocess@cifar10` first")
    torch.set_num_threads(os.cpu_count())
    run = {"command": "python benchmarks/airbench_torch.py " + " ".join(sys.argv[1:]),
           "torch": torch.__version__, "seed": args.seed, "train_on": args.train_on, **train(args)}
    runs = json.loads(args.results.read_text())["runs"] if args.results.exists() else {}
    runs[args.label or f"{args.train_on} seed {args.seed}"] = {**run, "machine": machine()}
    write_result(args.results, {"runs": runs})
    print("\n| run | test accuracy (without TTA) | val accuracy (last epoch) | train time |\n|---|---:|---:|---:|")
    for label, row in runs.items():
        val = f"{100 * row['last_val_accuracy']:.2f}%" if row["last_val_accuracy"] is not None else "-"
        print(f"| {label} | {100 * row['test_accuracy']:.2f}% ({100 * row['test_accuracy_no_tta']:.2f}%) | {val} "
              f"| {row['train_seconds']:,.0f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
