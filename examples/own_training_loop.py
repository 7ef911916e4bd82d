"""Train netspec's digits CNN with your own plain-PyTorch loop: netspec builds the model
and the optimizer groups (no weight decay on norms and biases), the rest is yours.

    python examples/own_training_loop.py [--quick]
"""

import sys
from pathlib import Path

import torch
from sklearn.datasets import load_digits

import netspec

epochs = 1 if "--quick" in sys.argv else 15
torch.manual_seed(0)
digits = load_digits()
x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8]
y = torch.tensor(digits.target)
perm = torch.randperm(len(x))
train, test = perm[:1400], perm[1400:]

model = netspec.build(Path(__file__).parent.parent / "specs" / "digits_cnn.yaml")
opt = torch.optim.AdamW(netspec.param_groups(model, weight_decay=0.05), lr=3e-3)
for epoch in range(epochs):
    model.train()
    for batch in train[torch.randperm(len(train))].split(64):
        loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    print(f"epoch {epoch + 1}: loss {loss.item():.3f}, held-out accuracy {accuracy:.1%}")
