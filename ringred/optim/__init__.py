"""NumPy/CuPy optimizers whose updates follow torch.optim operation for operation.

Each optimizer takes a dict name -> array (or a list of arrays) and updates those arrays in
place from gradients passed to ``step``.  With ``ringred.DistributedOptimizer`` the
gradients are averaged across ranks first, so every rank applies the same update.
"""

from .adagrad import Adagrad
from .adam import Adam, AdamW
from .base import Optimizer, array_namespace
from .rmsprop import RMSProp
from .sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "RMSProp", "Adagrad", "Optimizer", "array_namespace"]
