import numpy as np
import pytest
from PIL import Image

from zsiqa.cli import main


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(ref).save(tmp_path / "ref.png")
    Image.fromarray(255 - ref).save(tmp_path / "dis.png")
    return tmp_path / "ref.png", tmp_path / "dis.png"


def test_score_prints_the_metric_score(pair, capsys):
    ref, dis = pair
    assert main(["score", str(ref), str(dis), "--backbone", "efficientnet_lite0", "--distance", "cos", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0 cos (paper):" in out and "lower = better" in out
    assert main(["score", str(ref), str(ref), "--backbone", "efficientnet_lite0", "-q", "--device", "cpu"]) == 0
    assert float(capsys.readouterr().out) == 0.0


def test_list_shows_backbones_distances_presets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("dino_vitb16", "clip_vitb32", "efficientnet_lite0", "vgg16", "wsd", "deepssim", "cos_channel", "paper, fixed"):
        assert name in out


def test_missing_weights_offline_is_one_clear_error(pair, capsys):
    assert main(["score", str(pair[0]), str(pair[1]), "--backbone", "dino_vits16", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("zsiqa: error: backbone 'dino_vits16': pretrained weights are not available")
    assert "zsiqa download dino_vits16" in err and "--weights PATH (zsiqa score)" in err and "Traceback" not in err
    assert main(["download", "dino_vits16"]) == 1
    assert "weights=PATH (create_metric" in capsys.readouterr().err


def test_missing_weights_offline_raises_under_debug(pair):
    from zsiqa.backbones.weights import WeightsUnavailableError

    with pytest.raises(WeightsUnavailableError, match="zsiqa download dino_vits16"):
        main(["--debug", "score", str(pair[0]), str(pair[1]), "--backbone", "dino_vits16", "--device", "cpu"])


def test_missing_image_names_the_file(tmp_path, capsys):
    assert main(["score", str(tmp_path / "nope.png"), str(tmp_path / "x.png"), "--backbone", "efficientnet_lite0",
                 "--device", "cpu"]) == 1
    assert capsys.readouterr().err == f"zsiqa: error: image not found: {tmp_path / 'nope.png'}\n"
