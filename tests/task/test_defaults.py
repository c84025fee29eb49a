"""fit_defaults: the default search by image size, hardware and time budget (no training here)."""
from __future__ import annotations

import statistics

import pytest

from jaxgluon.space import Categorical
from jaxgluon.task import defaults as d


class Sizes:
    """A stand-in source: ``n`` images of one size (fit_defaults reads ``len`` and ``image_sizes``)."""

    def __init__(self, n: int, side: int):
        self.image_sizes = [(side, side + 10)] * n

    def __len__(self) -> int:
        return len(self.image_sizes)


def test_small_images_get_the_cifar_net_at_32px():
    got = d.fit_defaults(Sizes(100, 28), backend="cpu", time_limits=60)
    assert (got.net, got.image_size) == ("cifar_resnet20_v1", 32)


def test_accelerators_get_imagenet_nets_at_224px():
    got = d.fit_defaults(Sizes(100, 300), backend="gpu")
    assert got.image_size == 224 and got.batch_size == 64
    assert set(got.net.choices) == {"efficientnet_lite0", "resnet50_v1b"}


def test_cpu_without_time_limits_uses_the_fixed_cpu_defaults():
    got = d.fit_defaults(Sizes(100, 300), backend="cpu")
    assert (got.net, got.image_size, got.epochs, got.batch_size) == (
        "efficientnet_lite0", d.DEFAULT_CPU_IMAGE_SIZE, d.DEFAULT_CPU_EPOCHS, 32)


def test_cpu_image_size_and_epochs_follow_the_budget():
    sizes = [d.cpu_size_and_epochs(245, t, cpus=2)[0] for t in (60, 600, 6000, 60000)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1] == max(d.CPU_IMAGE_SIZES)
    assert d.cpu_size_and_epochs(200, 600, cpus=2)[0] > d.cpu_size_and_epochs(20000, 600, cpus=2)[0]
    assert d.cpu_size_and_epochs(245, 600, cpus=2)[0] >= d.cpu_size_and_epochs(245, 600, cpus=0.3)[0]
    for n, t in [(10, 10), (245, 600), (3702, 600), (100000, 60), (245, 1e6)]:
        size, epochs = d.cpu_size_and_epochs(n, t, cpus=2)
        assert size in d.CPU_IMAGE_SIZES and 1 <= epochs <= d.MAX_EPOCHS


def test_the_chosen_size_leaves_room_for_the_planned_trials():
    size, epochs = d.cpu_size_and_epochs(245, 600, cpus=2)
    if size != min(d.CPU_IMAGE_SIZES):
        assert d.budget_epochs(245, size, 600, d.TARGET_TRIALS, cpus=2) >= d.TARGET_TRIALS * d.MIN_EPOCHS
        larger = [s for s in d.CPU_IMAGE_SIZES if s > size]
        assert all(d.budget_epochs(245, s, 600, d.TARGET_TRIALS, cpus=2) < d.TARGET_TRIALS * d.MIN_EPOCHS
                   for s in larger)


def test_default_optimizers_search_fine_tuning_learning_rates():
    def bounds(opts):
        assert isinstance(opts, Categorical)
        return [(o.params["learning_rate"].lower, o.params["learning_rate"].upper) for o in opts.choices]

    frozen, training = bounds(d.default_optimizers()), bounds(d.default_optimizers(frozen_batchnorm=False))
    assert max(hi for _, hi in frozen) <= 3e-4 and min(lo for lo, _ in frozen) >= 1e-5  # frozen BatchNorm: lower
    assert frozen[0][1] <= 3e-4   # SGD: 5e-4 and up collapsed fine-tuning on flowers5 (defaults docstring)
    assert all(f_hi < t_hi for (_, f_hi), (_, t_hi) in zip(frozen, training))
    assert max(hi for _, hi in training) <= 0.03


@pytest.mark.parametrize("bad", [0, -5, float("nan"), "600"])
def test_bad_time_limits_are_rejected(bad):
    with pytest.raises(ValueError, match="time_limits"):
        d.fit_defaults(Sizes(10, 300), backend="cpu", time_limits=bad)


def test_default_nets_without_loadable_weights_are_left_out(monkeypatch):
    """fit's default space drops a net whose pretrained weights do not load (one warning, recorded); when none
    loads, the first stays; without check_weights (or for a user's space) nothing is dropped."""
    missing = {"resnet50_v1b": "offline: resnet50-0676ba61.pth not cached"}
    monkeypatch.setattr(d.models, "pretrained_unavailable", lambda name: missing.get(name))
    got = d.fit_defaults(Sizes(100, 300), backend="gpu", check_weights=True)
    assert got.net == "efficientnet_lite0" and got.left_out == missing
    assert set(d.fit_defaults(Sizes(100, 300), backend="gpu").net.choices) == {"efficientnet_lite0", "resnet50_v1b"}
    missing["efficientnet_lite0"] = "no wheel"
    net, left_out = d.loadable_nets(Categorical("efficientnet_lite0", "resnet50_v1b"))
    assert net == "efficientnet_lite0" and set(left_out) == {"resnet50_v1b"}
    missing.clear()
    space = Categorical("efficientnet_lite0", "resnet50_v1b")
    assert d.loadable_nets(space) == (space, {})


def test_cpu_search_mixes_the_lite_nets_only_when_the_budget_holds_them_at_lite0s_side():
    for n, t in [(245, 600), (600, 600), (3702, 600), (1000, 1800)]:
        net, size, epochs = d.cpu_search(n, t, cpus=2)
        assert size == d.cpu_size_and_epochs(n, t, cpus=2)[0]            # the side is efficientnet_lite0's
        assert set(net.choices) == set(d.CPU_NETS) and d.MIN_MIXED_EPOCHS <= epochs <= d.MAX_EPOCHS
        mean = d.net_cost(net, statistics.mean)
        assert d.budget_epochs(n, size, t, d.TARGET_TRIALS, cpus=2, cost=mean) >= d.TARGET_TRIALS * epochs
    for n, t in [(245, 15), (245, 60), (3702, 120)]:   # too short for the mix: efficientnet_lite0 as before
        assert d.cpu_search(n, t, cpus=2) == ("efficientnet_lite0", *d.cpu_size_and_epochs(n, t, cpus=2))
    assert d.cpu_search(245, None, cpus=2)[0] == "efficientnet_lite0"


def test_fit_defaults_on_a_cpu_take_the_mix_and_leave_out_nets_whose_wheel_is_missing(monkeypatch):
    got = d.fit_defaults(Sizes(245, 300), backend="cpu", time_limits=600)
    assert set(got.net.choices) == set(d.CPU_NETS) and got.image_size == d.cpu_search(245, 600)[1]
    missing = {"efficientnet_lite2": "no wheel"}
    monkeypatch.setattr(d.models, "pretrained_unavailable", lambda name: missing.get(name))
    got = d.fit_defaults(Sizes(245, 300), backend="cpu", time_limits=600, check_weights=True)
    assert set(got.net.choices) == {"efficientnet_lite0", "efficientnet_lite1"} and got.left_out == missing
    assert got.epochs == d.cpu_search(245, 600, nets=("efficientnet_lite0", "efficientnet_lite1"))[2]
    missing["efficientnet_lite1"] = "no wheel"   # Lite0 alone: its own epochs, not the mix's fewer
    got = d.fit_defaults(Sizes(245, 300), backend="cpu", time_limits=600, check_weights=True)
    assert got.net == "efficientnet_lite0" and got.epochs == d.cpu_size_and_epochs(245, 600)[1]


def test_epoch_estimates_scale_with_the_nets_cost():
    assert d.net_cost("efficientnet_lite2") > d.net_cost("efficientnet_lite1") > d.net_cost("efficientnet_lite0")
    assert d.net_cost("a_net_not_listed") == 1.0
    assert d.epoch_seconds(500, 128, cpus=2, cost=2.0) == pytest.approx(2 * d.epoch_seconds(500, 128, cpus=2))
    assert d.budget_epochs(500, 128, 600, 3, cpus=2, cost=2.0) < d.budget_epochs(500, 128, 600, 3, cpus=2)
