#!/usr/bin/env python3
"""PyTorch peer for bench/xray-speed.ts: the screening CNN (src/ml/models.ts 'screen'), timed the
same way on the same decoded radiographs.

Five blocks of conv 3x3 'same' without bias (16, 32, 64, 128, 128 filters) + batch norm + relu +
maxpool 2, global average pooling, dropout 0.3, dense (softmax in the loss); Adam 1e-3. Batch
norm as tfjs-layers': eps 1e-3, moving averages with momentum 0.99 there, i.e. PyTorch momentum
0.01. Init as the tfjs model: He normal convolutions, Glorot uniform dense, zero bias. Input: a
file of n uint8 images of size x size (grey) and a file of n uint8 labels, scaled to [0, 1].
Training is timed at --batch-size and at each of --train-batches (a fresh model each, as many images
as --batches steps of --batch-size); inference with the --batch-size model at each of
--infer-batches. Prints one JSON line.
"""
import argparse
import json
import sys
import time

from torch_sweep import timed_training, training_sizes

WIDTHS = [16, 32, 64, 128, 128]


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--images', required=True, help='raw uint8 [n, size, size]')
    p.add_argument('--labels', required=True, help='raw uint8 [n]')
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--classes', type=int, default=2)
    p.add_argument('--batch-size', type=int, default=32, help='the training batch of the headline figure and of the model inference runs')
    p.add_argument('--train-batches', default='', help='more training batch sizes to time, each on a fresh model')
    p.add_argument('--batches', type=int, default=20)
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--infer-batches', default='32,64,256')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--seed', type=int, default=1)
    a = p.parse_args()

    import torch
    import torch.nn as nn

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    with open(a.images, 'rb') as f:
        raw = bytearray(f.read())
    with open(a.labels, 'rb') as f:
        lab = bytearray(f.read())
    n = len(lab)
    x_all = torch.frombuffer(raw, dtype=torch.uint8).reshape(n, 1, a.size, a.size).float().div_(255)
    y_all = torch.frombuffer(lab, dtype=torch.uint8).long()

    def build():
        torch.manual_seed(a.seed)
        layers = []
        cin = 1
        for w in WIDTHS:
            conv = nn.Conv2d(cin, w, 3, padding=1, bias=False)
            nn.init.kaiming_normal_(conv.weight, nonlinearity='relu')
            layers += [conv, nn.BatchNorm2d(w, eps=1e-3, momentum=0.01), nn.ReLU(), nn.MaxPool2d(2)]
            cin = w
        dense = nn.Linear(cin, a.classes)
        nn.init.xavier_uniform_(dense.weight)
        nn.init.zeros_(dense.bias)
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), dense)

    loss_fn = nn.CrossEntropyLoss()

    def train_at(bs):
        """A fresh model trained at batch bs: warm-up, then as many images as --batches steps of --batch-size."""
        model = build()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step(i):
            s = (i * bs) % max(1, n - bs + 1)
            opt.zero_grad()
            loss = loss_fn(model(x_all[s:s + bs]), y_all[s:s + bs])
            loss.backward()
            opt.step()
            return loss

        model.train()
        fig, loss = timed_training(step, a.warmup, max(1, round(a.batches * a.batch_size / bs)), bs)
        return model, fig, loss

    bs = a.batch_size
    train = []
    model, final_loss = None, float('nan')
    for tb in training_sizes(bs, a.train_batches):
        m, fig, loss = train_at(tb)
        train.append(fig)
        if tb == bs:
            model, final_loss = m, loss

    model.eval()
    infer = []
    with torch.no_grad():
        for ib in [int(v) for v in a.infer_batches.split(',')]:
            model(x_all[:ib])
            c0, t0 = time.process_time(), time.perf_counter()
            for s in range(0, n, ib):
                model(x_all[s:s + ib]).softmax(1)
            infer.append({'batch': ib, 'imagesPerSec': n / (time.perf_counter() - t0), 'imagesPerCpuSec': n / (time.process_time() - c0)})

    print(json.dumps({
        'engine': 'torch', 'detail': f'PyTorch {torch.__version__}, {torch.get_num_threads()} threads',
        'train': train, 'finalLoss': final_loss, 'infer': infer,
    }))


if __name__ == '__main__':
    sys.exit(main())
