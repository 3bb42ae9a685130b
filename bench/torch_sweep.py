"""Batch-size sweep helpers shared by the PyTorch peers of the speed benches (torch_peer.py, torch_screen.py)."""
import time


def training_sizes(batch_size, train_batches):
    """--batch-size first (its model is the one inference runs), then each other size of the comma-separated --train-batches once."""
    sizes = [batch_size]
    for v in (int(x) for x in train_batches.split(',') if x):
        if v not in sizes:
            sizes.append(v)
    return sizes


def timed_training(step, warmup, steps, bs):
    """warmup untimed steps, then steps timed ones of batch bs: the throughput figure and the last loss."""
    for i in range(warmup):
        step(i)
    c0, t0 = time.process_time(), time.perf_counter()
    loss = float('nan')
    for i in range(steps):
        loss = step(warmup + i)
    return {'batch': bs, 'imagesPerSec': steps * bs / (time.perf_counter() - t0), 'imagesPerCpuSec': steps * bs / (time.process_time() - c0)}, float(loss)
