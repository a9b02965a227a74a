"""MIMOConv / MIMO / MixMo: binding math, widths, replicas, padding, persistence."""

import numpy as np
import pytest
import torch

from edge_mimo.models import ModelConfig, build_model
from edge_mimo.models.base import replicate
from edge_mimo.models.mimoconv import KeyBinding
from edge_mimo.models.weights import count_macs, load_model, save_model
from edge_mimo.runtime.batching import width_groups
from edge_mimo.train import predict_logits

torch.set_num_threads(1)


def small_config(**kw) -> ModelConfig:
    base = dict(capacity=4, depth=10, widen=1, stem_channels=8, base_width=4)
    base.update(kw)
    return ModelConfig(**base)


def circular_convolution(x: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Reference HRR binding along channels: y[i] = sum_j x[j] * key[(i - j) mod C], by explicit loops."""
    c = key.shape[0]
    y = torch.zeros_like(x)
    for i in range(c):
        for j in range(c):
            y[:, i] += x[:, j] * key[(i - j) % c]
    return y


@pytest.mark.parametrize("width", [1, 2, 4])
def test_binding_as_1x1_conv_equals_circular_convolution(width):
    torch.manual_seed(0)
    binding = KeyBinding(capacity=4, channels=8).double()
    feats = torch.randn(3, width, 8, 5, 5, dtype=torch.float64)
    slots = replicate(feats, 4)  # slot s holds image s % width
    reference = sum(circular_convolution(slots[:, s], binding.keys[s].detach()) for s in range(4))
    assert torch.allclose(binding(feats), reference, atol=1e-5)


def test_binding_matches_circular_fft():
    """Circular convolution theorem: the same binding computed in the Fourier domain."""
    torch.manual_seed(1)
    binding = KeyBinding(capacity=4, channels=16)
    feats = torch.randn(2, 4, 16, 3, 3)
    spectrum = torch.fft.rfft(feats, dim=2) * torch.fft.rfft(binding.keys.detach(), dim=1)[None, :, :, None, None]
    reference = torch.fft.irfft(spectrum, n=16, dim=2).sum(1)
    assert torch.allclose(binding(feats), reference, atol=1e-5)


def test_key_regularizer_is_zero_for_orthonormal_keys():
    binding = KeyBinding(capacity=4, channels=8)
    with torch.no_grad():
        binding.keys.copy_(torch.eye(8)[:4])
    assert binding.regularizer().item() == pytest.approx(0.0, abs=1e-12)
    with torch.no_grad():
        binding.keys.mul_(2.0)
    assert binding.regularizer().item() > 1.0


@pytest.mark.parametrize("arch", ["mimoconv", "mimo", "mixmo", "mimoformer"])
@pytest.mark.parametrize("width", [1, 2])
def test_width_n_equals_explicit_replication(arch, width):
    torch.manual_seed(0)
    model = build_model(small_config(arch=arch)).eval()
    x = torch.randn(3, width, 1, 28, 28)
    with torch.no_grad():
        narrow = model(x)  # [B, 4/n, n, K], replication folded into the weights
        full = model(replicate(x, 4))  # [B, 1, 4, K], replication done by hand
    assert narrow.shape == (3, 4 // width, width, 10)
    assert torch.allclose(narrow, full.view(3, 4 // width, width, 10), atol=1e-4)


def test_replica_logits_average_to_the_prediction_of_averaged_features():
    """MIMONets averages an image's unbound features over its replicas; the classifier is linear."""
    torch.manual_seed(0)
    model = build_model(small_config()).eval()
    x = torch.randn(2, 2, 1, 28, 28)
    with torch.no_grad():
        logits = model(x)  # [2, 2, 2, K]
        stem = model.stem(x.flatten(0, 1)).view(2, 2, 8, 28, 28)
        slots = torch.relu(model.unbind(model.trunk(model.binding(stem)))).view(2, 2, 2, -1)  # [B, R, n, F]
        averaged = model.classifier(slots.mean(1))
    assert torch.allclose(logits.mean(1), averaged, atol=1e-5)


def test_mixmo_training_mix_shares_sum_to_one():
    torch.manual_seed(0)
    model = build_model(small_config(arch="mixmo")).train()
    model(torch.randn(5, 4, 1, 28, 28))
    assert model.mix_weights.shape == (5, 4)
    assert torch.allclose(model.mix_weights.sum(1), torch.ones(5), atol=1e-5)
    assert (model.mix_weights >= 0).all()


def test_bad_width_and_shape_are_refused():
    model = build_model(small_config()).eval()
    with pytest.raises(ValueError, match="does not divide"):
        model(torch.zeros(1, 3, 1, 28, 28))
    with pytest.raises(ValueError, match="batch, width"):
        model(torch.zeros(1, 1, 28, 28))


def test_incomplete_group_repeats_its_frames_never_drops_one():
    images = np.arange(7, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 2, 2), np.float32)
    groups = width_groups(images, 4)
    assert groups.shape == (2, 4, 1, 2, 2)
    assert groups[:, :, 0, 0, 0].tolist() == [[0, 1, 2, 3], [4, 5, 6, 4]]  # the runtime's round-robin spare slot


def test_predict_logits_is_the_runtimes_packing_and_keeps_order():
    torch.manual_seed(0)
    model = build_model(small_config()).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 1, 28, 28), dtype=np.uint8)
    logits = predict_logits(model, images, width=4)
    assert logits.shape == (7, 10)
    # The last group is [4, 5, 6, 4]: image 4 gets the spare position as a second replica, as in infer_many.
    last = predict_logits(model, images[[4, 5, 6, 4]], width=4)
    np.testing.assert_allclose(logits[5:], last[1:3], atol=1e-5)
    np.testing.assert_allclose(logits[4], (last[0] + last[3]) / 2, atol=1e-5)


@pytest.mark.parametrize("arch", ["mimoconv", "mimoformer"])  # MIMOFormer: its fixed keys and features too
def test_save_load_roundtrip(tmp_path, arch):
    torch.manual_seed(0)
    model = build_model(small_config(arch=arch)).eval()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    x = torch.randn(2, 4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.config == model.config


def test_macs_per_pass_grow_only_by_the_per_image_stem_and_binding():
    model = build_model(small_config())
    macs = {n: count_macs(model, n) for n in (1, 2, 4)}
    stem, binding = 1 * 8 * 9 * 28 * 28, 8 * 8 * 28 * 28  # per image: conv3x3 1->8, 1x1 slice 8->8
    assert macs[2] - macs[1] == stem + binding
    assert macs[4] - macs[2] == 2 * (stem + binding)


def test_default_architecture_costs_about_a_quarter_per_image_at_width_4():
    model = build_model(ModelConfig(depth=16, widen=4, stem_channels=32))
    per_image = {n: count_macs(model, n) / n for n in (1, 4)}
    assert 0.25 < per_image[4] / per_image[1] < 0.27


def test_config_validation_names_the_fix():
    with pytest.raises(ValueError, match="6k\\+4"):
        ModelConfig(depth=12)
    with pytest.raises(ValueError, match="unknown architecture"):
        ModelConfig(arch="resnet")
    with pytest.raises(ValueError, match="newer edge-mimo"):
        ModelConfig.from_dict({"arch": "mimoconv", "colour_space": "hsv"})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU and a CUDA build of torch")
@pytest.mark.parametrize("width", [1, 4])
def test_a_pass_captures_in_a_cuda_graph_and_replays_the_eager_logits(width):
    # On the lent H200 the binding built its circulant index on the host, so every pass copied it to the GPU and a
    # CUDA graph could not be captured at all (docs/study/gpu/session_log.txt).
    model = build_model(small_config()).cuda().eval()
    x = torch.randn(3, width, 1, 28, 28, device="cuda")
    with torch.inference_mode():
        eager = model(x)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            model(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = model(x)
        graph.replay()
        torch.cuda.synchronize()
    assert torch.allclose(captured, eager, atol=1e-5)
