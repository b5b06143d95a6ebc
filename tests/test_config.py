import pytest

from zsiqa.config import load_grid, parse_overrides


def test_defaults_resolve_groups():
    (cfg,) = load_grid("evaluate", [])
    assert cfg["backbone"]["name"] == "efficientnet_lite0" and cfg["backbone"]["pretrained"] is True
    assert cfg["data"]["name"] == "demo" and cfg["transform"] == {"name": "none", "amount": 0}
    assert cfg["distance"] == ["l2", "cos", "skld", "jsd", "wsd"]


def test_grid_lists_and_dotted_overrides():
    cells = load_grid("evaluate", [
        "backbone=dino_vitb16,timm:vit_tiny_patch16_224", "data=tid2013", "transform=none,rot,rotate@5",
        "distance=l2,wsd", "baselines=[]", "data.root=/x/tid", "run.devices=2", "backbone.pretrained=false",
    ])
    assert len(cells) == 6
    assert [c["backbone"]["name"] for c in cells[:3]] == ["dino_vitb16"] * 3
    assert cells[3]["backbone"] == {"name": "timm:vit_tiny_patch16_224", "pretrained": False}
    assert [c["transform"] for c in cells[:3]] == [{"name": "none", "amount": 0}, {"name": "rot", "amount": 1},
                                                   {"name": "rotate", "amount": 5}]
    assert all(c["distance"] == ["l2", "wsd"] and c["baselines"] == [] for c in cells)
    assert all(c["data"]["root"] == "/x/tid" and c["run"]["devices"] == 2 for c in cells)


def test_dotted_comma_list_is_a_grid_axis():
    cells = load_grid("evaluate", ["transform=rotate", "transform.amount=1,2,4"])
    assert [c["transform"]["amount"] for c in cells] == [1, 2, 4]


def test_experiment_preset():
    cells = load_grid("evaluate", ["experiment=paper_table3", "data.root=/p"])
    assert len(cells) == 5 * 4 and all(c["data"]["name"] == "pipal" for c in cells)
    assert {c["transform"]["name"] for c in cells} == {"none", "tra", "sca", "rot"}


def test_clear_errors():
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["backbone"])
    with pytest.raises(ValueError, match="unknown option 'bakbone'"):
        load_grid("evaluate", ["bakbone=x"])
    with pytest.raises(ValueError, match="data='tid2014'.*choose one of"):
        load_grid("evaluate", ["data=tid2014"])
    with pytest.raises(ValueError, match="transform='rotate' needs an amount: transform=rotate@AMOUNT"):
        load_grid("evaluate", ["transform=rotate"])
    with pytest.raises(ValueError, match="not a section"):
        load_grid("evaluate", ["preset.x=1"])
