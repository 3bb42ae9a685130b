#!/usr/bin/env python3
"""PyTorch peer for bench/ml-speed.ts: the same CNN, optimizer, batch and data, timed the same way.

conv 3x3x16 relu, maxpool 2, conv 3x3x32 relu, maxpool 2, dense 64 relu, dense 10 (softmax in the
loss); Adam 1e-3; batch 64; Fashion-MNIST 28x28 scaled to [0, 1]. Training is timed at --batch-size
and at each of --train-batches (a fresh model each, as many images as --batches steps of
--batch-size); inference with the --batch-size model at each of --infer-batches. Prints one JSON line.
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

from torch_sweep import timed_training, training_sizes


def read_idx(path):
    with open(path, 'rb') as f:
        raw = f.read()
    if raw[:2] == b'\x1f\x8b':
        raw = gzip.decompress(raw)
    zero, dtype, ndim = struct.unpack('>HBB', raw[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f'{path}: not an unsigned-byte IDX file')
    shape = struct.unpack('>' + 'I' * ndim, raw[4:4 + 4 * ndim])
    return shape, raw[4 + 4 * ndim:]


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--data', default='/usr/share/datasets/fashion-mnist')
    p.add_argument('--batches', type=int, default=200)
    p.add_argument('--warmup', type=int, default=10)
    p.add_argument('--batch-size', type=int, default=64, help='the training batch of the headline figure and of the model inference runs')
    p.add_argument('--train-batches', default='', help='more training batch sizes to time, each on a fresh model')
    p.add_argument('--infer-images', type=int, default=10000)
    p.add_argument('--infer-batches', default='64,256,1000')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--seed', type=int, default=1)
    a = p.parse_args()

    import torch
    import torch.nn as nn

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    def load(images, labels):
        shape, data = read_idx(os.path.join(a.data, images))
        _, lab = read_idx(os.path.join(a.data, labels))
        x = torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(shape[0], 1, shape[1], shape[2]).float().div_(255)
        y = torch.frombuffer(bytearray(lab), dtype=torch.uint8).long()
        return x, y

    sizes = training_sizes(a.batch_size, a.train_batches)
    try:
        x_train, y_train = load('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz')
        x_test, y_test = load('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')
        data = 'fashion-mnist'
    except OSError:
        n = (a.warmup + a.batches) * a.batch_size + (a.warmup + 1) * max(sizes)
        x_train, y_train = torch.rand(n, 1, 28, 28), torch.randint(0, 10, (n,))
        x_test, y_test = torch.rand(a.infer_images, 1, 28, 28), torch.randint(0, 10, (a.infer_images,))
        data = 'random'

    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(x_train.shape[0])

    def train_at(bs):
        """A fresh model trained at batch bs: warm-up, then as many images as --batches steps of --batch-size."""
        torch.manual_seed(a.seed)
        model = nn.Sequential(
            nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(800, 64), nn.ReLU(), nn.Linear(64, 10))
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(i):
            idx = order[(i * bs) % (x_train.shape[0] - bs):][:bs]
            opt.zero_grad()
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            loss.backward()
            opt.step()
            return loss

        fig, loss = timed_training(step, a.warmup, max(1, round(a.batches * a.batch_size / bs)), bs)
        return model, fig, loss

    train = []
    model, final_loss = None, float('nan')
    for bs in sizes:
        m, fig, loss = train_at(bs)
        train.append(fig)
        if bs == a.batch_size:
            model, final_loss = m, loss

    n = min(a.infer_images, x_test.shape[0])
    model.eval()
    infer = []
    correct = 0
    with torch.no_grad():
        for ib in [int(v) for v in a.infer_batches.split(',')]:
            model(x_test[:ib])
            c0, t0 = time.process_time(), time.perf_counter()
            correct = 0
            for s in range(0, n, ib):
                out = model(x_test[s:min(n, s + ib)])
                correct += int((out.argmax(1) == y_test[s:min(n, s + ib)]).sum())
            infer.append({'batch': ib, 'imagesPerSec': n / (time.perf_counter() - t0), 'imagesPerCpuSec': n / (time.process_time() - c0)})

    print(json.dumps({
        'engine': 'torch', 'version': torch.__version__, 'threads': torch.get_num_threads(), 'data': data,
        'train': train, 'infer': infer,
        'trainBatches': a.batches, 'inferImages': n, 'finalLoss': final_loss, 'testAccuracy': correct / n,
    }))


if __name__ == '__main__':
    sys.exit(main())
