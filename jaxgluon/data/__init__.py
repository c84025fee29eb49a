"""Image sources, the stratified split and the grain input pipeline.

Example::

    from jaxgluon.data import ImageFolderSource, make_train_loader, stratified_split, steps_per_epoch
    train, val = stratified_split(ImageFolderSource("~/data/hymenoptera/train"), val_fraction=0.1, seed=0)
    loader = make_train_loader(train, batch_size=32, image_size=64, mean=(0.485, 0.456, 0.406),
                               std=(0.229, 0.224, 0.225), seed=0, num_epochs=2)   # make_eval_loader: eval
    for batch in loader:      # {'image': float32 [32, 64, 64, 3], 'label': int32 [32], 'mask': bool [32]}
        ...
"""
from jaxgluon.data.folder import ImageFolderSource, SkippedFile, check_class_names
from jaxgluon.data.images import IMAGE_EXTENSIONS, load_image
from jaxgluon.data.loader import (DecodedImages, Loader, make_eval_loader, make_loader, make_train_loader,
                                  resolve_augment, steps_per_epoch)
from jaxgluon.data.specs import open_source
from jaxgluon.data.sources import (MIN_CLASSES, ArraySource, SubsetSource, load_digits_source, require_classes,
                                   stratified_split)
from jaxgluon.data.tfds_source import TFDSSource
from jaxgluon.data.transforms import AUGMENTS, preprocess_eval

__all__ = [
    "AUGMENTS",
    "IMAGE_EXTENSIONS",
    "MIN_CLASSES",
    "ArraySource",
    "DecodedImages",
    "ImageFolderSource",
    "Loader",
    "SkippedFile",
    "SubsetSource",
    "TFDSSource",
    "check_class_names",
    "load_digits_source",
    "load_image",
    "make_eval_loader",
    "make_loader",
    "make_train_loader",
    "open_source",
    "preprocess_eval",
    "require_classes",
    "resolve_augment",
    "steps_per_epoch",
    "stratified_split",
]
