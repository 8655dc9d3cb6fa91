"""The LightningModule: one classifier, its loss, optimiser, schedule and epoch metrics."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from tumorlens.errors import TumorlensError


class Classifier(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        num_classes: int,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        optimizer: str = "adamw",
        channels_last: bool = False,
        augment: nn.Module | None = None,
        resumed_total_steps: int | None = None,
    ):
        super().__init__()
        self.resumed_total_steps = resumed_total_steps  # the schedule length of the run being resumed
        self.net, self.loss, self.augment = net, loss, augment
        self.lr, self.weight_decay, self.optimizer_name = lr, weight_decay, optimizer
        # channels_last speeds up convolutions on CPU by 30-50 % (2.4x for depthwise EfficientNet-Lite0).
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        if channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_f1 = MulticlassF1Score(num_classes, average="macro")

    def forward(self, x):
        return self.net(x.contiguous(memory_format=self.memory_format))

    def training_step(self, batch, _):
        x, y, *soft = batch  # soft: a teacher's targets when distilling (training/distill.py)
        if self.augment is not None:
            x = self.augment(x)
        logits = self(x)
        loss = self.loss(logits, y, *soft)
        self.train_acc(logits, y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train_acc", self.train_acc, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch, _):
        x, y = batch
        logits = self(x)
        self.val_acc(logits, y)
        self.val_f1(logits, y)
        self.log("val_loss", self.loss(logits, y), on_epoch=True, prog_bar=True)
        self.log("val_acc", self.val_acc, on_epoch=True)
        self.log("val_macro_f1", self.val_f1, on_epoch=True, prog_bar=True)

    def configure_optimizers(self):
        opt_cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}.get(self.optimizer_name)
        if opt_cls is None:
            raise TumorlensError(f"unknown optimizer {self.optimizer_name!r}; choose adamw or adam")
        opt = opt_cls(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        # +1: OneCycleLR refuses to step past its total, and a resumed run may count one more.
        total = max(int(self.trainer.estimated_stepping_batches), 1) + 1
        _refuse_a_different_schedule(self.trainer.ckpt_path, self.resumed_total_steps, total)
        # One-cycle: warm-up over the first 10 % of steps, then cosine annealing, with Adam's beta1
        # cycled inversely (torch's scheduler, not written here).
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=total, pct_start=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _refuse_a_different_schedule(resume_path: str | None, saved_total: int | None, total_steps: int) -> None:
    """A resumed run keeps the interrupted run's schedule: one-cycle cannot be stretched midway, and
    torch would only fail when the old schedule runs out, epochs later."""
    if resume_path and saved_total is not None and saved_total != total_steps:
        raise TumorlensError(
            f"{resume_path} comes from a run of {saved_total - 1} training steps, this one would take {total_steps - 1}: "
            "--resume continues an interrupted run, so give it the same data, --epochs, --max-steps and --batch-size"
        )
