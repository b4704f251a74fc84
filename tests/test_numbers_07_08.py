"""Every number issue #9 lists for notebooks 07 and 08, computed from the notebooks' own reference code.

The reference is the source notebooks' solution and instructor cells (grader.reference); the numbers are
recomputed here with those functions and the given layers, so a notebook edit that changes one fails here
as well as in the notebook's own assertions.
"""
from __future__ import annotations

import numpy as np
import pytest

from grader.reference import reference
from workbook.layers import affine_forward, conv_forward, max_pool_forward, relu_forward
from workbook.tables import format_bytes


@pytest.fixture(scope="module")
def ref07():
    return reference("07_fc_to_conv")


@pytest.fixture(scope="module")
def ref08():
    return reference("08_vgg_memory")


def _total(rows, key, skip=()):
    return sum(r[key] for r in rows if r["type"] not in skip)


# --- 07_fc_to_conv ---------------------------------------------------------------------------------------------

def test_vgg_reaches_7x7x512_at_224_and_alexnet_6x6x256(ref07, ref08):
    assert ref07.vgg16_last_volume(224) == (512, 7)
    vgg = ref08.layer_table(ref08.VGG16, (3, 224, 224))
    before_fc = next(i for i, r in enumerate(vgg) if r["type"] == "fc") - 1
    assert vgg[before_fc]["shape"] == (512, 7, 7)
    assert sum(layer["type"] == "pool" for layer in ref08.VGG16) == 5
    alex = ref08.layer_table(ref08.ALEXNET, (3, 227, 227))
    before_fc = next(i for i, r in enumerate(alex) if r["type"] == "fc") - 1
    assert alex[before_fc]["shape"] == (256, 6, 6)
    assert sum(layer["type"] == "pool" for layer in ref08.ALEXNET) == 3


def test_384_gives_12x12x512_and_a_6x6_map_of_1000_scores(ref07, ref08):
    assert ref07.vgg16_last_volume(384) == (512, 12)
    # the converted VGG16: the first FC layer as a 7x7 convolution, the others as 1x1 convolutions
    converted = [layer for layer in ref08.VGG16 if layer["type"] != "fc"]
    converted += [ref08.conv_spec(4096, 7), ref08.relu_spec(), ref08.conv_spec(4096, 1), ref08.relu_spec(),
                  ref08.conv_spec(1000, 1)]
    rows = ref08.layer_table(converted, (3, 384, 384))
    assert rows[-6]["shape"] == (512, 12, 12)
    assert rows[-1]["shape"] == (1000, 6, 6)
    assert ((384 - 224) // 32 + 1) ** 2 == 36


def test_one_pass_against_36_crops_in_multiply_adds(ref07, ref08):
    one_crop = sum(ref07.vgg16_mult_adds(224))
    assert one_crop == _total(ref08.layer_table(ref08.VGG16, (3, 224, 224)), "mult_adds") == 15_470_264_320
    assert 36 * one_crop == 556_929_515_520
    assert sum(ref07.vgg16_mult_adds(384)) == 49_551_114_240


def _convert(ref07, net, shape3, hidden=32):
    w3, b3 = ref07.fc_to_conv(net["W3"], net["b3"], shape3)
    w4, b4 = ref07.fc_to_conv(net["W4"], net["b4"], (hidden, 1, 1))
    return w3, b3, w4, b4


def _one_pass(ref07, x, net, converted):
    w3, b3, w4, b4 = converted
    a = ref07.conv_stages(x, net)
    a, _ = relu_forward(conv_forward(a, w3, b3, ref07.VALID)[0])
    return conv_forward(a, w4, b4, ref07.VALID)[0]


def _crops(ref07, x, net, crop, stride):
    n = (x.shape[2] - crop) // stride + 1, (x.shape[3] - crop) // stride + 1
    out = np.zeros((x.shape[0], 10) + n)
    for i in range(n[0]):
        for j in range(n[1]):
            out[:, :, i, j] = ref07.small_net_scores(x[:, :, i * stride:i * stride + crop,
                                                       j * stride:j * stride + crop], net)
    return out


def test_converted_small_net_equals_every_crop_at_stride_k_and_k_over_2(ref07):
    net = ref07.small_net
    converted = _convert(ref07, net, (16, 3, 3))
    x = np.random.default_rng(11).standard_normal((2, 3, 50, 46))            # non-square, N = 2
    np.testing.assert_allclose(_one_pass(ref07, x, net, converted), _crops(ref07, x, net, 18, 4),
                               rtol=1e-10, atol=1e-12)
    x = np.random.default_rng(12).standard_normal((1, 3, 52, 52))
    dense = np.zeros((1, 10, 18, 18))
    for a in (0, 2):
        for b in (0, 2):
            dense[:, :, a // 2::2, b // 2::2] = _one_pass(ref07, x[:, :, a:a + 50, b:b + 50], net, converted)
    np.testing.assert_allclose(dense, _crops(ref07, x, net, 18, 2), rtol=1e-10, atol=1e-12)
    assert ref07.small_net_mult_adds(18) * 81 == 8_237_376 and ref07.small_net_mult_adds(50) == 1_454_400


def test_with_zero_padding_the_one_pass_only_approximates_the_crops(ref07):
    net = dict(ref07.small_net, W3=np.random.default_rng(2).standard_normal((16 * 4 * 4, 32)) * 0.1)
    same = {"stride": 1, "pad": 1}

    def stages(x):
        a, _ = conv_forward(x, net["w1"], net["b1"], same)
        a, _ = max_pool_forward(relu_forward(a)[0], ref07.POOL2)
        a, _ = conv_forward(a, net["w2"], net["b2"], same)
        return max_pool_forward(relu_forward(a)[0], ref07.POOL2)[0]

    w3, b3, w4, b4 = _convert(ref07, net, (16, 4, 4))
    x = np.random.default_rng(4).standard_normal((1, 3, 48, 48))
    h, _ = relu_forward(conv_forward(stages(x), w3, b3, ref07.VALID)[0])
    one_pass = conv_forward(h, w4, b4, ref07.VALID)[0]
    crop = stages(x[:, :, :16, :16])
    first = affine_forward(relu_forward(affine_forward(crop, net["W3"], net["b3"])[0])[0], net["W4"], net["b4"])[0]
    assert not np.allclose(one_pass[:, :, 0, 0], first, rtol=1e-6, atol=1e-9)


# --- 08_vgg_memory ---------------------------------------------------------------------------------------------

def test_vgg16_activations_parameters_and_first_fc(ref08):
    rows = ref08.layer_table(ref08.VGG16, (3, 224, 224))
    assert _total(rows, "activations", skip=("relu",)) == 15_237_608        # the notes' rows, input included
    assert _total(rows, "activations") == 28_793_320                       # every ReLU output stored too
    assert _total(rows, "weights") + _total(rows, "biases") == 138_357_544
    fc6 = next(r for r in rows if r["name"] == "fc6")
    assert fc6["weights"] == 102_760_448
    # the notes' "24M * 4 bytes ~= 93MB": 96 MB, 91.6 MiB; the rows in float32: 58.1 MiB
    assert 24_000_000 * 4 == 96_000_000 and format_bytes(96_000_000) == "91.6 MiB"
    assert format_bytes(15_237_608 * 4) == "58.1 MiB"


def test_vgg16_memory_early_parameters_in_fc(ref08):
    rows = [r for r in ref08.layer_table(ref08.VGG16, (3, 224, 224)) if r["type"] != "relu"]
    activations = [r["activations"] for r in rows]
    params = [r["weights"] + r["biases"] for r in rows]
    assert sum(activations[:7]) / sum(activations) > 0.7                  # input, stage 1, stage 2
    assert sum(p for r, p in zip(rows, params) if r["type"] == "fc") / sum(params) > 0.89
    assert np.argmax(activations) in (1, 2)                                # conv1_1 / conv1_2


def test_vgg16_receptive_fields(ref08):
    rows = ref08.layer_table(ref08.VGG16, (3, 224, 224))
    fields = [r["rf"][0] for r in rows if r["type"] in ("conv", "pool")]
    assert fields == [3, 5, 6, 10, 14, 16, 24, 32, 40, 44, 60, 76, 92, 100, 132, 164, 196, 212]
    assert [ref08.field_by_back_projection(ref08.VGG16, i) for i, layer in enumerate(ref08.VGG16)
            if layer["type"] in ("conv", "pool")] == fields


def test_the_notes_memory_example_and_the_first_layer_compromise(ref08):
    three = [ref08.conv_spec(64, 3, 1, 1) for _ in range(3)]
    memory = ref08.training_memory(three, (3, 224, 224), 1, "float32", "sgd")
    assert memory["activations"] == 2 * 9_633_792 * 4 == 77_070_336
    assert format_bytes(memory["activations"]) == "73.5 MiB"
    first = {}
    for label, arch, size in [("vgg", [ref08.conv_spec(64, 3, 1, 1)], 224),
                              ("zf", [ref08.conv_spec(96, 7, 2, 1, rounding="floor")], 224),
                              ("alexnet", [ref08.conv_spec(96, 11, 4)], 227)]:
        rows = ref08.layer_table(arch, (3, size, size))
        first[label] = (rows[1]["shape"], rows[1]["activations"], rows[1]["mult_adds"])
    assert first["zf"][:2] == ((96, 110, 110), 1_161_600) and first["alexnet"][:2] == ((96, 55, 55), 290_400)
    assert first["vgg"][1] > 11 * first["alexnet"][1] and first["vgg"][2] < first["alexnet"][2] < first["zf"][2]


def test_alexnet_layer_by_layer(ref08):
    rows = ref08.layer_table(ref08.ALEXNET, (3, 227, 227))
    walk = [r["shape"][1] for r in rows if r["type"] in ("input", "conv", "pool")]
    assert walk == [227, 55, 27, 27, 13, 13, 13, 13, 6]
    names = [r["name"] for r in rows if r["type"] in ("conv", "pool")]
    assert [names[i - 1] for i, n in enumerate(names) if n.startswith("pool")] == ["conv1", "conv2", "conv5"]
    with pytest.raises(ValueError, match="54.25"):
        ref08.layer_table(ref08.ALEXNET, (3, 224, 224))
    torchvision = ref08.layer_table(ref08.ALEXNET_TORCHVISION, (3, 224, 224))
    assert [r["shape"][1] for r in torchvision if r["type"] in ("conv", "pool")] == walk[1:]
    conv1 = ref08.ALEXNET_TORCHVISION[0]
    assert (conv1["pad"], conv1["rounding"]) == (2, "floor") and (224 + 2 * 2 - 11) / 4 + 1 == 55.25


def test_the_notes_patterns_and_the_sizing_check(ref08):
    for N, M, K, pool in ref08.NOTES_PATTERNS.values():
        assert ref08.check_sizes(ref08.pattern(N, M, K, pool=pool), (3, 32, 32)) == []
    assert ref08.describe_arch(ref08.pattern(1, 2, 1)) == \
        "INPUT -> CONV -> RELU -> POOL -> CONV -> RELU -> POOL -> FC -> RELU -> FC"
    assert ref08.check_sizes(ref08.VGG16, (3, 224, 224)) == []
    assert ref08.check_sizes(ref08.pattern(2, 5, 2), (3, 227, 227))                       # not divisible by 32
    assert ref08.check_sizes(ref08.pattern(1, 2, 1, size=4), (3, 32, 32))                 # no 'same' padding
    assert any("rounding" in p for p in ref08.check_sizes(ref08.ZFNET, (3, 224, 224)))


def test_three_3x3_against_one_7x7(ref08):
    C = 64
    stack = [layer for _ in range(3) for layer in (ref08.conv_spec(C, 3, 1, 1, bias=False), ref08.relu_spec())]
    single = [ref08.conv_spec(C, 7, 1, 3, bias=False), ref08.relu_spec()]
    s, o = (ref08.layer_table(a, (C, 56, 56)) for a in (stack, single))
    assert (_total(s, "weights"), _total(o, "weights")) == (27 * C * C, 49 * C * C)
    assert _total(s, "activations") - 56 * 56 * C == 3 * (_total(o, "activations") - 56 * 56 * C)
    assert s[-1]["rf"] == o[-1]["rf"] == (7, 7)


PUBLISHED_TORCHVISION = {  # parameters, and GFLOPS (multiply-adds) as torchvision documents them
    "ALEXNET_TORCHVISION": (61_100_840, 0.71),
    "VGG16": (138_357_544, 15.47),
    "RESNET18": (11_689_512, 1.81),
    "RESNET34": (21_797_672, 3.66),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED_TORCHVISION))
def test_case_studies_match_torchvision(ref08, name):
    rows = ref08.layer_table(getattr(ref08, name), (3, 224, 224))
    params, gflops = PUBLISHED_TORCHVISION[name]
    assert _total(rows, "weights") + _total(rows, "biases") == params
    assert round(_total(rows, "mult_adds") / 1e9, 2) == gflops


def test_case_studies_other_counts(ref08):
    def params(arch, shape):
        rows = ref08.layer_table(arch, shape)
        return _total(rows, "weights") + _total(rows, "biases")

    assert params(ref08.ALEXNET, (3, 227, 227)) == 60_965_224              # the notes' "60M"
    assert params(ref08.ALEXNET_ONE_TOWER, (3, 227, 227)) == 62_378_344
    assert params(ref08.LENET5, (1, 32, 32)) == 61_706
    googlenet = params(ref08.GOOGLENET, (3, 224, 224))
    assert googlenet == ref08.googlenet_params == 6_998_552                 # not the notes' "4M"
    assert googlenet - 1_025_000 > 4_000_000 * 1.4
    gap = next(r for r in ref08.layer_table(ref08.GOOGLENET, (3, 224, 224)) if r["type"] == "gap")
    assert gap["shape"] == (1024, 1, 1)                                    # average pooling instead of FC layers
    assert ref08.resnet_parameters((2, 2, 2, 2)) == 11_689_512 and ref08.resnet_parameters((3, 4, 6, 3)) == 21_797_672


def test_max_batch_size_is_the_largest_that_fits(ref08):
    for arch, shape in [(ref08.VGG16, (3, 224, 224)), (ref08.RESNET18, (3, 224, 224)), (ref08.LENET5, (1, 32, 32))]:
        batch = ref08.max_batch_size(arch, 12 * 2 ** 30, shape, "float32", "momentum")
        assert ref08.training_memory(arch, shape, batch, "float32", "momentum")["total"] <= 12 * 2 ** 30
        assert ref08.training_memory(arch, shape, batch + 1, "float32", "momentum")["total"] > 12 * 2 ** 30
