"""What ``MLP.fit(callbacks=...)`` accepts, checked before training, and how fit calls it.

A callback is a function or an object:
- ``f(model, epoch, logs)``: called after every epoch with ``epoch`` the 1-based count of epochs
  the model has trained (``logs["epoch"]``);
- ``f(epoch, logs)``: Keras' convention, called after every epoch with the 0-based epoch index;
- an object with any of Keras' hooks ``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``,
  ``on_epoch_end(epoch, logs)``, ``on_batch_end(batch, logs)`` and ``on_train_end(logs)``
  (``epoch`` and ``batch`` 0-based, as in Keras). It gets the model through its
  ``set_model(model)`` when it has one (Keras' ``Callback`` does), else as its ``model``
  attribute. An ``on_epoch_end(model, epoch, logs)`` of three parameters is called as the
  first kind.
A hook that returns True, or sets ``model.stop_training = True``, stops training after the epoch
(``on_batch_end``: after that minibatch).
"""

import inspect

HOOKS = ("on_train_begin", "on_epoch_begin", "on_epoch_end", "on_batch_end", "on_train_end")
# positional arguments each Keras hook is called with
KERAS_ARITY = {"on_train_begin": 1, "on_epoch_begin": 2, "on_epoch_end": 2, "on_batch_end": 2,
               "on_train_end": 1}
SIGNATURES = ("functions f(model, epoch, logs) or f(epoch, logs), or objects with Keras' "
              "on_epoch_end(epoch, logs), on_epoch_begin(epoch, logs), on_batch_end(batch, logs), "
              "on_train_begin(logs) or on_train_end(logs)")


def _takes(func, n):
    """Whether ``func`` can be called with ``n`` positional arguments (True when Python cannot
    tell, as for some built-ins)."""
    try:
        inspect.signature(func).bind(*([None] * n))
    except TypeError:
        return False
    except ValueError:
        return True
    return True


class Callbacks:
    """The checked callbacks of one fit. Each method calls the hooks that exist and returns
    True when one of them returned True."""

    def __init__(self, callbacks):
        if callbacks is None:
            callbacks = []
        elif callable(callbacks) or any(hasattr(callbacks, hook) for hook in HOOKS):
            callbacks = [callbacks]
        try:
            callbacks = list(callbacks)
        except TypeError:
            raise TypeError(f"callbacks must be a list of {SIGNATURES}; got {callbacks!r}.") from None
        self._hooks = {hook: [] for hook in HOOKS}   # hook -> [(function, takes the model first)]
        self._objects = []
        self._model = None
        for i, cb in enumerate(callbacks):
            self._add(cb, f"callbacks[{i}]")

    def _add(self, cb, where):
        hooks = [hook for hook in HOOKS if callable(getattr(cb, hook, None))]
        if not hooks:
            if not callable(cb):
                raise TypeError(f"{where} = {cb!r} is neither callable nor has an on_epoch_end "
                                f"method; pass {SIGNATURES}.")
            if not (_takes(cb, 3) or _takes(cb, 2)):
                raise TypeError(f"{where} = {cb!r} cannot be called as f(model, epoch, logs) or "
                                f"f(epoch, logs); pass {SIGNATURES}.")
            self._hooks["on_epoch_end"].append((cb, _takes(cb, 3)))
            return
        self._objects.append(cb)
        for hook in hooks:
            method = getattr(cb, hook)
            with_model = hook == "on_epoch_end" and _takes(method, 3) and not _takes(method, 2)
            if not with_model and not _takes(method, KERAS_ARITY[hook]):
                args = {1: "logs", 2: "batch, logs" if hook == "on_batch_end" else "epoch, logs"}
                args = args[KERAS_ARITY[hook]]
                raise TypeError(f"{where}.{hook} cannot be called as {hook}({args}); define it "
                                f"as def {hook}(self, {args.replace('logs', 'logs=None')}) as in "
                                f"Keras.")
            self._hooks[hook].append((method, with_model))

    @property
    def per_epoch(self):
        """Whether a hook runs at every epoch or minibatch (fit then runs each epoch on its own)."""
        return any(self._hooks[hook] for hook in ("on_epoch_begin", "on_epoch_end", "on_batch_end"))

    @property
    def wants_batches(self):
        """Whether a hook runs after every minibatch (fit then runs them one engine call each)."""
        return bool(self._hooks["on_batch_end"])

    def _call(self, hook, *args):
        stop = False
        for func, with_model in self._hooks[hook]:
            stop |= (func(self._model, *args) if with_model else func(*args)) is True
        return stop

    def train_begin(self, model, logs):
        """Hand ``model`` to the objects (``set_model`` or a ``model`` attribute), then
        ``on_train_begin``."""
        self._model = model
        for cb in self._objects:
            if callable(getattr(cb, "set_model", None)):
                cb.set_model(model)
            else:
                try:
                    cb.model = model
                except (AttributeError, TypeError):     # __slots__ or a read-only property
                    pass
        return self._call("on_train_begin", logs)

    def epoch_begin(self, index, logs):
        return self._call("on_epoch_begin", index, logs)

    def batch_end(self, index, logs):
        return self._call("on_batch_end", index, logs)

    def epoch_end(self, index, logs):
        """Keras' hooks get the 0-based ``index``; those that take the model first get
        ``logs["epoch"]``, the 1-based count of epochs trained."""
        stop = False
        for func, with_model in self._hooks["on_epoch_end"]:
            stop |= (func(self._model, logs["epoch"], logs) if with_model
                     else func(index, logs)) is True
        return stop

    def train_end(self, logs):
        return self._call("on_train_end", logs)
