"""FRScore: a zsiqa metric as a torchmetrics Metric, exact in a 2-process DDP validation loop (Lightning, gloo)."""
import tempfile
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from zsiqa.distances import get_distance
from zsiqa.errors import InputError
from zsiqa.metric import FRMetric
from zsiqa.stats import FRScore, correlations

N = 7  # odd: on 2 processes DistributedSampler pads with a repeat of sample 0


class Pairs(Dataset):
    """N distorted versions of one reference, noise growing with the index; label = noise level (lower better)."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.ref = torch.rand(3, 40, 40, generator=g)
        self.dis = [(self.ref + 0.05 * (i + 1) * torch.randn(3, 40, 40, generator=g)).clamp(0, 1) for i in range(N)]
        self.label = [float(i + 1) + 0.1 * (i % 3) for i in range(N)]

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> dict:
        return {"ref": self.ref, "dis": self.dis[i], "label": torch.tensor(self.label[i]), "index": i}


class Validator(L.LightningModule):
    """Any model's validation loop: the metric goes in as a torchmetrics Metric."""

    def __init__(self, metric: FRMetric, out: str) -> None:
        super().__init__()
        self.score = FRScore(metric, label_lower_better=True)
        self.out = out

    def validation_step(self, batch, batch_idx):
        self.score.update(batch["ref"], batch["dis"], batch["label"], batch["index"])

    def on_validation_epoch_end(self):
        result = self.score.compute()
        self.log_dict({f"val/{k}": v.float() for k, v in result.items()})
        saved = {k: float(v) for k, v in result.items()} | {"world_size": self.trainer.world_size}
        torch.save(saved, Path(self.out) / f"{self.trainer.world_size}_rank{self.global_rank}.pt")
        self.score.reset()


def _expected(metric: FRMetric) -> dict:
    data = Pairs()
    scores = np.array([float(metric(data.ref, d)[0]) for d in data.dis])
    corr = correlations(scores, data.label, metric.lower_better, True)
    return {"score": scores.mean(), **{k: corr[k] for k in ("srcc", "krcc", "plcc")}}


def test_two_process_ddp_validation_equals_single_process(tiny_backbone):
    metric = FRMetric(tiny_backbone, get_distance("wsd"))
    expected = _expected(metric)
    with tempfile.TemporaryDirectory() as tmp:
        for devices, strategy in ((1, "auto"), (2, "ddp_fork")):
            trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=strategy, logger=False,
                                enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
            trainer.validate(Validator(metric, tmp), DataLoader(Pairs(), batch_size=2), verbose=False)
            for rank in range(devices):
                got = torch.load(Path(tmp) / f"{devices}_rank{rank}.pt")
                # The mean over 8 gathered rows (sample 0 twice) would differ: repeats were dropped.
                assert got == pytest.approx(expected | {"world_size": devices}, rel=1e-6), f"{devices} process(es)"


def test_update_and_compute(tiny_backbone):
    metric = FRMetric(tiny_backbone, get_distance("l2"))
    data = Pairs()
    score = FRScore(metric)
    score.update(data.ref, torch.stack(data.dis[:3]))
    score.update(data.ref, torch.stack(data.dis[3:]))
    assert set(score.compute()) == {"score"}
    assert float(score.compute()["score"]) == pytest.approx(_expected(metric)["score"], rel=1e-6)
    score.reset()
    with pytest.raises(InputError, match="label_lower_better"):
        score.update(data.ref, torch.stack(data.dis), label=torch.tensor(data.label))
    with pytest.raises(InputError, match="before any update"):
        score.compute()
    labelled = FRScore(metric, label_lower_better=True)
    labelled.update(data.ref, torch.stack(data.dis[:4]), torch.tensor(data.label[:4]))
    labelled.update(data.ref, torch.stack(data.dis[4:]))
    with pytest.raises(InputError, match="a label for every pair"):
        labelled.compute()
    indexed = FRScore(metric)
    indexed.update(data.ref, torch.stack(data.dis[:2]), index=torch.tensor([0, 1]))
    indexed.update(data.ref, torch.stack(data.dis[:2]))
    with pytest.raises(InputError, match="some updates only"):
        indexed.compute()


def test_forward_and_repeated_indices(tiny_backbone):
    metric = FRMetric(tiny_backbone, get_distance("l2"))
    data = Pairs()
    score = FRScore(metric, label_lower_better=True)
    labels = torch.tensor(data.label)
    batch = score(data.ref, torch.stack(data.dis[:4]), labels[:4], torch.arange(4))  # forward: this batch's value
    assert float(batch["score"]) == pytest.approx(float(metric(data.ref, torch.stack(data.dis[:4])).mean()), rel=1e-6)
    score.update(data.ref, torch.stack(data.dis[3:]), labels[3:], torch.arange(3, N))  # pair 3 seen twice
    assert score.compute() == pytest.approx(_expected(metric), rel=1e-6)
