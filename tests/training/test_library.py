"""``train()`` as a library call: a dataset object of one's own, a per-step callback."""

import torch
from torch.utils.data import Dataset

from marginface.backbones import load_model
from marginface.training import TrainConfig, train


class Blobs(Dataset):
    """4 classes of 16x16 images: class k is a bright square in quadrant k, plus noise."""

    num_classes = 4
    identity_names = ["nw", "ne", "sw", "se"]

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int):
        label = i % 4
        g = torch.Generator().manual_seed(i)
        image = torch.rand(3, 16, 16, generator=g) * 0.5 - 1.0
        r, c = divmod(label, 2)
        image[:, r * 8 : r * 8 + 8, c * 8 : c * 8 + 8] += 1.5
        return image, label


def test_train_on_a_dataset_object_with_on_step(tmp_path):
    records = []
    cfg = TrainConfig(
        backbone="small_cnn",
        head="cosface",
        head_kwargs={"s": 16.0, "m": 0.1},
        image_size=16,
        embedding_size=16,
        epochs=5,
        batch_size=16,
        lr=0.1,
        output=str(tmp_path / "run"),
        progress=False,
        tensorboard=False,
        device="cpu",
    )
    result = train(cfg, dataset=Blobs(), on_step=records.append)
    assert result.stopped == "finished" and result.steps == 20 and len(records) == 20
    assert [r["step"] for r in records] == [r["step"] for r in result.history]
    assert records[-1]["loss"] < records[0]["loss"]
    model, info = load_model(tmp_path / "run")
    assert info["identity_names"] == ["nw", "ne", "sw", "se"]
    images = torch.stack([Blobs()[i][0] for i in range(8)])
    logits = result.head.eval()(model(images))
    assert (logits.argmax(1) == torch.arange(8) % 4).float().mean() >= 0.75  # it learned


def test_both_classifiers_keep_one_interface():
    """The loop calls the plain head and PartialFC alike (marginface.training.classifier)."""
    from marginface.heads import create_head
    from marginface.parallel import PartialFC
    from marginface.training.classifier import ReplicatedHead

    head = create_head("arcface", 8, 5)
    x, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 4])
    for classifier in (ReplicatedHead(head), PartialFC(head, process_group="local")):
        torch.testing.assert_close(classifier(x, y), head.loss(x, y))
        assert classifier.head.weight.shape == (5, 8) and not classifier.collective_state
        torch.testing.assert_close(classifier.full_weight(), head.weight.detach())
        state = classifier.full_state_dict()
        classifier.load_full_state_dict(state)
        classifier.attach_optimizer(torch.optim.SGD(classifier.parameters(), lr=0.1))
    assert (
        ReplicatedHead(head).state_module is head
        and ReplicatedHead(head).synchronised_names() == []
    )
