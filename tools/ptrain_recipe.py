"""ptrain's recipe flags as PyTorch's own objects, stepped once per batch as ptrain steps them.

The flags are --optimizer (adam, adamw, sgd), --momentum, --nesterov, --learning-rate,
--weight-decay, --no-decay-bn-bias, --lr-schedule (constant, step:E1,E2[:GAMMA], cosine,
onecycle), --warmup-steps and --label-smoothing, given as a list of words as on ptrain's
command line. tools/torch-recipe-check checks them against ptrain step by step, and
tools/compare-peers trains PyTorch with them; both read them here, once.
"""


def flag(flags, name, default=None):
    """The word after `name` in `flags`, or `default` when `name` is absent."""
    return flags[flags.index(name) + 1] if name in flags else default


def learning_rate(flags, default=1e-3):
    return float(flag(flags, "--learning-rate", default))


def label_smoothing(flags):
    return float(flag(flags, "--label-smoothing", "0"))


def torch_optimizer(flags, parameters, rate, adam=None):
    """torch.optim's optimizer of the recipe over `parameters` (name -> parameter): SGD,
    AdamW, or `adam` (a torch.optim.Optimizer class; default torch.optim.Adam with Keras'
    epsilon) for adam. --no-decay-bn-bias puts the one-dimensional tensors (biases,
    BatchNorm's scale and shift) in a group without weight decay."""
    import torch
    kind = flag(flags, "--optimizer", "adam")
    decay = float(flag(flags, "--weight-decay", "0.01" if kind == "adamw" else "0"))
    if "--no-decay-bn-bias" in flags:
        groups = [{"params": [p for p in parameters.values() if p.dim() > 1], "weight_decay": decay},
                  {"params": [p for p in parameters.values() if p.dim() <= 1], "weight_decay": 0.0}]
    else:
        groups = [{"params": list(parameters.values()), "weight_decay": decay}]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=rate, momentum=float(flag(flags, "--momentum", "0")),
                               nesterov="--nesterov" in flags)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=rate)
    if adam is not None:
        return adam(groups, lr=rate)
    return torch.optim.Adam(groups, lr=rate, betas=(0.9, 0.999), eps=1e-7)


def torch_scheduler(flags, optimizer, rate, steps):
    """torch.optim.lr_scheduler's schedule of the recipe over `steps` optimizer steps,
    to be stepped after every optimizer step (a step schedule's epochs are then steps, as
    `steps` of one batch each are epochs in torch-recipe-check)."""
    import torch
    schedule = flag(flags, "--lr-schedule", "constant")
    warmup = int(flag(flags, "--warmup-steps", "0"))
    lr = torch.optim.lr_scheduler
    if schedule.startswith("step:"):
        parts = schedule.split(":")
        return lr.MultiStepLR(optimizer, [int(e) for e in parts[1].split(",")],
                              gamma=float(parts[2]) if len(parts) > 2 else 0.1)
    if schedule == "cosine" and warmup > 0:
        return lr.SequentialLR(optimizer, [
            lr.LinearLR(optimizer, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1),
            lr.CosineAnnealingLR(optimizer, T_max=steps - warmup)], milestones=[warmup])
    if schedule == "cosine":
        return lr.CosineAnnealingLR(optimizer, T_max=steps)
    if schedule == "onecycle":
        return lr.OneCycleLR(optimizer, max_lr=rate, total_steps=steps, anneal_strategy="cos",
                             cycle_momentum=False)
    return lr.LambdaLR(optimizer, lambda step: 1.0)
