"""Tests of lib.cnn: the small CNN, its filter table, the trainer, and domain-shifted images."""

import pytest
import torch
import torch.nn.functional as F

from lib.cnn import SmallCNN, accuracy, conv_layers, digits_split, filter_table, shift_images, train_classifier


def test_small_cnn_shapes_and_filter_table():
    model = SmallCNN((4, 6, 8), pool_after=(2,), num_classes=5)
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 5)
    names, layer_of, index_in = filter_table(model)
    assert names == ["convs.conv1", "convs.conv2", "convs.conv3"]
    assert layer_of.tolist() == [0] * 4 + [1] * 6 + [2] * 8
    assert index_in.tolist() == list(range(4)) + list(range(6)) + list(range(8))
    assert [m.out_channels for _, m in conv_layers(model)] == [4, 6, 8]


def test_forward_matches_hand_written_layers():
    torch.manual_seed(0)
    model = SmallCNN((3, 5), pool_after=(1,))
    x = torch.rand(2, 1, 8, 8)
    h = F.avg_pool2d(F.relu(model.convs.conv1(x)), 2)
    h = F.relu(model.convs.conv2(h)).mean(dim=(2, 3))
    torch.testing.assert_close(model(x), model.head(h))


def test_training_fits_a_tiny_separable_problem():
    torch.manual_seed(0)
    X = torch.rand(64, 1, 8, 8)
    y = (X[:, 0, :4].mean((1, 2)) > X[:, 0, 4:].mean((1, 2))).long()
    X[y == 1, :, :4] += 1.0
    model = SmallCNN((4, 8), num_classes=2)
    hist = train_classifier(model, X, y, epochs=15, lr=2e-2, batch=16, seed=0)
    assert hist[-1] < hist[0]
    pred = model(X).argmax(-1)
    assert accuracy(model, X, y) == pytest.approx(float((pred == y).float().mean()))
    assert accuracy(model, X, y) > 0.9


def test_shift_images_invert_and_translate_by_brute_force():
    X = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(shift_images(X, invert=1.0), 1.0 - X)
    torch.testing.assert_close(shift_images(X), X)
    shifted = shift_images(X, translate=1, seed=3)
    padded = F.pad(X, (1, 1, 1, 1))
    for i in range(5):
        candidates = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(shifted[i], c) for c in candidates)
    noisy = shift_images(X, noise=0.5, contrast=(0.2, 0.5), seed=1)
    assert noisy.min() >= 0 and noisy.max() <= 1 and not torch.equal(noisy, X)


def test_digits_split_is_disjoint_and_complete():
    Xa, ya, Xb, yb = digits_split(0.4, seed=0)
    assert Xa.shape[1:] == (1, 8, 8) and Xa.shape[0] + Xb.shape[0] == 1797
    assert abs(Xb.shape[0] - 0.4 * 1797) <= 1


def test_errors_are_clear():
    with pytest.raises(ValueError, match="channels"):
        SmallCNN(())
    with pytest.raises(ValueError, match="pool_after"):
        SmallCNN((4,), pool_after=(2,))
    with pytest.raises(ValueError, match="shape"):
        SmallCNN((4,))(torch.rand(8, 8))
    with pytest.raises(ValueError, match="labels"):
        train_classifier(SmallCNN((4,)), torch.rand(4, 1, 8, 8), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="int64"):
        accuracy(SmallCNN((4,)), torch.rand(4, 1, 8, 8), torch.zeros(4))
    with pytest.raises(ValueError, match="probability"):
        shift_images(torch.rand(2, 1, 8, 8), invert=2.0)
    with pytest.raises(ValueError, match="filters"):
        filter_table(torch.nn.Linear(2, 2))
