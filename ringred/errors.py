"""Exception types, and the one table that maps C status codes to them."""

from __future__ import annotations


class RingredError(RuntimeError):
    """A collective failed.  Subclasses RuntimeError, like Horovod's HorovodInternalError."""


class MismatchError(RingredError, ValueError):
    """Ranks disagree on a call (shape, dtype, op, root rank, scale factors)."""


class NotInitializedError(RingredError):
    """ringred is used before ``init()`` or after ``shutdown()``."""


class PeerError(RingredError):
    """A peer rank died or vanished during a collective."""


class StallError(RingredError):
    """Some ranks never submitted a tensor the others are waiting on."""


class DuplicateNameError(RingredError, ValueError):
    """A tensor of the same name is already in flight."""


class RingredTimeoutError(RingredError, TimeoutError):
    """A wait exceeded its configured limit."""


class UnsupportedError(RingredError, TypeError):
    """Unsupported data type or operation."""


class RingredMPIError(RingredError):
    """MPI itself reported an error."""


class StallWarning(UserWarning):
    """The stall inspector found tensors that some ranks submitted and others did not."""


class InvalidArgumentError(RingredError, ValueError):
    """The C core rejected an argument."""


# The one table from C status (csrc/ringred.h rr_status, named without "RR_") to exception
# type; ringred._lib (the seam) reads the codes of these names from the C extension.
BY_STATUS: dict[str, type[RingredError]] = {
    "ERR_INVALID": InvalidArgumentError,
    "ERR_UNSUPPORTED": UnsupportedError,
    "ERR_NOMEM": RingredError,
    "ERR_MPI": RingredMPIError,
    "ERR_MISMATCH": MismatchError,
    "ERR_PEER": PeerError,
    "ERR_TIMEOUT": RingredTimeoutError,
    "ERR_STATE": NotInitializedError,
    "ERR_SYSTEM": RingredError,
    "ERR_DUPLICATE": DuplicateNameError,
    "ERR_STALL": StallError,
}
