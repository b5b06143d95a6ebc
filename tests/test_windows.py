import pytest
import torch

from zsiqa.windows import crop_windows, pad_to_window, window_starts


@pytest.mark.parametrize(
    "length, starts",
    [(224, [0]), (288, [0, 64]), (384, [0, 160]), (512, [0, 200, 288]), (768, [0, 200, 400, 544]), (424, [0, 200]),
     (225, [0, 1]), (100, [0])],
)
def test_official_window_starts(length, starts):
    assert window_starts(length) == starts


def test_window_counts_of_the_paper_datasets():
    assert len(window_starts(288)) ** 2 == 4  # PIPAL
    assert len(window_starts(384)) * len(window_starts(512)) == 6  # TID2013 512x384
    assert len(window_starts(512)) * len(window_starts(768)) == 12  # LIVE 768x512


def test_crop_order_and_content():
    img = torch.arange(2 * 1 * 6 * 5, dtype=torch.float32).view(2, 1, 6, 5)
    crops, k = crop_windows(img, window=4, stride=2)
    # rows: range(0, 2, 2) + [2] = [0, 2]; cols: range(0, 1, 2) + [1] = [0, 1]
    assert k == 4 and crops.shape == (8, 1, 4, 4)
    expected = [img[n, :, x : x + 4, y : y + 4] for n in range(2) for x in (0, 2) for y in (0, 1)]
    for got, exp in zip(crops, expected):
        assert torch.equal(got, exp)


def test_small_images_are_padded_not_miscropped():
    img = torch.rand(1, 3, 100, 300)
    padded = pad_to_window(img, 224)
    assert padded.shape == (1, 3, 224, 300)
    assert torch.equal(padded[..., :100, :], img) and padded[..., 100:, :].abs().sum() == 0
    crops, k = crop_windows(img, 224)
    assert k == 2 and crops.shape == (2, 3, 224, 224)
    assert torch.equal(crops[1, :, :100, :], img[0, :, :, 76:300])


def test_bad_arguments():
    with pytest.raises(ValueError, match="stride"):
        window_starts(300, 224, 0)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        crop_windows(torch.rand(3, 10, 10), 4)
