"""Learning-rate schedules: callables mapping the epoch index (0-based, within one ``fit``) to a rate.

The rate is constant within an epoch, so a compiled epoch takes it as one scalar.
Pass one to ``MLP.fit(lr_schedule=...)`` as an object below, a string, a dict or any callable.
"""

import math

from .codes import code_of
from .validation import check_number

SCHEDULES = ("constant", "piecewise", "invscaling", "cosine")


class Constant:
    """lr(epoch) = lr."""

    def __init__(self, lr):
        self.lr = check_number(lr, "lr", low=0, low_open=True)

    def __call__(self, epoch):
        return self.lr


class Piecewise:
    """Step schedule from a {first_epoch: lr} table, e.g. {0: 2.0, 30: 0.4, 60: 0.01}:
    2.0 for epochs 0-29, then 0.4 for epochs 30-59, then 0.01."""

    def __init__(self, table):
        if not isinstance(table, dict) or 0 not in table:
            raise ValueError(
                f"a piecewise schedule is a dict {{first_epoch: lr}} that starts at epoch 0, "
                f"e.g. {{0: 2.0, 30: 0.4}}; got {table!r}."
            )
        self.table = {}
        for epoch, lr in sorted(table.items()):
            check_number(epoch, "lr_schedule epoch", low=0, integer=True)
            self.table[int(epoch)] = check_number(lr, f"lr_schedule[{epoch}]", low=0, low_open=True)

    def __call__(self, epoch):
        return [lr for start, lr in self.table.items() if start <= epoch][-1]


class InverseScaling:
    """lr(epoch) = lr / (epoch + 1) ** power_t (scikit-learn's 'invscaling', per epoch)."""

    def __init__(self, lr, power_t=0.5):
        self.lr = check_number(lr, "lr", low=0, low_open=True)
        self.power_t = check_number(power_t, "power_t", low=0)

    def __call__(self, epoch):
        return self.lr / (epoch + 1) ** self.power_t


class Cosine:
    """Cosine decay from lr to lr_min over ``epochs``:
    lr(e) = lr_min + (lr - lr_min) * (1 + cos(pi * e / epochs)) / 2."""

    def __init__(self, lr, epochs, lr_min=0.0):
        self.lr = check_number(lr, "lr", low=0, low_open=True)
        self.epochs = check_number(epochs, "epochs", low=1, integer=True)
        self.lr_min = check_number(lr_min, "lr_min", low=0)

    def __call__(self, epoch):
        t = min(epoch, self.epochs) / self.epochs
        return self.lr_min + (self.lr - self.lr_min) * 0.5 * (1 + math.cos(math.pi * t))


def make_schedule(lr_schedule, lr, epochs):
    """Turn ``fit``'s ``lr_schedule`` argument into a callable epoch -> lr.

    None or "constant" keeps ``lr``; "invscaling" and "cosine" start from ``lr``; a dict is a
    :class:`Piecewise` table; any other callable is used as it is.
    """
    if lr_schedule is None:
        return Constant(lr)
    if isinstance(lr_schedule, str):
        name = SCHEDULES[code_of(SCHEDULES, lr_schedule, "lr_schedule")]
        if name == "piecewise":
            raise ValueError("lr_schedule='piecewise' needs its table: pass a dict like {0: 2.0, 30: 0.4}.")
        return {"constant": lambda: Constant(lr), "invscaling": lambda: InverseScaling(lr),
                "cosine": lambda: Cosine(lr, epochs)}[name]()
    if isinstance(lr_schedule, dict):
        return Piecewise(lr_schedule)
    if callable(lr_schedule):
        return lr_schedule
    raise TypeError(
        f"lr_schedule must be None, one of {SCHEDULES[:1] + SCHEDULES[2:]}, a dict "
        f"{{first_epoch: lr}} or a callable epoch -> lr; got {lr_schedule!r}."
    )


# schedules whose rates are checked when they are built: fit does not check each epoch's again
BUILT_IN_SCHEDULES = (Constant, Piecewise, InverseScaling, Cosine)
