"""Fine-tuning (``train --init MODEL``): imprinted centres, the backbone's learning rate,
frozen stages, the defaults it brings, and one clear line for bad input. The start model is
the session's ``trained_run`` (small_cnn, 16-d, 16x16); exact resume is in test_resume.py."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from marginface.backbones import create_backbone
from marginface.backbones.checkpoint import load_model
from marginface.data import open_dataset
from marginface.parallel import PartialFC
from marginface.training import TrainConfig, finetune, train
from marginface.training.config import FINETUNE_BACKBONE_LR

#: the fine-tuning set: identities the start model never saw
DATA = "synthetic:6x4,first=1000"
#: float32 rounding of a float64 value in [-1, 1]: at most half a unit in the last place
#: (2^-25 below 1), plus the float64 sums' dependence on their order (a few 1e-16)
F32_ROUNDING = 2.0**-25 + 1e-12


def _tune(start, out, **keys):
    """A fine-tuning run (library), quiet and on the CPU."""
    config = {
        "data": DATA,
        "init": str(start),
        "batch_size": 8,
        "output": str(out),
        "progress": False,
        "tensorboard": False,
        "device": "cpu",
        "summary_images": 0,
        **keys,
    }
    return train(config)


def _expected_means(start) -> torch.Tensor:
    """Each identity's mean normalised embedding, normalised, in float64: the start model in
    eval mode on the unaugmented images, all in one batch as the trainer embeds them."""
    backbone, _ = load_model(start)
    data = open_dataset(DATA, image_size=16)
    images = torch.stack([data[i][0] for i in range(len(data))])
    labels = torch.as_tensor([data[i][1] for i in range(len(data))])
    with torch.no_grad():
        x = F.normalize(backbone.eval()(images).double(), dim=1)
    sums = torch.zeros(data.num_classes, x.shape[1], dtype=torch.float64)
    sums.index_add_(0, labels, x)
    return F.normalize(sums, dim=1)


@pytest.mark.parametrize("head", ["arcface", "subcenter_arcface", "sphereface2"])
def test_imprinting_puts_each_centre_on_its_identity_mean(trained_run, tmp_path, head):
    """max_steps 0: the saved centres are the imprinted ones, equal to the float64 means up
    to float32 rounding (the embeddings are the same float32 numbers: same model, same
    images, same batch); every sub-centre of a class gets its mean."""
    result = _tune(trained_run, tmp_path / "run", head=head, max_steps=0)
    assert result.steps == 0
    blob = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    weight = blob["head"]["weight"].double()
    k = result.head.subcenters
    expected = _expected_means(trained_run).repeat_interleave(k, dim=0)
    assert weight.shape == expected.shape
    assert (weight - expected).abs().max() <= F32_ROUNDING
    # and random centres are not the means
    random = _tune(trained_run, tmp_path / "random", head=head, max_steps=0, init_centres="random")
    assert (random.head.weight.double() - expected).abs().max() > 0.1


def test_imprinting_partial_fc_fills_each_shard_with_its_classes(trained_run, tmp_path):
    """Sampled Partial FC (one process): the full centre matrix of the checkpoint is the
    means; and each rank's shard of a two-rank job gets its own range of classes."""
    _tune(trained_run, tmp_path / "pfc", sample_rate=0.5, max_steps=0)
    blob = torch.load(tmp_path / "pfc" / "checkpoint.pt", weights_only=True)
    expected = _expected_means(trained_run)
    assert (blob["head"]["head.weight"].double() - expected).abs().max() <= F32_ROUNDING

    means = F.normalize(torch.randn(7, 4, dtype=torch.float64), dim=1)
    counts = torch.tensor([3.0, 1, 2, 0, 5, 1, 1], dtype=torch.float64)
    for rank in (0, 1):
        pfc = PartialFC("arcface", 4, 7, process_group="local", shard=(rank, 2))
        before = pfc.head.weight.detach().clone()
        set_ = finetune.imprint(pfc.head, means, counts, pfc.class_start)
        rows = range(pfc.class_start, pfc.class_end)
        assert set_ == sum(1 for c in rows if counts[c] > 0)
        for local, c in enumerate(rows):
            got = pfc.head.weight[local].double()
            if counts[c] > 0:
                assert (got - means[c]).abs().max() <= F32_ROUNDING
            else:  # an identity without images keeps its random centre
                assert torch.equal(pfc.head.weight[local], before[local])


def test_imprinting_refuses_the_plain_softmax_head(trained_run, tmp_path):
    with pytest.raises(ValueError, match="init_centres: imprint needs a cosine head"):
        _tune(trained_run, tmp_path / "run", head="softmax", max_steps=0)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_backbone_lr_is_a_param_group_at_that_share(trained_run, tmp_path):
    """The head's group at lr, the backbone's at backbone_lr x lr (the schedule scales both
    alike); at backbone_lr 0 one step leaves the backbone's weights as they were while the
    head moves."""
    _tune(trained_run, tmp_path / "a", backbone_lr=0.25, lr=0.08, max_steps=2, warmup_epochs=0)
    blob = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    groups = blob["optimizer"]["param_groups"]
    assert [g["initial_lr"] for g in groups] == [0.08, 0.02]
    assert groups[1]["lr"] == pytest.approx(0.25 * groups[0]["lr"], rel=1e-12)
    assert len(groups[0]["params"]) == 1  # the head's centres
    start, _ = load_model(trained_run)
    trainable = [n for n, p in start.named_parameters() if p.requires_grad]
    assert len(groups[1]["params"]) == len(trainable)

    result = _tune(trained_run, tmp_path / "b", backbone_lr=0.0, max_steps=1)
    after = result.backbone.state_dict()
    for name, p in start.named_parameters():
        assert torch.equal(after[name], p), name
    assert not torch.equal(result.head.weight, _tune(
        trained_run, tmp_path / "c", backbone_lr=0.0, max_steps=0
    ).head.weight)  # fmt: skip


def test_from_scratch_keeps_one_param_group(tmp_path):
    train(
        TrainConfig(
            data="synthetic:4x4",
            backbone="small_cnn",
            image_size=16,
            embedding_size=8,
            batch_size=8,
            max_steps=1,
            output=str(tmp_path / "run"),
            progress=False,
            tensorboard=False,
            device="cpu",
            summary_images=0,
        )
    )
    blob = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert len(blob["optimizer"]["param_groups"]) == 1


def test_freeze_keeps_the_first_stages_and_their_batchnorm(trained_run, tmp_path):
    """freeze 2 of small_cnn: its first two stages' parameters and BatchNorm statistics are
    bit-identical after training steps (train mode, validation between them), the rest moved."""
    start, _ = load_model(trained_run)
    result = _tune(trained_run, tmp_path / "run", freeze=2, max_steps=4, val=[DATA], val_every=2)
    after = result.backbone.state_dict()
    per = len(start.body) // 4
    frozen = tuple(f"body.{i}." for i in range(2 * per))
    for name, value in start.state_dict().items():
        if name.startswith(frozen):  # weights and BatchNorm statistics alike
            assert torch.equal(after[name], value), name
        elif value.is_floating_point():
            assert not torch.equal(after[name], value), name
    assert not result.backbone.body[0].training and not result.backbone.body[2 * per - 1].training
    assert result.backbone.body[2 * per].training


def test_frozen_modules_stay_in_eval_mode():
    net = create_backbone("iresnet18", embedding_size=8, input_size=32)
    assert finetune.freeze(net, 2) == ["stem", "layer1"]
    net.train()
    assert not net.bn1.training and not net.layer1[0].bn1.training
    assert net.layer2.training and net.features.training
    assert all(not p.requires_grad for p in net.layer1.parameters())
    assert all(p.requires_grad for p in net.layer2.parameters())
    mobile = create_backbone("mobilefacenet", embedding_size=8, input_size=32)
    names = [n for n, _ in finetune.backbone_stages(mobile)]
    assert names == ["stem", "blocks[0:5]", "blocks[5:6]", "blocks[6:12]", "blocks[12:13]",
                     "blocks[13:15]"]  # fmt: skip
    mbf_like = nn.Module()  # arcface_torch's MobileFaceNet layout (the ``mbf`` backbone)
    mbf_like.layers = nn.ModuleList([nn.Conv2d(3, 3, 1) for _ in range(8)])
    mbf_like.conv_sep = nn.Conv2d(3, 3, 1)
    assert finetune.freeze(mbf_like, 2) == ["stem", "stage1"]
    assert not mbf_like.layers[3].weight.requires_grad and mbf_like.layers[4].weight.requires_grad
    with pytest.raises(ValueError, match=r"config freeze: must be at most the 5 stages"):
        finetune.freeze(create_backbone("iresnet18", embedding_size=8, input_size=32), 6)
    with pytest.raises(ValueError, match="no stages defined to freeze"):
        finetune.freeze(nn.Sequential(nn.Conv2d(3, 4, 3)), 1)


def test_finetuning_defaults():
    scratch = TrainConfig()
    assert (scratch.backbone, scratch.embedding_size, scratch.image_size) == ("iresnet50", 512, 112)
    assert (scratch.epochs, scratch.warmup_epochs, scratch.backbone_lr) == (20, 0.0, 1.0)
    assert scratch.init_centres == "random"
    tuned = TrainConfig(init="some/model")
    assert tuned.backbone is None and tuned.image_size is None  # the model's, when loaded
    assert (tuned.epochs, tuned.warmup_epochs) == (5, 1.0)
    assert tuned.backbone_lr == FINETUNE_BACKBONE_LR
    assert tuned.init_centres == "imprint"
    assert (scratch.optimizer, scratch.lr) == ("sgd", 0.1)
    assert (tuned.optimizer, tuned.lr) == ("adamw", 1e-3)
    assert TrainConfig(init="m", optimizer="sgd").lr == 0.1  # the optimizer's rate
    assert TrainConfig(optimizer="adamw").lr == 1e-3
    assert TrainConfig(init="m", lr=0.05).lr == 0.05
    assert TrainConfig(init="m", epochs=10).warmup_epochs == 2.0
    given = TrainConfig(init="m", epochs=3, warmup_epochs=0, backbone_lr=0.5)
    assert (given.epochs, given.warmup_epochs, given.backbone_lr) == (3, 0, 0.5)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"freeze": 1}, "config freeze: needs a model to start from (init)"),
        ({"init_centres": "imprint"}, "config init_centres: imprint needs a model"),
        ({"init": "m", "init_centres": "mean"}, "config init_centres: must be one of"),
        ({"init": "m", "backbone_lr": -1}, "config backbone_lr: must be a finite number >= 0"),
        ({"init": "m", "freeze": -1}, "config freeze: must be an int >= 0"),
    ],
)
def test_bad_finetuning_keys(keys, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**keys)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_cli_bad_input_is_one_line(cli, trained_run, tmp_path, capsys):
    base = ["--data", DATA, "--batch-size", "8", "--quiet", "--no-tensorboard", "--device", "cpu"]
    missing = tmp_path / "nowhere"
    assert cli(*base, "--init", missing, "--output", tmp_path / "a") == 2
    line = _one_line(capsys)
    assert line == f"marginface train: error: --init: {missing}: no such model file or run folder"
    assert cli(*base, "--init", trained_run, "--freeze", "9", "--output", tmp_path / "b") == 2
    assert "config freeze: must be at most the 4 stages of the backbone (stage1" in _one_line(
        capsys
    )
    assert (
        cli(*base, "--init", trained_run, "--backbone", "iresnet18", "--output", tmp_path / "c")
        == 2
    )
    line = _one_line(capsys)
    assert "--backbone iresnet18 conflicts with the --init model" in line and "small_cnn" in line
    assert cli(*base, "--init", trained_run, "--image-size", "32", "--output", tmp_path / "d") == 2
    assert "--image-size 32 conflicts" in _one_line(capsys)
    for name in "abcd":
        assert not (tmp_path / name / "checkpoint.pt").exists()
        assert not (tmp_path / name / "config.yaml").exists()


def test_cli_says_what_it_started_from(cli, trained_run, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--data", DATA, "--batch-size", "8", "--no-tensorboard", "--device", "cpu"]
    assert cli(*args, "--quiet", "--init", trained_run, "--freeze", "1", "--max-steps", "1",
               "--output", out) == 0  # fmt: skip
    err = capsys.readouterr().err.splitlines()
    first = [line for line in err if line.startswith("marginface train:")][:3]
    assert first[0].startswith(f"marginface train: fine-tuning from {trained_run} (sha256 ")
    assert "small_cnn" in first[0]
    assert (
        "class centres: imprinted; adamw at lr 0.001, the backbone at 0.1 x that; frozen: "
        "stage1 (1 of 4 " in first[1]
    )
    assert first[2] == "marginface train: imprinted 6 class centres from 24 training images"
    import json

    info = json.loads((out / "model.json").read_text())
    assert info["backbone"] == "small_cnn" and info["image_size"] == 16
    assert info["backbone_kwargs"] == {"embedding_size": 16}
    assert info["init"]["model"] == str(trained_run) and len(info["init"]["sha256"]) == 64
    model, _ = load_model(out)  # the fine-tuned model loads like any other
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 16)


def test_imprinting_over_two_processes_with_partial_fc(trained_run, tmp_path):
    """Two gloo processes, Partial FC: each embeds half the training images, the per-class sums
    are added over both, and each rank's shard holds its own classes' means. (The ranks embed
    batches of another size than the reference's single batch, which float32 kernels may
    round differently: a tolerance of float32 embedding noise, not of float32 storage.)"""
    from _support.training import run_two_ranks

    out = tmp_path / "run"
    args = ["--data", DATA, "--init", trained_run, "--partial-fc", "--batch-size", "4",
            "--max-steps", "0", "--quiet", "--no-tensorboard", "--device", "cpu",
            "--output", out]  # fmt: skip
    r0, r1 = run_two_ranks(tmp_path, args)
    assert r0["shard"] == (0, 3) and r1["shard"] == (3, 6)
    expected = _expected_means(trained_run)
    torch.testing.assert_close(r0["head_weight"].double(), expected[:3], atol=1e-5, rtol=0)
    torch.testing.assert_close(r1["head_weight"].double(), expected[3:], atol=1e-5, rtol=0)
    blob = torch.load(out / "checkpoint.pt", weights_only=True)
    assert torch.equal(
        blob["head"]["head.weight"], torch.cat([r0["head_weight"], r1["head_weight"]])
    )


def test_every_cosine_head_takes_imprinted_centres():
    """Every registered head but the plain softmax takes the means (each of its sub-centres);
    softmax is refused with the key to change."""
    from marginface.heads import create_head, list_heads

    means = F.normalize(torch.randn(5, 8, dtype=torch.float64), dim=1)
    counts = torch.ones(5, dtype=torch.float64)
    for name in list_heads():
        head = create_head(name, 8, 5)
        if name == "softmax":
            with pytest.raises(ValueError, match="use init_centres random"):
                finetune.imprint(head, means, counts)
            continue
        assert finetune.imprint(head, means, counts) == 5, name
        k = head.subcenters
        got = head.weight.double().view(5, k, 8)
        assert (got - means[:, None]).abs().max() <= F32_ROUNDING, name
