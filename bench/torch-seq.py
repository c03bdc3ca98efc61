"""torch-seq.py - PyTorch 1.13's epoch time for the language models of
bench-engine --sequences: the same model, text windows and cores.

    /usr/bin/python3 bench/torch-seq.py MODEL DATASET_DIR THREADS EPOCHS TRAIN VAL BATCH CONTEXT

MODEL is char_lstm (nn.Embedding(V, 64), nn.LSTM(64, 256, 2, batch_first),
nn.Linear(256, V): traind's char_lstm defaults) or gpt (token and learned
position embeddings, 4 pre-LN causal nn.TransformerEncoderLayer(128, 4,
512, dropout 0), nn.LayerNorm, nn.Linear(128, V): traind's gpt defaults).
DATASET_DIR is a text dataset as traind imports it (dataset.json's files
and sorted code points). An epoch is TRAIN windows of CONTEXT tokens from
the text's start in batches of BATCH with Adam (lr 1e-3), the cross-entropy
at every position, then VAL windows evaluated (batch 128), as bench-engine's
traind epoch. First prints its configuration, "config ...": torch's version
and threads, OPENBLAS_NUM_THREADS and OPENBLAS_CORETYPE as given
(bench-engine sets 1 and traind's kernel), the kernel torch's OpenBLAS runs
and oneDNN; then "epoch SECONDS CPU_SECONDS" per epoch (the process's CPU
time). With TORCH_EPOCH_GIVE_UP=SECONDS it stops after the first epoch
slower than that (bench-engine's 2-thread run, which a loaded 2-core
machine can slow many times over).
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torchsetup  # noqa: E402

model_name, ddir = sys.argv[1], sys.argv[2]
threads, epochs, n_train, n_val, batch, T = (int(a) for a in sys.argv[3:9])
give_up = float(os.environ.get("TORCH_EPOCH_GIVE_UP", "0"))
torchsetup.setup(threads)

meta = json.load(open(os.path.join(ddir, "dataset.json")))
text = "".join(open(os.path.join(ddir, f), encoding="utf-8").read() for f in meta["files"])
index = {c: i for i, c in enumerate(meta["code_points"])}
V = len(meta["code_points"])
need = (n_train + n_val) * T + 1
ids = torch.tensor([index[ord(c)] for c in text[:need]], dtype=torch.long)
starts = torch.arange(n_train + n_val) * T
x_all = torch.stack([ids[s:s + T] for s in starts.tolist()])
y_all = torch.stack([ids[s + 1:s + T + 1] for s in starts.tolist()])
x_train, y_train, x_val, y_val = x_all[:n_train], y_all[:n_train], x_all[n_train:], y_all[n_train:]


class CharLSTM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(V, 64)
        self.lstm = torch.nn.LSTM(64, 256, 2, batch_first=True)
        self.head = torch.nn.Linear(256, V)

    def forward(self, x):
        return self.head(self.lstm(self.emb(x))[0])


class GPT(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(V, 128)
        self.pos = torch.nn.Embedding(T, 128)
        self.blocks = torch.nn.ModuleList(torch.nn.TransformerEncoderLayer(128, 4, 512, 0.0, batch_first=True,
                                                                           norm_first=True) for _ in range(4))
        self.norm = torch.nn.LayerNorm(128)
        self.head = torch.nn.Linear(128, V)
        self.register_buffer("mask", torch.triu(torch.ones(T, T, dtype=torch.bool), 1))

    def forward(self, x):
        y = self.emb(x) + self.pos.weight[:x.shape[1]]
        for b in self.blocks:
            y = b(y, src_mask=self.mask)
        return self.head(self.norm(y))


model = CharLSTM() if model_name == "char_lstm" else GPT()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = torch.nn.CrossEntropyLoss()
for e in range(epochs):
    t0, c0 = time.perf_counter(), time.process_time()
    model.train()
    perm = torch.randperm(n_train)
    for i in range(0, n_train, batch):
        b = perm[i:i + batch]
        opt.zero_grad()
        z = model(x_train[b])
        loss = loss_fn(z.reshape(-1, V), y_train[b].reshape(-1))
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        for i in range(0, n_val, 128):
            z = model(x_val[i:i + 128])
            loss_fn(z.reshape(-1, V), y_val[i:i + 128].reshape(-1))
    took = time.perf_counter() - t0
    print("epoch %.6f %.6f" % (took, time.process_time() - c0), flush=True)
    if give_up > 0 and took > give_up:
        print("gave up", flush=True)
        break
