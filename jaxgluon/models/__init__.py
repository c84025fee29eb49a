"""Model zoo: Flax NNX ResNets (GluonCV v1, torchvision v1b, CIFAR) and EfficientNet-Lite0/1/2 with real weights.

Example::

    from jaxgluon.models import get_model, list_models, model_info
    net = get_model("cifar_resnet20_v1", num_classes=10, pretrained="auto")
    net.pretrained_loaded          # True when the published CIFAR-10 weights were found
"""
from jaxgluon.models.registry import MODELS, ModelSpec, get_model, list_models, model_info, pretrained_unavailable
from jaxgluon.models.weights import WeightsUnavailableError

__all__ = ["get_model", "list_models", "model_info", "pretrained_unavailable", "MODELS", "ModelSpec",
           "WeightsUnavailableError"]
