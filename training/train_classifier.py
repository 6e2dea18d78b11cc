"""Stage 5: the classifier behind the quality measures (class accuracy and
FD-FMNIST features). A small CNN on the 32x32 grey images the tokenizer sees;
its 128 penultimate activations are the feature space. scripts/quality.py
runs the same network in numpy from the exported weights."""
import torch
import torch.nn as nn
import torch.nn.functional as F

import fmnist_data
from loop import Deadline, Progress, ResumableState, batch_order, cosine_lr, optimiser_step

EPOCHS = 6
BATCH = 128
PEAK_LR = 2e-3


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, 10)

    def features(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.max_pool2d(F.relu(self.conv3(x)), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x):
        return self.fc2(self.features(x))


def classifier_input(images_u8):
    x = torch.zeros(images_u8.shape[0], 32, 32)
    x[:, 2:30, 2:30] = torch.from_numpy(images_u8).float() / 255.0
    return torch.from_numpy(fmnist_data.to_classifier_input(x.numpy()))


def shift_and_mirror(x, gen):
    """Random mirror and shifts of up to 2 pixels: generated garments are not
    centred to the pixel."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], torch.flip(x, dims=[3]), x)
    dy, dx = torch.randint(-2, 3, (2,), generator=gen).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


@torch.no_grad()
def accuracy(model, x, y):
    model.eval()
    hits = sum((model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum().item() for i in range(0, len(x), 1000))
    model.train()
    return hits / len(x)


def train(args, work):
    tr_img, tr_lab = fmnist_data.load_split(args.data, "train")
    te_img, te_lab = fmnist_data.load_split(args.data, "test")
    x_tr, y_tr = classifier_input(tr_img), torch.from_numpy(tr_lab)
    x_te, y_te = classifier_input(te_img), torch.from_numpy(te_lab)
    torch.manual_seed(args.seed + 3)
    model = Classifier()
    opt = torch.optim.AdamW(model.parameters(), lr=PEAK_LR, weight_decay=1e-4)
    state = ResumableState(work / "classifier.state")
    step = state.load({"classifier": model}, opt)
    per_epoch = len(x_tr) // BATCH
    steps = EPOCHS * per_epoch
    if step >= steps:
        return True
    deadline = Deadline(args.minutes)
    bar = Progress("classifier", steps, step)
    while step < steps and not deadline.passed():
        epoch, k = divmod(step, per_epoch)
        idx = torch.from_numpy(batch_order(len(x_tr), BATCH, args.seed + 11, epoch)[k])
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step)  # the same on a resumed run
        loss = F.cross_entropy(model(shift_and_mirror(x_tr[idx], gen)), y_tr[idx])
        optimiser_step(opt, loss, cosine_lr(step, steps, PEAK_LR, 100))
        step += 1
        bar.update(step, loss=loss.item())
    bar.close()
    state.save({"classifier": model}, opt, step)
    if step >= steps:
        print(f"classifier: test accuracy {accuracy(model, x_te, y_te):.4f}", flush=True)
    return step >= steps
