"""Exception types, and the one place where C status codes become exceptions."""

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


# Status code (csrc/ringred.h) -> exception type.
_BY_CODE: dict[int, type[RingredError]] = {
    1: RingredError,  # RR_ERR_INVALID is mapped to ValueError below
    2: UnsupportedError,
    3: RingredError,
    4: RingredMPIError,
    5: MismatchError,
    6: PeerError,
    7: RingredTimeoutError,
    8: NotInitializedError,
    9: RingredError,
    10: DuplicateNameError,
    11: StallError,
}


class InvalidArgumentError(RingredError, ValueError):
    """The C core rejected an argument."""


_BY_CODE[1] = InvalidArgumentError


def error_for(code: int, message: str) -> RingredError:
    """Build the exception for a C status code and its message."""
    return _BY_CODE.get(code, RingredError)(message)
