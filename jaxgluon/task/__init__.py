"""The image-classification task: ``ImageClassification`` (Dataset, fit, evaluate, predict, load) and ``Results``.

    from jaxgluon import ImageClassification as task
    results = task.fit(task.Dataset(name='digits'), time_limits=120)
"""
from jaxgluon.task.dataset import Dataset, ImageDataset
from jaxgluon.task.fit import SEARCH_STRATEGIES, fit
from jaxgluon.task.image_classification import ImageClassification
from jaxgluon.task.results import Results

__all__ = ["ImageClassification", "Dataset", "ImageDataset", "Results", "fit", "SEARCH_STRATEGIES"]
