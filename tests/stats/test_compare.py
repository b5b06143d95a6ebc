"""`zsiqa compare`: sources (run folders, published CSVs), pair matching and its errors, leaderboard, letters, outputs."""
import csv
import json
import time

import numpy as np
import pytest

from zsiqa.cli import main
from zsiqa.errors import InputError, MissingFileError
from zsiqa.stats.compare import compact_letters, compare, read_predictions, read_run


def _pipal_like(n_refs: int, per_ref: int, seed: int = 0) -> dict:
    """PIPAL-shaped pairs: ``A0001.bmp`` references, ``A0001_00_07.bmp`` distorted images, Elo-like MOS."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_refs), per_ref)
    quality = 0.5 * rng.normal(size=n_refs)[ids] + rng.normal(size=ids.size)
    good = quality + 0.8 * rng.normal(size=n_refs)[ids] + rng.normal(size=ids.size)
    return {
        "ref": [f"A{i:04d}.bmp" for i in ids],
        "dis": [f"A{i:04d}_{k % 10:02d}_{k:02d}.bmp" for i, k in zip(ids, np.tile(np.arange(per_ref), n_refs))],
        "type": [f"t{k % 3}" for k in np.tile(np.arange(per_ref), n_refs)],
        "mos": 1450 + 100 * quality,
        "good": good,
        "noisier": good + rng.normal(0, 0.8, ids.size),
    }


def _write_published(path, data: dict, pred, order=None, columns=("dis", "ref", "mos", "pred")) -> str:
    order = np.arange(len(data["ref"])) if order is None else order
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for i in order:
            w.writerow([data["dis"][i], data["ref"][i], f"{data['mos'][i]:.6f}", repr(float(pred[i]))])
    return str(path)


def _write_run(run_dir, data: dict, metrics: dict) -> None:
    """A finished zsiqa run folder: scores.csv (full image paths) and summary.json (directions)."""
    run_dir.mkdir()
    with open(run_dir / "scores.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "ref", "dis", "label", "dist_type", "level", "ref_id", "transform", *metrics])
        for i in range(len(data["ref"])):
            w.writerow([i, f"/data/PIPAL/Train_Ref/{data['ref'][i]}", f"/data/PIPAL/Distortion_1/{data['dis'][i]}",
                        data["mos"][i], data["type"][i], "", data["ref"][i][:-4], "none",
                        *(values[i] for values, _ in metrics.values())])
    summary = {"metrics": {m: {"lower_better": lb} for m, (_, lb) in metrics.items()}, "label_lower_better": False}
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_pipal_sized_published_csvs_run_in_seconds(tmp_path, capsys):
    data = _pipal_like(200, 116)
    rng = np.random.default_rng(1)
    # Lower-is-better distances (negated quality), rows shuffled differently in every file.
    paths = {name: _write_published(tmp_path / f"{name}.csv", data, -data[name], rng.permutation(23200))
             for name in ("good", "noisier")}
    start = time.perf_counter()
    code = main(["compare", "--csv", f"good={paths['good']}:lower", "--csv", f"noisier={paths['noisier']}:lower",
                 "--label-direction", "higher", "--json", str(tmp_path / "out.json")])
    elapsed = time.perf_counter() - start
    out = capsys.readouterr().out
    print(f"zsiqa compare, 2 metrics x 23,200 pairs / 200 references, 1000 resamples: {elapsed:.1f} s")
    assert code == 0
    result = json.loads((tmp_path / "out.json").read_text())
    assert set(result) == {"metrics", "pairs"}
    assert list(result["metrics"]) == ["good", "noisier"]
    for m in result["metrics"].values():
        assert set(m) == {"srcc", "srcc_ci", "plcc", "krcc", "n"} and m["n"] == 23200
        assert m["srcc_ci"][0] < m["srcc"] < m["srcc_ci"][1]
    (pair,) = result["pairs"]
    assert set(pair) == {"a", "b", "delta_srcc", "ci", "p"} and (pair["a"], pair["b"]) == ("good", "noisier")
    assert pair["delta_srcc"] > 0 and pair["ci"][0] > 0 and pair["p"] < 0.01
    assert "| 1 | good |" in out and "| 2 | noisier |" in out and "ΔSRCC" in out


def test_monotone_transform_is_not_different_and_shares_a_group(tmp_path):
    data = _pipal_like(20, 12)
    sources = [
        read_predictions(_write_published(tmp_path / "a.csv", data, data["good"]), "a", False, False),
        # The same ranking, expressed as a lower-is-better distance on another scale.
        read_predictions(_write_published(tmp_path / "b.csv", data, -np.exp(data["good"] / 2)), "b", True, False),
        read_predictions(_write_published(tmp_path / "c.csv", data, data["noisier"]), "c", False, False),
    ]
    result = compare(sources, n_resamples=300)
    pairs = {(p["a"], p["b"]): p for p in result["pairs"]}
    same = pairs.get(("a", "b")) or pairs[("b", "a")]
    assert same["delta_srcc"] == 0.0 and same["p"] == 1.0 and same["ci"] == [0.0, 0.0]
    assert result["metrics"]["a"]["srcc"] == result["metrics"]["b"]["srcc"]
    assert result["metrics"]["a"]["group"] == result["metrics"]["b"]["group"]


def test_run_folders_and_csvs_are_matched_by_file_name(tmp_path, capsys):
    data = _pipal_like(8, 10)
    _write_run(tmp_path / "run1", data, {"l2": (-data["good"], True), "psnr": (data["noisier"], False)})
    csv_path = _write_published(tmp_path / "pub.csv", data, -data["noisier"], np.arange(80)[::-1])
    code = main(["compare", str(tmp_path / "run1"), "--csv", f"pub={csv_path}:lower", "--label-direction", "higher",
                 "--resamples", "200", "--by-type", "--json", str(tmp_path / "o.json"),
                 "--matrix", str(tmp_path / "m.csv"), "--plot", str(tmp_path / "p.png")])
    assert code == 0
    result = json.loads((tmp_path / "o.json").read_text())
    assert set(result["metrics"]) == {"run1/l2", "run1/psnr", "pub"}
    # psnr (higher better) and pub (lower better, negated values) hold the same ranking.
    assert result["metrics"]["run1/psnr"]["srcc"] == pytest.approx(result["metrics"]["pub"]["srcc"], abs=1e-12)
    assert result["metrics"]["run1/l2"]["srcc"] > 0.3
    assert sorted(result["by_type"]) == ["t0", "t1", "t2"]
    assert result["by_type"]["t0"]["metrics"]["pub"]["n"] == 32
    with open(tmp_path / "m.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 4 and len(rows[0]) == 7 and rows[0][0] == "metric"
    assert (tmp_path / "p.png").stat().st_size > 0
    assert "distortion type t1" in capsys.readouterr().out


def test_pair_mismatch_lists_what_differs(tmp_path):
    data = _pipal_like(5, 6)
    a = read_predictions(_write_published(tmp_path / "a.csv", data, data["good"]), "a", False, False)
    b = read_predictions(_write_published(tmp_path / "b.csv", data, data["good"], np.arange(29)), "b", False, False)
    with pytest.raises(InputError, match=r"b\.csv and .*a\.csv hold different pairs: 1 only in .*a\.csv "
                                         r"\[A0004\.bmp\|A0004_05_05\.bmp\], 0 only in"):
        compare([a, b], n_resamples=10)


def test_label_mismatch_and_duplicates_and_directions_are_errors(tmp_path, capsys):
    data = _pipal_like(5, 6)
    a = read_predictions(_write_published(tmp_path / "a.csv", data, data["good"]), "a", False, False)
    flipped = read_predictions(_write_published(tmp_path / "b.csv", data, data["good"]), "b", False, True)
    with pytest.raises(InputError, match="different labels .* for 30 pairs"):
        compare([a, flipped], n_resamples=10)
    dup = tmp_path / "dup.csv"
    _write_published(dup, data, data["good"], [0, 1, 2, 0])
    with pytest.raises(InputError, match=r"dup\.csv: pair A0000\.bmp\|A0000_00_00\.bmp appears on lines 2 and 5"):
        compare([read_predictions(dup, "d", False, False)], n_resamples=10)
    # the CLI prints an expected error as one line (exit 1); --debug raises it
    assert main(["compare", "--csv", f"a={tmp_path / 'a.csv'}:lower"]) == 1
    assert "zsiqa: error: --csv needs --label-direction" in capsys.readouterr().err
    with pytest.raises(InputError, match="NAME=PATH:lower"):
        main(["--debug", "compare", "--csv", f"a={tmp_path / 'a.csv'}", "--label-direction", "higher"])
    with pytest.raises(InputError, match=r"missing column\(s\) \['score'\]"):
        read_predictions(tmp_path / "a.csv", "a", False, False, columns={"pred": "score"})
    with pytest.raises(MissingFileError, match="not a finished zsiqa run folder"):
        read_run(tmp_path)


def test_non_numeric_prediction_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("dis,ref,mos,pred\nd1.png,r1.png,1.0,0.5\nd2.png,r1.png,2.0,nan\n")
    with pytest.raises(InputError, match=r"bad\.csv:3: column 'pred' is 'nan'"):
        read_predictions(path, "bad", False, False)


def test_compact_letters():
    names = ["a", "b", "c", "d"]
    assert compact_letters(names, []) == {"a": "a", "b": "a", "c": "a", "d": "a"}
    # a > c and a > d and b > d significant; neighbours not: a b c share letters along the ranking.
    assert compact_letters(names, [("a", "c"), ("a", "d"), ("b", "d")]) == {"a": "a", "b": "ab", "c": "bc", "d": "c"}
    assert compact_letters(["x", "y"], [("x", "y")]) == {"x": "a", "y": "b"}


def test_two_runs_compare_with_short_names_a_shared_baseline_once_and_intervals_that_hold_their_estimates(
        tmp_path, capsys):
    """The issue-21 case: two run folders with long names, the same PSNR column in both, --by-type with few
    references per type (where the bootstrap distribution can sit beside the estimate): never a crash."""
    data = _pipal_like(5, 12, seed=3)
    rng = np.random.default_rng(4)
    runs = []
    for preset in ("paper", "fixed"):
        run = tmp_path / f"efficientnet_lite0_{preset}_{'x' * 70}"
        _write_run(run, data, {"l2": (-data["good"] + rng.normal(0, 0.5, 60), True), "psnr": (data["noisier"], False)})
        summary = json.loads((run / "summary.json").read_text())
        summary["config"] = {"backbone": {"name": "efficientnet_lite0"}, "data": {"name": "pipal"},
                             "transform": {"name": "none", "amount": 0.0}, "preset": preset, "trained": None}
        (run / "summary.json").write_text(json.dumps(summary))
        runs.append(str(run))
    code = main(["compare", *runs, "--by-type", "--resamples", "300", "--json", str(tmp_path / "o.json"),
                 "--plot", str(tmp_path / "p.png")])
    assert code == 0 and (tmp_path / "p.png").stat().st_size > 10_000
    result = json.loads((tmp_path / "o.json").read_text())
    assert set(result["metrics"]) == {"efficientnet_lite0_paper/l2", "efficientnet_lite0_fixed/l2", "psnr"}
    for board in [result, *result["by_type"].values()]:
        for m in board["metrics"].values():
            assert m["srcc_ci"][0] <= m["srcc"] <= m["srcc_ci"][1]
        for p in board["pairs"]:
            assert p["ci"][0] <= p["delta_srcc"] <= p["ci"][1]
    out = capsys.readouterr().out
    assert "| 1 | 2 | 3 |" in out  # the matrix's columns are ranks


def test_default_names_say_what_differs():
    from zsiqa.stats.compare import default_prefixes

    assert default_prefixes(["/nonexistent/run_a"]) == ["run_a"]  # no summary: the folder name
