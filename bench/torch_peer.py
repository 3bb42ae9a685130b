#!/usr/bin/env python3
"""PyTorch peer for bench/ml-speed.ts: the same CNN, optimizer, batch and data, timed the same way.

conv 3x3x16 relu, maxpool 2, conv 3x3x32 relu, maxpool 2, dense 64 relu, dense 10 (softmax in the
loss); Adam 1e-3; batch 64; Fashion-MNIST 28x28 scaled to [0, 1]. Prints one JSON line.
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time


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
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--infer-images', type=int, default=10000)
    p.add_argument('--infer-batch', type=int, default=1000)
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

    try:
        x_train, y_train = load('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz')
        x_test, y_test = load('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')
        data = 'fashion-mnist'
    except OSError:
        n = (a.warmup + a.batches) * a.batch_size
        x_train, y_train = torch.rand(n, 1, 28, 28), torch.randint(0, 10, (n,))
        x_test, y_test = torch.rand(a.infer_images, 1, 28, 28), torch.randint(0, 10, (a.infer_images,))
        data = 'random'

    model = nn.Sequential(
        nn.Conv2d(1, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(800, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(x_train.shape[0])

    def step(i):
        idx = order[(i * a.batch_size) % (x_train.shape[0] - a.batch_size):][:a.batch_size]
        opt.zero_grad()
        loss = loss_fn(model(x_train[idx]), y_train[idx])
        loss.backward()
        opt.step()
        return loss

    for i in range(a.warmup):
        step(i)
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(a.batches):
        loss = step(a.warmup + i)
    train_s = time.perf_counter() - t0
    train_cpu = time.process_time() - c0
    final_loss = float(loss)

    n = min(a.infer_images, x_test.shape[0])
    model.eval()
    with torch.no_grad():
        model(x_test[:a.infer_batch])
        c0, t0 = time.process_time(), time.perf_counter()
        correct = 0
        for s in range(0, n, a.infer_batch):
            out = model(x_test[s:s + a.infer_batch])
            correct += int((out.argmax(1) == y_test[s:s + a.infer_batch]).sum())
        infer_s = time.perf_counter() - t0
        infer_cpu = time.process_time() - c0

    print(json.dumps({
        'engine': 'torch', 'version': torch.__version__, 'threads': torch.get_num_threads(), 'data': data,
        'trainImagesPerSec': a.batches * a.batch_size / train_s, 'inferImagesPerSec': n / infer_s,
        'trainImagesPerCpuSec': a.batches * a.batch_size / train_cpu, 'inferImagesPerCpuSec': n / infer_cpu,
        'trainBatches': a.batches, 'inferImages': n, 'finalLoss': final_loss, 'testAccuracy': correct / n,
    }))


if __name__ == '__main__':
    sys.exit(main())
