"""Pretrained weights: torch-free, code-free readers of PyTorch checkpoints and MXNet ``.params``, key mapping, cache
and download.

Most code only needs ``jaxgluon.models.get_model(name, n, pretrained=True | 'auto' | path)``. Lower level::

    from jaxgluon.models import MODELS
    from jaxgluon.models.weights import assign_weights, read_state_dict, torch_to_flax
    flat = torch_to_flax(read_state_dict("resnet18-f37072fd.pth"), MODELS["resnet18_v1b"].rename)
    assign_weights(model, flat)        # raises WeightMismatchError listing missing/unexpected/mis-shaped keys

    params = read_params("resnet50_v1-cc729d95.zip")        # Gluon model zoo: {'features.0.weight': ..., ...}
    flat = torch_to_flax(MODELS["resnet50_v1"].gluon(params), MODELS["resnet50_v1"].rename)
"""
from jaxgluon.models.weights.download import ChecksumError, IncompleteDownloadError, download, sha256_of
from jaxgluon.models.weights.gluon_resnet import gluon_resnet_v1_to_torch
from jaxgluon.models.weights.mapping import (WeightMismatchError, assign_weights, classifier_classes,
                                             model_variables, strip_prefix, torch_to_flax)
from jaxgluon.models.weights.mxnet_params import ParamsFormatError, is_mxnet_params, params_sha1, read_params
from jaxgluon.models.weights.store import (WeightSource, WeightsUnavailableError, cache_root, check_sha1,
                                           load_converted, load_flax_weights, locate, read_state_dict)
from jaxgluon.models.weights.torch_pickle import (RestrictedUnpickler, UnsafeCheckpointError, extract_state_dict,
                                                  load_torch_checkpoint)

__all__ = ["ChecksumError", "IncompleteDownloadError", "download", "sha256_of", "gluon_resnet_v1_to_torch",
           "WeightMismatchError", "assign_weights", "classifier_classes", "model_variables", "strip_prefix",
           "torch_to_flax", "ParamsFormatError", "is_mxnet_params", "params_sha1", "read_params", "WeightSource",
           "WeightsUnavailableError", "cache_root", "check_sha1", "load_converted", "load_flax_weights", "locate",
           "read_state_dict", "RestrictedUnpickler", "UnsafeCheckpointError", "extract_state_dict",
           "load_torch_checkpoint"]
