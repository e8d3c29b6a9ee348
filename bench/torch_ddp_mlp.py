"""PyTorch peer (DDP, or one process) of `mpirun -np 2 descent train` (bench/mpi.sh): the same MLP 784-256-256-10
(nn.Sequential of Linear/ReLU) wrapped in DistributedDataParallel over the gloo backend
(torch.distributed, loopback), one thread per process, the same Fashion-MNIST examples scaled
to [0, 1] and preloaded, a global batch split in equal shares over the ranks (each rank its
contiguous rows of each global batch, as descent does), CrossEntropyLoss, SGD with momentum
0.9. One epoch per repetition, median examples/s of the global batch on rank 0. Prints one
JSON line. Run with /usr/bin/python3 (Debian's python3-torch).
--ranks 1: plain PyTorch in this process (no process group, no DDP wrapper), the peer of one
descent process with --threads threads."""
import argparse, json, os, statistics, time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from torch_common import DATA, read_split, set_threads


def worker(rank, a, out):
    set_threads(a.threads)
    ddp = a.ranks > 1
    if ddp:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(a.port)
        dist.init_process_group("gloo", rank=rank, world_size=a.ranks)
    torch.manual_seed(1)
    images, labels = read_split(a.data, "train", "torch_ddp_mlp")
    x = images[: a.examples].reshape(-1, 784).float() / 255
    y = labels[: a.examples].long()
    sizes = [784, 256, 256, 10]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    if ddp:
        model = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    b = a.batch
    r0, r1 = b * rank // a.ranks, b * (rank + 1) // a.ranks
    bx = torch.empty(r1 - r0, 784)
    by = torch.empty(r1 - r0, dtype=torch.long)
    rates = []
    for _ in range(a.reps):
        if ddp:
            dist.barrier()
        t0 = time.perf_counter()
        n = 0
        for s in range(0, a.examples - b + 1, b):
            bx.copy_(x[s + r0: s + r1])
            by.copy_(y[s + r0: s + r1])
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(bx), by)
            loss.backward()
            opt.step()
            n += b
        if ddp:
            dist.barrier()
        rates.append(n / (time.perf_counter() - t0))
    if rank == 0:
        out.put(statistics.median(rates))
    if ddp:
        dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--examples", type=int, default=10000)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--port", type=int, default=29571)
    p.add_argument("--data", default=DATA)
    a = p.parse_args()
    if a.ranks == 1:
        class Box:
            def put(self, v):
                self.v = v
        box = Box()
        worker(0, a, box)
        print(json.dumps({"peer": "pytorch", "torch": torch.__version__, "ranks": 1, "threads": a.threads,
                          "batch": a.batch, "examples_per_s": box.v}))
        return
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    procs = [ctx.Process(target=worker, args=(r, a, q)) for r in range(a.ranks)]
    for pr in procs:
        pr.start()
    for pr in procs:
        pr.join()
        if pr.exitcode != 0:
            raise SystemExit(f"torch_ddp_mlp: a rank exited with {pr.exitcode}")
    print(json.dumps({"peer": "pytorch-ddp-gloo", "torch": torch.__version__, "ranks": a.ranks,
                      "threads": a.threads, "batch": a.batch, "examples_per_s": q.get()}))


if __name__ == "__main__":
    main()
