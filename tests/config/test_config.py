"""The Hydra configs of evaluate.py and train.py: composition, schema, experiments, and one-line errors."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zsiqa.config import (
    EvaluateConfig,
    OnBadImage,
    Preset,
    TrainConfig,
    check_command_line,
    compose_config,
    dataset_config,
    plain,
)
from zsiqa.errors import ConfigError, MissingFileError

REPO = Path(__file__).resolve().parents[2]


def entry_point(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_cli", REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_defaults_resolve_groups():
    cfg = compose_config("evaluate")
    assert cfg.backbone.name == "efficientnet_lite0" and cfg.backbone.pretrained is True
    assert cfg.data.name == "demo" and cfg.data.root is None and plain(cfg.transform) == {"name": "none", "amount": 0}
    assert list(cfg.distance) == ["l2", "cos", "skld", "jsd", "wsd"]
    assert cfg.run.compile is False and cfg.run.batch_windows is None
    assert cfg.data.on_bad_image == "error" and cfg.data.exif == "auto"
    # typed to the leaves: schema objects with one Enum per choice, not dicts of strings
    assert isinstance(cfg, EvaluateConfig) and cfg.preset is Preset.paper and cfg.data.on_bad_image is OnBadImage.error
    assert cfg.trainer["_target_"] == "lightning.Trainer" and cfg.trainer["accelerator"] == cfg.run.accelerator
    train = compose_config("train")
    assert isinstance(train, TrainConfig) and [t.name for t in train.test] == ["demo"]
    assert train.trainer["max_epochs"] == 30 and list(train.callbacks) == ["best", "last", "early_stopping"]


def test_overrides_lists_dotted_keys_and_any_backbone():
    cfg = compose_config("evaluate", [
        "backbone=dino_vitb16", "data=tid2013", "transform=rotate", "transform.amount=5", "distance=[l2,wsd]",
        "baselines=[]", "data.root=/x/tid", "run.devices=2", "backbone.pretrained=false",
    ])
    assert plain(cfg.backbone) == {"name": "dino_vitb16", "pretrained": False, "weights": None}
    assert plain(cfg.transform) == {"name": "rotate", "amount": 5.0} and list(cfg.distance) == ["l2", "wsd"]
    assert cfg.baselines == [] and cfg.data.root == "/x/tid" and cfg.run.devices == 2
    assert compose_config("evaluate", ["backbone.name=open_clip:ViT-B-16:laion2b_s34b_b88k"]).backbone.name == (
        "open_clip:ViT-B-16:laion2b_s34b_b88k")
    assert compose_config("evaluate", ["transform=rot"]).transform.amount == 1  # the paper's 1 degree
    assert plain(compose_config("evaluate", ["transform={name:scale,amount:-50}"]).transform) == {
        "name": "scale", "amount": -50.0}


def test_dataset_roots_come_from_zsiqa_data(monkeypatch):
    monkeypatch.setenv("ZSIQA_DATA", "/datasets")
    assert compose_config("evaluate", ["data=live"]).data.root == "/datasets/databaserelease2"
    assert dataset_config("csiq").root == "/datasets/CSIQ"
    monkeypatch.delenv("ZSIQA_DATA")
    assert compose_config("evaluate", ["data=tid2013"]).data.root == "data/tid2013"
    assert compose_config("evaluate", ["data=live"]).data.label == "dmos_realigned"


def test_experiments_merge_deeply_and_sweep_with_multirun(tmp_path, monkeypatch):
    monkeypatch.setenv("ZSIQA_DATA", str(tmp_path))
    for folder in ("PIPAL", "databaserelease2", "tid2013"):
        (tmp_path / folder).mkdir()
    cfg = compose_config("train", ["experiment=train_kadid_sweep"])
    assert cfg.optim.lr == 0.05 and cfg.optim.weight_decay == 0.0  # weight_decay kept from train.yaml
    assert cfg.trainer["max_epochs"] == 100 and cfg.callbacks["early_stopping"]["patience"] == 10
    assert cfg.callbacks["best"]["monitor"] == "val/srcc"  # kept from configs/callbacks/fit.yaml
    assert cfg.logger["_target_"] == "zsiqa.reporting.wandb_log.wandb_logger"
    assert cfg.logger["project"] == "zsiqa" and cfg.logger["group"] == "train_kadid_sweep"
    assert cfg.data.name == "kadid10k" and [t.name for t in cfg.test] == ["tid2013", "live", "csiq", "pipal"]
    table3 = compose_config("evaluate", ["experiment=paper_table3"])
    assert table3.data.name == "pipal" and list(table3.baselines) == ["psnr", "ms_ssim", "fsim", "dists", "lpips",
                                                                     "lpips-vgg", "stlpips", "stlpips-vgg"]
    check_command_line("evaluate", ["-m", "experiment=paper_table3"])  # all 20 cells compose and validate
    check_command_line("evaluate", ["-m", "experiment=geometric_suite"])
    with pytest.raises(ConfigError, match="experiment=paper_table3 is a sweep over backbone, transform: add -m"):
        check_command_line("evaluate", ["experiment=paper_table3"])
    (tmp_path / "PIPAL").rmdir()  # a missing dataset folder stops a sweep before any job starts
    with pytest.raises(MissingFileError, match="data=pipal: no dataset folder .*PIPAL"):
        check_command_line("evaluate", ["-m", "experiment=paper_table3"])


@pytest.mark.parametrize("entry, args, message", [
    ("evaluate", ["run.batchsize=4"], "run.batchsize=4: unknown key run.batchsize (did you mean run.batch_size?); "
                                      "valid keys of run: accelerator, batch_size,"),
    ("evaluate", ["data.rooot=/x"], "unknown key data.rooot (did you mean data.root?); valid keys of data: exif, label,"),
    ("evaluate", ["bakbone=x"], "unknown key bakbone"),
    ("train", ["optim.lrr=1"], "unknown key optim.lrr (did you mean optim.lr?)"),
    ("evaluate", ["run.batch_size=abc"], "run.batch_size=abc: Value 'abc' of type 'str' could not be converted to Integer"),
    ("evaluate", ["data=foo"], "data=foo: no such option; choose one of csiq, demo, kadid10k, live, pipal, tid2013"),
    ("evaluate", ["transform=trax"], "transform=trax: no such option (did you mean tra?); choose one of crop,"),
    ("evaluate", ["backbone=dino_vitb17"], "no such option (did you mean dino_vitb16?)"),
    ("evaluate", ["distance=[foo]"], "distance: unknown distance 'foo'; available:"),
    ("evaluate", ["distance=[l2"], "distance=[l2: not a key=value override"),
    ("evaluate", ["distance=l2,cos"], "a comma list is a sweep: add -m to run one job per value, or write distance=[l2,cos]"),
    ("evaluate", ["baselines=[psnrr]"], "unknown baseline 'psnrr' (did you mean psnr?)"),
    ("evaluate", ["preset=fix"], "preset=fix: choose one of paper, fixed (did you mean fixed?)"),
    ("evaluate", ["transform=rotate"], "transform=rotate needs an amount: add transform.amount=AMOUNT (unit: degrees"),
    ("evaluate", ["transform=crop", "transform.amount=200"], "transform.amount=200: transform 'crop': amount 200.0 is"),
    ("evaluate", ["data.on_bad_image=drop"], "data.on_bad_image=drop: choose one of error, skip"),
    ("train", ["weighting=rows"], "weighting=rows: choose one of layer, channel"),
    ("train", ["distance=jsd"], "only l2, cos and cos_channel have"),
    ("train", ["test=[tid2014]"], "test: unknown dataset 'tid2014' (did you mean tid2013?)"),
    ("evaluate", ["-m", "transform=none,tra", "run.devices=2"], "run.devices=2 in a local sweep (-m): Lightning cannot"),
    ("train", ["trainer.max_epoch=2"], "unknown key trainer.max_epoch (did you mean trainer.max_epochs?)"),
    ("train", ["+trainer.max_epoch=2"], "trainer.max_epoch: lightning.Trainer takes no argument 'max_epoch' (did you "
                                        "mean max_epochs?)"),
    ("train", ["+callbacks.x._target_=lightning.pytorch.callbacks.Nope"], "callbacks.x._target_="
                                                                          "lightning.pytorch.callbacks.Nope: no such"),
    ("evaluate", ["logger=wandbb"], "logger=wandbb: no such option (did you mean wandb?); choose one of csv, none, wandb"),
])
def test_bad_command_lines_are_one_line_config_errors(entry, args, message, capsys):
    with pytest.raises(ConfigError) as error:
        check_command_line(entry, args)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert entry_point(entry).main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{entry}.py: error: ") and err.count("\n") == 1 and message in err


def test_an_output_folder_that_cannot_be_written_fails_before_any_work(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    cases = [
        ("evaluate", [f"run.out={afile}"], f"run.out={afile}: {afile} is a file, not a folder; choose a folder you"),
        ("evaluate", [f"run.out={afile}/runs"], f"run.out={afile}/runs: {afile} is a file, not a folder"),
        ("train", [f"run.cache_dir={afile}/cache"], f"run.cache_dir={afile}/cache: {afile} is a file, not a folder"),
        ("evaluate", ["-m", "distance=[l2],[cos]", f"run.out={afile}"], f"run.out={afile}: {afile} is a file"),
        # /proc takes no new files, even from root (for whom no permission bit is enforced)
        ("evaluate", ["run.out=/proc/zsiqa/runs"], "run.out=/proc/zsiqa/runs: cannot write in /proc ("),
    ]
    for entry, args, message in cases:
        assert entry_point(entry).main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{entry}.py: error: {message}") and err.count("\n") == 1, (args, err)
    fresh = tmp_path / "new" / "runs"
    check_command_line("evaluate", [f"run.out={fresh}"])  # a folder that can be made passes, and nothing is created
    assert list(tmp_path.iterdir()) == [afile]


def test_missing_dataset_root_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZSIQA_DATA", str(tmp_path))
    monkeypatch.setattr("sys.argv", ["evaluate.py"])
    assert entry_point("evaluate").main(["data=tid2013", f"run.out={tmp_path / 'runs'}"]) == 1
    err = capsys.readouterr().err
    assert err == f"evaluate.py: error: data=tid2013: no dataset folder {tmp_path / 'tid2013'}; pass data.root=/path/to/" \
                  "tid2013 or set ZSIQA_DATA to the folder that holds your datasets (default ./data)\n"
    assert not (tmp_path / "runs").exists()  # nothing written before the run really starts


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("ZSIQA_DEBUG", "1")
    with pytest.raises(ConfigError, match="unknown key run.batchsize"):
        entry_point("evaluate").main(["run.batchsize=4"])
    monkeypatch.delenv("ZSIQA_DEBUG")
    with pytest.raises(MissingFileError, match="no such file"):
        compose_config("evaluate", ["trained=/no/trained.pt"])


def test_command_line_errors_exit_2_with_one_line_and_no_traceback():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    for entry, arg in (("evaluate", "run.batchsize=4"), ("train", "data=foo")):
        proc = subprocess.run([sys.executable, f"{entry}.py", arg], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith(f"{entry}.py: error: {arg}: ")


def test_help_lists_groups_and_options(capsys, monkeypatch):
    monkeypatch.setattr("sys.argv", ["evaluate.py"])
    assert entry_point("evaluate").main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "python evaluate.py [-m] [key=value ...]" in out and "distance=[l2,cos,...]" in out
    assert "backbone: clip_rn50, clip_vitb32" in out and "experiment: geometric_suite, paper_table2" in out


def test_entry_points_drop_lightning_tips_and_banners(caplog):
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    from zsiqa.entry_point import quiet_libraries

    quiet_libraries()
    with caplog.at_level("INFO"):
        rank_zero_info("💡 Tip: For seamless cloud logging, try installing litlogger")
        rank_zero_info("GPU available: False, used: False")
        rank_zero_info("TPU available: False, using: 0 TPU cores")
        rank_zero_info("`Trainer.fit` stopped: `max_epochs=3` reached.")
    assert [r.getMessage() for r in caplog.records] == ["`Trainer.fit` stopped: `max_epochs=3` reached."]


REFAULTS = """
import resource, sys, torch
from zsiqa.entry_point import keep_freed_memory
print(keep_freed_memory() if sys.argv[1] == "keep" else "default")
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):  # 64 MB (16,384 pages), freed at once: above glibc's largest automatic mmap threshold
    torch.empty(2**24).fill_(1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc settings")
def test_engine_processes_keep_freed_memory_instead_of_faulting_it_in_again():
    """Ten 64 MB blocks allocated and freed in turn: under glibc's defaults each is faulted in afresh (what every
    backbone call and chunk paid); after keep_freed_memory() the heap settles on two or three such blocks (an aligned
    block does not always fit the hole its predecessor left) and reuses them. A user's own malloc settings win."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    runs = {mode: subprocess.run([sys.executable, "-c", REFAULTS, mode], capture_output=True, text=True, check=True,
                                 cwd=REPO, env=env).stdout.split() for mode in ("default", "keep")}
    assert runs["keep"][0] == "True" and int(runs["keep"][1]) < 5 * 16_384
    assert int(runs["default"][1]) > 9 * 16_000
    user = subprocess.run([sys.executable, "-c", REFAULTS, "keep"], capture_output=True, text=True, check=True,
                          cwd=REPO, env={**env, "MALLOC_TRIM_THRESHOLD_": "1048576"}).stdout.split()
    assert user[0] == "False" and int(user[1]) > 9 * 16_000


def test_lightning_objects_come_from_the_config_and_the_command_line(tmp_path):
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, Timer

    from zsiqa.engine.build import build_callbacks, build_logger, build_trainer

    cfg = compose_config("train", ["trainer.max_epochs=3", "callbacks.early_stopping.patience=2",
                                   "+callbacks.timer._target_=lightning.pytorch.callbacks.Timer"])
    callbacks = build_callbacks(cfg.callbacks, tmp_path)
    assert [type(c) for c in callbacks] == [ModelCheckpoint, ModelCheckpoint, EarlyStopping, Timer]
    assert callbacks[0].dirpath == str(tmp_path / "checkpoints") and callbacks[2].patience == 2
    assert callbacks[1].filename == "last" and callbacks[1].monitor is None  # written every epoch
    logger = build_logger(cfg.logger, tmp_path)
    trainer = build_trainer(cfg.trainer, callbacks, logger=logger)
    assert trainer.max_epochs == 3 and trainer.logger is logger and logger.save_dir == str(tmp_path)
    assert build_logger(compose_config("evaluate").logger, tmp_path) is None  # logger=none


def test_sweep_cells_are_the_product_of_the_comma_lists_and_the_command_line_wins():
    from zsiqa.config.command_line import sweep_cells

    assert sweep_cells(["backbone=a,b", "transform=x,y", "run.seed=1"]) == [
        ["backbone=a", "transform=x", "run.seed=1"], ["backbone=a", "transform=y", "run.seed=1"],
        ["backbone=b", "transform=x", "run.seed=1"], ["backbone=b", "transform=y", "run.seed=1"]]
    # an experiment's hydra.sweeper.params come first; the same key on the command line replaces them
    assert sweep_cells(["backbone=a,b", "transform=x", "backbone=c"]) == [["backbone=c", "transform=x"]]
    assert sweep_cells(["distance=[l2],[cos]"]) == [["distance=[l2]"], ["distance=[cos]"]]
