"""Fresh seeded training scenes every epoch: the network never sees a training scene twice, so it cannot overfit."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from cloud.detection.model import STRIDE
from cloud.detection.scenes import SceneSpec, make_scene
from cloud.detection.targets import encode
from shared.manifest import Preprocess
from shared.preprocessing import normalize

# The SeedSequence key of fresh training scenes: distinct from the fixed splits' keys (0 train, 1 val, 2 test).
_FRESH_KEY = 3


def fresh_seed(base_seed: int, epoch_key: int, index: int) -> int:
    """The seed of scene `index` of one epoch's fresh draw; never equal to a fixed split's scene seed."""
    return int(np.random.SeedSequence([base_seed, _FRESH_KEY, epoch_key, index]).generate_state(1)[0])


def sample_dict(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, spec: Preprocess, num_classes: int,
                max_objects: int) -> dict[str, torch.Tensor]:
    """One training sample: the normalised image and its CenterNet targets as tensors."""
    h, w = image.shape[:2]
    t = encode(boxes, classes, num_classes, (h // STRIDE, w // STRIDE), STRIDE, max_objects)
    return {
        "image": torch.from_numpy(normalize(image, spec)),
        "heatmap": torch.from_numpy(t.heatmap),
        "size": torch.from_numpy(t.size),
        "offset": torch.from_numpy(t.offset),
        "index": torch.from_numpy(t.index),
        "mask": torch.from_numpy(t.mask),
    }


class FreshScenes(IterableDataset[dict[str, torch.Tensor]]):
    """`per_epoch` new scenes each pass, seeded by (seed, epoch, index), so a run repeats exactly.

    Without loader workers the epoch counts passes in this process; with workers each pass gets the DataLoader's
    per-epoch worker seed (drawn from the seeded torch generator), and each worker makes its share of the scenes.
    """

    def __init__(self, spec: SceneSpec, per_epoch: int, seed: int, preprocess: Preprocess, num_classes: int,
                 max_objects: int) -> None:
        super().__init__()
        self.spec = spec
        self.per_epoch = per_epoch
        self.seed = seed
        self.preprocess = preprocess
        self.num_classes = num_classes
        self.max_objects = max_objects
        self.passes = 0

    def __len__(self) -> int:
        return self.per_epoch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        worker = get_worker_info()
        if worker is None:
            epoch_key, first, step = self.passes, 0, 1
            self.passes += 1
        else:  # worker.seed = base seed of this pass + worker id; the base is what all workers share
            epoch_key, first, step = (worker.seed - worker.id) % 2**63, worker.id, worker.num_workers
        for i in range(first, self.per_epoch, step):
            scene = make_scene(fresh_seed(self.seed, epoch_key, i), self.spec, "train")
            yield sample_dict(scene.image, scene.boxes, scene.classes, self.preprocess, self.num_classes,
                              self.max_objects)
