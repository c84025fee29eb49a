"""Private GP math for :class:`jaxgluon.searcher.GPSearcher`: pure, jit-compiled JAX functions, no state."""
from jaxgluon.searcher._gp.acquisition import (
    expected_improvement,
    log_expected_improvement,
    maximize_log_ei,
    score_log_ei,
    standard_log_ei,
)
from jaxgluon.searcher._gp.runtime import gp_runtime
from jaxgluon.searcher._gp.model import (
    GPParams,
    Posterior,
    fit_hyperparameters,
    initial_params,
    log_marginal_likelihood,
    matern52,
    params_from_json,
    params_to_json,
    posterior,
    predict,
    tie_lengthscales,
    tie_matrix,
)

__all__ = [
    "GPParams",
    "Posterior",
    "expected_improvement",
    "fit_hyperparameters",
    "gp_runtime",
    "initial_params",
    "log_expected_improvement",
    "log_marginal_likelihood",
    "matern52",
    "maximize_log_ei",
    "params_from_json",
    "params_to_json",
    "posterior",
    "predict",
    "score_log_ei",
    "standard_log_ei",
    "tie_lengthscales",
    "tie_matrix",
]
