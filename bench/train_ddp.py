#!/usr/bin/env python3
"""bench/train.sh's PyTorch baseline: DistributedDataParallel with the gloo
backend, one thread per process, the model, batch and optimizer of
examples/train_mlp (784-H-10, ReLU, cross-entropy, Adam 1e-3), the data set
held in memory as tensors. Prints samples/s over the timed steps.

    python3 train_ddp.py [--ranks 2] [--hidden 256] [--batch 128] [--steps 300]
"""
import argparse
import gzip
import os
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def load(data):
    with gzip.open(os.path.join(data, "train-images-idx3-ubyte.gz")) as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(60000, 784)
    with gzip.open(os.path.join(data, "train-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return torch.from_numpy(x.astype(np.float32) / 255), torch.from_numpy(y.astype(np.int64))


def worker(rank, args, q):
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(args.port)
    dist.init_process_group("gloo", rank=rank, world_size=args.ranks)
    torch.manual_seed(1)
    x, y = load(args.data)
    model = torch.nn.Sequential(torch.nn.Linear(784, args.hidden), torch.nn.ReLU(),
                                torch.nn.Linear(args.hidden, 10))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(ddp.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    b = args.batch // args.ranks
    t0 = None
    for s in range(args.steps):
        if s == 10:
            dist.barrier()
            t0 = time.perf_counter()
        first = (s * args.batch + rank * b) % (60000 - args.batch)
        opt.zero_grad()
        loss = loss_fn(ddp(x[first:first + b]), y[first:first + b])
        loss.backward()
        opt.step()
    dist.barrier()
    if rank == 0:
        q.put((args.steps - 10) * args.batch / (time.perf_counter() - t0))
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--port", type=int, default=29517)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    args = p.parse_args()
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    mp.spawn(worker, args=(args, q), nprocs=args.ranks, join=True)
    print("train_ddp: %d ranks, 784-%d-10, batch %d: %.0f samples/s"
          % (args.ranks, args.hidden, args.batch, q.get()))


if __name__ == "__main__":
    main()
