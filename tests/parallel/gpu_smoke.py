"""Manual GPU check (not collected by pytest): NCCL, one process, CUDA tensors.

    torchrun --standalone --nproc-per-node 1 tests/parallel/gpu_smoke.py

Checks on the GPU: PartialFC equals head.loss (loss and gradients, rate 1), the NCCL path of
the all-gather backward (reduce_scatter_tensor), and sampled SGD steps leaving unsampled
rows bit-identical.
"""

import torch
import torch.distributed as dist

from marginface.heads import create_head
from marginface.parallel import PartialFC

dist.init_process_group("nccl")
torch.cuda.set_device(0)
dev = torch.device("cuda")
torch.manual_seed(0)
for name in ("arcface", "sphereface", "softmax", "uniface"):
    head = create_head(name, 64, 1000).to(dev).train()
    pfc = PartialFC(head).to(dev).train()
    x = torch.randn(32, 64, device=dev, requires_grad=True)
    y = torch.randint(0, 1000, (32,), device=dev)
    xr = x.detach().clone().requires_grad_(True)
    loss, ref = pfc(x, y), head.loss(xr, y)
    loss.backward()
    ref.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pfc.head.weight.grad, head.weight.grad, rtol=1e-4, atol=1e-5)
    print(name, "dense ok", loss.item())
pfc = PartialFC("arcface", 64, 100_000, sample_rate=0.1).to(dev)
opt = torch.optim.SGD(pfc.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
pfc.attach_optimizer(opt)
for _ in range(3):
    w0 = pfc.head.weight.detach().clone()
    x = torch.randn(128, 64, device=dev)
    y = torch.randint(0, 100_000, (128,), device=dev)
    opt.zero_grad()
    pfc(x, y).backward()
    opt.step()
    keep = torch.ones(100_000, dtype=torch.bool, device=dev)
    keep[pfc.sampled_classes] = False
    assert torch.equal(pfc.head.weight[keep], w0[keep])
    assert not torch.equal(pfc.head.weight[~keep], w0[~keep])
print("sampled ok", pfc.row_state["weight"]["momentum_buffer"].device)
dist.destroy_process_group()
print("GPU SMOKE OK")
