"""The evaluated data: a data set's split, read the way evaluation reads it."""

import dataclasses

import pipelines


@dataclasses.dataclass(frozen=True)
class EvalData:
    """A data set's evaluation split and how much of it is read.

    Attributes:
        dataset: One of `pipelines.DATASETS`.
        split: "validation" or "test".
        data_dir: The data set's directory (None for the translated sets' default).
        classes_file: Optional class list (see `pipelines.dataset_info`).
        noise_std: Gaussian noise added to each image (the noisy Appendix B sets).
        batch_size: Images per batch.
        seed: The seed of the translated sets' placements and of generated noise.
        max_examples: Read only the first N images (None: the whole split); also caps
            the counts the sections ask for.
    """

    dataset: str
    split: str
    data_dir: str | None = None
    classes_file: str | None = None
    noise_std: float = 0.0
    batch_size: int = 64
    seed: int = 0
    max_examples: int | None = None

    def capped(self, count):
        """`count`, or `max_examples` where that is smaller (None: no cap)."""
        if count is None:
            return self.max_examples
        return count if self.max_examples is None else min(count, self.max_examples)

    def batches(self, image_size, count=None):
        """(images in [0, 1], labels) batches of the first `count` images (default
        `max_examples`), resized to `image_size` as the data set's evaluation does."""
        data = pipelines.build_dataset(
            self.dataset,
            self.split,
            self.data_dir,
            self.batch_size,
            image_size=image_size,
            seed=self.seed,
            noise_std=self.noise_std,
            classes_file=self.classes_file,
        )
        return self.limit(data, self.capped(count))

    def limit(self, dataset, count):
        """The first `count` images of a batched `dataset`, rebatched (None: all)."""
        if count is None:
            return dataset
        return dataset.unbatch().take(count).batch(self.batch_size)

    def object_boxes(self, count, image_size):
        """Each of the first `count` images' object box, where the data set knows it
        (`pipelines.object_boxes`), else None."""
        return pipelines.object_boxes(
            self.dataset, self.split, count, self.seed, image_size=image_size,
            data_dir=self.data_dir,
        )
